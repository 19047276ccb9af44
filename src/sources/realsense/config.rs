//! `type = "realsense"`: its keys, checks and build.

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::{
    unreadable, BackoffMs, Config, DepthPreprocessConfig, FrameInterval, FrameSidePx, RealsenseFps,
    Scope, Stream, StreamKind, WhenFull,
};
use crate::pipeline::processor::{self, Processor, ProcessorError};
use crate::sources::kind::{BuildContext, Kind};
use crate::sources::{Source, SourceError};
use crate::Modality;

/// An Intel RealSense depth camera (D400 family), or a recording of one played back.
/// Calibration comes from the camera (or the recording); `preprocess` values override it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealsenseSettings {
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
    #[serde(default = "default_width_px")]
    pub width_px: FrameSidePx,
    /// Depth stream height.
    #[serde(default = "default_height_px")]
    pub height_px: FrameSidePx,
    /// Depth stream frame rate (a mode the camera offers: 6, 15, 30, 60, 90).
    #[serde(default = "default_fps")]
    pub fps: RealsenseFps,
    /// Longest wait between attempts to reopen a missing or failed camera (exponential backoff
    /// from 100 ms).
    #[serde(default = "BackoffMs::device_default")]
    pub reconnect_max_backoff_ms: BackoffMs,
    /// Preprocessing options; calibration set here overrides the camera's.
    #[serde(default)]
    pub preprocess: DepthPreprocessConfig,
}

fn default_width_px() -> FrameSidePx {
    FrameSidePx::trusted(640)
}
fn default_height_px() -> FrameSidePx {
    FrameSidePx::trusted(480)
}
fn default_fps() -> RealsenseFps {
    RealsenseFps::trusted(30)
}

/// A `realsense` source.
pub type RealsenseConfig = Stream<RealsenseSettings>;

impl StreamKind for RealsenseSettings {
    const TYPE: &'static str = "realsense";
    const MODALITY: Modality = Modality::Depth;
    type Cut = FrameInterval;
    /// Frames waiting for preprocessing.
    const QUEUE_CAPACITY: std::num::NonZeroUsize = match std::num::NonZeroUsize::new(2) {
        Some(n) => n,
        None => std::num::NonZeroUsize::MIN,
    };
    /// The latest frame wins: the camera never waits.
    const WHEN_FULL: WhenFull = WhenFull::DropOldest;
}

impl Kind for RealsenseSettings {
    /// A live camera is not looked for (it may be plugged in later); a recording must exist.
    fn validate(stream: &Stream<Self>, config: &Config, s: &mut Scope<'_>) {
        let c = &stream.settings;
        if !cfg!(feature = "realsense") {
            s.add(
                "type",
                "edgebind was built without the realsense feature (cargo build --features realsense)",
            );
        }
        match &c.recording {
            Some(rec) => {
                if let Some(m) = unreadable(&config.resolve(rec)) {
                    s.add("recording", m);
                }
                if c.serial.is_some() {
                    s.add("serial", "does not apply to a recording");
                }
            }
            None if c.looping => s.add("loop", "applies only to a recording"),
            None => {}
        }
        if c.serial.as_ref().is_some_and(|s| s.trim().is_empty()) {
            s.add("serial", "must not be empty (omit it for the first camera)");
        }
        c.preprocess.validate(s);
    }

    #[cfg(feature = "realsense")]
    fn open(stream: &Stream<Self>, cx: &BuildContext<'_>) -> Result<Box<dyn Source>, SourceError> {
        Ok(Box::new(super::Realsense::new(
            stream.name(),
            &stream.settings,
            stream.settings.recording.as_ref().map(|p| cx.resolve(p)),
        )?))
    }

    #[cfg(not(feature = "realsense"))]
    fn open(stream: &Stream<Self>, _cx: &BuildContext<'_>) -> Result<Box<dyn Source>, SourceError> {
        Err(SourceError::NotBuilt {
            name: stream.name().to_string(),
            feature: "realsense",
        })
    }

    fn processor(stream: &Stream<Self>) -> Result<Box<dyn Processor>, ProcessorError> {
        let c = &stream.settings;
        processor::depth::depth_frames(
            stream.name(),
            stream.cut.interval_ms,
            &c.preprocess,
            1e9 / f64::from(c.fps.fps()),
        )
    }
}
