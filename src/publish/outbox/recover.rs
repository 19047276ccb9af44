//! Reading a segment a previous run left, record by record. No length in the file is trusted:
//! each is checked against the bytes the file really has left and against
//! [`MAX_RECORD_BYTES`], and nothing is sized by it: a record's payload is checksummed as it
//! streams through a fixed buffer, so recovery needs at most the read buffer and one topic
//! (64 KiB each) whatever the segments hold, and a file of any size (a sparse one claiming
//! terabytes) is read only up to its first bad record.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::path::Path;

use super::acks::is_acked;
use super::{
    io_err, segment_ids, segment_path, Loc, OutboxError, Record, Recovery, Segment,
    BODY_FIXED_BYTES, HEADER_BYTES, MAX_RECORD_BYTES,
};

/// Read buffer of recovery.
const READ_BUFFER_BYTES: u64 = 64 << 10;

/// A record found in a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FoundRecord {
    /// Its outbox id.
    pub id: u64,
    /// Where it starts in the segment.
    pub offset: u64,
    /// Header and body.
    pub len: u64,
}

/// What one segment holds.
#[derive(Debug, Default)]
pub struct SegmentScan {
    /// Its records, in file order.
    pub records: Vec<FoundRecord>,
    /// Bytes of whole, valid records (the file's length after the scan).
    pub bytes: u64,
    /// Bytes cut from a bad tail (0 when the file was clean).
    pub cut: u64,
}

/// Reads the records of the segment at `path`; the first record whose length or checksum does
/// not hold (a write cut by a power loss) ends it: the file is truncated there.
///
/// # Errors
/// [`OutboxError::Io`] when the file cannot be read or truncated.
pub fn scan_segment(path: &Path) -> Result<SegmentScan, OutboxError> {
    let file = File::open(path).map_err(io_err(path))?;
    let file_len = file.metadata().map_err(io_err(path))?.len();
    let mut scan = SegmentScan::default();
    if file_len == 0 {
        return Ok(scan);
    }
    let capacity = usize::try_from(file_len.min(READ_BUFFER_BYTES)).unwrap_or(4096);
    let mut reader = BufReader::with_capacity(capacity, file);
    let mut head = Vec::new();
    let clean = loop {
        let left = file_len - scan.bytes;
        if left == 0 {
            break true;
        }
        match next_record(&mut reader, left, &mut head) {
            Ok(Some((id, len))) => {
                scan.records.push(FoundRecord {
                    id,
                    offset: scan.bytes,
                    len,
                });
                scan.bytes += len;
            }
            Ok(None) => break false,
            Err(e) => return Err(io_err(path)(e)),
        }
    };
    if !clean {
        scan.cut = file_len - scan.bytes;
        OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|f| {
                f.set_len(scan.bytes)?;
                f.sync_all()
            })
            .map_err(io_err(path))?;
    }
    Ok(scan)
}

/// Reads one record with `left` bytes left in the file; its id and length, or `None` when it
/// is bad or incomplete. Only the fixed fields and the topic are kept (in `head`, at most
/// 64 KiB); the payload is checksummed as it streams by, so a record costs no memory of its size.
fn next_record(
    reader: &mut impl Read,
    left: u64,
    head: &mut Vec<u8>,
) -> io::Result<Option<(u64, u64)>> {
    if left < HEADER_BYTES {
        return Ok(None);
    }
    let mut header = [0u8; HEADER_BYTES as usize];
    if !read_all(reader, &mut header)? {
        return Ok(None);
    }
    let [l0, l1, l2, l3, c0, c1, c2, c3] = header;
    let len = u32::from_le_bytes([l0, l1, l2, l3]);
    let crc = u32::from_le_bytes([c0, c1, c2, c3]);
    if len > MAX_RECORD_BYTES
        || u64::from(len) > left - HEADER_BYTES
        || (len as usize) < BODY_FIXED_BYTES
    {
        return Ok(None);
    }
    let len = len as usize;
    // The fixed fields, then the topic their length names (if the record holds it).
    head.clear();
    head.resize(BODY_FIXED_BYTES, 0);
    if !read_all(reader, head)? {
        return Ok(None);
    }
    let topic_len = usize::from(u16::from_le_bytes([head[10], head[11]]));
    if BODY_FIXED_BYTES + topic_len > len {
        return Ok(None);
    }
    head.resize(BODY_FIXED_BYTES + topic_len, 0);
    if !read_all(reader, &mut head[BODY_FIXED_BYTES..])? {
        return Ok(None);
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(head);
    let mut payload_left = len - head.len();
    let mut chunk = [0u8; 4096];
    while payload_left > 0 {
        let n = payload_left.min(chunk.len());
        if !read_all(reader, &mut chunk[..n])? {
            return Ok(None);
        }
        hasher.update(&chunk[..n]);
        payload_left -= n;
    }
    if hasher.finalize() != crc {
        return Ok(None);
    }
    // The payload is not needed to check the other fields.
    Ok(Record::parse(head).map(|r| (r.id, HEADER_BYTES + len as u64)))
}

/// `read_exact`, with a file that ended early (it shrank meanwhile) as `false`.
fn read_all(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    match reader.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// What the segments of a directory hold.
pub(super) struct Found {
    /// Segments kept, oldest first.
    pub segments: VecDeque<Segment>,
    /// Where each pending record is.
    pub pending: BTreeMap<u64, Loc>,
    /// The id after every id seen (in segments or the ack log).
    pub next_id: u64,
    /// Bytes of the kept segments.
    pub segment_bytes: u64,
}

/// Scans every segment in `dir`, in id order: its pending records (those not in the
/// acknowledged `ranges`) are kept, segments with nothing pending are deleted, cut tails are
/// added to `recovery`.
///
/// # Errors
/// [`OutboxError::Io`] when a segment cannot be read, truncated or deleted.
pub(super) fn segments(
    dir: &Path,
    ranges: &[(u64, u64)],
    recovery: &mut Recovery,
) -> Result<Found, OutboxError> {
    let mut next_id = 0u64;
    let mut segments = VecDeque::new();
    let mut pending = BTreeMap::new();
    let mut segment_bytes = 0u64;
    for first_id in segment_ids(dir)? {
        let path = segment_path(dir, first_id);
        let scan = scan_segment(&path)?;
        if scan.cut > 0 {
            recovery.corrupt_tails += 1;
            recovery.truncated_bytes += scan.cut;
            tracing::warn!(segment = %path.display(), truncated_bytes = scan.cut, "outbox segment had a corrupt tail; truncated, the records before it are kept");
        }
        next_id = next_id.max(first_id);
        let mut live = 0;
        for r in scan.records {
            next_id = next_id.max(r.id.saturating_add(1));
            if !is_acked(ranges, r.id) {
                live += 1;
                let loc = Loc {
                    segment: first_id,
                    offset: r.offset,
                    len: r.len,
                };
                pending.insert(r.id, loc);
            }
        }
        if live == 0 {
            fs::remove_file(&path).map_err(io_err(&path))?;
            continue;
        }
        let reader = File::open(&path).map_err(io_err(&path))?;
        segment_bytes += scan.bytes;
        segments.push_back(Segment {
            first_id,
            path,
            bytes: scan.bytes,
            live,
            reader,
        });
    }
    if let Some(&(_, last)) = ranges.last() {
        next_id = next_id.max(last.saturating_add(1));
    }
    recovery.pending = pending.len() as u64;
    Ok(Found {
        segments,
        pending,
        next_id,
        segment_bytes,
    })
}
