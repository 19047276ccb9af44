//! One outbox message and its encoding:
//! `[len u32 LE][crc32 u32 LE][id u64][qos u8][retain u8][topic len u16][topic][payload]`,
//! the checksum over everything after it.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::{Loc, BODY_FIXED_BYTES, HEADER_BYTES};
use crate::config::Qos;

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

/// A record body, parsed in place.
pub(super) struct Parsed<'a> {
    pub(super) id: u64,
    pub(super) qos: Qos,
    pub(super) retain: bool,
    pub(super) topic: &'a str,
    pub(super) payload: &'a [u8],
}

impl Record {
    pub(super) fn encoded_len(&self) -> u64 {
        HEADER_BYTES + (BODY_FIXED_BYTES + self.topic.len() + self.payload.len()) as u64
    }

    pub(super) fn encode(&self, out: &mut Vec<u8>) {
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

    /// Parses a body whose checksum held; `None` when its fields do not.
    pub(super) fn parse(body: &[u8]) -> Option<Parsed<'_>> {
        let id = u64::from_le_bytes(body.get(0..8)?.try_into().ok()?);
        let qos = match body.get(8)? {
            0 => Qos::AtMostOnce,
            1 => Qos::AtLeastOnce,
            _ => return None,
        };
        let retain = *body.get(9)? != 0;
        let topic_len = u16::from_le_bytes(body.get(10..12)?.try_into().ok()?) as usize;
        let topic = std::str::from_utf8(body.get(12..12 + topic_len)?).ok()?;
        Some(Parsed {
            id,
            qos,
            retain,
            topic,
            payload: body.get(12 + topic_len..)?,
        })
    }

    /// Decodes a body whose checksum held.
    pub(super) fn decode(body: &[u8]) -> Option<Self> {
        Self::parse(body).map(|p| Self {
            id: p.id,
            topic: p.topic.to_string(),
            qos: p.qos,
            retain: p.retain,
            payload: p.payload.to_vec(),
        })
    }
}

/// Reads the record at `loc` back from its segment.
pub(super) fn read_record(file: &File, loc: Loc) -> io::Result<Record> {
    // `loc` comes from this run's appends or from recovery, which checked it against the file.
    let mut buf = vec![0u8; usize::try_from(loc.len).map_err(io::Error::other)?];
    file.read_exact_at(&mut buf, loc.offset)?;
    let body = buf.get(HEADER_BYTES as usize..).unwrap_or_default();
    Record::decode(body).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad record"))
}
