//! The on-disk outbox: a write-ahead log of every message bound for the broker, so that neither a
//! broker that returns without our session, nor a network outage, nor a daemon restart loses a
//! message that was handed to the publisher. A message is appended (and made durable as the
//! fsync policy says) before it is sent, and forgotten only after its PUBACK.
//!
//! On disk, in one directory:
//! - `<first id, 20 digits>.seg`: append-only segments of records
//!   `[len u32 LE][crc32 u32 LE][body]`, body = `[id u64][qos u8][retain u8][topic len u16][topic][payload]`.
//!   A new segment starts at every open and when the active one reaches `segment_bytes`.
//! - `acks.log`: records `[first u64][last u64][crc32 u32]`, each an inclusive range of ids that
//!   were acknowledged (or dropped). It is rewritten, compacted to the ranges still relevant,
//!   when it grows.
//!
//! A segment is deleted as soon as every record in it is acknowledged. Recovery reads every
//! segment in id order; the first record whose length or checksum does not hold (a write cut by
//! a power loss) ends that segment: the file is truncated there, the cut is counted, and every
//! record before it is kept. The ids are in the records, so they keep increasing across
//! restarts.
//!
//! All of this is plain blocking file I/O on the page cache. The publisher calls it from its task
//! (appends and acks are buffered writes; the one expensive call, fsync, goes through
//! [`Outbox::sync_handle`] on a blocking thread). Nothing here knows about MQTT connections.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::config::{Qos, WhenFull};

/// Largest record body accepted on recovery (anything larger is a corrupt length field).
const MAX_RECORD_BYTES: u32 = 64 << 20;
/// Record header: length and checksum.
const HEADER_BYTES: u64 = 8;
/// Fixed part of a record body before the topic.
const BODY_FIXED_BYTES: usize = 8 + 1 + 1 + 2;
/// One record of the ack log.
const ACK_RECORD_BYTES: u64 = 20;
/// The ack log is compacted when it is larger than this.
const ACK_LOG_COMPACT_BYTES: u64 = 1 << 20;
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
    /// A segment is closed and a new one started at this size.
    pub segment_bytes: u64,
    /// What happens to a new message when the outbox is full.
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

/// A message in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Outbox id: increasing, never reused, also across restarts.
    pub id: u64,
    /// Topic.
    pub topic: String,
    /// Delivery guarantee.
    pub qos: Qos,
    /// Retained on the broker.
    pub retain: bool,
    /// Payload.
    pub payload: Vec<u8>,
}

impl Record {
    fn encoded_len(&self) -> u64 {
        HEADER_BYTES + (BODY_FIXED_BYTES + self.topic.len() + self.payload.len()) as u64
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let topic = self.topic.as_bytes();
        let topic_len = topic.len().min(u16::MAX as usize);
        let body_len = BODY_FIXED_BYTES + topic_len + self.payload.len();
        let start = out.len();
        out.extend_from_slice(&(body_len as u32).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&self.id.to_le_bytes());
        out.push(match self.qos {
            Qos::AtMostOnce => 0,
            Qos::AtLeastOnce => 1,
        });
        out.push(u8::from(self.retain));
        out.extend_from_slice(&(topic_len as u16).to_le_bytes());
        out.extend_from_slice(&topic[..topic_len]);
        out.extend_from_slice(&self.payload);
        let crc = crc32fast::hash(&out[start + 8..]);
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    /// Decodes a body whose checksum held.
    fn decode(body: &[u8]) -> Option<Self> {
        let id = u64::from_le_bytes(body.get(0..8)?.try_into().ok()?);
        let qos = match body.get(8)? {
            0 => Qos::AtMostOnce,
            1 => Qos::AtLeastOnce,
            _ => return None,
        };
        let retain = *body.get(9)? != 0;
        let topic_len = u16::from_le_bytes(body.get(10..12)?.try_into().ok()?) as usize;
        let topic = std::str::from_utf8(body.get(12..12 + topic_len)?).ok()?;
        Some(Self {
            id,
            topic: topic.to_string(),
            qos,
            retain,
            payload: body.get(12 + topic_len..)?.to_vec(),
        })
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
    /// Messages dropped because the outbox was full.
    pub dropped_full: u64,
    /// Bad tails truncated at open.
    pub corrupt_tails: u64,
}

/// The outbox. See the module documentation.
#[derive(Debug)]
pub struct Outbox {
    options: OutboxOptions,
    segments: VecDeque<Segment>,
    writer: BufWriter<File>,
    /// A second handle on the active segment, for fsync on another thread.
    active_sync: File,
    pending: BTreeMap<u64, Loc>,
    cache: HashMap<u64, Record>,
    cache_bytes: usize,
    acks: BufWriter<File>,
    acks_path: PathBuf,
    acks_bytes: u64,
    next_id: u64,
    disk_bytes: u64,
    counters: OutboxCounters,
    scratch: Vec<u8>,
}

fn segment_path(dir: &Path, first_id: u64) -> PathBuf {
    dir.join(format!("{first_id:020}.seg"))
}

/// Reads the records of one segment; truncates it at the first bad record.
fn recover_segment(
    path: &Path,
    out: &mut Vec<(Record, u64, u64)>,
) -> Result<(u64, u64), OutboxError> {
    let mut data = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .map_err(io_err(path))?;
    let mut offset = 0usize;
    let mut ok = true;
    while offset < data.len() {
        let Some(header) = data.get(offset..offset + HEADER_BYTES as usize) else {
            ok = false;
            break;
        };
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let start = offset + HEADER_BYTES as usize;
        let body = (len <= MAX_RECORD_BYTES)
            .then(|| data.get(start..start + len as usize))
            .flatten();
        let record = body
            .filter(|b| crc32fast::hash(b) == crc)
            .and_then(Record::decode);
        let Some(record) = record else {
            ok = false;
            break;
        };
        let rec_len = HEADER_BYTES + u64::from(len);
        out.push((record, offset as u64, rec_len));
        offset += rec_len as usize;
    }
    if ok {
        return Ok((data.len() as u64, 0));
    }
    let cut = (data.len() - offset) as u64;
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| {
            f.set_len(offset as u64)?;
            f.sync_all()
        })
        .map_err(io_err(path))?;
    Ok((offset as u64, cut))
}

/// Reads the ack log (a bad tail is cut).
/// Acknowledged id ranges (inclusive) and the bytes cut from a bad tail.
type AckRecovery = (Vec<(u64, u64)>, u64);

fn recover_acks(path: &Path) -> Result<AckRecovery, OutboxError> {
    let data = match fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(io_err(path)(e)),
    };
    let mut ranges = Vec::new();
    let mut valid = 0usize;
    for chunk in data.chunks(ACK_RECORD_BYTES as usize) {
        if chunk.len() < ACK_RECORD_BYTES as usize {
            break;
        }
        let (body, crc) = chunk.split_at(16);
        if crc32fast::hash(body).to_le_bytes() != crc {
            break;
        }
        let first = u64::from_le_bytes(body[..8].try_into().unwrap_or_default());
        let last = u64::from_le_bytes(body[8..].try_into().unwrap_or_default());
        ranges.push((first, last));
        valid += chunk.len();
    }
    let cut = (data.len() - valid) as u64;
    if cut > 0 {
        OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|f| f.set_len(valid as u64))
            .map_err(io_err(path))?;
    }
    Ok((ranges, cut))
}

fn ack_record(first: u64, last: u64) -> [u8; ACK_RECORD_BYTES as usize] {
    let mut r = [0u8; ACK_RECORD_BYTES as usize];
    r[..8].copy_from_slice(&first.to_le_bytes());
    r[8..16].copy_from_slice(&last.to_le_bytes());
    let crc = crc32fast::hash(&r[..16]);
    r[16..].copy_from_slice(&crc.to_le_bytes());
    r
}

fn is_acked(ranges: &[(u64, u64)], id: u64) -> bool {
    // Ranges are sorted by `first` and merged; binary search the last range starting <= id.
    match ranges.partition_point(|r| r.0 <= id) {
        0 => false,
        i => ranges.get(i - 1).is_some_and(|r| id <= r.1),
    }
}

fn merge(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
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

impl Outbox {
    /// Opens (or creates) the outbox in `options.dir` and recovers what a previous run left.
    ///
    /// # Errors
    /// [`OutboxError::Io`] when the directory or a file cannot be read or written.
    pub fn open(options: OutboxOptions) -> Result<(Self, Recovery), OutboxError> {
        let dir = options.dir.clone();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let mut seg_ids: Vec<u64> = fs::read_dir(&dir)
            .map_err(io_err(&dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name();
                let name = name.to_str()?;
                name.strip_suffix(".seg")?.parse::<u64>().ok()
            })
            .collect();
        seg_ids.sort_unstable();

        let acks_path = dir.join("acks.log");
        let (ranges, ack_cut) = recover_acks(&acks_path)?;
        let ranges = merge(ranges);
        let mut recovery = Recovery::default();
        if ack_cut > 0 {
            recovery.corrupt_tails += 1;
            recovery.truncated_bytes += ack_cut;
        }

        let mut next_id = 0u64;
        let mut segments = VecDeque::new();
        let mut pending = BTreeMap::new();
        let mut disk_bytes = 0u64;
        for first_id in seg_ids {
            let path = segment_path(&dir, first_id);
            let mut records = Vec::new();
            let (bytes, cut) = recover_segment(&path, &mut records)?;
            if cut > 0 {
                recovery.corrupt_tails += 1;
                recovery.truncated_bytes += cut;
                tracing::warn!(segment = %path.display(), truncated_bytes = cut, "outbox segment had a corrupt tail; truncated, the records before it are kept");
            }
            next_id = next_id.max(first_id);
            let mut live = 0;
            for (r, offset, len) in records {
                next_id = next_id.max(r.id + 1);
                if !is_acked(&ranges, r.id) {
                    live += 1;
                    pending.insert(
                        r.id,
                        Loc {
                            segment: first_id,
                            offset,
                            len,
                        },
                    );
                }
            }
            if live == 0 {
                fs::remove_file(&path).map_err(io_err(&path))?;
                continue;
            }
            let reader = File::open(&path).map_err(io_err(&path))?;
            disk_bytes += bytes;
            segments.push_back(Segment {
                first_id,
                path,
                bytes,
                live,
                reader,
            });
        }
        if let Some(&(_, last)) = ranges.last() {
            next_id = next_id.max(last.saturating_add(1));
        }
        recovery.pending = pending.len() as u64;

        // A fresh ack log holding only what still matters (acks of ids in kept segments).
        let first_live = segments.front().map_or(next_id, |s| s.first_id);
        let kept: Vec<(u64, u64)> = ranges
            .iter()
            .filter(|r| r.1 >= first_live)
            .map(|r| (r.0.max(first_live), r.1))
            .collect();
        let (acks, acks_bytes) = write_ack_log(&acks_path, &kept)?;

        let active_path = segment_path(&dir, next_id);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&active_path)
            .map_err(io_err(&active_path))?;
        let active_sync = file.try_clone().map_err(io_err(&active_path))?;
        let reader = File::open(&active_path).map_err(io_err(&active_path))?;
        let existing = file.metadata().map_err(io_err(&active_path))?.len();
        segments.push_back(Segment {
            first_id: next_id,
            path: active_path,
            bytes: existing,
            live: 0,
            reader,
        });
        disk_bytes += existing + acks_bytes;
        sync_dir(&dir)?;

        let counters = OutboxCounters {
            dropped_full: 0,
            corrupt_tails: recovery.corrupt_tails,
        };
        Ok((
            Self {
                options,
                segments,
                writer: BufWriter::with_capacity(256 << 10, file),
                active_sync,
                pending,
                cache: HashMap::new(),
                cache_bytes: 0,
                acks,
                acks_path,
                acks_bytes,
                next_id,
                disk_bytes,
                counters,
                scratch: Vec::new(),
            },
            recovery,
        ))
    }

    /// Appends a message; returns its id and the records dropped to make room (drop_oldest).
    /// `Ok(None)` when the outbox is full and the policy refuses new messages (`drop_newest`,
    /// counted) or wants the caller to wait (`block`: see [`Outbox::is_full_for`]).
    ///
    /// # Errors
    /// [`OutboxError`] when writing fails or the message can never fit.
    pub fn append(
        &mut self,
        topic: &str,
        qos: Qos,
        retain: bool,
        payload: &[u8],
    ) -> Result<Option<(u64, Vec<Record>)>, OutboxError> {
        let mut record = Record {
            id: self.next_id,
            topic: topic.to_string(),
            qos,
            retain,
            payload: payload.to_vec(),
        };
        let len = record.encoded_len();
        if len + ACK_RECORD_BYTES * 64 > self.options.max_bytes {
            return Err(OutboxError::TooLarge {
                bytes: len,
                limit: self.options.max_bytes,
            });
        }
        let mut dropped = Vec::new();
        if self.is_full_for(len) {
            match self.options.when_full {
                WhenFull::DropNewest => {
                    self.counters.dropped_full += 1;
                    record.id = u64::MAX;
                    dropped.push(record);
                    return Ok(Some((u64::MAX, dropped)));
                }
                WhenFull::Block => return Ok(None),
                WhenFull::DropOldest => {
                    while self.is_full_for(len) {
                        if self.segments.len() == 1 {
                            self.roll()?;
                        }
                        if !self.drop_oldest_segment(&mut dropped)? {
                            break;
                        }
                    }
                }
            }
        }
        if self
            .segments
            .back()
            .is_some_and(|s| s.bytes > 0 && s.bytes + len > self.options.segment_bytes)
        {
            self.roll()?;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.scratch.clear();
        record.encode(&mut self.scratch);
        let path = self.active_path();
        self.writer
            .write_all(&self.scratch)
            .map_err(io_err(&path))?;
        let Some(seg) = self.segments.back_mut() else {
            return Err(io_err(&path)(io::Error::other("no active segment")));
        };
        let loc = Loc {
            segment: seg.first_id,
            offset: seg.bytes,
            len,
        };
        seg.bytes += len;
        seg.live += 1;
        self.disk_bytes += len;
        self.pending.insert(id, loc);
        if self.cache_bytes + record.payload.len() <= CACHE_BYTES {
            self.cache_bytes += record.payload.len();
            self.cache.insert(id, record);
        }
        Ok(Some((id, dropped)))
    }

    /// Whether a record of `len` bytes would take the outbox over its limit.
    #[must_use]
    pub fn is_full_for(&self, len: u64) -> bool {
        // Room for the acks of what is pending is reserved, so acknowledging never overflows.
        self.disk_bytes + len + ACK_RECORD_BYTES * 64 > self.options.max_bytes
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

    /// Closes the active segment and starts a new one at the next id.
    fn roll(&mut self) -> Result<(), OutboxError> {
        let old = self.active_path();
        self.writer.flush().map_err(io_err(&old))?;
        let path = segment_path(&self.options.dir, self.next_id);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let reader = File::open(&path).map_err(io_err(&path))?;
        self.active_sync = file.try_clone().map_err(io_err(&path))?;
        // The old segment's unsynced tail is synced by the next periodic sync of a clone; do it
        // now so that rolling never weakens the policy.
        let previous =
            std::mem::replace(&mut self.writer, BufWriter::with_capacity(256 << 10, file));
        previous
            .into_inner()
            .map_err(|e| io_err(&old)(e.into_error()))?
            .sync_data()
            .map_err(io_err(&old))?;
        self.segments.push_back(Segment {
            first_id: self.next_id,
            path,
            bytes: 0,
            live: 0,
            reader,
        });
        // Empty sealed segments (everything acknowledged) go at once.
        self.remove_dead_segments()?;
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
                self.write_ack(seg.first_id, last)?;
            }
        }
        self.disk_bytes = self.disk_bytes.saturating_sub(seg.bytes);
        fs::remove_file(&seg.path).map_err(io_err(&seg.path))?;
        Ok(true)
    }

    /// Marks `id` acknowledged; deletes its segment when that was the last pending record there.
    /// An id that is not pending (dropped, or acknowledged twice) is ignored.
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
        self.write_ack(id, id)?;
        if let Some(seg) = self.segments.iter_mut().find(|s| s.first_id == loc.segment) {
            seg.live = seg.live.saturating_sub(1);
        }
        self.remove_dead_segments()?;
        if self.acks_bytes > ACK_LOG_COMPACT_BYTES {
            self.compact_acks()?;
        }
        Ok(())
    }

    fn write_ack(&mut self, first: u64, last: u64) -> Result<(), OutboxError> {
        self.acks
            .write_all(&ack_record(first, last))
            .map_err(io_err(&self.acks_path))?;
        self.acks_bytes += ACK_RECORD_BYTES;
        self.disk_bytes += ACK_RECORD_BYTES;
        Ok(())
    }

    fn remove_dead_segments(&mut self) -> Result<(), OutboxError> {
        let mut removed = false;
        // Only sealed segments (not the last) are removed; order does not matter for deletion.
        let mut i = 0;
        while i + 1 < self.segments.len() {
            if self.segments.get(i).is_some_and(|s| s.live == 0) {
                if let Some(seg) = self.segments.remove(i) {
                    self.disk_bytes = self.disk_bytes.saturating_sub(seg.bytes);
                    fs::remove_file(&seg.path).map_err(io_err(&seg.path))?;
                    removed = true;
                }
            } else {
                i += 1;
            }
        }
        if removed && self.acks_bytes > ACK_LOG_COMPACT_BYTES / 4 {
            self.compact_acks()?;
        }
        Ok(())
    }

    /// Rewrites the ack log as the acknowledged ranges inside the kept segments.
    fn compact_acks(&mut self) -> Result<(), OutboxError> {
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
        self.acks.flush().map_err(io_err(&self.acks_path))?;
        let (acks, bytes) = write_ack_log(&self.acks_path, &ranges)?;
        self.acks = acks;
        self.disk_bytes = self.disk_bytes - self.acks_bytes + bytes;
        self.acks_bytes = bytes;
        Ok(())
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
        if self
            .segments
            .back()
            .is_some_and(|s| s.first_id == loc.segment)
        {
            let path = seg.path.clone();
            self.writer.flush().map_err(io_err(&path))?;
        }
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

    /// Bytes used on disk (segments and ack log).
    #[must_use]
    pub fn disk_bytes(&self) -> u64 {
        self.disk_bytes
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

    /// Writes buffered appends and acks to the files (the page cache) and returns handles that
    /// make them durable with `sync_data` — call that on a blocking thread.
    ///
    /// # Errors
    /// [`OutboxError::Io`] when writing or cloning a handle fails.
    pub fn sync_handle(&mut self) -> Result<SyncHandle, OutboxError> {
        let path = self.active_path();
        self.writer.flush().map_err(io_err(&path))?;
        self.acks.flush().map_err(io_err(&self.acks_path))?;
        Ok(SyncHandle {
            segment: self.active_sync.try_clone().map_err(io_err(&path))?,
            acks: self
                .acks
                .get_ref()
                .try_clone()
                .map_err(io_err(&self.acks_path))?,
        })
    }

    /// Flushes and fsyncs here and now (tests, shutdown).
    ///
    /// # Errors
    /// [`OutboxError::Io`].
    pub fn sync(&mut self) -> Result<(), OutboxError> {
        let h = self.sync_handle()?;
        let path = self.active_path();
        h.sync().map_err(io_err(&path))
    }
}

/// File handles to fsync, detached from the outbox so it can go on meanwhile.
#[derive(Debug)]
pub struct SyncHandle {
    segment: File,
    acks: File,
}

impl SyncHandle {
    /// fdatasync of the active segment and the ack log.
    ///
    /// # Errors
    /// The OS error.
    pub fn sync(&self) -> io::Result<()> {
        self.segment.sync_data()?;
        self.acks.sync_data()
    }
}

fn read_record(file: &File, loc: Loc) -> io::Result<Record> {
    let mut buf = vec![0u8; loc.len as usize];
    file.read_exact_at(&mut buf, loc.offset)?;
    let body = buf.get(HEADER_BYTES as usize..).unwrap_or_default();
    Record::decode(body).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad record"))
}

fn write_ack_log(
    path: &Path,
    ranges: &[(u64, u64)],
) -> Result<(BufWriter<File>, u64), OutboxError> {
    let tmp = path.with_extension("log.tmp");
    let mut data = Vec::with_capacity(ranges.len() * ACK_RECORD_BYTES as usize);
    for &(a, b) in ranges {
        data.extend_from_slice(&ack_record(a, b));
    }
    let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(&data)
        .and_then(|()| f.sync_all())
        .map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))?;
    let file = OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io_err(path))?;
    Ok((BufWriter::with_capacity(64 << 10, file), data.len() as u64))
}

fn sync_dir(dir: &Path) -> Result<(), OutboxError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn opts(dir: &Path, max: u64) -> OutboxOptions {
        OutboxOptions::new(dir.to_path_buf(), max, WhenFull::DropOldest)
    }

    fn put(o: &mut Outbox, i: u64) -> u64 {
        o.append(&format!("t/{i}"), Qos::AtLeastOnce, false, &i.to_le_bytes())
            .unwrap()
            .unwrap()
            .0
    }

    fn pending_ids(o: &Outbox) -> Vec<u64> {
        o.pending.keys().copied().collect()
    }

    #[test]
    fn unacknowledged_messages_survive_a_reopen_in_id_order() {
        let dir = tempfile::tempdir().unwrap();
        let (mut o, r) = Outbox::open(opts(dir.path(), 1 << 20)).unwrap();
        assert_eq!(r, Recovery::default());
        for i in 0..10 {
            assert_eq!(put(&mut o, i), i);
        }
        for id in [0, 2, 3, 9] {
            o.ack(id).unwrap();
        }
        o.sync().unwrap();
        drop(o);
        let (mut o, r) = Outbox::open(opts(dir.path(), 1 << 20)).unwrap();
        assert_eq!(r.pending, 6);
        assert_eq!(pending_ids(&o), vec![1, 4, 5, 6, 7, 8]);
        let rec = o.get(4).unwrap().unwrap();
        assert_eq!(rec.topic, "t/4");
        assert_eq!(rec.payload, 4u64.to_le_bytes());
        // Ids keep increasing across restarts.
        assert_eq!(put(&mut o, 99), 10);
    }

    #[test]
    fn fully_acknowledged_segments_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = opts(dir.path(), 1 << 20);
        options.segment_bytes = 200;
        let (mut o, _) = Outbox::open(options).unwrap();
        for i in 0..50 {
            put(&mut o, i);
        }
        let segs = || {
            fs::read_dir(dir.path())
                .unwrap()
                .filter(|e| e.as_ref().unwrap().path().extension().unwrap() == "seg")
                .count()
        };
        assert!(segs() > 5);
        for i in 0..50 {
            o.ack(i).unwrap();
        }
        assert_eq!(segs(), 1, "only the active segment is left");
        assert_eq!(o.pending(), 0);
    }

    #[test]
    fn a_full_outbox_drops_the_oldest_and_stays_under_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let max = 64 * 1024;
        let (mut o, _) = Outbox::open(opts(dir.path(), max)).unwrap();
        let payload = vec![7u8; 1000];
        let mut dropped = Vec::new();
        for i in 0..500u64 {
            let (id, d) = o
                .append(&format!("t/{i}"), Qos::AtLeastOnce, false, &payload)
                .unwrap()
                .unwrap();
            assert_eq!(id, i);
            dropped.extend(d.into_iter().map(|r| r.id));
            assert!(o.disk_bytes() <= max, "{} > {max}", o.disk_bytes());
        }
        o.sync().unwrap();
        let on_disk: u64 = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert!(on_disk <= max, "{on_disk} bytes on disk > {max}");
        assert!(!dropped.is_empty());
        assert_eq!(o.counters().dropped_full, dropped.len() as u64);
        // The oldest went first; what is left is the newest, contiguous.
        let left = pending_ids(&o);
        assert_eq!(*left.last().unwrap(), 499);
        assert_eq!(dropped.len() + left.len(), 500);
        assert!(dropped.iter().all(|d| *d < left[0]));
    }

    #[test]
    fn drop_newest_refuses_new_messages_when_full() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = opts(dir.path(), 16 * 1024);
        options.when_full = WhenFull::DropNewest;
        let (mut o, _) = Outbox::open(options).unwrap();
        let mut refused = 0;
        for i in 0..100u64 {
            let (id, _) = o
                .append("t", Qos::AtLeastOnce, false, &[1u8; 500])
                .unwrap()
                .unwrap();
            if id == u64::MAX {
                refused += 1;
            } else {
                assert_eq!(id, i - refused);
            }
        }
        assert!(refused > 0);
        assert_eq!(o.first_pending(), Some(0));
    }

    #[test]
    fn a_corrupt_tail_is_truncated_counted_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (mut o, _) = Outbox::open(opts(dir.path(), 1 << 20)).unwrap();
        for i in 0..5 {
            put(&mut o, i);
        }
        o.sync().unwrap();
        drop(o);
        let seg = segment_path(dir.path(), 0);
        let mut data = fs::read(&seg).unwrap();
        // Half a record appended (a power loss mid-write), and a flipped byte in it.
        let tail = data[..20].to_vec();
        data.extend_from_slice(&tail);
        fs::write(&seg, &data).unwrap();
        let (o, r) = Outbox::open(opts(dir.path(), 1 << 20)).unwrap();
        assert_eq!(r.corrupt_tails, 1);
        assert_eq!(r.truncated_bytes, 20);
        assert_eq!(pending_ids(&o), vec![0, 1, 2, 3, 4]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Whatever byte is damaged or wherever the file is cut, every record written entirely
        /// before the damage is recovered, and nothing after it is invented.
        #[test]
        fn damage_never_loses_a_record_written_before_it(
            n in 1usize..40,
            sizes in proptest::collection::vec(0usize..300, 40),
            cut_frac in 0.0f64..1.0,
            flip in proptest::bool::ANY,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let (mut o, _) = Outbox::open(opts(dir.path(), 1 << 24)).unwrap();
            let mut ends = Vec::new();
            let mut total = 0u64;
            for (i, size) in sizes.iter().take(n).enumerate() {
                let payload = vec![i as u8; *size];
                o.append(&format!("s/{i}"), Qos::AtLeastOnce, i % 2 == 0, &payload).unwrap();
                total += HEADER_BYTES + (BODY_FIXED_BYTES + format!("s/{i}").len() + size) as u64;
                ends.push(total);
            }
            o.sync().unwrap();
            drop(o);
            let seg = segment_path(dir.path(), 0);
            let mut data = fs::read(&seg).unwrap();
            let at = ((data.len() as f64) * cut_frac) as usize;
            if flip {
                data[at] ^= 0x5a;
            } else {
                data.truncate(at);
            }
            fs::write(&seg, &data).unwrap();
            let (mut o, r) = Outbox::open(opts(dir.path(), 1 << 24)).unwrap();
            let intact = ends.iter().filter(|e| **e as usize <= at).count();
            let ids = pending_ids(&o);
            // Everything before the damaged record is there, in order.
            prop_assert!(ids.len() >= intact);
            prop_assert_eq!(&ids[..intact], &(0..intact as u64).collect::<Vec<_>>()[..]);
            // A damaged record is never returned (a flip inside it fails the checksum).
            prop_assert_eq!(ids.len(), intact);
            let boundary = !flip && (at == 0 || ends.contains(&(at as u64)));
            prop_assert_eq!(r.corrupt_tails, u64::from(!boundary));
            for id in ids {
                let rec = o.get(id).unwrap().unwrap();
                prop_assert_eq!(rec.payload, vec![id as u8; sizes[id as usize]]);
                prop_assert_eq!(rec.retain, id % 2 == 0);
            }
        }
    }
}
