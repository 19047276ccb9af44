//! WitMotion WT901-family binary protocol (WT901, JY901, HWT901B, WT61, … in "normal" output mode).
//!
//! Every frame is 11 bytes: `0x55`, a type byte, 8 data bytes, and a checksum that is the low byte
//! of the sum of the first 10 bytes. The sensor sends one frame per enabled content per output
//! period, in type order: `0x50` time, `0x51` acceleration, `0x52` angular velocity, `0x53` angles,
//! `0x54` magnetic field, … A sample is emitted when the gyro frame following an acceleration frame
//! arrives; the time frame before them (if enabled) becomes the sample's device time.
//!
//! Resynchronisation: a candidate frame starts at every `0x55`. When a candidate is rejected
//! (type byte outside `0x50..=0x5F`, or bad checksum), only its first byte is dropped and the search
//! for the next `0x55` starts one byte later, so a `0x55` inside garbage can never hide a real frame
//! that starts inside the rejected 11 bytes.
//!
//! The parser keeps at most one partial frame (11 bytes, a fixed array) between calls; it never
//! allocates.

use super::protocol::{ImuParser, ImuReading, ParserStats, STANDARD_GRAVITY_MPS2};

/// Length of every frame in bytes.
pub const FRAME_LEN: usize = 11;
/// First byte of every frame.
pub const SYNC_BYTE: u8 = 0x55;
/// Frame type: on-chip time (YY MM DD hh mm ss ms_lo ms_hi).
pub const TYPE_TIME: u8 = 0x50;
/// Frame type: acceleration (ax, ay, az, temperature as little-endian i16).
pub const TYPE_ACC: u8 = 0x51;
/// Frame type: angular velocity (wx, wy, wz, temperature or voltage as little-endian i16).
pub const TYPE_GYRO: u8 = 0x52;
/// Frame type: Euler angles (recognised, skipped).
pub const TYPE_ANGLE: u8 = 0x53;

/// Range of type bytes the WT901 family defines (time … quaternion, satellite accuracy, …).
/// Frames of these types are checked and counted; only time, acc and gyro are decoded. Rejecting
/// other type bytes early makes a stray `0x55` in line noise cheaper to skip.
const KNOWN_TYPES: core::ops::RangeInclusive<u8> = 0x50..=0x5F;

/// Scale of the raw int16 values: full scale is ±32768.
const RAW_FULL_SCALE: f32 = 32768.0;

/// Errors building a [`WitmotionParser`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WitmotionError {
    /// The accelerometer range is not a positive finite number of g.
    #[error("witmotion.acc_range_g: expected a finite value > 0, got {0}")]
    InvalidAccRange(f32),
    /// The gyroscope range is not a positive finite number of deg/s.
    #[error("witmotion.gyro_range_dps: expected a finite value > 0, got {0}")]
    InvalidGyroRange(f32),
}

/// Scaling configured on the sensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WitmotionConfig {
    /// Accelerometer full scale in g (datasheet: raw / 32768 × 16 g).
    pub acc_range_g: f32,
    /// Gyroscope full scale in deg/s (datasheet: raw / 32768 × 2000 °/s).
    pub gyro_range_dps: f32,
}

impl Default for WitmotionConfig {
    fn default() -> Self {
        Self {
            acc_range_g: 16.0,
            gyro_range_dps: 2000.0,
        }
    }
}

/// What a full 11-byte candidate turned out to be.
enum Candidate {
    Valid,
    UnknownType,
    BadChecksum,
}

fn classify(frame: &[u8; FRAME_LEN]) -> Candidate {
    let [sync, kind, .., checksum] = *frame;
    if sync != SYNC_BYTE || !KNOWN_TYPES.contains(&kind) {
        return Candidate::UnknownType;
    }
    let sum = frame
        .iter()
        .take(FRAME_LEN - 1)
        .fold(0u8, |acc, &b| acc.wrapping_add(b));
    if sum == checksum {
        Candidate::Valid
    } else {
        Candidate::BadChecksum
    }
}

/// Incremental parser for WitMotion binary frames.
#[derive(Debug, Clone)]
pub struct WitmotionParser {
    /// Partial frame carried over between `push` calls; `buf[0] == SYNC_BYTE` whenever `len > 0`.
    buf: [u8; FRAME_LEN],
    len: usize,
    /// m/s² per raw count.
    acc_scale: f32,
    /// rad/s per raw count.
    gyro_scale: f32,
    /// Time from the last time frame, waiting for the acceleration frame of the same step.
    pending_time_ns: Option<u64>,
    /// Acceleration (and its time) waiting for the gyro frame of the same step.
    pending_acc: Option<([f32; 3], Option<u64>)>,
    stats: ParserStats,
}

impl WitmotionParser {
    /// Build a parser for a sensor configured with the given ranges.
    ///
    /// # Errors
    /// [`WitmotionError`] if a range is not finite and positive.
    pub fn new(config: WitmotionConfig) -> Result<Self, WitmotionError> {
        if !(config.acc_range_g.is_finite() && config.acc_range_g > 0.0) {
            return Err(WitmotionError::InvalidAccRange(config.acc_range_g));
        }
        if !(config.gyro_range_dps.is_finite() && config.gyro_range_dps > 0.0) {
            return Err(WitmotionError::InvalidGyroRange(config.gyro_range_dps));
        }
        Ok(Self {
            buf: [0; FRAME_LEN],
            len: 0,
            acc_scale: config.acc_range_g * STANDARD_GRAVITY_MPS2 / RAW_FULL_SCALE,
            gyro_scale: config.gyro_range_dps.to_radians() / RAW_FULL_SCALE,
            pending_time_ns: None,
            pending_acc: None,
            stats: ParserStats::default(),
        })
    }

    /// Largest acceleration magnitude per axis this parser can output, in m/s².
    pub fn max_abs_acc_mps2(&self) -> f32 {
        self.acc_scale * RAW_FULL_SCALE
    }

    /// Largest angular velocity magnitude per axis this parser can output, in rad/s.
    pub fn max_abs_gyro_radps(&self) -> f32 {
        self.gyro_scale * RAW_FULL_SCALE
    }

    /// Decode one checksum-valid frame.
    fn handle_frame(&mut self, frame: &[u8; FRAME_LEN], out: &mut Vec<ImuReading>) {
        self.stats.frames_ok += 1;
        let [_, kind, d0, d1, d2, d3, d4, d5, d6, d7, _] = *frame;
        let x = f32::from(i16::from_le_bytes([d0, d1]));
        let y = f32::from(i16::from_le_bytes([d2, d3]));
        let z = f32::from(i16::from_le_bytes([d4, d5]));
        match kind {
            TYPE_TIME => {
                let ms = u16::from_le_bytes([d6, d7]);
                self.pending_time_ns = civil_to_unix_ns(d0, d1, d2, d3, d4, d5, ms);
                if self.pending_time_ns.is_none() {
                    self.stats.bad_values += 1;
                }
            }
            TYPE_ACC => {
                if self.pending_acc.is_some() {
                    // The gyro frame of the previous step was lost: that acc has no partner.
                    self.stats.unpaired_frames += 1;
                }
                let acc = [x * self.acc_scale, y * self.acc_scale, z * self.acc_scale];
                // The time frame belongs to this step only; taking it prevents a stale time
                // from being attached to a later step whose time frame was lost.
                self.pending_acc = Some((acc, self.pending_time_ns.take()));
            }
            TYPE_GYRO => match self.pending_acc.take() {
                Some((acc_mps2, device_time_ns)) => out.push(ImuReading {
                    acc_mps2,
                    gyro_radps: [
                        x * self.gyro_scale,
                        y * self.gyro_scale,
                        z * self.gyro_scale,
                    ],
                    device_time_ns,
                }),
                None => self.stats.unpaired_frames += 1,
            },
            // Angles, magnetometer, pressure, GPS, quaternion, …: valid but not part of a sample.
            _ => {}
        }
    }

    /// Reject the candidate in `buf` (full, 11 bytes): drop its first byte and keep whatever
    /// follows from the next sync byte on, shifted to the front.
    fn reject_buffered(&mut self, kind: &Candidate) {
        if matches!(kind, Candidate::BadChecksum) {
            self.stats.bad_checksums += 1;
        }
        let rest = self.buf.get(1..self.len).unwrap_or(&[]);
        let skip = rest
            .iter()
            .position(|&b| b == SYNC_BYTE)
            .unwrap_or(rest.len());
        let dropped = 1 + skip;
        self.stats.bytes_discarded += dropped as u64;
        self.buf.copy_within(dropped..self.len, 0);
        self.len -= dropped;
    }

    /// Parse complete frames straight from `input` (no copy) while nothing is buffered.
    /// Returns the unfinished tail: empty, or shorter than a frame and starting with a sync byte.
    fn scan_slice<'a>(&mut self, mut input: &'a [u8], out: &mut Vec<ImuReading>) -> &'a [u8] {
        loop {
            let Some(start) = input.iter().position(|&b| b == SYNC_BYTE) else {
                self.stats.bytes_discarded += input.len() as u64;
                return &[];
            };
            self.stats.bytes_discarded += start as u64;
            input = input.get(start..).unwrap_or(&[]);
            let Some((frame, rest)) = input.split_first_chunk::<FRAME_LEN>() else {
                return input;
            };
            match classify(frame) {
                Candidate::Valid => {
                    self.handle_frame(frame, out);
                    input = rest;
                }
                rejected => {
                    if matches!(rejected, Candidate::BadChecksum) {
                        self.stats.bad_checksums += 1;
                    }
                    self.stats.bytes_discarded += 1;
                    input = input.get(1..).unwrap_or(&[]);
                }
            }
        }
    }
}

impl ImuParser for WitmotionParser {
    fn push(&mut self, mut input: &[u8], out: &mut Vec<ImuReading>) {
        loop {
            if self.len == 0 {
                let tail = self.scan_slice(input, out);
                if let Some(dst) = self.buf.get_mut(..tail.len()) {
                    dst.copy_from_slice(tail);
                    self.len = tail.len();
                }
                return;
            }
            // A partial frame is buffered: complete it from the input first.
            let take = (FRAME_LEN - self.len).min(input.len());
            let (head, rest) = input.split_at(take);
            if let Some(dst) = self.buf.get_mut(self.len..self.len + take) {
                dst.copy_from_slice(head);
                self.len += take;
            }
            input = rest;
            if self.len < FRAME_LEN {
                return;
            }
            let frame = self.buf;
            match classify(&frame) {
                Candidate::Valid => {
                    self.len = 0;
                    self.handle_frame(&frame, out);
                }
                rejected => self.reject_buffered(&rejected),
            }
        }
    }

    fn stats(&self) -> &ParserStats {
        &self.stats
    }

    fn reset(&mut self) {
        self.stats.bytes_discarded += self.len as u64;
        if self.pending_acc.take().is_some() {
            self.stats.unpaired_frames += 1;
        }
        self.len = 0;
        self.pending_time_ns = None;
    }

    fn buffered_bytes(&self) -> usize {
        self.len
    }
}

const NANOS_PER_MILLI: u64 = 1_000_000;
const NANOS_PER_SEC: u64 = 1_000_000_000;
const SECS_PER_DAY: u64 = 86_400;

/// WitMotion time frame (years since 2000, 1-based month/day, ms) → nanoseconds since the Unix
/// epoch (the chip's clock is treated as UTC). `None` if any field is out of range.
fn civil_to_unix_ns(
    yy: u8,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
    ms: u16,
) -> Option<u64> {
    let year = 2000 + u64::from(yy);
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
        || ms > 999
    {
        return None;
    }
    let days = days_since_unix_epoch(year, u64::from(month), u64::from(day));
    let secs =
        days * SECS_PER_DAY + u64::from(hour) * 3600 + u64::from(minute) * 60 + u64::from(second);
    secs.checked_mul(NANOS_PER_SEC)?
        .checked_add(u64::from(ms) * NANOS_PER_MILLI)
}

fn is_leap(year: u64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: u64, month: u8) -> u8 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given date (valid for years ≥ 2000, which is all a WitMotion
/// time frame can express). Counts in 400-year eras starting on 1 March so that leap days fall
/// at the end of each year.
fn days_since_unix_epoch(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let year_of_era = y - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    // 719_468 = days from 0000-03-01 to 1970-01-01.
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn frame(kind: u8, data: [u8; 8]) -> [u8; FRAME_LEN] {
        let mut f = [0u8; FRAME_LEN];
        f[0] = SYNC_BYTE;
        f[1] = kind;
        f[2..10].copy_from_slice(&data);
        f[10] = f[..10].iter().fold(0u8, |a, &b| a.wrapping_add(b));
        f
    }

    #[test]
    fn unix_epoch_conversion_matches_known_dates() {
        // 2000-01-01T00:00:00Z = 946684800 s; 2024-02-29T23:59:59.999Z = 1709251199.999 s.
        assert_eq!(
            civil_to_unix_ns(0, 1, 1, 0, 0, 0, 0),
            Some(946_684_800 * NANOS_PER_SEC)
        );
        assert_eq!(
            civil_to_unix_ns(24, 2, 29, 23, 59, 59, 999),
            Some(1_709_251_199 * NANOS_PER_SEC + 999 * NANOS_PER_MILLI)
        );
        assert_eq!(
            civil_to_unix_ns(23, 2, 29, 0, 0, 0, 0),
            None,
            "2023 is not a leap year"
        );
        assert_eq!(civil_to_unix_ns(24, 13, 1, 0, 0, 0, 0), None);
        assert_eq!(civil_to_unix_ns(24, 1, 1, 24, 0, 0, 0), None);
        assert_eq!(civil_to_unix_ns(24, 1, 1, 0, 0, 0, 1000), None);
    }

    #[test]
    fn invalid_time_frame_is_counted_and_gives_no_device_time() {
        let mut p = WitmotionParser::new(WitmotionConfig::default()).unwrap();
        let mut out = Vec::new();
        let mut bytes = frame(TYPE_TIME, [24, 13, 1, 0, 0, 0, 0, 0]).to_vec();
        bytes.extend(frame(TYPE_ACC, [0; 8]));
        bytes.extend(frame(TYPE_GYRO, [0; 8]));
        p.push(&bytes, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].device_time_ns, None);
        assert_eq!(p.stats().bad_values, 1);
        assert_eq!(p.stats().frames_ok, 3);
    }

    #[test]
    fn unknown_type_byte_is_skipped_without_counting_a_bad_checksum() {
        let mut p = WitmotionParser::new(WitmotionConfig::default()).unwrap();
        let mut out = Vec::new();
        let mut bytes = frame(0x42, [1; 8]).to_vec();
        bytes.extend(frame(TYPE_ACC, [0; 8]));
        bytes.extend(frame(TYPE_GYRO, [0; 8]));
        p.push(&bytes, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(p.stats().bad_checksums, 0);
        assert_eq!(p.stats().bytes_discarded, 11);
    }

    #[test]
    fn reset_drops_partial_frame_and_pending_acc() {
        let mut p = WitmotionParser::new(WitmotionConfig::default()).unwrap();
        let mut out = Vec::new();
        let acc = frame(TYPE_ACC, [0; 8]);
        let gyro = frame(TYPE_GYRO, [0; 8]);
        p.push(&acc, &mut out);
        p.push(&gyro[..4], &mut out);
        assert_eq!(p.buffered_bytes(), 4);
        p.reset();
        assert_eq!(p.buffered_bytes(), 0);
        assert_eq!(p.stats().bytes_discarded, 4);
        assert_eq!(p.stats().unpaired_frames, 1);
        p.push(&gyro, &mut out);
        assert!(out.is_empty(), "a gyro after reset has no acc partner");
    }

    #[test]
    fn invalid_ranges_are_rejected() {
        let bad_acc = WitmotionConfig {
            acc_range_g: 0.0,
            ..WitmotionConfig::default()
        };
        assert_eq!(
            WitmotionParser::new(bad_acc).unwrap_err(),
            WitmotionError::InvalidAccRange(0.0)
        );
        let bad_gyro = WitmotionConfig {
            gyro_range_dps: f32::NAN,
            ..WitmotionConfig::default()
        };
        assert!(matches!(
            WitmotionParser::new(bad_gyro),
            Err(WitmotionError::InvalidGyroRange(_))
        ));
    }
}
