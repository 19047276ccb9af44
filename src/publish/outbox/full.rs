//! What the outbox does when a write meets a full filesystem (ENOSPC, EDQUOT): the partial
//! record is cut back off, then room is made as `outbox.when_full` says (see the parent
//! module's documentation).

use super::record::read_record;
use super::{io_err, Appended, Outbox, OutboxError, Record};
use crate::config::WhenFull;
use std::io::{self, Write};

/// What to do with a message after a write met a full disk.
pub(super) enum Room {
    /// Something was reclaimed or dropped: write again.
    Retry,
    /// The message is dropped (`drop_newest`, or nothing left to drop).
    Refuse,
    /// `block`: the caller keeps it and tries later.
    Wait,
}

impl Outbox {
    /// Counts the new message as dropped, after the older `dropped`.
    pub(super) fn refuse(&mut self, dropped: Vec<Record>) -> Appended {
        self.counters.dropped_full += 1;
        Appended::DroppedNewest { dropped }
    }

    /// Writes the encoded record in `scratch` to the end of the active segment. A write cut
    /// short is cut back off the file, so the segment holds whole records only.
    pub(super) fn write_scratch(&mut self) -> Result<(), OutboxError> {
        let Some(seg) = self.segments.back() else {
            return Err(io_err(&self.options.dir)(io::Error::other(
                "no active segment",
            )));
        };
        let Err(e) = self.active.write_all(&self.scratch) else {
            return Ok(());
        };
        if self.active.set_len(seg.bytes).is_err() {
            // The partial record stays; nothing may follow it in this segment.
            self.active_damaged = true;
        }
        Err(io_err(&seg.path)(e))
    }

    /// A write met a full disk: make room as the policy says. The active segment is sealed
    /// first (once per message) when that can help: when it holds acknowledged records (they
    /// can only be deleted with a sealed segment), or when it is the only one with records (so
    /// `drop_oldest` has something to drop). Sealing it otherwise would only cut the outbox into
    /// ever smaller segments.
    pub(super) fn on_disk_full(
        &mut self,
        sealed: &mut bool,
        dropped: &mut Vec<Record>,
    ) -> Result<Room, OutboxError> {
        self.counters.disk_full += 1;
        let only = self.segments.len() == 1;
        let seal = self.segments.back().is_some_and(|s| {
            // Ids in the active segment run from its first id to the next id.
            let acknowledged = (self.next_id - s.first_id).saturating_sub(s.live) > 0;
            s.bytes > 0 && (acknowledged || only)
        });
        if !*sealed && seal {
            *sealed = true;
            // Not even an empty segment could be created: go on to the policy.
            if self.roll_unless_full()? {
                return Ok(Room::Retry);
            }
        }
        Ok(match self.options.when_full {
            WhenFull::DropOldest => {
                if self.drop_oldest_segment(dropped)? {
                    Room::Retry
                } else {
                    Room::Refuse
                }
            }
            WhenFull::Block => Room::Wait,
            WhenFull::DropNewest => Room::Refuse,
        })
    }

    /// `drop_oldest` and full: drops the oldest segments until a record of `len` bytes fits
    /// (or nothing is left to drop).
    pub(super) fn drop_oldest_until_room(
        &mut self,
        len: u64,
        dropped: &mut Vec<Record>,
    ) -> Result<(), OutboxError> {
        while self.is_full_for(len) {
            if self.segments.len() == 1 && !self.roll_unless_full()? {
                break;
            }
            if !self.drop_oldest_segment(dropped)? {
                break;
            }
        }
        Ok(())
    }

    /// Drops every pending record of the oldest sealed segment and deletes it.
    fn drop_oldest_segment(&mut self, dropped: &mut Vec<Record>) -> Result<bool, OutboxError> {
        if self.segments.len() < 2 {
            return Ok(false);
        }
        let Some(seg) = self.segments.pop_front() else {
            return Ok(false);
        };
        let end = self.segments.front().map_or(self.next_id, |s| s.first_id);
        let ids: Vec<u64> = self
            .pending
            .range(seg.first_id..end)
            .map(|(k, _)| *k)
            .collect();
        for id in ids {
            if let Some(loc) = self.pending.remove(&id) {
                let record = match self.cache.remove(&id) {
                    Some(r) => {
                        self.cache_bytes -= r.payload.len();
                        Some(r)
                    }
                    None => read_record(&seg.reader, loc).ok(),
                };
                if let Some(r) = record {
                    dropped.push(r);
                }
                self.counters.dropped_full += 1;
            }
        }
        if let Some(last) = end.checked_sub(1) {
            if last >= seg.first_id {
                self.acks.push(seg.first_id, last);
            }
        }
        self.delete_segment(seg)?;
        Ok(true)
    }
}
