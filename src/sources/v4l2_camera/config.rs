//! `type = "v4l2_camera"`: its keys, checks and build.

use serde::Deserialize;

use super::format::{ColourFormat, ColourRequest};
use super::{V4l2ColourCamera, NOMINAL_FPS};
use crate::config::{
    BackoffMs, Config, FrameInterval, FrameSidePx, Scope, Stream, StreamKind, WhenFull,
};
use crate::pipeline::processor::{self, Processor, ProcessorError};
use crate::sources::kind::{BuildContext, Kind};
use crate::sources::v4l2_thermal::config::check_device;
use crate::sources::{Source, SourceError};
use crate::Modality;

/// A colour camera through V4L2 (a UVC webcam, a CSI camera behind a V4L2 driver), captured
/// with memory-mapped streaming. The device need not exist when the daemon starts; while it is
/// missing or after it disappears the source logs once, publishes `connected: false` and
/// reopens it with exponential backoff.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct V4l2CameraSettings {
    /// `/dev/video0` (better a stable `/dev/v4l/by-id/…` link), or `card:<name>` for the first
    /// `/dev/video*` capture device whose card name contains `<name>`.
    pub device: String,
    /// Format to request; default: the first the camera offers of `YUYV`, `UYVY`, `MJPG`.
    #[serde(default)]
    pub pixel_format: Option<ColourFormat>,
    /// Frame width to request (with `height_px`); default: the smallest size offered whose
    /// shorter side is at least 224 px (ImageBind's input), else the largest.
    #[serde(default)]
    pub width_px: Option<FrameSidePx>,
    /// Frame height to request.
    #[serde(default)]
    pub height_px: Option<FrameSidePx>,
    /// Longest wait between attempts to reopen a missing or failed camera (exponential backoff
    /// from 100 ms).
    #[serde(default = "BackoffMs::device_default")]
    pub reconnect_max_backoff_ms: BackoffMs,
}

/// A `v4l2_camera` source.
pub type V4l2CameraConfig = Stream<V4l2CameraSettings>;

impl V4l2CameraSettings {
    /// What to ask the camera for.
    #[must_use]
    pub fn request(&self) -> ColourRequest {
        ColourRequest {
            pixel_format: self.pixel_format,
            size_px: self
                .width_px
                .zip(self.height_px)
                .map(|(w, h)| (w.px(), h.px())),
        }
    }
}

impl StreamKind for V4l2CameraSettings {
    const TYPE: &'static str = "v4l2_camera";
    const MODALITY: Modality = Modality::Vision;
    type Cut = FrameInterval;
    /// Frames waiting for preprocessing.
    const QUEUE_CAPACITY: std::num::NonZeroUsize = crate::config::DEFAULT_FRAME_QUEUE;
    /// The latest frame wins: the camera never waits.
    const WHEN_FULL: WhenFull = WhenFull::DropOldest;
}

impl Kind for V4l2CameraSettings {
    /// The device itself is not checked: a USB camera may be plugged in after the daemon
    /// starts, and the source waits for it.
    fn validate(stream: &Stream<Self>, _config: &Config, s: &mut Scope<'_>) {
        let c = &stream.settings;
        check_device(&c.device, s);
        match (c.width_px, c.height_px) {
            (Some(w), Some(_)) if w.get() % 2 != 0 => {
                s.add("width_px", "YUV pixels come in pairs: the width is even");
            }
            (Some(_), None) | (None, Some(_)) => {
                s.add("width_px", "width_px and height_px go together");
            }
            _ => {}
        }
    }

    fn open(stream: &Stream<Self>, _cx: &BuildContext<'_>) -> Result<Box<dyn Source>, SourceError> {
        Ok(Box::new(V4l2ColourCamera::new(
            stream.name(),
            &stream.settings,
            stream.cut.interval_ms.get(),
        )?))
    }

    fn processor(stream: &Stream<Self>) -> Result<Box<dyn Processor>, ProcessorError> {
        Ok(processor::vision::vision_frames(
            stream.cut.interval_ms,
            1e9 / NOMINAL_FPS,
        ))
    }
}
