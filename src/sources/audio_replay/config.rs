//! `type = "audio_replay"`: its keys, checks and build.

use std::path::PathBuf;

use serde::Deserialize;

use super::{load_wav, AudioReplay};
use crate::config::{
    Clips, Config, ReplaySpeed, SampleWindow, Scope, Stream, StreamKind, WhenFull,
};
use crate::pipeline::processor::{self, Processor, ProcessorError};
use crate::sources::kind::{BuildContext, Kind, RateFrom};
use crate::sources::{Source, SourceError};
use crate::Modality;

/// A WAV file replayed as a microphone.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudioReplaySettings {
    /// WAV file: any rate and channel count; 8/16/24/32-bit integer or 32-bit float.
    pub path: PathBuf,
    /// Replay pace.
    #[serde(default = "realtime")]
    pub speed: ReplaySpeed,
    /// Start again at the end (capture times keep increasing).
    #[serde(default, rename = "loop")]
    pub looping: bool,
    /// ImageBind clips per window (`[S, 1, 128, 204]`); a 2 s window's clips are identical, so
    /// 1 gives the same embedding at a third of the encoder cost.
    #[serde(default)]
    pub clips: Clips,
}

fn realtime() -> ReplaySpeed {
    ReplaySpeed::Realtime
}

/// An `audio_replay` source.
pub type AudioReplayConfig = Stream<AudioReplaySettings>;

impl StreamKind for AudioReplaySettings {
    const TYPE: &'static str = "audio_replay";
    const MODALITY: Modality = Modality::Audio;
    type Cut = SampleWindow;
    /// Sample blocks (up to 1 s each) waiting for the windower.
    const QUEUE_CAPACITY: std::num::NonZeroUsize = crate::config::DEFAULT_SAMPLE_QUEUE;
    /// `block` is right for replays.
    const WHEN_FULL: WhenFull = WhenFull::Block;
}

impl Kind for AudioReplaySettings {
    const RATE_FROM: Option<RateFrom> = Some(RateFrom::Recording);

    fn validate(stream: &Stream<Self>, config: &Config, s: &mut Scope<'_>) {
        if let Err(e) = load_wav(&config.resolve(&stream.settings.path)) {
            s.add("path", e.to_string());
        }
    }

    fn open(stream: &Stream<Self>, cx: &BuildContext<'_>) -> Result<Box<dyn Source>, SourceError> {
        let c = &stream.settings;
        Ok(Box::new(AudioReplay::open(
            &cx.resolve(&c.path),
            c.speed,
            c.looping,
            (stream.cut.window_ms.get(), stream.cut.hop_ms.get()),
        )?))
    }

    fn processor(stream: &Stream<Self>) -> Result<Box<dyn Processor>, ProcessorError> {
        processor::audio::audio_windows(stream.name(), stream.cut, stream.settings.clips)
    }

    fn item_shape(stream: &Stream<Self>) -> Vec<usize> {
        Self::MODALITY.item_shape(stream.settings.clips.get())
    }
}
