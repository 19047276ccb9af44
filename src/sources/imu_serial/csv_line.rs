//! Text IMUs that print one sample per line (Arduino/ESP32 sketches, many USB IMUs in ASCII mode).
//!
//! Lines end in `\n` or `\r\n`. Columns are separated by a [`Delimiter`]; which column holds which
//! axis (and an optional device timestamp) is given by a [`CsvLayout`]. Extra columns are ignored.
//!
//! Line policy (what is counted where):
//! - The bytes up to the first newline are dropped unparsed when
//!   [`CsvConfig::discard_first_line`] is set (default): opening a serial port almost always
//!   starts mid-line, and the tail of a line can still parse, with a truncated first number.
//!   Counted in `skipped_lines`. [`ImuParser::reset`] re-arms this.
//! - Blank lines and lines starting with `#` are comments: `skipped_lines`.
//! - Lines that do not parse *before the first good data line* (a banner, a column header such as
//!   `ax,ay,az,gx,gy,gz`) are preamble: `skipped_lines`, at most
//!   [`CsvConfig::max_preamble_lines`] of them, so a stream with the wrong layout or delimiter
//!   still shows up as `bad_lines`. After the first data line every unparsable line is a
//!   `bad_line` (its bytes go to `bytes_discarded`).
//! - A line is bad if it is not UTF-8, has fewer columns than the layout needs, or a needed field
//!   is not a finite number (also after unit conversion), or the timestamp is negative or does
//!   not fit `u64` nanoseconds.
//! - A line longer than [`CsvConfig::max_line_bytes`] (without its `\n`) is discarded up to the
//!   next newline: `overlong_lines`, bytes in `bytes_discarded`.
//!
//! The parser holds at most one partial line in a buffer sized once in [`CsvLineParser::new`];
//! it never grows, and numbers are parsed from slices without allocating.

use super::protocol::{ImuParser, ImuReading, ParserStats, STANDARD_GRAVITY_MPS2};

/// Highest number of columns a layout may refer to (column indices are `0..MAX_COLUMNS`).
pub const MAX_COLUMNS: usize = 64;
/// Default line buffer size in bytes.
pub const DEFAULT_MAX_LINE_BYTES: usize = 256;
/// Accepted range for [`CsvConfig::max_line_bytes`].
pub const LINE_BYTES_RANGE: core::ops::RangeInclusive<usize> = 16..=4096;

/// Column separator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Delimiter {
    /// `,`
    #[default]
    Comma,
    /// `;`
    Semicolon,
    /// A tab.
    Tab,
    /// One or more spaces or tabs (runs count as one separator, leading ones are ignored).
    Space,
}

/// Unit of the acceleration columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccUnit {
    /// Standard gravity, 1 g = 9.80665 m/s².
    #[default]
    G,
    /// Already m/s².
    MetersPerSecond2,
}

/// Unit of the gyroscope columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GyroUnit {
    /// Degrees per second.
    #[default]
    DegPerSec,
    /// Already rad/s.
    RadPerSec,
}

/// Unit of the device timestamp column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    /// Seconds (fractions allowed, e.g. `12.345678`).
    Seconds,
    /// Milliseconds.
    Milliseconds,
    /// Microseconds.
    Microseconds,
    /// Nanoseconds.
    Nanoseconds,
}

impl TimeUnit {
    fn nanos(self) -> u64 {
        match self {
            Self::Seconds => 1_000_000_000,
            Self::Milliseconds => 1_000_000,
            Self::Microseconds => 1_000,
            Self::Nanoseconds => 1,
        }
    }
}

/// Where the device timestamp is and in which unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeColumn {
    /// 0-based column index.
    pub column: usize,
    /// Unit of the values in that column.
    pub unit: TimeUnit,
}

/// 0-based column index of each quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsvLayout {
    /// Columns of acc x, y, z.
    pub acc_columns: [usize; 3],
    /// Columns of gyro x, y, z.
    pub gyro_columns: [usize; 3],
    /// Optional device timestamp column.
    pub time_column: Option<TimeColumn>,
}

impl Default for CsvLayout {
    /// `ax,ay,az,gx,gy,gz`, no timestamp.
    fn default() -> Self {
        Self {
            acc_columns: [0, 1, 2],
            gyro_columns: [3, 4, 5],
            time_column: None,
        }
    }
}

/// Everything a [`CsvLineParser`] needs to know about the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsvConfig {
    /// Column order.
    pub layout: CsvLayout,
    /// Column separator.
    pub delimiter: Delimiter,
    /// Unit of the acceleration columns.
    pub acc_unit: AccUnit,
    /// Unit of the gyro columns.
    pub gyro_unit: GyroUnit,
    /// Longest accepted line in bytes, without its `\n` (the line buffer size).
    pub max_line_bytes: usize,
    /// Drop everything up to the first newline (serial ports are opened mid-line).
    pub discard_first_line: bool,
    /// How many unparsable lines before the first data line count as header/banner.
    pub max_preamble_lines: u32,
}

impl Default for CsvConfig {
    fn default() -> Self {
        Self {
            layout: CsvLayout::default(),
            delimiter: Delimiter::Comma,
            acc_unit: AccUnit::G,
            gyro_unit: GyroUnit::DegPerSec,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            discard_first_line: true,
            max_preamble_lines: 4,
        }
    }
}

/// Errors building a [`CsvLineParser`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsvConfigError {
    /// A column index is beyond [`MAX_COLUMNS`].
    #[error("csv.layout.{field}: column {index} is out of range, expected < {MAX_COLUMNS}")]
    ColumnOutOfRange {
        /// Which layout field.
        field: &'static str,
        /// The index given.
        index: usize,
    },
    /// Two quantities are mapped to the same column.
    #[error("csv.layout.{field}: column {index} is already used by {other}")]
    DuplicateColumn {
        /// The later field.
        field: &'static str,
        /// The field that already uses the column.
        other: &'static str,
        /// The shared index.
        index: usize,
    },
    /// The line buffer size is outside [`LINE_BYTES_RANGE`].
    #[error("csv.max_line_bytes: expected 16..=4096, got {0}")]
    LineBufferSize(usize),
}

/// What a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Acc(usize),
    Gyro(usize),
    Time,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Self::Acc(0) => "acc_columns[0]",
            Self::Acc(1) => "acc_columns[1]",
            Self::Acc(_) => "acc_columns[2]",
            Self::Gyro(0) => "gyro_columns[0]",
            Self::Gyro(1) => "gyro_columns[1]",
            Self::Gyro(_) => "gyro_columns[2]",
            Self::Time => "time_column",
        }
    }
}

/// Result of parsing one complete line.
enum LineOutcome {
    Data(ImuReading),
    Comment,
    Unparsable,
}

/// The per-line decoder: column table and unit factors, computed once.
#[derive(Debug, Clone)]
struct LineDecoder {
    roles: [Option<Role>; MAX_COLUMNS],
    /// Number of columns a line must have (highest used index + 1).
    needed_columns: usize,
    delimiter: Delimiter,
    acc_factor: f32,
    gyro_factor: f32,
    time_unit: Option<TimeUnit>,
}

impl LineDecoder {
    fn new(config: &CsvConfig) -> Result<Self, CsvConfigError> {
        let mut roles: [Option<Role>; MAX_COLUMNS] = [None; MAX_COLUMNS];
        let layout = &config.layout;
        let assignments = layout
            .acc_columns
            .iter()
            .enumerate()
            .map(|(axis, &c)| (Role::Acc(axis), c))
            .chain(
                layout
                    .gyro_columns
                    .iter()
                    .enumerate()
                    .map(|(axis, &c)| (Role::Gyro(axis), c)),
            )
            .chain(layout.time_column.map(|t| (Role::Time, t.column)));
        let mut needed_columns = 0;
        for (role, index) in assignments {
            let slot = roles
                .get_mut(index)
                .ok_or(CsvConfigError::ColumnOutOfRange {
                    field: role.name(),
                    index,
                })?;
            if let Some(other) = *slot {
                return Err(CsvConfigError::DuplicateColumn {
                    field: role.name(),
                    other: other.name(),
                    index,
                });
            }
            *slot = Some(role);
            needed_columns = needed_columns.max(index + 1);
        }
        Ok(Self {
            roles,
            needed_columns,
            delimiter: config.delimiter,
            acc_factor: match config.acc_unit {
                AccUnit::G => STANDARD_GRAVITY_MPS2,
                AccUnit::MetersPerSecond2 => 1.0,
            },
            gyro_factor: match config.gyro_unit {
                GyroUnit::DegPerSec => 1.0f32.to_radians(),
                GyroUnit::RadPerSec => 1.0,
            },
            time_unit: layout.time_column.map(|t| t.unit),
        })
    }

    /// Parse one line without its `\n` (a trailing `\r` is allowed).
    fn parse(&self, line: &[u8]) -> LineOutcome {
        let Ok(text) = core::str::from_utf8(line) else {
            return LineOutcome::Unparsable;
        };
        let text = text.trim_ascii();
        if text.is_empty() || text.starts_with('#') {
            return LineOutcome::Comment;
        }
        let parsed = match self.delimiter {
            Delimiter::Comma => self.parse_fields(text.split(',')),
            Delimiter::Semicolon => self.parse_fields(text.split(';')),
            Delimiter::Tab => self.parse_fields(text.split('\t')),
            Delimiter::Space => self.parse_fields(text.split_ascii_whitespace()),
        };
        match parsed {
            Some(reading) => LineOutcome::Data(reading),
            None => LineOutcome::Unparsable,
        }
    }

    fn parse_fields<'a>(&self, fields: impl Iterator<Item = &'a str>) -> Option<ImuReading> {
        let mut reading = ImuReading::default();
        let mut seen = 0;
        for (field, role) in fields.zip(self.roles.iter()).take(self.needed_columns) {
            seen += 1;
            let Some(role) = *role else { continue };
            let field = field.trim_ascii();
            match role {
                Role::Acc(axis) => {
                    *reading.acc_mps2.get_mut(axis)? = parse_finite(field, self.acc_factor)?;
                }
                Role::Gyro(axis) => {
                    *reading.gyro_radps.get_mut(axis)? = parse_finite(field, self.gyro_factor)?;
                }
                Role::Time => {
                    reading.device_time_ns = Some(parse_time_ns(field, self.time_unit?)?);
                }
            }
        }
        (seen == self.needed_columns).then_some(reading)
    }
}

/// Parse a float and scale it to SI; `None` unless both the value and the result are finite.
fn parse_finite(field: &str, factor: f32) -> Option<f32> {
    let value: f32 = field.parse().ok()?;
    let si = value * factor;
    si.is_finite().then_some(si)
}

/// Parse a non-negative timestamp in `unit` to integer nanoseconds.
///
/// Plain decimals (`123`, `12.345678`) are converted exactly (digits below 1 ns are truncated)
/// because `f64` would lose sub-microsecond precision on epoch-sized seconds; anything else
/// (exponents) goes through `f64`.
fn parse_time_ns(field: &str, unit: TimeUnit) -> Option<u64> {
    let scale = unit.nanos();
    let (int_part, frac_part) = field.split_once('.').unwrap_or((field, ""));
    let is_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !int_part.is_empty() && is_digits(int_part) && is_digits(frac_part) {
        let whole: u64 = int_part.parse().ok()?;
        let mut ns = whole.checked_mul(scale)?;
        // Add the fraction digit by digit: digit k (1-based) is worth scale / 10^k ns.
        let mut place = scale;
        for digit in frac_part.bytes() {
            place /= 10;
            if place == 0 {
                break;
            }
            ns = ns.checked_add(u64::from(digit - b'0') * place)?;
        }
        return Some(ns);
    }
    let value: f64 = field.parse().ok()?;
    let ns = value * scale as f64;
    // 2^64 as f64: anything at or above it does not fit.
    (0.0..18_446_744_073_709_551_616.0)
        .contains(&ns)
        .then_some(ns as u64)
}

/// What the parser is doing with incoming bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Collecting a line.
    Line,
    /// Dropping the (partial) first line of the stream.
    SkipFirstLine,
    /// Dropping the rest of an over-long line.
    DiscardOverlong,
}

/// Incremental parser for IMU samples printed as delimited text lines.
#[derive(Debug, Clone)]
pub struct CsvLineParser {
    decoder: LineDecoder,
    /// Partial line carried over between `push` calls; allocated once, never grown.
    buf: Box<[u8]>,
    len: usize,
    mode: Mode,
    discard_first_line: bool,
    max_preamble_lines: u32,
    preamble_lines: u32,
    seen_data: bool,
    stats: ParserStats,
}

impl CsvLineParser {
    /// Build a parser; validates the layout and allocates the line buffer.
    ///
    /// # Errors
    /// [`CsvConfigError`] if a column index is `>= MAX_COLUMNS`, two quantities share a column,
    /// or `max_line_bytes` is outside [`LINE_BYTES_RANGE`].
    pub fn new(config: CsvConfig) -> Result<Self, CsvConfigError> {
        if !LINE_BYTES_RANGE.contains(&config.max_line_bytes) {
            return Err(CsvConfigError::LineBufferSize(config.max_line_bytes));
        }
        Ok(Self {
            decoder: LineDecoder::new(&config)?,
            buf: vec![0u8; config.max_line_bytes].into_boxed_slice(),
            len: 0,
            mode: Self::start_mode(config.discard_first_line),
            discard_first_line: config.discard_first_line,
            max_preamble_lines: config.max_preamble_lines,
            preamble_lines: 0,
            seen_data: false,
            stats: ParserStats::default(),
        })
    }

    fn start_mode(discard_first_line: bool) -> Mode {
        if discard_first_line {
            Mode::SkipFirstLine
        } else {
            Mode::Line
        }
    }

    /// Parse a complete line (without `\n`) and account for it; `line_bytes` includes the `\n`.
    fn finish_line(
        decoder: &LineDecoder,
        line: &[u8],
        state: &mut LineState<'_>,
        out: &mut Vec<ImuReading>,
    ) {
        let line_bytes = line.len() as u64 + 1;
        match decoder.parse(line) {
            LineOutcome::Data(reading) => {
                state.stats.frames_ok += 1;
                *state.seen_data = true;
                out.push(reading);
            }
            LineOutcome::Comment => state.stats.skipped_lines += 1,
            LineOutcome::Unparsable => {
                if !*state.seen_data && *state.preamble_lines < state.max_preamble_lines {
                    *state.preamble_lines += 1;
                    state.stats.skipped_lines += 1;
                } else {
                    state.stats.bad_lines += 1;
                    state.stats.bytes_discarded += line_bytes;
                }
            }
        }
    }

    /// Drops input up to and including the next newline (the first, partial line after a
    /// start, or the rest of an overlong one); the input after it, or `None` when all of it
    /// was dropped.
    fn skip_line<'a>(&mut self, input: &'a [u8]) -> Option<&'a [u8]> {
        let Some(nl) = find_newline(input) else {
            if self.mode == Mode::DiscardOverlong {
                self.stats.bytes_discarded += input.len() as u64;
            }
            return None;
        };
        if self.mode == Mode::DiscardOverlong {
            self.stats.bytes_discarded += nl as u64 + 1;
        } else {
            self.stats.skipped_lines += 1;
        }
        self.mode = Mode::Line;
        Some(input.get(nl + 1..).unwrap_or(&[]))
    }

    /// With nothing buffered: whole lines straight from the input, no copy; the partial line
    /// at its end is buffered.
    fn whole_lines(&mut self, mut input: &[u8], out: &mut Vec<ImuReading>) {
        let max_line = self.buf.len();
        let mut state = LineState {
            stats: &mut self.stats,
            seen_data: &mut self.seen_data,
            preamble_lines: &mut self.preamble_lines,
            max_preamble_lines: self.max_preamble_lines,
        };
        while let Some(nl) = find_newline(input) {
            let (line, rest) = input.split_at(nl);
            if line.len() > max_line {
                state.stats.overlong_lines += 1;
                state.stats.bytes_discarded += nl as u64 + 1;
            } else {
                Self::finish_line(&self.decoder, line, &mut state, out);
            }
            input = rest.get(1..).unwrap_or(&[]);
        }
        if input.len() > max_line {
            self.start_overlong(input.len());
        } else if let Some(dst) = self.buf.get_mut(..input.len()) {
            dst.copy_from_slice(input);
            self.len = input.len();
        }
    }

    /// A partial line is buffered: completes it from the input; the input after its newline,
    /// or `None` when the input ended first.
    fn complete_line<'a>(
        &mut self,
        input: &'a [u8],
        out: &mut Vec<ImuReading>,
    ) -> Option<&'a [u8]> {
        let max_line = self.buf.len();
        let nl = find_newline(input);
        let part_len = nl.unwrap_or(input.len());
        let total = self.len + part_len;
        if total > max_line {
            self.start_overlong(total);
            let nl = nl?;
            self.stats.bytes_discarded += 1;
            self.mode = Mode::Line;
            return Some(input.get(nl + 1..).unwrap_or(&[]));
        }
        let (part, rest) = input.split_at(part_len);
        if let Some(dst) = self.buf.get_mut(self.len..total) {
            dst.copy_from_slice(part);
            self.len = total;
        }
        nl?;
        let mut state = LineState {
            stats: &mut self.stats,
            seen_data: &mut self.seen_data,
            preamble_lines: &mut self.preamble_lines,
            max_preamble_lines: self.max_preamble_lines,
        };
        let line = self.buf.get(..self.len).unwrap_or(&[]);
        Self::finish_line(&self.decoder, line, &mut state, out);
        self.len = 0;
        Some(rest.get(1..).unwrap_or(&[]))
    }

    fn start_overlong(&mut self, bytes: usize) {
        self.stats.overlong_lines += 1;
        self.stats.bytes_discarded += bytes as u64;
        self.len = 0;
        self.mode = Mode::DiscardOverlong;
    }
}

/// The mutable parts `finish_line` needs, borrowed apart from the line buffer.
struct LineState<'a> {
    stats: &'a mut ParserStats,
    seen_data: &'a mut bool,
    preamble_lines: &'a mut u32,
    max_preamble_lines: u32,
}

fn find_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

impl ImuParser for CsvLineParser {
    fn push(&mut self, mut input: &[u8], out: &mut Vec<ImuReading>) {
        while !input.is_empty() {
            let rest = match self.mode {
                Mode::SkipFirstLine | Mode::DiscardOverlong => self.skip_line(input),
                Mode::Line if self.len == 0 => {
                    self.whole_lines(input, out);
                    None
                }
                Mode::Line => self.complete_line(input, out),
            };
            match rest {
                Some(rest) => input = rest,
                None => return,
            }
        }
    }

    fn stats(&self) -> &ParserStats {
        &self.stats
    }

    fn reset(&mut self) {
        if self.mode == Mode::Line {
            self.stats.bytes_discarded += self.len as u64;
        }
        self.len = 0;
        self.mode = Self::start_mode(self.discard_first_line);
    }

    fn buffered_bytes(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn parser(config: CsvConfig) -> CsvLineParser {
        CsvLineParser::new(config).unwrap()
    }

    #[test]
    fn exact_decimal_timestamps_keep_nanoseconds() {
        assert_eq!(
            parse_time_ns("1715949296.789123456", TimeUnit::Seconds),
            Some(1_715_949_296_789_123_456)
        );
        assert_eq!(
            parse_time_ns("12.5", TimeUnit::Milliseconds),
            Some(12_500_000)
        );
        assert_eq!(parse_time_ns("7", TimeUnit::Microseconds), Some(7_000));
        assert_eq!(parse_time_ns("1.9", TimeUnit::Nanoseconds), Some(1));
        assert_eq!(
            parse_time_ns("1e3", TimeUnit::Milliseconds),
            Some(1_000_000_000)
        );
        assert_eq!(parse_time_ns("-1", TimeUnit::Seconds), None);
        assert_eq!(
            parse_time_ns("99999999999999999999", TimeUnit::Seconds),
            None
        );
        assert_eq!(parse_time_ns("abc", TimeUnit::Seconds), None);
        assert_eq!(parse_time_ns("", TimeUnit::Seconds), None);
    }

    #[test]
    fn duplicate_and_out_of_range_columns_are_rejected_with_their_field() {
        let mut config = CsvConfig::default();
        config.layout.gyro_columns = [3, 4, 1];
        assert_eq!(
            CsvLineParser::new(config).unwrap_err(),
            CsvConfigError::DuplicateColumn {
                field: "gyro_columns[2]",
                other: "acc_columns[1]",
                index: 1
            }
        );
        let mut config = CsvConfig::default();
        config.layout.time_column = Some(TimeColumn {
            column: MAX_COLUMNS,
            unit: TimeUnit::Seconds,
        });
        assert!(matches!(
            CsvLineParser::new(config),
            Err(CsvConfigError::ColumnOutOfRange {
                field: "time_column",
                ..
            })
        ));
        let config = CsvConfig {
            max_line_bytes: 8,
            ..CsvConfig::default()
        };
        assert_eq!(
            CsvLineParser::new(config).unwrap_err(),
            CsvConfigError::LineBufferSize(8)
        );
    }

    #[test]
    fn preamble_lines_are_skipped_only_before_the_first_data_line() {
        let config = CsvConfig {
            discard_first_line: false,
            ..CsvConfig::default()
        };
        let mut p = parser(config);
        let mut out = Vec::new();
        p.push(
            b"IMU v1.2 ready\nax,ay,az,gx,gy,gz\n0,0,1,0,0,0\nax,ay,az,gx,gy,gz\n",
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(p.stats().skipped_lines, 2);
        assert_eq!(p.stats().bad_lines, 1);
        assert_eq!(p.stats().bytes_discarded, 18);
    }

    #[test]
    fn preamble_is_bounded_so_a_wrong_delimiter_shows_as_bad_lines() {
        let config = CsvConfig {
            discard_first_line: false,
            max_preamble_lines: 2,
            ..CsvConfig::default()
        };
        let mut p = parser(config);
        let mut out = Vec::new();
        p.push(&b"0;0;1;0;0;0\n".repeat(5), &mut out);
        assert!(out.is_empty());
        assert_eq!(p.stats().skipped_lines, 2);
        assert_eq!(p.stats().bad_lines, 3);
    }

    #[test]
    fn first_partial_line_is_discarded_and_reset_rearms_it() {
        let mut p = parser(CsvConfig::default());
        let mut out = Vec::new();
        p.push(b"23,0,1,0,0,0\n0,0,1,0,0,0\n", &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(p.stats().skipped_lines, 1);
        p.push(b"0,0,1,0,0", &mut out);
        p.reset();
        assert_eq!(p.stats().bytes_discarded, 9);
        p.push(b",0\n0,0,2,0,0,0\n", &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].acc_mps2[2], 2.0 * STANDARD_GRAVITY_MPS2);
    }

    #[test]
    fn non_finite_values_make_a_bad_line() {
        let config = CsvConfig {
            discard_first_line: false,
            max_preamble_lines: 0,
            ..CsvConfig::default()
        };
        let mut p = parser(config);
        let mut out = Vec::new();
        p.push(
            b"NaN,0,0,0,0,0\n0,inf,0,0,0,0\n0,0,1e38,0,0,0\n0,0,0,0,0,0\n",
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(p.stats().bad_lines, 3, "1e38 g overflows f32 in m/s²");
    }
}
