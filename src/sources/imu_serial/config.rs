//! `type = "imu_serial"`: line settings, protocols and CSV layouts, their checks and the build.

use std::path::PathBuf;

use serde::Deserialize;

use super::csv_line::MAX_COLUMNS;
use super::ImuSerial;
use crate::config::{
    limits, BackoffMs, Config, DataBits, ImuRateHz, SampleWindow, Scope, StopBits, Stream,
    StreamKind, WhenFull,
};
use crate::pipeline::processor::{self, Processor, ProcessorError};
use crate::sources::kind::{BuildContext, Kind};
use crate::sources::{Source, SourceError};
use crate::Modality;

/// Parity bit of a serial line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SerialParity {
    /// No parity bit (the usual `8N1`).
    None,
    /// Odd parity.
    Odd,
    /// Even parity.
    Even,
}

/// Flow control of a serial line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SerialFlowControl {
    /// None (IMUs stream without it).
    None,
    /// XON/XOFF in the data stream (unusable with binary protocols such as WitMotion).
    Software,
    /// RTS/CTS lines.
    Hardware,
}

/// What the IMU sends on its serial line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SerialImuProtocol {
    /// One sample per text line, columns as in `csv_columns`.
    Csv,
    /// WitMotion WT901-family binary frames (0x51 acceleration + 0x52 angular velocity; the
    /// 0x50 time frame, when enabled on the sensor, gives the device timestamp).
    Witmotion,
}

/// What one column of a CSV line holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum CsvColumn {
    /// Acceleration x (unit: `acc_unit`).
    #[serde(rename = "acc_x")]
    AccX,
    /// Acceleration y.
    #[serde(rename = "acc_y")]
    AccY,
    /// Acceleration z.
    #[serde(rename = "acc_z")]
    AccZ,
    /// Angular velocity x (unit: `gyro_unit`).
    #[serde(rename = "gyro_x")]
    GyroX,
    /// Angular velocity y.
    #[serde(rename = "gyro_y")]
    GyroY,
    /// Angular velocity z.
    #[serde(rename = "gyro_z")]
    GyroZ,
    /// Device timestamp in seconds (fractions allowed).
    #[serde(rename = "t_s")]
    TimeS,
    /// Device timestamp in milliseconds.
    #[serde(rename = "t_ms")]
    TimeMs,
    /// Device timestamp in microseconds.
    #[serde(rename = "t_us")]
    TimeUs,
    /// Device timestamp in nanoseconds.
    #[serde(rename = "t_ns")]
    TimeNs,
    /// A column that is not used.
    #[serde(rename = "_")]
    Ignored,
}

impl CsvColumn {
    /// The six axes in output order: acc xyz, gyro xyz.
    pub const AXES: [CsvColumn; 6] = [
        Self::AccX,
        Self::AccY,
        Self::AccZ,
        Self::GyroX,
        Self::GyroY,
        Self::GyroZ,
    ];

    /// The name used in the config file.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AccX => "acc_x",
            Self::AccY => "acc_y",
            Self::AccZ => "acc_z",
            Self::GyroX => "gyro_x",
            Self::GyroY => "gyro_y",
            Self::GyroZ => "gyro_z",
            Self::TimeS => "t_s",
            Self::TimeMs => "t_ms",
            Self::TimeUs => "t_us",
            Self::TimeNs => "t_ns",
            Self::Ignored => "_",
        }
    }

    /// Whether this is a device timestamp column.
    #[must_use]
    pub fn is_time(self) -> bool {
        matches!(
            self,
            Self::TimeS | Self::TimeMs | Self::TimeUs | Self::TimeNs
        )
    }
}

/// Column separator of CSV lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CsvDelimiter {
    /// `,`
    Comma,
    /// `;`
    Semicolon,
    /// A tab.
    Tab,
    /// Runs of spaces or tabs.
    Whitespace,
}

/// Unit of the acceleration columns of CSV lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum AccUnit {
    /// Standard gravity (9.80665 m/s²).
    #[serde(rename = "g")]
    G,
    /// Metres per second squared.
    #[serde(rename = "m/s^2")]
    MetersPerSecond2,
}

/// Unit of the angular velocity columns of CSV lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum GyroUnit {
    /// Degrees per second.
    #[serde(rename = "deg/s")]
    DegPerSec,
    /// Radians per second.
    #[serde(rename = "rad/s")]
    RadPerSec,
}

/// An IMU on a serial port. The port may be absent at start (a USB device plugged in later) and
/// may disappear: it is reopened with exponential backoff, and the sensor's `state` says whether
/// it is connected.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImuSerialSettings {
    /// The port: `/dev/ttyUSB0`, `/dev/ttyTHS1`, or better a stable `/dev/serial/by-id/…` link.
    pub path: PathBuf,
    /// Line speed in bits per second.
    #[serde(default = "default_baud_rate")]
    pub baud_rate: u32,
    /// Data bits per character, 5 to 8.
    #[serde(default = "default_data_bits")]
    pub data_bits: DataBits,
    /// Parity bit.
    #[serde(default = "default_parity")]
    pub parity: SerialParity,
    /// Stop bits, 1 or 2.
    #[serde(default = "default_stop_bits")]
    pub stop_bits: StopBits,
    /// Flow control.
    #[serde(default = "default_flow_control")]
    pub flow_control: SerialFlowControl,
    /// What the device sends.
    pub protocol: SerialImuProtocol,
    /// `csv`: what each column holds, in order (`acc_x` … `gyro_z` once each, at most one
    /// device timestamp `t_s`/`t_ms`/`t_us`/`t_ns`, `_` for a column to ignore). Extra columns
    /// after the last listed one are ignored.
    #[serde(default)]
    pub csv_columns: Option<Vec<CsvColumn>>,
    /// `csv`: column separator (default `comma`).
    #[serde(default)]
    pub csv_delimiter: Option<CsvDelimiter>,
    /// `csv`: unit of the acceleration columns, `"g"` or `"m/s^2"` (required for csv).
    #[serde(default)]
    pub acc_unit: Option<AccUnit>,
    /// `csv`: unit of the angular velocity columns, `"deg/s"` or `"rad/s"` (required for csv).
    #[serde(default)]
    pub gyro_unit: Option<GyroUnit>,
    /// `witmotion`: accelerometer full scale configured on the sensor, in g (default 16).
    #[serde(default)]
    pub witmotion_acc_range_g: Option<f32>,
    /// `witmotion`: gyroscope full scale configured on the sensor, in deg/s (default 2000).
    #[serde(default)]
    pub witmotion_gyro_range_dps: Option<f32>,
    /// Nominal output rate of the device: the sample clock when the protocol carries no
    /// timestamp, and the rate windows are cut at.
    pub sample_rate_hz: ImuRateHz,
    /// Longest wait between attempts to reopen a missing or failed port (exponential backoff
    /// from 100 ms).
    #[serde(default = "BackoffMs::device_default")]
    pub reconnect_max_backoff_ms: BackoffMs,
}

/// An `imu_serial` source.
pub type ImuSerialConfig = Stream<ImuSerialSettings>;

impl StreamKind for ImuSerialSettings {
    const TYPE: &'static str = "imu_serial";
    const MODALITY: Modality = Modality::Imu;
    type Cut = SampleWindow;
    /// Sample blocks (~20 ms each) waiting for the windower.
    const QUEUE_CAPACITY: std::num::NonZeroUsize = crate::config::DEFAULT_SAMPLE_QUEUE;
    /// A live sensor never waits for the pipeline: the serial line cannot be paused.
    const WHEN_FULL: WhenFull = WhenFull::DropOldest;
}

/// Default accelerometer full scale of WitMotion sensors.
pub const DEFAULT_WITMOTION_ACC_RANGE_G: f32 = 16.0;
/// Default gyroscope full scale of WitMotion sensors.
pub const DEFAULT_WITMOTION_GYRO_RANGE_DPS: f32 = 2000.0;

fn default_baud_rate() -> u32 {
    115_200
}
fn default_data_bits() -> DataBits {
    DataBits::trusted(8)
}
fn default_parity() -> SerialParity {
    SerialParity::None
}
fn default_stop_bits() -> StopBits {
    StopBits::trusted(1)
}
fn default_flow_control() -> SerialFlowControl {
    SerialFlowControl::None
}

impl Kind for ImuSerialSettings {
    /// The port itself is not checked: a USB device may be plugged in after the daemon starts,
    /// and the source waits for it.
    fn validate(stream: &Stream<Self>, _config: &Config, s: &mut Scope<'_>) {
        let c = &stream.settings;
        if c.path.as_os_str().is_empty() {
            s.add("path", "must name a serial device");
        }
        protocol_keys(c, s);
        line_and_rate(stream, s);
    }

    fn open(stream: &Stream<Self>, cx: &BuildContext<'_>) -> Result<Box<dyn Source>, SourceError> {
        Ok(Box::new(ImuSerial::new(
            stream.name(),
            cx.resolve(&stream.settings.path),
            &stream.settings,
        )?))
    }

    fn processor(stream: &Stream<Self>) -> Result<Box<dyn Processor>, ProcessorError> {
        Ok(processor::imu::imu_windows(stream.cut))
    }
}

/// The keys that belong to the other protocol, and those this one requires.
fn protocol_keys(c: &ImuSerialSettings, s: &mut Scope<'_>) {
    let csv_only = [
        ("csv_columns", c.csv_columns.is_some()),
        ("csv_delimiter", c.csv_delimiter.is_some()),
        ("acc_unit", c.acc_unit.is_some()),
        ("gyro_unit", c.gyro_unit.is_some()),
    ];
    let witmotion_only = [
        ("witmotion_acc_range_g", c.witmotion_acc_range_g.is_some()),
        (
            "witmotion_gyro_range_dps",
            c.witmotion_gyro_range_dps.is_some(),
        ),
    ];
    let (foreign, protocol) = match c.protocol {
        SerialImuProtocol::Csv => (witmotion_only.as_slice(), "csv"),
        SerialImuProtocol::Witmotion => (csv_only.as_slice(), "witmotion"),
    };
    // Every check below depends on the protocol (not reported if it could not be read).
    for (field, _) in foreign.iter().filter(|(_, set)| *set) {
        s.related(
            field,
            &["protocol"],
            format!("does not apply to protocol = \"{protocol}\""),
        );
    }
    match c.protocol {
        SerialImuProtocol::Csv => {
            if c.acc_unit.is_none() {
                s.related(
                    "acc_unit",
                    &["protocol"],
                    "is required for csv: \"g\" or \"m/s^2\"",
                );
            }
            if c.gyro_unit.is_none() {
                s.related(
                    "gyro_unit",
                    &["protocol"],
                    "is required for csv: \"deg/s\" or \"rad/s\"",
                );
            }
            if let Some(columns) = &c.csv_columns {
                csv_columns(s, columns);
            }
        }
        SerialImuProtocol::Witmotion => {
            if c.flow_control == SerialFlowControl::Software {
                s.related(
                    "flow_control",
                    &["protocol"],
                    "software (XON/XOFF) flow control would eat bytes of binary frames",
                );
            }
        }
    }
}

fn csv_columns(s: &mut Scope<'_>, columns: &[CsvColumn]) {
    if columns.len() > MAX_COLUMNS {
        s.add(
            "csv_columns",
            format!("lists {} columns; at most {MAX_COLUMNS}", columns.len()),
        );
    }
    for axis in CsvColumn::AXES {
        match columns.iter().filter(|c| **c == axis).count() {
            0 => s.add("csv_columns", format!("has no {:?} column", axis.as_str())),
            1 => {}
            _ => s.add(
                "csv_columns",
                format!("lists {:?} more than once", axis.as_str()),
            ),
        }
    }
    if columns.iter().filter(|c| c.is_time()).count() > 1 {
        s.add("csv_columns", "lists more than one device timestamp column");
    }
}

/// The line's numbers, the WitMotion ranges, and the rate against the line and the window.
fn line_and_rate(stream: &Stream<ImuSerialSettings>, s: &mut Scope<'_>) {
    let c = &stream.settings;
    let baud_ok = s.check("baud_rate", u64::from(c.baud_rate), &limits::BAUD_RATE);
    let rate = c.sample_rate_hz.get();
    if c.protocol == SerialImuProtocol::Witmotion {
        s.optional(
            "witmotion_acc_range_g",
            c.witmotion_acc_range_g.map(f64::from),
            &limits::WITMOTION_ACC_RANGE_G,
        );
        s.optional(
            "witmotion_gyro_range_dps",
            c.witmotion_gyro_range_dps.map(f64::from),
            &limits::WITMOTION_GYRO_RANGE_DPS,
        );
        let bits_per_sample = limits::WITMOTION_BYTES_PER_SAMPLE * limits::SERIAL_BITS_PER_BYTE;
        if baud_ok && rate * bits_per_sample as f64 > f64::from(c.baud_rate) {
            s.related(
                "sample_rate_hz",
                &["baud_rate"],
                format!(
                    "{} Hz needs at least {} baud ({} bytes of WitMotion frames per sample), but \
                     baud_rate is {}: at most {} samples/s get through",
                    limits::number(rate),
                    (rate * bits_per_sample as f64).ceil(),
                    limits::WITMOTION_BYTES_PER_SAMPLE,
                    c.baud_rate,
                    u64::from(c.baud_rate) / bits_per_sample
                ),
            );
        }
    }
    s.window_at_rate(&stream.cut, rate, &["sample_rate_hz"]);
}
