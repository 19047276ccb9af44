//! The ack log: `[first u64][last u64][crc32 u32]` records, each an inclusive range of outbox ids
//! acknowledged (or dropped). Appended in batches; rewritten from memory when it grows (or after
//! a full disk left it behind).
//!
//! A rewrite never waits for the disk: the new log is written beside the old one
//! (`acks.log.tmp`), appends go to it from then on, and the next sync (on the outbox's own
//! thread) makes it durable and renames it over `acks.log`. Until then the old log stays as it
//! was, and recovery reads both, so a crash in between loses no acknowledgement. One rewrite
//! at a time: another waits until the rename is done.
//!
//! The acknowledgements are first of all in memory (the outbox's pending set); the log only lets
//! a restart skip what was acknowledged. So when the disk is full the log may fall behind: a
//! write cut short is cut back off the file (it holds whole records only), the unwritten records
//! are forgotten, and the next flush rewrites the log from memory. A restart in between re-sends
//! those messages — duplicates, which at-least-once allows, never a loss.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use super::space::is_disk_full;
use super::{io_err, Outbox, OutboxError};

/// One record of the ack log.
pub const ACK_RECORD_BYTES: u64 = 20;
/// The log is rewritten (compacted) when it is larger than this.
const ACK_LOG_COMPACT_BYTES: u64 = 1 << 20;
/// Buffered records are written once they reach this size (and at every sync).
pub const ACK_BUFFER_BYTES: usize = 64 << 10;
/// Most of an ack log recovery reads: the log is rewritten at 1 MiB, so anything beyond this
/// is damage (it is cut; at worst some messages are sent twice).
pub const MAX_ACK_LOG_BYTES: u64 = 16 << 20;
/// Read buffer of recovery.
const READ_BUFFER_BYTES: u64 = 64 << 10;

/// The ack log file and its unwritten records.
#[derive(Debug)]
pub struct AckLog {
    path: PathBuf,
    file: File,
    /// Bytes in the file: whole records only.
    written: u64,
    /// Records not written yet.
    buf: Vec<u8>,
    /// The file lacks acknowledgements that are only in memory (a full disk); the owner
    /// rewrites it from memory at the next flush.
    behind: bool,
    /// A rewritten log at `acks.log.tmp` (where `file` now appends), waiting for the next sync
    /// to move it over `acks.log`: the bytes of the old log, on disk until then.
    replacing: Option<u64>,
}

/// A rewritten ack log to move into place once it is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replacement {
    /// `acks.log.tmp`.
    pub from: PathBuf,
    /// `acks.log`.
    pub to: PathBuf,
}

/// Where a rewrite of the log at `path` is written first.
fn tmp_path(path: &Path) -> PathBuf {
    path.with_extension("log.tmp")
}

/// One record: ids `first..=last`, checksummed.
#[must_use]
pub fn record(first: u64, last: u64) -> [u8; ACK_RECORD_BYTES as usize] {
    let mut r = [0u8; ACK_RECORD_BYTES as usize];
    r[..8].copy_from_slice(&first.to_le_bytes());
    r[8..16].copy_from_slice(&last.to_le_bytes());
    let crc = crc32fast::hash(&r[..16]);
    r[16..].copy_from_slice(&crc.to_le_bytes());
    r
}

/// Writes a log holding `ranges` at `acks.log.tmp` (not synced) and opens it for appending. On
/// any failure the temporary file is removed.
fn write_replacement(path: &Path, ranges: &[(u64, u64)]) -> Result<(File, u64), OutboxError> {
    let tmp = tmp_path(path);
    let data: Vec<u8> = ranges.iter().flat_map(|&(a, b)| record(a, b)).collect();
    let written = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&data).map(|()| f));
    match written {
        // Appends go to the end either way; reopened so that they are O_APPEND writes.
        Ok(f) => {
            drop(f);
            let file = OpenOptions::new()
                .append(true)
                .open(&tmp)
                .map_err(io_err(&tmp))?;
            Ok((file, data.len() as u64))
        }
        Err(e) => {
            remove_replacement(&tmp);
            Err(io_err(&tmp)(e))
        }
    }
}

/// Writes a log holding `ranges` and moves it over `path` once durable (at open). On any
/// failure `path` is untouched.
fn write_fresh(path: &Path, ranges: &[(u64, u64)]) -> Result<(File, u64), OutboxError> {
    let (file, written) = write_replacement(path, ranges)?;
    let tmp = tmp_path(path);
    if let Err(e) = file.sync_all() {
        remove_replacement(&tmp);
        return Err(io_err(&tmp)(e));
    }
    fs::rename(&tmp, path).map_err(io_err(path))?;
    Ok((file, written))
}

/// Removes a rewrite that could not be completed (a left-over one holds acknowledgements only
/// and is read by recovery, so failing to remove it is no error).
fn remove_replacement(tmp: &Path) {
    if let Err(e) = fs::remove_file(tmp) {
        tracing::debug!(error = %e, "cannot remove {}", tmp.display());
    }
}

impl AckLog {
    /// A fresh log at `path` holding `ranges`. On a full disk the existing file (whole records,
    /// as recovery left it) is kept and marked behind.
    ///
    /// # Errors
    /// [`OutboxError::Io`] for anything but a full disk.
    pub fn create(path: &Path, ranges: &[(u64, u64)]) -> Result<Self, OutboxError> {
        let (file, written, behind) = match write_fresh(path, ranges) {
            Ok((file, written)) => (file, written, false),
            Err(e) if e.is_disk_full() => {
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(io_err(path))?;
                let written = file.metadata().map_err(io_err(path))?.len();
                (file, written, true)
            }
            Err(e) => return Err(e),
        };
        Ok(Self {
            path: path.to_path_buf(),
            file,
            written,
            buf: Vec::new(),
            behind,
            replacing: None,
        })
    }

    /// Records that ids `first..=last` were acknowledged or dropped (buffered).
    pub fn push(&mut self, first: u64, last: u64) {
        self.buf.extend_from_slice(&record(first, last));
    }

    /// Bytes of the log on disk and buffered (with the old log while a rewrite replaces it).
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.written + self.buf.len() as u64 + self.replacing.unwrap_or(0)
    }

    /// Whether a rewrite waits for the next sync to move it into place (no other rewrite
    /// starts until then).
    #[must_use]
    pub fn is_replacing(&self) -> bool {
        self.replacing.is_some()
    }

    /// Bytes buffered, not written yet.
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Whether the file lacks acknowledgements (a full disk); rewrite it with
    /// [`AckLog::rewrite`].
    #[must_use]
    pub fn is_behind(&self) -> bool {
        self.behind
    }

    /// Writes the buffered records. `Ok(true)` when the disk was full: nothing of them stays
    /// in the file and the log is behind.
    ///
    /// # Errors
    /// [`OutboxError::Io`] for anything but a full disk.
    pub fn flush(&mut self) -> Result<bool, OutboxError> {
        if self.buf.is_empty() {
            return Ok(false);
        }
        match self.file.write_all(&self.buf) {
            Ok(()) => {
                self.written += self.buf.len() as u64;
                self.buf.clear();
                Ok(false)
            }
            Err(e) if is_disk_full(&e) => {
                self.file
                    .set_len(self.written)
                    .map_err(io_err(&self.path))?;
                self.buf.clear();
                self.behind = true;
                Ok(true)
            }
            Err(e) => Err(io_err(&self.path)(e)),
        }
    }

    /// Replaces the log with `ranges` (everything acknowledged that still matters, from
    /// memory), written beside it until the next sync moves it into place. `Ok(true)` when the
    /// disk was full: the old file stays, behind. Nothing happens while an earlier rewrite
    /// waits for its sync ([`AckLog::is_replacing`]).
    ///
    /// # Errors
    /// [`OutboxError::Io`] for anything but a full disk.
    pub fn rewrite(&mut self, ranges: &[(u64, u64)]) -> Result<bool, OutboxError> {
        if self.is_replacing() {
            return Ok(false);
        }
        match write_replacement(&self.path, ranges) {
            Ok((file, written)) => {
                // The buffered records are part of `ranges`.
                self.buf.clear();
                self.file = file;
                self.replacing = Some(self.written);
                self.written = written;
                self.behind = false;
                Ok(false)
            }
            Err(e) if e.is_disk_full() => {
                self.buf.clear();
                self.behind = true;
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }

    /// A second handle on the file, for fsync on another thread, and the rename that sync
    /// completes.
    ///
    /// # Errors
    /// [`OutboxError::Io`].
    pub fn sync_parts(&self) -> Result<(File, Option<Replacement>), OutboxError> {
        let file = self.file.try_clone().map_err(io_err(&self.path))?;
        let replacement = self.replacing.map(|_| Replacement {
            from: tmp_path(&self.path),
            to: self.path.clone(),
        });
        Ok((file, replacement))
    }

    /// The rewritten log is in place (the sync that renamed it succeeded).
    pub fn replaced(&mut self) {
        self.replacing = None;
    }

    /// The file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Acknowledgements as the outbox applies them: in memory first, then the ack log.
impl Outbox {
    /// Marks `id` acknowledged; deletes its segment when that was the last pending record of a
    /// sealed one. An id that is not pending (dropped, or acknowledged twice) is ignored. A full
    /// disk only leaves the ack log behind (see [`acks`]).
    ///
    /// # Errors
    /// [`OutboxError::Io`] when the ack log or a segment deletion fails.
    pub fn ack(&mut self, id: u64) -> Result<(), OutboxError> {
        let Some(loc) = self.pending.remove(&id) else {
            return Ok(());
        };
        if let Some(r) = self.cache.remove(&id) {
            self.cache_bytes -= r.payload.len();
        }
        if let Some(seg) = self.segments.iter_mut().find(|s| s.first_id == loc.segment) {
            seg.live = seg.live.saturating_sub(1);
        }
        self.acks.push(id, id);
        self.remove_dead_segments()?;
        if self.acks.bytes() > ACK_LOG_COMPACT_BYTES && !self.acks.is_replacing() {
            self.compact_acks()?;
        } else if self.acks.buffered() >= ACK_BUFFER_BYTES {
            self.flush_acks()?;
        }
        Ok(())
    }

    pub(super) fn remove_dead_segments(&mut self) -> Result<(), OutboxError> {
        let mut removed = false;
        // Only sealed segments (not the last) are removed; order does not matter for deletion.
        let mut i = 0;
        while i + 1 < self.segments.len() {
            if self.segments.get(i).is_some_and(|s| s.live == 0) {
                if let Some(seg) = self.segments.remove(i) {
                    self.delete_segment(seg)?;
                    removed = true;
                }
            } else {
                i += 1;
            }
        }
        if removed && (self.acks.bytes() > ACK_LOG_COMPACT_BYTES / 4 || self.acks.is_behind()) {
            self.compact_acks()?;
        }
        Ok(())
    }

    /// Rewrites the ack log as the acknowledged ranges inside the kept segments.
    pub(super) fn compact_acks(&mut self) -> Result<(), OutboxError> {
        let first_live = self.segments.front().map_or(self.next_id, |s| s.first_id);
        let mut ranges = Vec::new();
        let mut from = first_live;
        for &id in self.pending.keys() {
            if id > from {
                ranges.push((from, id - 1));
            }
            from = id + 1;
        }
        if self.next_id > from {
            ranges.push((from, self.next_id - 1));
        }
        if self.acks.rewrite(&ranges)? {
            self.counters.disk_full += 1;
        }
        Ok(())
    }

    /// Writes buffered acks (or the whole log again, when a full disk left it behind: once an
    /// earlier rewrite is in place, the acks stay buffered until then).
    pub(super) fn flush_acks(&mut self) -> Result<(), OutboxError> {
        if self.acks.is_behind() {
            return self.compact_acks();
        }
        if self.acks.flush()? {
            self.counters.disk_full += 1;
        }
        Ok(())
    }
}

/// Acknowledged id ranges (inclusive, merged while read) and the bytes cut from a bad tail.
pub type AckRecovery = (Vec<(u64, u64)>, u64);

/// [`recover`] of the log at `path` and of a rewrite of it that a crash left beside it (it
/// holds acknowledgements only, some of them newer than the log's).
///
/// # Errors
/// As [`recover`].
pub fn recover_with_replacement(path: &Path) -> Result<AckRecovery, OutboxError> {
    let (mut ranges, mut cut) = recover(path)?;
    let (newer, newer_cut) = recover(&tmp_path(path))?;
    ranges.extend(newer);
    cut += newer_cut;
    Ok((merge(ranges), cut))
}

/// Reads the ack log record by record; the first bad record, an incomplete one, and anything
/// beyond [`MAX_ACK_LOG_BYTES`] is cut off the file. Reads at most one buffer ahead, whatever
/// the file's size.
///
/// # Errors
/// [`OutboxError::Io`] when the file cannot be read or truncated.
pub fn recover(path: &Path) -> Result<AckRecovery, OutboxError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(io_err(path)(e)),
    };
    let file_len = file.metadata().map_err(io_err(path))?.len();
    let readable = file_len.min(MAX_ACK_LOG_BYTES);
    let mut reader = BufReader::with_capacity(
        usize::try_from(readable.clamp(ACK_RECORD_BYTES, READ_BUFFER_BYTES)).unwrap_or(64),
        file,
    );
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    let mut valid = 0u64;
    let mut r = [0u8; ACK_RECORD_BYTES as usize];
    while readable - valid >= ACK_RECORD_BYTES {
        match reader.read_exact(&mut r) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(io_err(path)(e)),
        }
        let (body, crc) = r.split_at(16);
        if crc32fast::hash(body).to_le_bytes() != crc {
            break;
        }
        let first = u64::from_le_bytes(body[..8].try_into().unwrap_or_default());
        let last = u64::from_le_bytes(body[8..].try_into().unwrap_or_default());
        // Acks arrive mostly in order: extending the last range keeps this small.
        match ranges.last_mut() {
            Some(prev) if first >= prev.0 && first <= prev.1.saturating_add(1) => {
                prev.1 = prev.1.max(last);
            }
            _ => ranges.push((first, last)),
        }
        valid += ACK_RECORD_BYTES;
    }
    let cut = file_len - valid;
    if cut > 0 {
        OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|f| f.set_len(valid))
            .map_err(io_err(path))?;
    }
    Ok((merge(ranges), cut))
}

/// Sorts and merges overlapping or adjacent ranges.
#[must_use]
pub fn merge(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (a, b) in ranges {
        match out.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// Whether `id` is in one of the merged `ranges`.
#[must_use]
pub fn is_acked(ranges: &[(u64, u64)], id: u64) -> bool {
    // Ranges are sorted by `first` and merged; binary search the last range starting <= id.
    match ranges.partition_point(|r| r.0 <= id) {
        0 => false,
        i => ranges.get(i - 1).is_some_and(|r| id <= r.1),
    }
}
