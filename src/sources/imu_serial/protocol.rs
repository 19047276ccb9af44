//! Types shared by every serial IMU protocol parser.
//!
//! A parser is a pure state machine: the serial driver hands it whatever bytes one `read` returned
//! (any split, any size) and it appends the decoded samples to a caller-owned `Vec`, so in steady
//! state no allocation happens per sample. Every byte that cannot be used is counted in
//! [`ParserStats`] with a reason, never silently dropped.

/// Standard gravity in m/s², used to convert readings given in g.
pub const STANDARD_GRAVITY_MPS2: f32 = 9.806_65;

/// One decoded IMU sample in SI units.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ImuReading {
    /// Linear acceleration x, y, z in m/s² (gravity included, as the sensor measures it).
    pub acc_mps2: [f32; 3],
    /// Angular velocity x, y, z in rad/s.
    pub gyro_radps: [f32; 3],
    /// The device's own timestamp in nanoseconds, when the protocol carries one
    /// (CSV: a timestamp column, its epoch is whatever the device counts from;
    /// WitMotion: the on-chip clock, as nanoseconds since 1970-01-01 UTC).
    pub device_time_ns: Option<u64>,
}

/// Counters a parser keeps over its whole life (they are not reset by [`ImuParser::reset`]).
///
/// Fields that do not apply to a protocol stay 0 (e.g. `bad_checksums` for CSV).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ParserStats {
    /// Frames (binary) or data lines (CSV) that were accepted.
    pub frames_ok: u64,
    /// Bytes thrown away: garbage between frames, bytes of bad-checksum frames, bytes of bad or
    /// over-long lines (including their newline).
    pub bytes_discarded: u64,
    /// Binary frames whose header looked right but whose checksum did not match.
    pub bad_checksums: u64,
    /// Text lines that were not comments or preamble but could not be parsed
    /// (invalid UTF-8, too few columns, a number that does not parse or is not finite).
    pub bad_lines: u64,
    /// Text lines longer than the line buffer; discarded up to the next newline.
    pub overlong_lines: u64,
    /// Text lines skipped on purpose: comments, blank lines, header or preamble lines.
    pub skipped_lines: u64,
    /// Valid frames that could not be used because their partner was missing
    /// (an acceleration frame superseded by the next one before a gyro frame arrived,
    /// or a gyro frame without a preceding acceleration frame).
    pub unpaired_frames: u64,
    /// Valid frames whose payload was out of range (e.g. a time frame with month 13).
    pub bad_values: u64,
}

/// An incremental byte-stream → [`ImuReading`] parser.
pub trait ImuParser {
    /// Feed the next bytes of the stream (any length, any split point) and append every sample
    /// completed by them to `out`. `out` is never cleared by the parser, so the caller can reuse
    /// one `Vec` and allocate nothing in steady state.
    fn push(&mut self, bytes: &[u8], out: &mut Vec<ImuReading>);

    /// Counters since the parser was built.
    fn stats(&self) -> &ParserStats;

    /// Forget any partial frame or line (e.g. after the port was reopened); stats are kept.
    fn reset(&mut self);

    /// How many bytes are currently held for an incomplete frame or line.
    /// Always at most the parser's fixed buffer size.
    fn buffered_bytes(&self) -> usize;
}
