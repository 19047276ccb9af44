//! The `imu_serial` source: line settings, protocols and CSV layouts.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::*;

/// Parity bit of a serial line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SerialImuProtocol {
    /// One sample per text line, columns as in `csv_columns`.
    Csv,
    /// WitMotion WT901-family binary frames (0x51 acceleration + 0x52 angular velocity; the
    /// 0x50 time frame, when enabled on the sensor, gives the device timestamp).
    Witmotion,
}

/// What one column of a CSV line holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum AccUnit {
    /// Standard gravity (9.80665 m/s²).
    #[serde(rename = "g")]
    G,
    /// Metres per second squared.
    #[serde(rename = "m/s^2")]
    MetersPerSecond2,
}

/// Unit of the angular velocity columns of CSV lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
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
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImuSerialConfig {
    /// Sensor name (topic segment): letters, digits, `-`, `_`.
    pub name: String,
    /// The port: `/dev/ttyUSB0`, `/dev/ttyTHS1`, or better a stable `/dev/serial/by-id/…` link.
    pub path: PathBuf,
    /// Line speed in bits per second.
    #[serde(default = "default_baud_rate")]
    pub baud_rate: u32,
    /// Data bits per character, 5 to 8.
    #[serde(default = "default_data_bits")]
    pub data_bits: u8,
    /// Parity bit.
    #[serde(default = "default_parity")]
    pub parity: SerialParity,
    /// Stop bits, 1 or 2.
    #[serde(default = "default_stop_bits")]
    pub stop_bits: u8,
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
    pub sample_rate_hz: f64,
    /// Window length.
    #[serde(default = "default_imu_window_ms")]
    pub window_ms: u64,
    /// Step between window starts.
    #[serde(default = "default_imu_hop_ms")]
    pub hop_ms: u64,
    /// Sample blocks (~20 ms each) waiting for the windower.
    #[serde(default = "default_sample_queue")]
    pub queue_capacity: usize,
    /// Policy of the sample queue. `drop_oldest` (default): a live sensor never waits for the
    /// pipeline, since the serial line cannot be paused.
    #[serde(default = "default_drop_oldest")]
    pub when_full: WhenFull,
    /// Longest wait between attempts to reopen a missing or failed port (exponential backoff
    /// from 100 ms).
    #[serde(default = "default_serial_max_backoff_ms")]
    pub reconnect_max_backoff_ms: u64,
}

/// Default accelerometer full scale of WitMotion sensors.
pub const DEFAULT_WITMOTION_ACC_RANGE_G: f32 = 16.0;
/// Default gyroscope full scale of WitMotion sensors.
pub const DEFAULT_WITMOTION_GYRO_RANGE_DPS: f32 = 2000.0;

pub(super) fn default_baud_rate() -> u32 {
    115_200
}
pub(super) fn default_data_bits() -> u8 {
    8
}
pub(super) fn default_parity() -> SerialParity {
    SerialParity::None
}
pub(super) fn default_stop_bits() -> u8 {
    1
}
pub(super) fn default_flow_control() -> SerialFlowControl {
    SerialFlowControl::None
}
pub(super) fn default_serial_max_backoff_ms() -> u64 {
    5_000
}
