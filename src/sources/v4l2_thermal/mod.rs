//! Thermal cameras through V4L2 (FLIR Lepton on PureThermal, InfiRay P2 Pro / Topdon TC001).
//!
//! - [`negotiate`]: pure choice of the format and size to set from what the camera offers.
//! - [`capture`]: the frame-source boundary ([`capture::FrameDevice`]) and the capture loop
//!   generic over it: decode, stamp, send, reopen with backoff.
//! - `device` (feature `v4l2`): the real camera, the `v4l` crate with memory-mapped streaming.
//!
//! - [`config`]: the `v4l2_thermal` keys, their checks and the build.
//!
//! The source runs on one named thread that owns the camera. The config variant exists and
//! validates without the feature; building the source then fails with a clear message.

pub mod capture;
pub mod config;
#[cfg(feature = "v4l2")]
pub mod device;
pub mod negotiate;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use self::capture::{CaptureSettings, DeviceError, ThermalBuffers};
pub use self::config::{
    ThermalLayout, V4l2PixelFormat, V4l2ThermalConfig, V4l2ThermalSettings,
    DEFAULT_LEPTON_TELEMETRY_ROWS,
};
use self::negotiate::FormatRequest;
use super::thermal_decode::{DecodeError, FrameLayout, PixelFormat, ThermalDecoder};
use super::{Source, SourceContext};

/// Frame rate assumed until the driver reports one: a Lepton on PureThermal delivers ~9 fps.
const LEPTON_FPS: f64 = 9.0;
/// Frame rate of the InfiRay P2 Pro / TC001.
const INFIRAY_FPS: f64 = 25.0;
/// A camera silent this long is closed and reopened (a wedged PureThermal needs a restart).
const STALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Problems building a `v4l2_thermal` source (the camera itself is opened when it runs).
#[derive(Debug, thiserror::Error)]
pub enum V4l2ThermalError {
    /// The binary has no V4L2 support.
    #[error(
        "source {name}: edgebind was built without the v4l2 feature (cargo build --features v4l2)"
    )]
    Unsupported {
        /// The source.
        name: String,
    },
    /// Format and layout do not go together.
    #[error("source {name}: {source}")]
    Layout {
        /// The source.
        name: String,
        /// Why.
        source: DecodeError,
    },
}

/// Which camera to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSelector {
    /// A device node (`/dev/video0`, `/dev/v4l/by-id/…`).
    Path(PathBuf),
    /// The first `/dev/video*` capture device whose card name contains this (case-insensitive).
    Card(String),
}

impl DeviceSelector {
    /// Reads the config's `device`: `card:<name>` or a path.
    #[must_use]
    pub fn parse(device: &str) -> Self {
        match device.strip_prefix("card:") {
            Some(card) => Self::Card(card.trim().to_string()),
            None => Self::Path(PathBuf::from(device)),
        }
    }
}

impl fmt::Display for DeviceSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Path(p) => write!(f, "{}", p.display()),
            Self::Card(c) => write!(f, "card:{c}"),
        }
    }
}

/// Whether a V4L2 card name matches the configured `card:<name>` (substring, any case).
#[must_use]
pub fn card_matches(card: &str, name: &str) -> bool {
    card.to_lowercase().contains(&name.to_lowercase())
}

/// The decoder's format for the config's.
#[must_use]
pub fn pixel_format(f: V4l2PixelFormat) -> PixelFormat {
    match f {
        V4l2PixelFormat::Y16 => PixelFormat::Y16,
        V4l2PixelFormat::Grey => PixelFormat::Grey,
        V4l2PixelFormat::Yuyv => PixelFormat::Yuyv,
        V4l2PixelFormat::Uyvy => PixelFormat::Uyvy,
    }
}

/// The decoder's layout for the config's.
#[must_use]
pub fn frame_layout(c: &V4l2ThermalSettings) -> FrameLayout {
    match c.layout {
        ThermalLayout::Plain => FrameLayout::Plain,
        ThermalLayout::Lepton => FrameLayout::Lepton {
            telemetry_rows: c.telemetry_rows.unwrap_or(DEFAULT_LEPTON_TELEMETRY_ROWS),
        },
        ThermalLayout::InfiraySplit => FrameLayout::InfiRaySplit,
    }
}

/// Nominal frame rate of a layout's camera, used until the driver reports one.
#[must_use]
pub fn nominal_fps(layout: ThermalLayout) -> f64 {
    match layout {
        ThermalLayout::InfiraySplit => INFIRAY_FPS,
        ThermalLayout::Plain | ThermalLayout::Lepton => LEPTON_FPS,
    }
}

/// A V4L2 thermal camera, built and ready to run.
#[derive(Debug)]
pub struct V4l2Thermal {
    selector: DeviceSelector,
    request: FormatRequest,
    settings: CaptureSettings,
}

impl V4l2Thermal {
    /// Builds source `name` of settings `c`, taking one frame per `interval_ms`. The camera is
    /// not opened here: a USB camera may be plugged in after the daemon starts.
    ///
    /// # Errors
    /// [`V4l2ThermalError::Unsupported`] without the `v4l2` feature; [`V4l2ThermalError::Layout`]
    /// for a format the layout cannot decode (validation rejects it first).
    pub fn new(
        name: &str,
        c: &V4l2ThermalSettings,
        interval_ms: u64,
    ) -> Result<Self, V4l2ThermalError> {
        let layout = frame_layout(c);
        let pixel_format = c.pixel_format.map(pixel_format);
        if let Some(format) = pixel_format {
            ThermalDecoder::new(format, layout).map_err(|source| V4l2ThermalError::Layout {
                name: name.to_string(),
                source,
            })?;
        }
        let source = Self {
            selector: DeviceSelector::parse(&c.device),
            request: FormatRequest {
                pixel_format,
                layout,
                size_px: c.width_px.zip(c.height_px).map(|(w, h)| (w.px(), h.px())),
            },
            settings: CaptureSettings {
                decoder: ThermalBuffers(layout),
                nominal_fps: nominal_fps(c.layout),
                max_backoff: c.reconnect_max_backoff_ms.duration(),
                stall_timeout: STALL_TIMEOUT,
                interval_ms,
            },
        };
        if cfg!(feature = "v4l2") {
            Ok(source)
        } else {
            Err(V4l2ThermalError::Unsupported {
                name: name.to_string(),
            })
        }
    }
}

impl Source for V4l2Thermal {
    fn sample_rate_hz(&self) -> f64 {
        self.settings.nominal_fps
    }

    fn run(self: Box<Self>, ctx: SourceContext) {
        let _span = tracing::info_span!("source", sensor = %ctx.name).entered();
        capture::run_capture(
            || open_camera(&self.selector, &self.request),
            &self.settings,
            &ctx,
        );
    }
}

#[cfg(feature = "v4l2")]
fn open_camera(
    selector: &DeviceSelector,
    request: &FormatRequest,
) -> Result<device::V4l2Camera, DeviceError> {
    device::V4l2Camera::open(selector, |offered| negotiate::choose(offered, request))
}

/// Without the feature no camera can be opened ([`V4l2Thermal::new`] refuses first).
#[cfg(not(feature = "v4l2"))]
fn open_camera(
    selector: &DeviceSelector,
    _request: &FormatRequest,
) -> Result<capture::NoCamera, DeviceError> {
    Err(DeviceError::Unsupported {
        device: selector.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_paths_or_card_names() {
        assert_eq!(
            DeviceSelector::parse("/dev/video0"),
            DeviceSelector::Path("/dev/video0".into())
        );
        assert_eq!(
            DeviceSelector::parse("card: PureThermal"),
            DeviceSelector::Card("PureThermal".into())
        );
        assert_eq!(
            DeviceSelector::parse("card:P2 Pro").to_string(),
            "card:P2 Pro"
        );
    }

    #[test]
    fn card_names_match_by_substring_in_any_case() {
        assert!(card_matches("PureThermal (fw:v1.3.0)", "purethermal"));
        assert!(!card_matches("Integrated Camera", "PureThermal"));
    }
}
