//! `type = "thermal_replay"` and `type = "depth_replay"`: a stack of camera frames replayed as a
//! camera, the same keys for both, with the preprocessing of the modality.

use std::path::PathBuf;

use serde::Deserialize;

use super::{load_stack, FrameKind, FramePacing, FrameReplay};
use crate::config::{
    limits, Config, DepthPreprocessConfig, FrameInterval, IntervalMs, ReplaySpeed, Scope, Stream,
    StreamKind, ThermalPreprocessConfig, WhenFull,
};
use crate::pipeline::processor::{self, Processor, ProcessorError};
use crate::sources::kind::{BuildContext, Kind};
use crate::sources::{Source, SourceError};
use crate::Modality;

/// What differs between replayed frame kinds: their preprocessing `Self` and what it needs.
pub trait ReplayedFrames:
    for<'de> Deserialize<'de> + Default + std::fmt::Debug + Clone + PartialEq + Send + Sync + 'static
{
    /// The source's `type`.
    const TYPE: &'static str;
    /// The modality of the frames.
    const MODALITY: Modality;
    /// Frame rate of a recording that does not say.
    fn default_fps() -> f64;
    /// What the recording must hold for this preprocessing.
    fn frame_kind(&self) -> FrameKind;
    /// The checks of the preprocessing options.
    fn validate(&self, s: &mut Scope<'_>);
    /// The stream's processor.
    ///
    /// # Errors
    /// [`ProcessorError`] when the preprocessing refuses its options.
    fn processor(
        &self,
        sensor: &str,
        interval_ms: IntervalMs,
        period_ns: f64,
    ) -> Result<Box<dyn Processor>, ProcessorError>;
}

/// A stack of camera frames replayed as a camera.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "P: ReplayedFrames"))]
pub struct FrameReplaySettings<P> {
    /// `.npy` `[N, H, W]` (or one `[H, W]` frame): uint8 or uint16 thermal, uint16 depth units.
    pub path: PathBuf,
    /// Frame rate of the recording (thermal 9, depth 30 by default).
    #[serde(default = "P::default_fps")]
    pub fps: f64,
    /// Replay pace.
    #[serde(default = "realtime")]
    pub speed: ReplaySpeed,
    /// Start again at the end.
    #[serde(default, rename = "loop")]
    pub looping: bool,
    /// Preprocessing options (and, for depth, calibration).
    #[serde(default)]
    pub preprocess: P,
}

fn realtime() -> ReplaySpeed {
    ReplaySpeed::Realtime
}

/// The settings of a `thermal_replay` source.
pub type ThermalReplaySettings = FrameReplaySettings<ThermalPreprocessConfig>;
/// The settings of a `depth_replay` source.
pub type DepthReplaySettings = FrameReplaySettings<DepthPreprocessConfig>;
/// A `thermal_replay` source.
pub type ThermalReplayConfig = Stream<ThermalReplaySettings>;
/// A `depth_replay` source.
pub type DepthReplayConfig = Stream<DepthReplaySettings>;

impl<P: ReplayedFrames> StreamKind for FrameReplaySettings<P> {
    const TYPE: &'static str = P::TYPE;
    const MODALITY: Modality = P::MODALITY;
    type Cut = FrameInterval;
    /// Frames waiting for preprocessing.
    const QUEUE_CAPACITY: std::num::NonZeroUsize = crate::config::DEFAULT_FRAME_QUEUE;
    /// `drop_oldest` would keep the latest frame, as a live camera would; a replay waits.
    const WHEN_FULL: WhenFull = WhenFull::Block;
}

impl<P: ReplayedFrames> Kind for FrameReplaySettings<P> {
    fn validate(stream: &Stream<Self>, config: &Config, s: &mut Scope<'_>) {
        let c = &stream.settings;
        if let Err(e) = load_stack(&config.resolve(&c.path), c.preprocess.frame_kind()) {
            s.add("path", e.to_string());
        }
        s.check("fps", c.fps, &limits::REPLAY_FPS);
        c.preprocess.validate(s);
    }

    fn open(stream: &Stream<Self>, cx: &BuildContext<'_>) -> Result<Box<dyn Source>, SourceError> {
        let c = &stream.settings;
        Ok(Box::new(FrameReplay::open(
            &cx.resolve(&c.path),
            c.preprocess.frame_kind(),
            FramePacing {
                fps: c.fps,
                interval_ms: stream.cut.interval_ms.get(),
                speed: c.speed,
                looping: c.looping,
            },
        )?))
    }

    fn processor(stream: &Stream<Self>) -> Result<Box<dyn Processor>, ProcessorError> {
        let c = &stream.settings;
        c.preprocess
            .processor(stream.name(), stream.cut.interval_ms, 1e9 / c.fps)
    }
}

impl ReplayedFrames for ThermalPreprocessConfig {
    const TYPE: &'static str = "thermal_replay";
    const MODALITY: Modality = Modality::Thermal;

    fn default_fps() -> f64 {
        9.0
    }

    fn frame_kind(&self) -> FrameKind {
        FrameKind::thermal(self.agc)
    }

    fn validate(&self, s: &mut Scope<'_>) {
        ThermalPreprocessConfig::validate(self, s);
    }

    fn processor(
        &self,
        sensor: &str,
        interval_ms: IntervalMs,
        period_ns: f64,
    ) -> Result<Box<dyn Processor>, ProcessorError> {
        processor::thermal::thermal_frames(sensor, interval_ms, self, period_ns)
    }
}

impl ReplayedFrames for DepthPreprocessConfig {
    const TYPE: &'static str = "depth_replay";
    const MODALITY: Modality = Modality::Depth;

    fn default_fps() -> f64 {
        30.0
    }

    fn frame_kind(&self) -> FrameKind {
        FrameKind::Depth
    }

    fn validate(&self, s: &mut Scope<'_>) {
        DepthPreprocessConfig::validate(self, s);
    }

    fn processor(
        &self,
        sensor: &str,
        interval_ms: IntervalMs,
        period_ns: f64,
    ) -> Result<Box<dyn Processor>, ProcessorError> {
        processor::depth::depth_frames(sensor, interval_ms, self, period_ns)
    }
}
