//! One outbox message and its encoding:
//! `[len u32 LE][crc32 u32 LE][id u64][flags u8][retain u8][head len u16][head][payload]`,
//! the checksum over everything after it.
//!
//! `flags` holds the QoS in bit 0 and the record format in bits 4-7:
//! - format 0 (written before the sensor travelled with the message): `head` is the topic;
//! - format 1: `head` is `[sensor len u8][sensor][topic]` (a sensor length of 0: the message
//!   belongs to no sensor).
//!
//! Records of both formats are read; new records are written in format 1. A build older than
//! format 1 cannot read format-1 records (it cuts them as a corrupt tail), so a downgrade must
//! start with an empty outbox.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::{Loc, BODY_FIXED_BYTES, HEADER_BYTES};
use crate::config::Qos;

/// The record format written (bits 4-7 of the flags byte).
const FORMAT: u8 = 1;
/// The QoS bit of the flags byte.
const QOS_BIT: u8 = 0x01;

/// A message in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Outbox id: increasing, never reused, also across restarts.
    pub id: u64,
    /// The sensor the message belongs to (`None`: none, or a record of format 0).
    pub sensor: Option<String>,
    /// Topic.
    pub topic: String,
    /// Delivery guarantee.
    pub qos: Qos,
    /// Retained on the broker.
    pub retain: bool,
    /// Payload.
    pub payload: Vec<u8>,
}

/// A message to append, borrowed from its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewRecord<'a> {
    /// Topic.
    pub topic: &'a str,
    /// The sensor it belongs to (at most 255 bytes are kept; sensor names are at most 64).
    pub sensor: Option<&'a str>,
    /// Delivery guarantee.
    pub qos: Qos,
    /// Retained on the broker.
    pub retain: bool,
    /// Payload.
    pub payload: &'a [u8],
}

/// A record body, parsed in place.
pub(super) struct Parsed<'a> {
    pub(super) id: u64,
    pub(super) qos: Qos,
    pub(super) retain: bool,
    pub(super) sensor: Option<&'a str>,
    pub(super) topic: &'a str,
    pub(super) payload: &'a [u8],
}

impl NewRecord<'_> {
    /// The sensor as stored: `None` when absent or too long for its length byte.
    fn stored_sensor(&self) -> &[u8] {
        match self.sensor {
            Some(s) if s.len() <= usize::from(u8::MAX) => s.as_bytes(),
            _ => &[],
        }
    }

    /// The topic as stored (the head's length is a u16).
    fn stored_topic(&self) -> &[u8] {
        let room = usize::from(u16::MAX) - 1 - self.stored_sensor().len();
        let topic = self.topic.as_bytes();
        &topic[..topic.len().min(room)]
    }

    /// Bytes of the whole record, header included.
    pub(super) fn encoded_len(&self) -> u64 {
        let head = 1 + self.stored_sensor().len() + self.stored_topic().len();
        HEADER_BYTES + (BODY_FIXED_BYTES + head + self.payload.len()) as u64
    }

    /// Appends the record with `id` to `out`.
    pub(super) fn encode(&self, id: u64, out: &mut Vec<u8>) {
        let (sensor, topic) = (self.stored_sensor(), self.stored_topic());
        let head_len = 1 + sensor.len() + topic.len();
        let body_len = BODY_FIXED_BYTES + head_len + self.payload.len();
        let start = out.len();
        out.extend_from_slice(&(body_len as u32).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&id.to_le_bytes());
        let qos = match self.qos {
            Qos::AtMostOnce => 0,
            Qos::AtLeastOnce => QOS_BIT,
        };
        out.push(FORMAT << 4 | qos);
        out.push(u8::from(self.retain));
        out.extend_from_slice(&(head_len as u16).to_le_bytes());
        out.push(sensor.len() as u8);
        out.extend_from_slice(sensor);
        out.extend_from_slice(topic);
        out.extend_from_slice(self.payload);
        let crc = crc32fast::hash(&out[start + 8..]);
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    /// The record as kept in memory once stored under `id`.
    pub(super) fn to_record(self, id: u64) -> Record {
        Record {
            id,
            sensor: self.sensor.map(str::to_string),
            topic: self.topic.to_string(),
            qos: self.qos,
            retain: self.retain,
            payload: self.payload.to_vec(),
        }
    }
}

impl Record {
    /// Parses a body whose checksum held; `None` when its fields do not.
    pub(super) fn parse(body: &[u8]) -> Option<Parsed<'_>> {
        let id = u64::from_le_bytes(body.get(0..8)?.try_into().ok()?);
        let flags = *body.get(8)?;
        if flags & !(0xF0 | QOS_BIT) != 0 {
            return None;
        }
        let qos = if flags & QOS_BIT == 0 {
            Qos::AtMostOnce
        } else {
            Qos::AtLeastOnce
        };
        let retain = *body.get(9)? != 0;
        let head_len = u16::from_le_bytes(body.get(10..12)?.try_into().ok()?) as usize;
        let head = body.get(12..12 + head_len)?;
        let (sensor, topic) = match flags >> 4 {
            0 => (None, head),
            FORMAT => {
                let (&len, rest) = head.split_first()?;
                let (sensor, topic) = rest.split_at_checked(usize::from(len))?;
                let sensor = std::str::from_utf8(sensor).ok()?;
                ((!sensor.is_empty()).then_some(sensor), topic)
            }
            _ => return None,
        };
        Some(Parsed {
            id,
            qos,
            retain,
            sensor,
            topic: std::str::from_utf8(topic).ok()?,
            payload: body.get(12 + head_len..)?,
        })
    }

    /// Decodes a body whose checksum held.
    pub(super) fn decode(body: &[u8]) -> Option<Self> {
        Self::parse(body).map(|p| Self {
            id: p.id,
            sensor: p.sensor.map(str::to_string),
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A record as the format-0 writer (before the sensor was stored) wrote it.
    fn format0(id: u64, topic: &str, qos: u8, retain: bool, payload: &[u8]) -> Vec<u8> {
        let mut body = id.to_le_bytes().to_vec();
        body.push(qos);
        body.push(u8::from(retain));
        body.extend_from_slice(&(topic.len() as u16).to_le_bytes());
        body.extend_from_slice(topic.as_bytes());
        body.extend_from_slice(payload);
        body
    }

    #[test]
    fn a_format_0_record_reads_without_a_sensor() {
        let body = format0(7, "edgebind/d/imu/embedding", 1, true, b"{}");
        let r = Record::decode(&body).unwrap();
        assert_eq!(r.id, 7);
        assert_eq!(r.sensor, None);
        assert_eq!(r.topic, "edgebind/d/imu/embedding");
        assert_eq!((r.qos, r.retain), (Qos::AtLeastOnce, true));
        assert_eq!(r.payload, b"{}");
        assert!(
            Record::decode(&format0(7, "t", 2, false, b"")).is_none(),
            "QoS 2"
        );
    }

    #[test]
    fn the_sensor_travels_with_a_format_1_record() {
        for sensor in [Some("wrist"), None] {
            let m = NewRecord {
                topic: "edgebind/d/wrist/labels",
                sensor,
                qos: Qos::AtMostOnce,
                retain: false,
                payload: b"[1,2]",
            };
            let mut out = Vec::new();
            m.encode(3, &mut out);
            assert_eq!(out.len() as u64, m.encoded_len());
            let body = &out[HEADER_BYTES as usize..];
            assert_eq!(crc32fast::hash(body).to_le_bytes(), out[4..8]);
            assert_eq!(Record::decode(body).unwrap(), m.to_record(3));
        }
    }

    #[test]
    fn an_unknown_format_or_a_sensor_longer_than_its_head_is_refused() {
        let mut body = format0(1, "t", 1, false, b"x");
        body[8] = 2 << 4 | 1;
        assert!(Record::parse(&body).is_none());
        // Format 1 whose sensor length runs past the head.
        let mut body = format0(1, "\u{5}ab", 1, false, b"x");
        body[8] = 1 << 4 | 1;
        assert!(Record::parse(&body).is_none());
    }
}
