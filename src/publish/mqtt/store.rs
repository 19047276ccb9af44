//! Into the outbox: each message is appended before it is sent; what the outbox's full policy
//! drops is counted per sensor (the sensor travels with the message) and logged, rate-limited.

use std::sync::atomic::Ordering;

use tracing::Level;

use super::state::Publisher;
use crate::log_limited;
use crate::publish::encode::OutMessage;
use crate::publish::outbox::{Appended, NewRecord, Record};
use crate::telemetry::{DropReason, ErrorKind, LogLimiter};

/// One limiter per problem the publisher may meet again and again (a full disk, a failing
/// disk, a broker refusing messages): each is logged once, then summarised every few seconds.
#[derive(Debug, Default)]
pub(super) struct Logs {
    pub(super) disk_full: LogLimiter,
    pub(super) outbox_full: LogLimiter,
    pub(super) write_failed: LogLimiter,
    pub(super) read_failed: LogLimiter,
    pub(super) ack_failed: LogLimiter,
    pub(super) fsync_failed: LogLimiter,
    pub(super) encode_failed: LogLimiter,
    pub(super) rejected: LogLimiter,
    pub(super) resent: LogLimiter,
    /// Messages dropped by the full outbox since its last log line.
    unlogged_drops: u64,
}

/// What the full outbox dropped for one message.
struct Drops<'a> {
    /// Older messages dropped to make room.
    older: &'a [Record],
    /// The new message itself, when it was dropped.
    new: Option<&'a OutMessage>,
    /// The filesystem (not `max_bytes`) was full.
    disk_full: bool,
}

impl Publisher {
    /// Appends `m` to the outbox. Gives it back when the outbox (or its filesystem) is full and
    /// its policy is `block`.
    pub(super) fn append(&mut self, m: OutMessage) -> Option<OutMessage> {
        let disk_full_before = self.outbox.counters().disk_full;
        let result = self.outbox.append(NewRecord {
            topic: &m.topic,
            sensor: m.sensor.as_deref(),
            qos: m.qos,
            retain: m.retain,
            payload: &m.payload,
        });
        let disk_full = self.outbox.counters().disk_full > disk_full_before;
        match result {
            Ok(Appended::Stored { id, dropped }) => {
                if let Some(t) = m.timing {
                    self.timings.keep(id, t);
                }
                self.count_drops(&Drops {
                    older: &dropped,
                    new: None,
                    disk_full,
                });
                None
            }
            Ok(Appended::DroppedNewest { dropped }) => {
                self.count_drops(&Drops {
                    older: &dropped,
                    new: Some(&m),
                    disk_full,
                });
                None
            }
            Ok(Appended::Full) => {
                if disk_full {
                    log_limited!(
                        self.logs.disk_full,
                        Level::WARN,
                        "outbox full (the filesystem is full): holding new messages until there is room (outbox.when_full = \"block\")"
                    );
                }
                Some(m)
            }
            Err(e) => {
                self.telemetry.errors.add(ErrorKind::OutboxWrite);
                log_limited!(self.logs.write_failed, Level::ERROR,
                    "cannot write to the outbox; message dropped (counted as outbox_full and outbox_write)",
                    error = %e, topic = %m.topic);
                self.count_drop(m.sensor.as_deref());
                None
            }
        }
    }

    /// One message dropped by the outbox, counted in total and for its sensor.
    fn count_drop(&self, sensor: Option<&str>) {
        self.telemetry
            .publish
            .outbox_dropped
            .fetch_add(1, Ordering::Relaxed);
        if let Some(sensor) = sensor {
            self.telemetry
                .stream(sensor)
                .add_drops(DropReason::OutboxFull, 1);
        }
    }

    /// Counts what the outbox's full policy dropped and logs it, rate-limited.
    fn count_drops(&mut self, d: &Drops<'_>) {
        for r in d.older {
            self.timings.forget(r.id);
            self.count_drop(r.sensor.as_deref());
        }
        if let Some(m) = d.new {
            self.count_drop(m.sensor.as_deref());
        }
        let n = d.older.len() as u64 + u64::from(d.new.is_some());
        if n == 0 {
            return;
        }
        let which = match (d.new.is_some(), d.older.len()) {
            (false, _) => "the oldest messages",
            (true, 0) => "the new message",
            (true, _) => "the oldest messages and the new one",
        };
        // One line per few seconds, with every message dropped since the previous line.
        self.logs.unlogged_drops += n;
        let (limiter, why) = if d.disk_full {
            (&mut self.logs.disk_full, "the filesystem is full")
        } else {
            (&mut self.logs.outbox_full, "outbox.max_bytes reached")
        };
        if let Some(repeats) = limiter.admit(std::time::Instant::now()) {
            tracing::warn!(
                dropped = std::mem::take(&mut self.logs.unlogged_drops),
                "outbox full ({why}): dropped {which} (outbox.when_full; counted as outbox_full){repeats}"
            );
        }
    }
}
