//! The `[[sources]]` entries: one struct per source type, selected by `type`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::*;

/// How fast a replay source plays its recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplaySpeed {
    /// Paced by the recording's sample rate, as a live sensor would deliver it.
    Realtime,
    /// As fast as the pipeline accepts it.
    Max,
}

/// File format of an IMU recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImuFileFormat {
    /// Decide by the file extension (`.csv` or `.npy`).
    Auto,
    /// Text with a header naming the columns `acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z` (any order,
    /// other columns ignored; an optional `t_s` column gives the rate).
    Csv,
    /// NumPy float32 `[6, N]` (rows acc xyz, gyro xyz), with `sample_rate_hz`.
    Npy,
}

/// One sensor. `type` selects the source.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// Replays an IMU recording (CSV or `.npy`) as if it were a live sensor.
    ImuReplay(ImuReplayConfig),
    /// Replays a stack of thermal frames (`.npy` uint8 or uint16) as if it were a camera.
    ThermalReplay(ThermalReplayConfig),
    /// Replays a stack of depth frames (`.npy` uint16 depth units) as if it were a camera.
    DepthReplay(DepthReplayConfig),
    /// Replays a WAV file as if it were a microphone.
    AudioReplay(AudioReplayConfig),
    /// An IMU on a serial port (USB-UART, on-board UART) speaking CSV lines or WitMotion frames.
    ImuSerial(ImuSerialConfig),
    /// A thermal camera through V4L2 (FLIR Lepton on PureThermal, InfiRay P2 Pro / Topdon
    /// TC001); needs the `v4l2` Cargo feature at run time.
    V4l2Thermal(V4l2ThermalConfig),
    /// An Intel RealSense depth camera, or a RealSense recording played back (needs a build
    /// with the `realsense` feature).
    Realsense(RealsenseConfig),
    /// A microphone through ALSA (cpal); needs the `alsa` Cargo feature at run time.
    AlsaAudio(AlsaAudioConfig),
}

impl SourceConfig {
    /// The sensor name used in topics and metrics.
    #[must_use]
    pub fn name(&self) -> &str {
        match self {
            Self::ImuReplay(c) => &c.name,
            Self::ThermalReplay(c) => &c.name,
            Self::DepthReplay(c) => &c.name,
            Self::AudioReplay(c) => &c.name,
            Self::ImuSerial(c) => &c.name,
            Self::V4l2Thermal(c) => &c.name,
            Self::Realsense(c) => &c.name,
            Self::AlsaAudio(c) => &c.name,
        }
    }

    /// The modality this source feeds.
    #[must_use]
    pub fn modality(&self) -> crate::Modality {
        match self {
            Self::ImuReplay(_) | Self::ImuSerial(_) => crate::Modality::Imu,
            Self::ThermalReplay(_) | Self::V4l2Thermal(_) => crate::Modality::Thermal,
            Self::DepthReplay(_) | Self::Realsense(_) => crate::Modality::Depth,
            Self::AudioReplay(_) | Self::AlsaAudio(_) => crate::Modality::Audio,
        }
    }

    /// ImageBind clips per window of an audio source (`None` for other modalities): the
    /// model's second input dimension.
    #[must_use]
    pub fn audio_clips(&self) -> Option<usize> {
        match self {
            Self::AudioReplay(c) => Some(c.clips),
            Self::AlsaAudio(c) => Some(c.clips),
            _ => None,
        }
    }

    /// Capacity and policy of the queue between the source and its windower.
    #[must_use]
    pub fn queue(&self) -> (usize, WhenFull) {
        match self {
            Self::ImuReplay(c) => (c.queue_capacity, c.when_full),
            Self::ThermalReplay(c) => (c.queue_capacity, c.when_full),
            Self::DepthReplay(c) => (c.queue_capacity, c.when_full),
            Self::AudioReplay(c) => (c.queue_capacity, c.when_full),
            Self::ImuSerial(c) => (c.queue_capacity, c.when_full),
            Self::V4l2Thermal(c) => (c.queue_capacity, c.when_full),
            Self::Realsense(c) => (c.queue_capacity, c.when_full),
            Self::AlsaAudio(c) => (c.queue_capacity, c.when_full),
        }
    }
}

/// A stack of camera frames replayed as a camera (`thermal_replay`, `depth_replay`): the same
/// options for both, with the preprocessing of the modality (`P`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(
    deny_unknown_fields,
    bound(
        deserialize = "P: Deserialize<'de> + Default + FrameReplayKind",
        serialize = "P: Serialize"
    )
)]
pub struct FrameReplayConfig<P> {
    /// Sensor name (topic segment).
    pub name: String,
    /// `.npy` `[N, H, W]` (or one `[H, W]` frame): uint8 or uint16 thermal, uint16 depth units.
    pub path: PathBuf,
    /// Frame rate of the recording (thermal 9, depth 30 by default).
    #[serde(default = "P::default_fps")]
    pub fps: f64,
    /// Replay pace.
    #[serde(default = "default_speed")]
    pub speed: ReplaySpeed,
    /// Start again at the end.
    #[serde(default, rename = "loop")]
    pub looping: bool,
    /// One frame is embedded per interval (the others are counted as skipped); 0 = every frame.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// Frames waiting for preprocessing.
    #[serde(default = "default_frame_queue")]
    pub queue_capacity: usize,
    /// Queue policy (`drop_oldest` keeps the latest frame, as a live camera would).
    #[serde(default = "default_block")]
    pub when_full: WhenFull,
    /// Preprocessing options (and, for depth, calibration).
    #[serde(default)]
    pub preprocess: P,
}

/// What differs between replayed frame kinds besides their preprocessing.
pub trait FrameReplayKind {
    /// Frame rate of a recording that does not say.
    fn default_fps() -> f64;
}

impl FrameReplayKind for ThermalPreprocessConfig {
    fn default_fps() -> f64 {
        9.0
    }
}

impl FrameReplayKind for DepthPreprocessConfig {
    fn default_fps() -> f64 {
        30.0
    }
}

/// A stack of thermal frames replayed as a camera.
pub type ThermalReplayConfig = FrameReplayConfig<ThermalPreprocessConfig>;

/// A V4L2 pixel format a thermal camera delivers (the FourCC, space included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum V4l2PixelFormat {
    /// `"Y16 "`: 16-bit little-endian (Lepton raw counts, or centi-kelvin with radiometry on).
    #[serde(rename = "Y16 ", alias = "Y16")]
    Y16,
    /// `"GREY"`: 8-bit greyscale.
    #[serde(rename = "GREY")]
    Grey,
    /// `"YUYV"`: packed 4:2:2, the luma is used (InfiRay P2 Pro / TC001).
    #[serde(rename = "YUYV")]
    Yuyv,
    /// `"UYVY"`: packed 4:2:2, the luma is used (PureThermal's colourised default).
    #[serde(rename = "UYVY")]
    Uyvy,
}

/// How the rows of a thermal camera's buffer are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ThermalLayout {
    /// Every row is image.
    Plain,
    /// FLIR Lepton: a 4:3 image, optionally followed by `telemetry_rows` rows that are stripped.
    Lepton,
    /// InfiRay P2 Pro / TC001 256x384 `YUYV` mode: top half image, bottom half temperature
    /// (little-endian u16, kelvin × 64); the temperature half is used.
    InfiraySplit,
}

/// A thermal camera through V4L2, captured with memory-mapped streaming. The device need not
/// exist when the daemon starts; while it is missing or after it disappears the source logs
/// once, publishes `connected: false` and reopens it with exponential backoff.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct V4l2ThermalConfig {
    /// Sensor name (topic segment).
    pub name: String,
    /// `/dev/video0` (better a stable `/dev/v4l/by-id/…` link), or `card:<name>` for the first
    /// `/dev/video*` capture device whose card name contains `<name>` (`card:PureThermal`).
    pub device: String,
    /// Format to request; default: the best the camera offers (`Y16 `, `GREY`, `YUYV`, `UYVY`
    /// in that order; `YUYV` for `infiray_split`).
    #[serde(default)]
    pub pixel_format: Option<V4l2PixelFormat>,
    /// How the buffer's rows are used.
    #[serde(default = "default_thermal_layout")]
    pub layout: ThermalLayout,
    /// `lepton`: telemetry rows after the image when telemetry is on (default 2, Lepton 3.x).
    #[serde(default)]
    pub telemetry_rows: Option<u32>,
    /// Buffer width to request (with `height_px`); default: the largest size offered.
    #[serde(default)]
    pub width_px: Option<u32>,
    /// Buffer height to request, telemetry rows or both halves of a split frame included.
    #[serde(default)]
    pub height_px: Option<u32>,
    /// One frame is embedded per interval (the latest; the others are counted as skipped);
    /// 0 = every frame.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// Frames waiting for preprocessing.
    #[serde(default = "default_frame_queue")]
    pub queue_capacity: usize,
    /// Queue policy; `drop_oldest` (default): the latest frame wins, the camera never waits.
    #[serde(default = "default_drop_oldest")]
    pub when_full: WhenFull,
    /// Longest wait between attempts to reopen a missing or failed camera (exponential backoff
    /// from 100 ms).
    #[serde(default = "default_camera_max_backoff_ms")]
    pub reconnect_max_backoff_ms: u64,
    /// Preprocessing options (`infiray_split` frames are kelvin × 64: `radiometric =
    /// "infiray64"` with `fixed_celsius`).
    #[serde(default)]
    pub preprocess: ThermalPreprocessConfig,
}

/// Telemetry rows of a Lepton 3.x with telemetry on (160x122 for 160x120).
pub const DEFAULT_LEPTON_TELEMETRY_ROWS: u32 = 2;

pub(super) fn default_thermal_layout() -> ThermalLayout {
    ThermalLayout::Plain
}
pub(super) fn default_camera_max_backoff_ms() -> u64 {
    5_000
}

/// A stack of depth frames replayed as a camera.
pub type DepthReplayConfig = FrameReplayConfig<DepthPreprocessConfig>;

/// A WAV file replayed as a microphone.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AudioReplayConfig {
    /// Sensor name (topic segment).
    pub name: String,
    /// WAV file: any rate and channel count; 8/16/24/32-bit integer or 32-bit float.
    pub path: PathBuf,
    /// Replay pace.
    #[serde(default = "default_speed")]
    pub speed: ReplaySpeed,
    /// Start again at the end (capture times keep increasing).
    #[serde(default, rename = "loop")]
    pub looping: bool,
    /// Window length (ImageBind's clip is 2 s).
    #[serde(default = "default_audio_window_ms")]
    pub window_ms: u64,
    /// Step between window starts.
    #[serde(default = "default_audio_hop_ms")]
    pub hop_ms: u64,
    /// ImageBind clips per window (`[S, 1, 128, 204]`); a 2 s window's clips are identical, so
    /// 1 gives the same embedding at a third of the encoder cost.
    #[serde(default = "default_clips")]
    pub clips: usize,
    /// Sample blocks (~20 ms each) waiting for the windower.
    #[serde(default = "default_sample_queue")]
    pub queue_capacity: usize,
    /// Queue policy; `block` is right for replays.
    #[serde(default = "default_block")]
    pub when_full: WhenFull,
}

/// A sample format an ALSA device can deliver (converted to f32 in [-1, 1] on capture).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AudioSampleFormat {
    /// Signed 16-bit (divided by 32768, as torchaudio).
    I16,
    /// Signed 32-bit (divided by 2^31).
    I32,
    /// 32-bit float.
    F32,
}

/// A microphone through ALSA, captured with cpal. Rate, channels and format left unset are
/// negotiated from what the device supports (its default configuration first). The device is
/// opened when the daemon starts (a name that does not exist stops the start with the list of
/// devices); a device that disappears later is reopened with exponential backoff.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlsaAudioConfig {
    /// Sensor name (topic segment).
    pub name: String,
    /// ALSA PCM name: `default`, `hw:1,0`, `plughw:CARD=Device,DEV=0`, or a PCM defined in an
    /// asoundrc (it must carry a `hint { show on }` block to be listed).
    #[serde(default = "default_alsa_device")]
    pub device: String,
    /// Sample rate to request; default: the device's default rate.
    #[serde(default)]
    pub sample_rate_hz: Option<u32>,
    /// Channels to request (channel 0 is embedded); default: the device's default.
    #[serde(default)]
    pub channels: Option<u16>,
    /// Sample format to request: `i16`, `i32` or `f32`; default: the device's default.
    #[serde(default)]
    pub sample_format: Option<AudioSampleFormat>,
    /// Window length (ImageBind's clip is 2 s).
    #[serde(default = "default_audio_window_ms")]
    pub window_ms: u64,
    /// Step between window starts.
    #[serde(default = "default_audio_hop_ms")]
    pub hop_ms: u64,
    /// ImageBind clips per window.
    #[serde(default = "default_clips")]
    pub clips: usize,
    /// Sample blocks (one capture period each, ~10-20 ms) waiting for the windower.
    #[serde(default = "default_sample_queue")]
    pub queue_capacity: usize,
    /// Queue policy; `drop_oldest` (default): capture never waits for the pipeline.
    #[serde(default = "default_drop_oldest")]
    pub when_full: WhenFull,
    /// Longest wait between attempts to reopen a device that disappeared (exponential backoff
    /// from 100 ms).
    #[serde(default = "default_serial_max_backoff_ms")]
    pub reconnect_max_backoff_ms: u64,
    /// Test/diagnostic option: stop after this many frames (the source then ends like a finished
    /// replay). The ALSA `file` plugin repeats its last period forever at end of file, so tests
    /// feeding a known signal through it need this. Leave unset on a real microphone.
    #[serde(default)]
    pub max_frames: Option<u64>,
}

pub(super) fn default_alsa_device() -> String {
    "default".to_string()
}

pub(super) fn default_audio_window_ms() -> u64 {
    2_000
}
pub(super) fn default_audio_hop_ms() -> u64 {
    1_000
}
pub(super) fn default_clips() -> usize {
    1
}

/// An Intel RealSense depth camera (D400 family), or a recording of one played back.
/// Calibration comes from the camera (or the recording); `preprocess` values override it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RealsenseConfig {
    /// Sensor name (topic segment).
    pub name: String,
    /// Serial number of the camera to use; the first camera found when omitted.
    #[serde(default)]
    pub serial: Option<String>,
    /// A RealSense recording (`.bag`, or `.db3` from librealsense 2.57+) to play back instead of
    /// a live camera; librealsense paces playback in real time.
    #[serde(default)]
    pub recording: Option<PathBuf>,
    /// With `recording`: start again at the end.
    #[serde(default, rename = "loop")]
    pub looping: bool,
    /// Depth stream width.
    #[serde(default = "default_realsense_width_px")]
    pub width_px: u32,
    /// Depth stream height.
    #[serde(default = "default_realsense_height_px")]
    pub height_px: u32,
    /// Depth stream frame rate (a mode the camera offers: 6, 15, 30, 60, 90).
    #[serde(default = "default_realsense_fps")]
    pub fps: u32,
    /// One frame is embedded per interval (the others are counted as skipped); 0 = every frame.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// Frames waiting for preprocessing.
    #[serde(default = "default_realsense_queue")]
    pub queue_capacity: usize,
    /// Queue policy (`drop_oldest`, the default, keeps the latest frame).
    #[serde(default = "default_drop_oldest")]
    pub when_full: WhenFull,
    /// Longest wait between attempts to reopen a missing or failed camera (exponential backoff
    /// from 100 ms).
    #[serde(default = "default_serial_max_backoff_ms")]
    pub reconnect_max_backoff_ms: u64,
    /// Preprocessing options; calibration set here overrides the camera's.
    #[serde(default)]
    pub preprocess: DepthPreprocessConfig,
}

pub(super) fn default_realsense_width_px() -> u32 {
    640
}
pub(super) fn default_realsense_height_px() -> u32 {
    480
}
pub(super) fn default_realsense_fps() -> u32 {
    30
}
pub(super) fn default_realsense_queue() -> usize {
    2
}

pub(super) fn default_interval_ms() -> u64 {
    1000
}
pub(super) fn default_frame_queue() -> usize {
    4
}

/// An IMU recording replayed as a sensor.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImuReplayConfig {
    /// Sensor name (topic segment): letters, digits, `-`, `_`.
    pub name: String,
    /// The recording (relative paths are relative to the config file).
    pub path: PathBuf,
    /// File format.
    #[serde(default = "default_imu_format")]
    pub format: ImuFileFormat,
    /// Sample rate of the recording; required for `.npy`, optional for CSV with a `t_s` column.
    #[serde(default)]
    pub sample_rate_hz: Option<f64>,
    /// Replay pace.
    #[serde(default = "default_speed")]
    pub speed: ReplaySpeed,
    /// Start again at the end (timestamps keep increasing).
    #[serde(default, rename = "loop")]
    pub looping: bool,
    /// Window length.
    #[serde(default = "default_imu_window_ms")]
    pub window_ms: u64,
    /// Step between window starts.
    #[serde(default = "default_imu_hop_ms")]
    pub hop_ms: u64,
    /// Sample blocks waiting for the windower.
    #[serde(default = "default_sample_queue")]
    pub queue_capacity: usize,
    /// Policy of the sample queue; `block` is the right choice for replays (nothing is lost).
    #[serde(default = "default_block")]
    pub when_full: WhenFull,
}

pub(super) fn default_imu_format() -> ImuFileFormat {
    ImuFileFormat::Auto
}
pub(super) fn default_speed() -> ReplaySpeed {
    ReplaySpeed::Realtime
}
pub(super) fn default_imu_window_ms() -> u64 {
    5_000
}
pub(super) fn default_imu_hop_ms() -> u64 {
    1_000
}
pub(super) fn default_sample_queue() -> usize {
    64
}
pub(super) fn default_block() -> WhenFull {
    WhenFull::Block
}
