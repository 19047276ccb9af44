//! Reading a segment a previous run left, record by record. No length in the file is trusted:
//! each is checked against the bytes the file really has left and against
//! [`MAX_RECORD_BYTES`] before a buffer is sized for it, so a damaged or hostile segment costs
//! at most one record's worth of memory (never more than the file holds), and a file of any
//! size (a sparse one claiming terabytes) is read only up to its first bad record.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::path::Path;

use super::{io_err, OutboxError, Record, BODY_FIXED_BYTES, HEADER_BYTES, MAX_RECORD_BYTES};

/// Read buffer of recovery.
const READ_BUFFER_BYTES: u64 = 64 << 10;

/// A record found in a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
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
    pub records: Vec<Found>,
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
    let mut body = Vec::new();
    let clean = loop {
        let left = file_len - scan.bytes;
        if left == 0 {
            break true;
        }
        match next_record(&mut reader, left, &mut body) {
            Ok(Some(id)) => {
                let len = HEADER_BYTES + body.len() as u64;
                scan.records.push(Found {
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

/// Reads one record with `left` bytes left in the file into `body`; its id, or `None` when it
/// is bad or incomplete.
fn next_record(reader: &mut impl Read, left: u64, body: &mut Vec<u8>) -> io::Result<Option<u64>> {
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
    // The length is checked before anything is sized by it.
    if len > MAX_RECORD_BYTES
        || u64::from(len) > left - HEADER_BYTES
        || (len as usize) < BODY_FIXED_BYTES
    {
        return Ok(None);
    }
    body.clear();
    body.reserve_exact(len as usize);
    body.resize(len as usize, 0);
    if !read_all(reader, body)? || crc32fast::hash(body) != crc {
        return Ok(None);
    }
    Ok(Record::parse(body).map(|r| r.id))
}

/// `read_exact`, with a file that ended early (it shrank meanwhile) as `false`.
fn read_all(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    match reader.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}
