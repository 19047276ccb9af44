//! The on-disk outbox: a write-ahead log of every message bound for the broker, so that neither a
//! broker that returns without our session, nor a network outage, nor a daemon restart loses a
//! message that was handed to the publisher. A message is appended (and made durable as the
//! fsync policy says) before it is sent, and forgotten only after its PUBACK.
//!
//! On disk, in one directory:
//! - `<first id, 20 digits>.seg`: append-only segments of records
//!   `[len u32 LE][crc32 u32 LE][body]`, body = `[id u64][flags u8][retain u8][head len u16][head][payload]`
//!   where `head` names the sensor and the topic (see `record` for the two formats read).
//!   A new segment starts at every open and when the active one reaches its target size (an
//!   eighth of `max_bytes`, or of the filesystem's room when that is smaller: [`space`]).
//! - `acks.log`: inclusive ranges of ids that were acknowledged (or dropped), see [`acks`].
//! - `lock`: held with an exclusive `flock` while the outbox is open, so that a second daemon
//!   configured with the same directory refuses to start instead of corrupting it.
//!
//! A sealed segment is deleted as soon as every record in it is acknowledged. Recovery reads
//! every segment in id order; the first record whose length or checksum does not hold (a write
//! cut by a power loss) ends that segment: the file is truncated there, the cut is counted, and
//! every record before it is kept. The ids are in the records, so they keep increasing across
//! restarts.
//!
//! A full filesystem (ENOSPC, EDQUOT) is an expected state, not an error: a record is written
//! with one `write` of the whole record, and one cut short is cut back off the file at once, so
//! a segment only ever holds whole records. Then the active segment is sealed (what in it is
//! acknowledged can be deleted), and `when_full` applies to disk space exactly as to
//! `max_bytes`: `drop_oldest` drops the oldest segment and retries, `drop_newest` drops the new
//! message, `block` asks the caller to wait. Every drop is counted; the next write that fits
//! goes through, so the outbox recovers by itself once space returns.
//!
//! Appends, acknowledgements and deletions are plain file I/O on the page cache, called from the
//! publisher's task. Everything that waits for the disk runs on the outbox's own thread
//! (`outbox-sync`, [`sync`]): the fdatasync of the active segment and the ack log, of segments
//! sealed since the last sync (a roll never waits for the disk), and moving a compacted ack log
//! into place (it is written beside the old one and renamed once it is on disk). Nothing here
//! knows about MQTT connections.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use crate::config::WhenFull;

pub mod acks;
mod full;
mod lock;
mod record;
mod recover;
pub mod space;
pub mod sync;

use acks::{AckLog, ACK_RECORD_BYTES};
use full::Room;
use record::read_record;
pub use record::{NewRecord, Record};
pub use space::{available_bytes, is_disk_full, space_warning};
pub use sync::{PendingSync, SyncDone, SyncJob};

/// Largest record body accepted on recovery (anything larger is a corrupt length field).
pub const MAX_RECORD_BYTES: u32 = 64 << 20;
/// Record header: length and checksum.
const HEADER_BYTES: u64 = 8;
/// Fixed part of a record body before its head (sensor and topic).
const BODY_FIXED_BYTES: usize = 8 + 1 + 1 + 2;
/// Payloads of pending messages kept in memory, so sending does not read them back from disk.
const CACHE_BYTES: usize = 32 << 20;

/// Errors of the outbox.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// A file operation failed.
    #[error("outbox {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A message does not fit the outbox at all.
    #[error("message of {bytes} bytes is larger than the outbox limit of {limit} bytes")]
    TooLarge {
        /// Size of the record.
        bytes: u64,
        /// `max_bytes`.
        limit: u64,
    },
    /// Another process (a second daemon) has the outbox open.
    #[error("outbox {}: in use by another edgebind process{}; two daemons must not share an outbox directory (give each its own outbox.dir)", dir.display(), holder.map_or_else(String::new, |pid| format!(" (pid {pid})")))]
    Locked {
        /// The directory.
        dir: PathBuf,
        /// The process holding it, when its lock file names it.
        holder: Option<u32>,
    },
}

/// What became of an appended message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// Stored under `id`. `dropped`: older records dropped to make room (`drop_oldest`).
    Stored {
        /// Its outbox id.
        id: u64,
        /// Older records dropped for it.
        dropped: Vec<Record>,
    },
    /// Not stored: the new message itself was dropped (`drop_newest`, or nothing older was left
    /// to drop). `dropped`: older records dropped before that.
    DroppedNewest {
        /// Older records dropped before the new one.
        dropped: Vec<Record>,
    },
    /// Not stored, nothing dropped: the outbox (or its filesystem) is full and `when_full` is
    /// `block`. The caller keeps the message and tries again after acknowledgements.
    Full,
}

impl OutboxError {
    /// Whether this is the filesystem (or a quota) being full.
    #[must_use]
    pub fn is_disk_full(&self) -> bool {
        matches!(self, Self::Io { source, .. } if is_disk_full(source))
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> OutboxError + '_ {
    move |source| OutboxError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// How the outbox is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxOptions {
    /// Directory of the segments and the ack log (created if missing).
    pub dir: PathBuf,
    /// Most bytes the outbox may use on disk.
    pub max_bytes: u64,
    /// Largest segment: the active one is sealed at this size (or earlier on a small
    /// filesystem).
    pub segment_bytes: u64,
    /// What happens to a new message when the outbox (or its filesystem) is full.
    pub when_full: WhenFull,
}

impl OutboxOptions {
    /// Options with a segment size suited to `max_bytes` (an eighth of it, 1 KiB to 64 MiB), so
    /// that dropping the oldest segment frees a small part of the outbox.
    #[must_use]
    pub fn new(dir: PathBuf, max_bytes: u64, when_full: WhenFull) -> Self {
        Self {
            dir,
            max_bytes,
            segment_bytes: (max_bytes / 8).clamp(1024, 64 << 20),
            when_full,
        }
    }
}

/// What recovery found on open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Messages found that were never acknowledged (they will be sent again).
    pub pending: u64,
    /// Segments or the ack log whose tail was cut by a bad length or checksum and truncated.
    pub corrupt_tails: u64,
    /// Bytes removed by those truncations.
    pub truncated_bytes: u64,
}

/// Where a pending record is.
#[derive(Debug, Clone, Copy)]
struct Loc {
    segment: u64,
    offset: u64,
    len: u64,
}

#[derive(Debug)]
struct Segment {
    first_id: u64,
    path: PathBuf,
    bytes: u64,
    /// Records not yet acknowledged.
    live: u64,
    /// For reads of records no longer cached.
    reader: File,
}

/// Counts of what the outbox did since open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxCounters {
    /// Messages dropped because the outbox (or its filesystem) was full.
    pub dropped_full: u64,
    /// Bad tails truncated at open.
    pub corrupt_tails: u64,
    /// Writes refused by a full filesystem or quota (ENOSPC, EDQUOT).
    pub disk_full: u64,
}

/// The outbox. See the module documentation.
#[derive(Debug)]
pub struct Outbox {
    options: OutboxOptions,
    /// The `lock` file, holding the directory's exclusive lock as long as it is open.
    _lock: File,
    segments: VecDeque<Segment>,
    /// The active segment (the last of `segments`), opened for appending.
    active: File,
    /// The active segment's last write was cut short and could not be cut back: seal it before
    /// the next write (recovery cuts the bad tail).
    active_damaged: bool,
    /// Size at which the active segment is sealed.
    segment_target: u64,
    pending: BTreeMap<u64, Loc>,
    cache: HashMap<u64, Record>,
    cache_bytes: usize,
    acks: AckLog,
    next_id: u64,
    /// Bytes of all segments.
    segment_bytes: u64,
    counters: OutboxCounters,
    scratch: Vec<u8>,
    /// Segments sealed since the last sync: the next sync makes their tails durable.
    unsynced_sealed: Vec<(PathBuf, File)>,
    /// The thread running fsyncs (started at the first [`Outbox::begin_sync`]).
    syncer: Option<sync::SyncThread>,
}

fn segment_path(dir: &Path, first_id: u64) -> PathBuf {
    dir.join(format!("{first_id:020}.seg"))
}

/// Segments already in `dir`, by first id.
fn segment_ids(dir: &Path) -> Result<Vec<u64>, OutboxError> {
    let mut ids = Vec::new();
    // An entry that cannot be read fails the open: skipping it could skip a segment, and with
    // it messages never delivered.
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let name = entry.map_err(io_err(dir))?.file_name();
        let id = name
            .to_str()
            .and_then(|n| n.strip_suffix(".seg"))
            .and_then(|n| n.parse::<u64>().ok());
        ids.extend(id);
    }
    ids.sort_unstable();
    Ok(ids)
}

fn open_segment(path: &Path) -> Result<(File, File), OutboxError> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_err(path))?;
    let reader = File::open(path).map_err(io_err(path))?;
    Ok((file, reader))
}

impl Outbox {
    /// Opens (or creates) the outbox in `options.dir` and recovers what a previous run left.
    /// A full disk does not stop it (see [`acks`]).
    ///
    /// # Errors
    /// [`OutboxError::Locked`] when another process has it open; [`OutboxError::Io`] when the
    /// directory or a file cannot be read or written.
    pub fn open(options: OutboxOptions) -> Result<(Self, Recovery), OutboxError> {
        let dir = options.dir.clone();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let lock = lock::lock_dir(&dir)?;
        let acks_path = dir.join("acks.log");
        let (ranges, ack_cut) = acks::recover_with_replacement(&acks_path)?;
        let mut recovery = Recovery::default();
        if ack_cut > 0 {
            recovery.corrupt_tails += 1;
            recovery.truncated_bytes += ack_cut;
        }

        let recover::Found {
            mut segments,
            pending,
            next_id,
            segment_bytes,
        } = recover::segments(&dir, &ranges, &mut recovery)?;

        // A fresh ack log holding only what still matters (acks of ids in kept segments).
        let first_live = segments.front().map_or(next_id, |s| s.first_id);
        let kept: Vec<(u64, u64)> = ranges
            .iter()
            .filter(|r| r.1 >= first_live)
            .map(|r| (r.0.max(first_live), r.1))
            .collect();
        let acks = AckLog::create(&acks_path, &kept)?;

        // The segment named after the next id cannot hold records (ids below it would be
        // pending); an empty one a previous run left was removed above.
        let active_path = segment_path(&dir, next_id);
        let (active, reader) = open_segment(&active_path)?;
        segments.push_back(Segment {
            first_id: next_id,
            path: active_path,
            bytes: 0,
            live: 0,
            reader,
        });
        sync_dir(&dir)?;

        let counters = OutboxCounters {
            corrupt_tails: recovery.corrupt_tails,
            disk_full: u64::from(acks.is_behind()),
            ..OutboxCounters::default()
        };
        let mut outbox = Self {
            options,
            _lock: lock,
            segments,
            active,
            active_damaged: false,
            segment_target: 0,
            pending,
            cache: HashMap::new(),
            cache_bytes: 0,
            acks,
            next_id,
            segment_bytes,
            counters,
            scratch: Vec::new(),
            unsynced_sealed: Vec::new(),
            syncer: None,
        };
        outbox.segment_target = outbox.target_now();
        Ok((outbox, recovery))
    }

    /// Appends a message (see [`Appended`] for what can become of it). "Does not fit" is
    /// `max_bytes` or the filesystem, whichever is met first.
    ///
    /// # Errors
    /// [`OutboxError`] when writing fails for another reason than a full disk, or the message
    /// can never fit.
    pub fn append(&mut self, message: NewRecord<'_>) -> Result<Appended, OutboxError> {
        let len = message.encoded_len();
        if len + ACK_RECORD_BYTES * 64 > self.options.max_bytes {
            return Err(OutboxError::TooLarge {
                bytes: len,
                limit: self.options.max_bytes,
            });
        }
        let mut dropped = Vec::new();
        if self.is_full_for(len) {
            match self.options.when_full {
                WhenFull::DropNewest => return Ok(self.refuse(dropped)),
                WhenFull::Block => return Ok(Appended::Full),
                WhenFull::DropOldest => self.drop_oldest_until_room(len, &mut dropped)?,
            }
        }
        let active_bytes = self.segments.back().map_or(0, |s| s.bytes);
        if self.active_damaged || (active_bytes > 0 && active_bytes + len > self.segment_target) {
            self.roll_unless_full()?;
        }
        self.scratch.clear();
        message.encode(self.next_id, &mut self.scratch);
        let mut sealed = false;
        loop {
            match self.write_scratch() {
                Ok(()) => break,
                Err(e) if e.is_disk_full() => {
                    match self.on_disk_full(&mut sealed, &mut dropped)? {
                        Room::Retry => {}
                        Room::Refuse => return Ok(self.refuse(dropped)),
                        Room::Wait => return Ok(Appended::Full),
                    }
                }
                Err(e) => return Err(e),
            }
        }
        let id = self.stored(len, message)?;
        Ok(Appended::Stored { id, dropped })
    }

    /// Books the record just written to the active segment; its id.
    fn stored(&mut self, len: u64, message: NewRecord<'_>) -> Result<u64, OutboxError> {
        let id = self.next_id;
        let Some(seg) = self.segments.back_mut() else {
            return Err(io_err(&self.options.dir)(io::Error::other(
                "no active segment",
            )));
        };
        self.next_id += 1;
        let loc = Loc {
            segment: seg.first_id,
            offset: seg.bytes,
            len,
        };
        seg.bytes += len;
        seg.live += 1;
        self.segment_bytes += len;
        self.pending.insert(id, loc);
        if self.cache_bytes + message.payload.len() <= CACHE_BYTES {
            self.cache_bytes += message.payload.len();
            self.cache.insert(id, message.to_record(id));
        }
        Ok(id)
    }

    /// Whether a record of `len` bytes would take the outbox over `max_bytes`.
    #[must_use]
    pub fn is_full_for(&self, len: u64) -> bool {
        // Room for the acks of what is pending is reserved, so acknowledging never overflows.
        self.disk_bytes() + len + ACK_RECORD_BYTES * 64 > self.options.max_bytes
    }

    /// Whether the outbox is full for a typical message of `payload_len` bytes.
    #[must_use]
    pub fn is_full(&self, payload_len: usize) -> bool {
        self.is_full_for(HEADER_BYTES + (BODY_FIXED_BYTES + 128 + payload_len) as u64)
    }

    fn active_path(&self) -> PathBuf {
        self.segments
            .back()
            .map_or_else(|| self.options.dir.clone(), |s| s.path.clone())
    }

    /// The segment size for the room there is now (see [`space::segment_target`]).
    fn target_now(&self) -> u64 {
        space::segment_target(
            self.options.max_bytes,
            self.options.segment_bytes,
            self.disk_bytes(),
            available_bytes(&self.options.dir).ok(),
        )
    }

    /// Seals the active segment and starts a new one at the next id. Nothing to do when the
    /// active segment holds nothing (unless a failed write left bytes in it).
    fn roll(&mut self) -> Result<(), OutboxError> {
        let Some(active) = self.segments.back() else {
            return Ok(());
        };
        if active.first_id == self.next_id {
            if self.active_damaged {
                // No record in it, only a cut write: start the file over.
                self.active = open_fresh(&active.path)?;
                self.active_damaged = false;
            }
            return Ok(());
        }
        let sealed_path = active.path.clone();
        let path = segment_path(&self.options.dir, self.next_id);
        // Nothing changes unless the new segment exists.
        let (file, reader) = open_segment(&path)?;
        let sealed = std::mem::replace(&mut self.active, file);
        self.active_damaged = false;
        self.segments.push_back(Segment {
            first_id: self.next_id,
            path,
            bytes: 0,
            live: 0,
            reader,
        });
        self.segment_target = self.target_now();
        // The sealed segment's unsynced tail is no longer the active segment's: the next sync
        // takes it along, so rolling never weakens the fsync policy (and never waits for the
        // disk here).
        self.unsynced_sealed.push((sealed_path, sealed));
        // Empty sealed segments (everything acknowledged) go at once.
        self.remove_dead_segments()
    }

    /// [`Outbox::roll`] where a full disk is no error: `false` when not even an empty segment
    /// could be created (the active one stays; the full-disk handling applies to the write).
    fn roll_unless_full(&mut self) -> Result<bool, OutboxError> {
        match self.roll() {
            Ok(()) => Ok(true),
            Err(e) if e.is_disk_full() && !self.active_damaged => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes a sealed segment taken out of `segments`. Its handle waiting for the next sync
    /// goes too: an open handle would keep the file's blocks allocated, so that on a full disk
    /// deleting it would free nothing.
    fn delete_segment(&mut self, seg: Segment) -> Result<(), OutboxError> {
        self.segment_bytes = self.segment_bytes.saturating_sub(seg.bytes);
        self.unsynced_sealed.retain(|(path, _)| *path != seg.path);
        drop(seg.reader);
        fs::remove_file(&seg.path).map_err(io_err(&seg.path))
    }

    /// The record `id` if it is still pending.
    ///
    /// # Errors
    /// [`OutboxError::Io`] when it cannot be read back from its segment.
    pub fn get(&mut self, id: u64) -> Result<Option<Record>, OutboxError> {
        if let Some(r) = self.cache.get(&id) {
            return Ok(Some(r.clone()));
        }
        let Some(loc) = self.pending.get(&id).copied() else {
            return Ok(None);
        };
        let Some(seg) = self.segments.iter().find(|s| s.first_id == loc.segment) else {
            return Ok(None);
        };
        read_record(&seg.reader, loc)
            .map(Some)
            .map_err(io_err(&seg.path))
    }

    /// The first pending id at or after `from`.
    #[must_use]
    pub fn next_pending(&self, from: u64) -> Option<u64> {
        self.pending.range(from..).next().map(|(k, _)| *k)
    }

    /// The id the next appended message gets.
    #[must_use]
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// The oldest pending id.
    #[must_use]
    pub fn first_pending(&self) -> Option<u64> {
        self.pending.keys().next().copied()
    }

    /// Messages not yet acknowledged.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Bytes used on disk (segments and ack log, including acks not yet written).
    #[must_use]
    pub fn disk_bytes(&self) -> u64 {
        self.segment_bytes + self.acks.bytes()
    }

    /// What was dropped and truncated.
    #[must_use]
    pub fn counters(&self) -> &OutboxCounters {
        &self.counters
    }

    /// The policy when full.
    #[must_use]
    pub fn when_full(&self) -> WhenFull {
        self.options.when_full
    }
}

/// Replaces the file at `path` with an empty one opened for appending.
fn open_fresh(path: &Path) -> Result<File, OutboxError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(path)(e)),
        _ => {}
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_err(path))
}

fn sync_dir(dir: &Path) -> Result<(), OutboxError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

#[cfg(test)]
mod tests;
