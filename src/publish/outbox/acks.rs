//! The ack log: `[first u64][last u64][crc32 u32]` records, each an inclusive range of outbox ids
//! acknowledged (or dropped). Appended in batches; rewritten from memory when it grows (or after
//! a full disk left it behind).
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

/// Writes a log holding `ranges` to a temporary file and renames it over `path`. On any failure
/// the temporary file is removed and `path` is untouched.
fn write_fresh(path: &Path, ranges: &[(u64, u64)]) -> Result<(File, u64), OutboxError> {
    let tmp = path.with_extension("log.tmp");
    let data: Vec<u8> = ranges.iter().flat_map(|&(a, b)| record(a, b)).collect();
    let written = File::create(&tmp).and_then(|mut f| {
        f.write_all(&data)?;
        f.sync_all()
    });
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(&tmp)(e));
    }
    fs::rename(&tmp, path).map_err(io_err(path))?;
    let file = OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io_err(path))?;
    Ok((file, data.len() as u64))
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
        })
    }

    /// Records that ids `first..=last` were acknowledged or dropped (buffered).
    pub fn push(&mut self, first: u64, last: u64) {
        self.buf.extend_from_slice(&record(first, last));
    }

    /// Bytes of the log, written and buffered.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.written + self.buf.len() as u64
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
    /// memory). `Ok(true)` when the disk was full: the old file stays, behind.
    ///
    /// # Errors
    /// [`OutboxError::Io`] for anything but a full disk.
    pub fn rewrite(&mut self, ranges: &[(u64, u64)]) -> Result<bool, OutboxError> {
        // The buffered records are part of `ranges`.
        self.buf.clear();
        match write_fresh(&self.path, ranges) {
            Ok((file, written)) => {
                self.file = file;
                self.written = written;
                self.behind = false;
                Ok(false)
            }
            Err(e) if e.is_disk_full() => {
                self.behind = true;
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }

    /// A second handle on the file, for fsync on another thread.
    ///
    /// # Errors
    /// [`OutboxError::Io`].
    pub fn sync_handle(&self) -> Result<File, OutboxError> {
        self.file.try_clone().map_err(io_err(&self.path))
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
        if self.acks.bytes() > ACK_LOG_COMPACT_BYTES {
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
                    self.segment_bytes = self.segment_bytes.saturating_sub(seg.bytes);
                    fs::remove_file(&seg.path).map_err(io_err(&seg.path))?;
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

    /// Writes buffered acks (or the whole log again, when a full disk left it behind).
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
