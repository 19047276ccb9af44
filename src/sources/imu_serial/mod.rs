//! IMUs on a serial line (USB-UART bridges, Jetson UARTs): the port owner and the pure pieces it
//! drives.
//!
//! - [`protocol`]: the parser trait and the decoded reading in SI units.
//! - [`csv_line`], [`witmotion`]: incremental protocol parsers (bytes in, readings out).
//! - [`timing`]: sequence numbers and capture times (device clock or smoothed arrival).
//!
//! The source ([`ImuSerial`]) runs on one named thread that owns the port: open → read → parse →
//! stamp → send blocks of samples. When the port cannot be opened or fails (USB unplugged, read
//! error), the failure is logged once, the sensor's state says `connected: false`, and the port is
//! reopened with exponential backoff until it returns or the daemon stops. Other sensors are not
//! affected: nothing is shared but the clock.

pub mod config;
pub mod csv_line;
pub mod protocol;
pub mod timing;
pub mod witmotion;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio_serial::SerialPort;

use self::config::{
    AccUnit, CsvColumn, CsvDelimiter, GyroUnit, SerialFlowControl, SerialImuProtocol, SerialParity,
    DEFAULT_WITMOTION_ACC_RANGE_G, DEFAULT_WITMOTION_GYRO_RANGE_DPS,
};
pub use self::config::{ImuSerialConfig, ImuSerialSettings};
use self::csv_line::{CsvConfig, CsvConfigError, CsvLayout, CsvLineParser, TimeColumn, TimeUnit};
use self::protocol::{ImuParser, ImuReading, ParserStats};
use self::timing::{SampleClock, Stamp};
use self::witmotion::{WitmotionConfig, WitmotionError, WitmotionParser};
use super::device_loop::{run_device, Ended, Hardware};
use super::{ImuSample, Source, SourceContext, SourceMessage};
use crate::log_limited;
use crate::pipeline::Disconnected;
use crate::telemetry::{DropReason, LogLimiter};

/// Longest a read waits for data; also how often cancellation is checked while the line is quiet.
const READ_TIMEOUT: Duration = Duration::from_millis(100);
/// Samples are sent to the windower in blocks of about this much sample time…
const BLOCK_SPAN_S: f64 = 0.02;
/// …or when the oldest held sample has waited this long (a slow or stalling device).
const BLOCK_MAX_AGE: Duration = Duration::from_millis(50);
/// Bytes taken from the port per read.
const READ_BUFFER_BYTES: usize = 4096;

/// Problems building a serial IMU source (the port itself is opened when the source runs).
#[derive(Debug, thiserror::Error)]
pub enum ImuSerialError {
    /// The CSV layout is unusable.
    #[error("source {name}: csv_columns: {source}")]
    Csv {
        /// The source.
        name: String,
        /// Why.
        source: CsvConfigError,
    },
    /// The WitMotion ranges are unusable.
    #[error("source {name}: {source}")]
    Witmotion {
        /// The source.
        name: String,
        /// Why.
        source: WitmotionError,
    },
}

/// The protocol parser of one port.
#[derive(Debug)]
enum Parser {
    // Boxed: its 1 KiB column table would make every variant that large.
    Csv(Box<CsvLineParser>),
    Witmotion(WitmotionParser),
}

impl Parser {
    fn get(&mut self) -> &mut dyn ImuParser {
        match self {
            Self::Csv(p) => p.as_mut(),
            Self::Witmotion(p) => p,
        }
    }
}

/// Line settings, converted once from the config.
#[derive(Debug, Clone, Copy)]
struct LineSettings {
    baud_rate: u32,
    data_bits: tokio_serial::DataBits,
    parity: tokio_serial::Parity,
    stop_bits: tokio_serial::StopBits,
    flow_control: tokio_serial::FlowControl,
}

/// A serial IMU, built and ready to run.
#[derive(Debug)]
pub struct ImuSerial {
    path: PathBuf,
    line: LineSettings,
    parser: Parser,
    sample_rate_hz: f64,
    max_backoff: Duration,
}

impl ImuSerial {
    /// Builds the parser and line settings of source `name`'s settings `c`, its port at
    /// `path`. The port is not opened here: a USB device may be plugged in after the daemon
    /// starts.
    ///
    /// # Errors
    /// [`ImuSerialError`] for a CSV layout or WitMotion ranges the parsers refuse.
    pub fn new(name: &str, path: PathBuf, c: &ImuSerialSettings) -> Result<Self, ImuSerialError> {
        let line = LineSettings {
            baud_rate: c.baud_rate,
            data_bits: match c.data_bits.get() {
                5 => tokio_serial::DataBits::Five,
                6 => tokio_serial::DataBits::Six,
                7 => tokio_serial::DataBits::Seven,
                // 8: the range of `DataBits` is 5 to 8.
                _ => tokio_serial::DataBits::Eight,
            },
            parity: match c.parity {
                SerialParity::None => tokio_serial::Parity::None,
                SerialParity::Odd => tokio_serial::Parity::Odd,
                SerialParity::Even => tokio_serial::Parity::Even,
            },
            stop_bits: match c.stop_bits.get() {
                2 => tokio_serial::StopBits::Two,
                // 1: the range of `StopBits` is 1 to 2.
                _ => tokio_serial::StopBits::One,
            },
            flow_control: match c.flow_control {
                SerialFlowControl::None => tokio_serial::FlowControl::None,
                SerialFlowControl::Software => tokio_serial::FlowControl::Software,
                SerialFlowControl::Hardware => tokio_serial::FlowControl::Hardware,
            },
        };
        let parser = match c.protocol {
            SerialImuProtocol::Csv => Parser::Csv(Box::new(
                CsvLineParser::new(csv_config(c)).map_err(|source| ImuSerialError::Csv {
                    name: name.to_string(),
                    source,
                })?,
            )),
            SerialImuProtocol::Witmotion => Parser::Witmotion(
                WitmotionParser::new(WitmotionConfig {
                    acc_range_g: c
                        .witmotion_acc_range_g
                        .unwrap_or(DEFAULT_WITMOTION_ACC_RANGE_G),
                    gyro_range_dps: c
                        .witmotion_gyro_range_dps
                        .unwrap_or(DEFAULT_WITMOTION_GYRO_RANGE_DPS),
                })
                .map_err(|source| ImuSerialError::Witmotion {
                    name: name.to_string(),
                    source,
                })?,
            ),
        };
        Ok(Self {
            path,
            line,
            parser,
            sample_rate_hz: c.sample_rate_hz.get(),
            max_backoff: c.reconnect_max_backoff_ms.duration(),
        })
    }

    fn open_port(&self) -> tokio_serial::Result<Box<dyn SerialPort>> {
        tokio_serial::new(self.path.to_string_lossy(), self.line.baud_rate)
            .data_bits(self.line.data_bits)
            .parity(self.line.parity)
            .stop_bits(self.line.stop_bits)
            .flow_control(self.line.flow_control)
            .timeout(READ_TIMEOUT)
            .open()
    }
}

/// The parser configuration for a `csv` source.
fn csv_config(c: &ImuSerialSettings) -> CsvConfig {
    let mut layout = CsvLayout::default();
    if let Some(columns) = &c.csv_columns {
        for (i, column) in columns.iter().enumerate() {
            match column {
                CsvColumn::AccX => layout.acc_columns[0] = i,
                CsvColumn::AccY => layout.acc_columns[1] = i,
                CsvColumn::AccZ => layout.acc_columns[2] = i,
                CsvColumn::GyroX => layout.gyro_columns[0] = i,
                CsvColumn::GyroY => layout.gyro_columns[1] = i,
                CsvColumn::GyroZ => layout.gyro_columns[2] = i,
                CsvColumn::TimeS => layout.time_column = time_column(i, TimeUnit::Seconds),
                CsvColumn::TimeMs => layout.time_column = time_column(i, TimeUnit::Milliseconds),
                CsvColumn::TimeUs => layout.time_column = time_column(i, TimeUnit::Microseconds),
                CsvColumn::TimeNs => layout.time_column = time_column(i, TimeUnit::Nanoseconds),
                CsvColumn::Ignored => {}
            }
        }
    }
    CsvConfig {
        layout,
        delimiter: match c.csv_delimiter.unwrap_or(CsvDelimiter::Comma) {
            CsvDelimiter::Comma => csv_line::Delimiter::Comma,
            CsvDelimiter::Semicolon => csv_line::Delimiter::Semicolon,
            CsvDelimiter::Tab => csv_line::Delimiter::Tab,
            CsvDelimiter::Whitespace => csv_line::Delimiter::Space,
        },
        acc_unit: match c.acc_unit {
            Some(AccUnit::MetersPerSecond2) => csv_line::AccUnit::MetersPerSecond2,
            Some(AccUnit::G) | None => csv_line::AccUnit::G,
        },
        gyro_unit: match c.gyro_unit {
            Some(GyroUnit::RadPerSec) => csv_line::GyroUnit::RadPerSec,
            Some(GyroUnit::DegPerSec) | None => csv_line::GyroUnit::DegPerSec,
        },
        ..CsvConfig::default()
    }
}

fn time_column(column: usize, unit: TimeUnit) -> Option<TimeColumn> {
    Some(TimeColumn { column, unit })
}

/// Frames or lines that could not be used, from the parser's counters.
fn frames_lost(s: &ParserStats) -> u64 {
    s.bad_checksums + s.bad_lines + s.overlong_lines + s.unpaired_frames + s.bad_values
}

impl Source for ImuSerial {
    fn sample_rate_hz(&self) -> f64 {
        self.sample_rate_hz
    }

    // Why a blocking read on this thread rather than tokio-serial's async `SerialStream`: one
    // thread owns one port and has nothing else to wait for, so `read` with a timeout is the whole
    // event loop. A runtime per port would add a reactor, and a `block` queue policy would then
    // block inside a task; here it blocks only this thread, in 100 ms slices that check for
    // cancellation. tokio-serial's builder opens the port (its blocking serialport `TTYPort`).
    fn run(mut self: Box<Self>, ctx: SourceContext) {
        let _span = tracing::info_span!("source", sensor = %ctx.name).entered();
        let max_backoff = self.max_backoff;
        let mut line = SerialLine {
            driver: Driver::new(self.sample_rate_hz),
            path: self.path.display().to_string(),
            serial: &mut self,
        };
        run_device(&mut line, max_backoff, &ctx);
    }
}

/// A serial port as the device loop drives it.
struct SerialLine<'a> {
    serial: &'a mut ImuSerial,
    driver: Driver,
    /// The port's path, for log lines.
    path: String,
}

impl Hardware for SerialLine<'_> {
    type Device = Box<dyn SerialPort>;
    type OpenError = String;
    type Error = std::io::Error;
    const KIND: &'static str = "serial port";

    fn nominal_rate_hz(&self) -> f64 {
        self.serial.sample_rate_hz
    }

    fn open(&mut self) -> Result<Box<dyn SerialPort>, String> {
        let port = self
            .serial
            .open_port()
            .map_err(|e| format!("{}: {e}", self.path))?;
        // A reopened port starts mid-frame; whatever was held belongs to the old one.
        self.serial.parser.get().reset();
        Ok(port)
    }

    fn describe(&self, _port: &Box<dyn SerialPort>) -> String {
        self.path.clone()
    }

    fn rate_hz(&self, _port: &Box<dyn SerialPort>) -> f64 {
        self.serial.sample_rate_hz
    }

    fn announce(&self, _port: &Box<dyn SerialPort>) {
        tracing::info!(
            device = %self.path,
            baud_rate = self.serial.line.baud_rate,
            sample_rate_hz = self.serial.sample_rate_hz,
            "serial port open"
        );
    }

    fn capture(
        &mut self,
        port: &mut Box<dyn SerialPort>,
        ctx: &SourceContext,
    ) -> Ended<std::io::Error> {
        self.driver
            .read_port(port.as_mut(), self.serial.parser.get(), ctx)
    }
}

/// The reading state that lives across reconnects: sample clock, buffers, counters.
struct Driver {
    rate_hz: f64,
    clock: SampleClock,
    block_len: usize,
    readings: Vec<ImuReading>,
    stamps: Vec<Stamp>,
    block: Vec<ImuSample>,
    block_since: Option<Instant>,
    lost_reported: u64,
    arrival_lost_reported: u64,
}

impl Driver {
    fn new(rate_hz: f64) -> Self {
        let block_len = ((rate_hz * BLOCK_SPAN_S).round() as usize).max(1);
        Self {
            rate_hz,
            clock: SampleClock::new(rate_hz),
            block_len,
            readings: Vec::with_capacity(READ_BUFFER_BYTES / 8),
            stamps: Vec::with_capacity(READ_BUFFER_BYTES / 8),
            block: Vec::with_capacity(block_len),
            block_since: None,
            lost_reported: 0,
            arrival_lost_reported: 0,
        }
    }

    /// Reads `port` until it fails or the daemon stops; sends what was read before returning.
    fn read_port(
        &mut self,
        port: &mut dyn SerialPort,
        parser: &mut dyn ImuParser,
        ctx: &SourceContext,
    ) -> Ended<std::io::Error> {
        let mut buf = [0u8; READ_BUFFER_BYTES];
        let mut bad_input_log = LogLimiter::default();
        let mut delivered = false;
        loop {
            if ctx.cancel.is_cancelled() {
                let _ = self.flush(ctx);
                return Ended::Stop;
            }
            let lost = match port.read(&mut buf) {
                Ok(0) => Some(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the port reported end of file",
                )),
                Ok(n) => {
                    let arrival_ns = ctx.clock.now().mono_ns;
                    delivered = true;
                    parser.push(buf.get(..n).unwrap_or(&[]), &mut self.readings);
                    self.take_readings(arrival_ns, ctx);
                    let bad = frames_lost(parser.stats());
                    if bad > self.lost_reported {
                        ctx.stats
                            .add_drops(DropReason::BadInput, bad - self.lost_reported);
                        let s = parser.stats();
                        log_limited!(bad_input_log, tracing::Level::WARN,
                            "corrupt data on the serial line; bad frames are dropped and counted (drops_total.bad_input)",
                            bad_frames_since_open = bad, frames_ok = s.frames_ok,
                            bytes_discarded = s.bytes_discarded);
                        self.lost_reported = bad;
                    }
                    None
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::Interrupted
                    ) =>
                {
                    None
                }
                Err(e) => Some(e),
            };
            let due = self.block.len() >= self.block_len
                || self
                    .block_since
                    .is_some_and(|t| t.elapsed() >= BLOCK_MAX_AGE);
            if (due || lost.is_some()) && self.flush(ctx).is_err() {
                return Ended::Stop;
            }
            if let Some(error) = lost {
                return Ended::Lost { error, delivered };
            }
        }
    }

    /// Stamps the readings of one read and moves them to the block being filled.
    fn take_readings(&mut self, arrival_ns: u64, ctx: &SourceContext) {
        if self.readings.is_empty() {
            return;
        }
        self.stamps.clear();
        self.clock
            .stamp(arrival_ns, &self.readings, &mut self.stamps);
        if self.block.is_empty() {
            self.block_since = Some(Instant::now());
        }
        for (r, s) in self.readings.iter().zip(&self.stamps) {
            self.block.push(ImuSample {
                seq: s.seq,
                t: ctx.clock.at_mono_ns(s.mono_ns),
                values: [
                    r.acc_mps2[0],
                    r.acc_mps2[1],
                    r.acc_mps2[2],
                    r.gyro_radps[0],
                    r.gyro_radps[1],
                    r.gyro_radps[2],
                ],
            });
        }
        self.readings.clear();
        let lost = self.clock.arrival_lost();
        if lost > self.arrival_lost_reported {
            tracing::debug!(
                samples = lost - self.arrival_lost_reported,
                "samples missing from the serial stream (gap)"
            );
            self.arrival_lost_reported = lost;
        }
    }

    /// Sends the held block to the windower (the queue's policy decides when it is full).
    fn flush(&mut self, ctx: &SourceContext) -> Result<(), Disconnected> {
        let Some(last) = self.block.last() else {
            return Ok(());
        };
        let count = self.block.len() as u64;
        let last_utc_ns = last.t.utc_ns;
        let samples = std::mem::replace(&mut self.block, Vec::with_capacity(self.block_len));
        self.block_since = None;
        if !ctx.send(SourceMessage::Imu {
            sample_rate_hz: self.rate_hz,
            samples,
        }) {
            return Err(Disconnected);
        }
        ctx.stats.add_samples(count, last_utc_ns);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn serial_config(extra: &str) -> ImuSerialConfig {
        toml::from_str(&format!(
            "name = \"imu\"\npath = \"/dev/ttyUSB9\"\nsample_rate_hz = 200.0\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn csv_columns_map_to_the_parser_layout() {
        let c = serial_config(
            "protocol = \"csv\"\nacc_unit = \"m/s^2\"\ngyro_unit = \"rad/s\"\n\
             csv_columns = [\"t_ms\", \"_\", \"gyro_x\", \"gyro_y\", \"gyro_z\", \"acc_x\", \"acc_y\", \"acc_z\"]\n\
             csv_delimiter = \"semicolon\"",
        );
        let p = csv_config(&c.settings);
        assert_eq!(p.layout.acc_columns, [5, 6, 7]);
        assert_eq!(p.layout.gyro_columns, [2, 3, 4]);
        assert_eq!(
            p.layout.time_column,
            Some(TimeColumn {
                column: 0,
                unit: TimeUnit::Milliseconds
            })
        );
        assert_eq!(p.delimiter, csv_line::Delimiter::Semicolon);
        assert_eq!(p.acc_unit, csv_line::AccUnit::MetersPerSecond2);
        assert_eq!(p.gyro_unit, csv_line::GyroUnit::RadPerSec);
    }

    #[test]
    fn defaults_are_8n1_at_115200_dropping_the_oldest_block() {
        let stream = serial_config("protocol = \"witmotion\"");
        let c = &stream.settings;
        assert_eq!(c.baud_rate, 115_200);
        assert_eq!(
            (c.data_bits.get(), c.parity, c.stop_bits.get()),
            (8, SerialParity::None, 1)
        );
        assert_eq!(c.flow_control, SerialFlowControl::None);
        assert_eq!(
            stream.common.queue.when_full,
            crate::config::WhenFull::DropOldest
        );
        assert_eq!(
            (stream.cut.window_ms.get(), stream.cut.hop_ms.get()),
            (5000, 1000)
        );
    }

    #[test]
    fn unknown_csv_column_names_are_rejected_when_parsing() {
        let r: Result<ImuSerialConfig, _> = toml::from_str(
            "name = \"imu\"\npath = \"/dev/x\"\nsample_rate_hz = 1.0\nprotocol = \"csv\"\n\
             csv_columns = [\"ax\"]",
        );
        assert!(r.unwrap_err().to_string().contains("ax"));
    }
}
