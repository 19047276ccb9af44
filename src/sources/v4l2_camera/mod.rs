//! Colour cameras through V4L2 (UVC webcams; `YUYV`, `UYVY` or `MJPG`), for the vision
//! modality. The capture loop, the device and the shared device loop are the thermal cameras'
//! (`v4l2_thermal::{capture, device}`, generic over the format and decoder); this kind brings
//! its formats, their negotiation and decoding ([`format`]) and its keys ([`config`]).
//!
//! The config variant exists and validates without the `v4l2` feature; building the source
//! then fails with a clear message.

pub mod config;
pub mod format;

use std::time::Duration;

pub use self::config::{V4l2CameraConfig, V4l2CameraSettings};
use self::format::{ColourBuffers, ColourRequest};
use super::v4l2_thermal::capture::{self, CaptureSettings, DeviceError};
use super::v4l2_thermal::DeviceSelector;
use super::{Source, SourceContext, SourceError};

/// Frame rate assumed until the driver reports one (UVC webcams at VGA).
pub const NOMINAL_FPS: f64 = 30.0;
/// A camera silent this long is closed and reopened.
const STALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A V4L2 colour camera, built and ready to run.
#[derive(Debug)]
pub struct V4l2ColourCamera {
    selector: DeviceSelector,
    request: ColourRequest,
    settings: CaptureSettings<ColourBuffers>,
}

impl V4l2ColourCamera {
    /// Builds source `name` of settings `c`, taking one frame per `interval_ms`. The camera is
    /// not opened here: a USB camera may be plugged in after the daemon starts.
    ///
    /// # Errors
    /// [`SourceError::NotBuilt`] without the `v4l2` feature.
    pub fn new(name: &str, c: &V4l2CameraSettings, interval_ms: u64) -> Result<Self, SourceError> {
        if !cfg!(feature = "v4l2") {
            return Err(SourceError::NotBuilt {
                name: name.to_string(),
                feature: "v4l2",
            });
        }
        Ok(Self {
            selector: DeviceSelector::parse(&c.device),
            request: c.request(),
            settings: CaptureSettings {
                decoder: ColourBuffers,
                nominal_fps: NOMINAL_FPS,
                max_backoff: c.reconnect_max_backoff_ms.duration(),
                stall_timeout: STALL_TIMEOUT,
                interval_ms,
            },
        })
    }
}

impl Source for V4l2ColourCamera {
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
    request: &ColourRequest,
) -> Result<super::v4l2_thermal::device::V4l2Camera<format::ColourFormat>, DeviceError> {
    super::v4l2_thermal::device::V4l2Camera::open(selector, |offered| {
        format::choose(offered, request)
    })
}

/// Without the feature no camera can be opened ([`V4l2ColourCamera::new`] refuses first).
#[cfg(not(feature = "v4l2"))]
fn open_camera(
    selector: &DeviceSelector,
    _request: &ColourRequest,
) -> Result<capture::NoCamera, DeviceError> {
    Err(DeviceError::Unsupported {
        device: selector.to_string(),
    })
}
