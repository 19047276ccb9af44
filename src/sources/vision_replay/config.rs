//! `type = "vision_replay"`: its keys, checks and build.

use std::path::PathBuf;

use serde::Deserialize;

use super::files::{load_frames, VisionInput};
use crate::config::{
    limits, Config, FrameInterval, ReplaySpeed, Scope, Stream, StreamKind, WhenFull,
};
use crate::pipeline::processor::{self, Processor, ProcessorError};
use crate::sources::frame_replay::{FramePacing, FrameReplay, FrameStack};
use crate::sources::kind::{BuildContext, Kind};
use crate::sources::{Source, SourceError};
use crate::Modality;

/// PNG/JPEG pictures or a `.npy` RGB stack replayed as a colour camera.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VisionReplaySettings {
    /// A folder of PNG and JPEG pictures (played in file-name order), a glob pattern
    /// (`frames/*.jpg`, in name order), one picture, or a `.npy` uint8 stack `[N, H, W, 3]`.
    pub path: PathBuf,
    /// Frames per second the pictures are played at (one picture a second by default).
    #[serde(default = "one_fps")]
    pub fps: f64,
    /// Replay pace.
    #[serde(default = "realtime")]
    pub speed: ReplaySpeed,
    /// Start again at the end (capture times keep increasing).
    #[serde(default, rename = "loop")]
    pub looping: bool,
}

fn one_fps() -> f64 {
    1.0
}

fn realtime() -> ReplaySpeed {
    ReplaySpeed::Realtime
}

/// A `vision_replay` source.
pub type VisionReplayConfig = Stream<VisionReplaySettings>;

impl StreamKind for VisionReplaySettings {
    const TYPE: &'static str = "vision_replay";
    const MODALITY: Modality = Modality::Vision;
    type Cut = FrameInterval;
    /// Frames waiting for preprocessing.
    const QUEUE_CAPACITY: std::num::NonZeroUsize = crate::config::DEFAULT_FRAME_QUEUE;
    /// A replay waits rather than drop.
    const WHEN_FULL: WhenFull = WhenFull::Block;
}

impl Kind for VisionReplaySettings {
    fn validate(stream: &Stream<Self>, config: &Config, s: &mut Scope<'_>) {
        let c = &stream.settings;
        if let Err(e) = load_frames(&VisionInput::of(&config.resolve(&c.path))) {
            s.add("path", e.to_string());
        }
        s.check("fps", c.fps, &limits::REPLAY_FPS);
    }

    fn open(stream: &Stream<Self>, cx: &BuildContext<'_>) -> Result<Box<dyn Source>, SourceError> {
        let c = &stream.settings;
        let path = cx.resolve(&c.path);
        let frames = load_frames(&VisionInput::of(&path))?;
        Ok(Box::new(FrameReplay::from_frames(
            &path,
            FrameStack::Rgb8(frames),
            FramePacing {
                fps: c.fps,
                interval_ms: stream.cut.interval_ms.get(),
                speed: c.speed,
                looping: c.looping,
            },
        )))
    }

    fn processor(stream: &Stream<Self>) -> Result<Box<dyn Processor>, ProcessorError> {
        Ok(processor::vision::vision_frames(
            stream.cut.interval_ms,
            1e9 / stream.settings.fps,
        ))
    }
}
