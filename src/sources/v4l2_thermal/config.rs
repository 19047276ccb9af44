//! `type = "v4l2_thermal"`: its keys, checks and build.

use serde::Deserialize;

use super::V4l2Thermal;
use crate::config::{
    limits, BackoffMs, Config, FrameInterval, FrameSidePx, Radiometric, Scope, Stream, StreamKind,
    ThermalAgc, ThermalPreprocessConfig, WhenFull,
};
use crate::pipeline::processor::{self, Processor, ProcessorError};
use crate::sources::kind::{BuildContext, Kind};
use crate::sources::{Source, SourceError};
use crate::Modality;

/// A V4L2 pixel format a thermal camera delivers (the FourCC, space included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct V4l2ThermalSettings {
    /// `/dev/video0` (better a stable `/dev/v4l/by-id/…` link), or `card:<name>` for the first
    /// `/dev/video*` capture device whose card name contains `<name>` (`card:PureThermal`).
    pub device: String,
    /// Format to request; default: the best the camera offers (`Y16 `, `GREY`, `YUYV`, `UYVY`
    /// in that order; `YUYV` for `infiray_split`).
    #[serde(default)]
    pub pixel_format: Option<V4l2PixelFormat>,
    /// How the buffer's rows are used.
    #[serde(default = "plain")]
    pub layout: ThermalLayout,
    /// `lepton`: telemetry rows after the image when telemetry is on (default 2, Lepton 3.x).
    #[serde(default)]
    pub telemetry_rows: Option<u32>,
    /// Buffer width to request (with `height_px`); default: the largest size offered.
    #[serde(default)]
    pub width_px: Option<FrameSidePx>,
    /// Buffer height to request, telemetry rows or both halves of a split frame included.
    #[serde(default)]
    pub height_px: Option<FrameSidePx>,
    /// Longest wait between attempts to reopen a missing or failed camera (exponential backoff
    /// from 100 ms).
    #[serde(default = "BackoffMs::device_default")]
    pub reconnect_max_backoff_ms: BackoffMs,
    /// Preprocessing options (`infiray_split` frames are kelvin × 64: `radiometric =
    /// "infiray64"` with `fixed_celsius`).
    #[serde(default)]
    pub preprocess: ThermalPreprocessConfig,
}

/// Telemetry rows of a Lepton 3.x with telemetry on (160x122 for 160x120).
pub const DEFAULT_LEPTON_TELEMETRY_ROWS: u32 = 2;

fn plain() -> ThermalLayout {
    ThermalLayout::Plain
}

/// A `v4l2_thermal` source.
pub type V4l2ThermalConfig = Stream<V4l2ThermalSettings>;

impl StreamKind for V4l2ThermalSettings {
    const TYPE: &'static str = "v4l2_thermal";
    const MODALITY: Modality = Modality::Thermal;
    type Cut = FrameInterval;
    /// Frames waiting for preprocessing.
    const QUEUE_CAPACITY: std::num::NonZeroUsize = crate::config::DEFAULT_FRAME_QUEUE;
    /// The latest frame wins: the camera never waits.
    const WHEN_FULL: WhenFull = WhenFull::DropOldest;
}

impl Kind for V4l2ThermalSettings {
    /// The device itself is not checked: a USB camera may be plugged in after the daemon
    /// starts, and the source waits for it.
    fn validate(stream: &Stream<Self>, _config: &Config, s: &mut Scope<'_>) {
        let c = &stream.settings;
        device_and_format(c, s);
        buffer_size(c, s);
        temperature_encoding(c, s);
        s.optional(
            "telemetry_rows",
            c.telemetry_rows.map(u64::from),
            &limits::TELEMETRY_ROWS,
        );
        c.preprocess.validate(s);
    }

    fn open(stream: &Stream<Self>, _cx: &BuildContext<'_>) -> Result<Box<dyn Source>, SourceError> {
        Ok(Box::new(V4l2Thermal::new(
            stream.name(),
            &stream.settings,
            stream.cut.interval_ms.get(),
        )?))
    }

    fn processor(stream: &Stream<Self>) -> Result<Box<dyn Processor>, ProcessorError> {
        let c = &stream.settings;
        processor::thermal::thermal_frames(
            stream.name(),
            stream.cut.interval_ms,
            &c.preprocess,
            1e9 / super::nominal_fps(c.layout),
        )
    }
}

/// The `device` key of a V4L2 camera: a path or `card:<name>` (also `v4l2_camera`'s).
pub fn check_device(device: &str, s: &mut Scope<'_>) {
    match device.strip_prefix("card:") {
        Some(card) if card.trim().is_empty() => s.add("device", "card: needs a card name"),
        Some(_) => {}
        None if !device.starts_with('/') => s.add(
            "device",
            format!("{device:?} must be a device path such as /dev/video0, or card:<name>"),
        ),
        None => {}
    }
}

fn device_and_format(c: &V4l2ThermalSettings, s: &mut Scope<'_>) {
    check_device(&c.device, s);
    let split = c.layout == ThermalLayout::InfiraySplit;
    if split && c.pixel_format.is_some_and(|f| f != V4l2PixelFormat::Yuyv) {
        s.add(
            "pixel_format",
            "layout \"infiray_split\" is a \"YUYV\" mode",
        );
    }
    if c.telemetry_rows.is_some() && c.layout != ThermalLayout::Lepton {
        s.add("telemetry_rows", "only applies to layout = \"lepton\"");
    }
}

fn buffer_size(c: &V4l2ThermalSettings, s: &mut Scope<'_>) {
    let (w, h) = match (c.width_px, c.height_px) {
        (None, None) => return,
        (Some(w), Some(h)) => (w.get(), h.get()),
        _ => return s.add("width_px", "width_px and height_px go together"),
    };
    match c.layout {
        ThermalLayout::InfiraySplit if h % 2 != 0 => {
            s.add("height_px", "a split frame has an even height");
        }
        ThermalLayout::Lepton => {
            let rows = u64::from(c.telemetry_rows.unwrap_or(DEFAULT_LEPTON_TELEMETRY_ROWS));
            if w % 4 != 0 || (h != w / 4 * 3 && h != w / 4 * 3 + rows) {
                s.add(
                    "height_px",
                    format!(
                        "a Lepton frame is width*3/4 rows, or width*3/4 + telemetry_rows ({rows})"
                    ),
                );
            }
        }
        _ => {}
    }
}

/// The preprocessing must read temperature the way this camera encodes it.
fn temperature_encoding(c: &V4l2ThermalSettings, s: &mut Scope<'_>) {
    if c.preprocess.agc != ThermalAgc::FixedCelsius {
        return;
    }
    let split = c.layout == ThermalLayout::InfiraySplit;
    match (split, c.preprocess.radiometric) {
        (true, Radiometric::CentiKelvin) => s.add(
            "preprocess.radiometric",
            "infiray_split frames are kelvin x 64: set \"infiray64\"",
        ),
        (false, Radiometric::Infiray64) => s.add(
            "preprocess.radiometric",
            "\"infiray64\" is the encoding of layout = \"infiray_split\"; \"Y16 \" frames are centi_kelvin",
        ),
        _ => {}
    }
    if !split && c.pixel_format.is_some_and(|f| f != V4l2PixelFormat::Y16) {
        s.add(
            "preprocess.agc",
            "fixed_celsius needs 16-bit frames (pixel_format \"Y16 \" or layout \"infiray_split\")",
        );
    }
}
