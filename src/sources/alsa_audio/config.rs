//! `type = "alsa_audio"`: its keys, checks and build.

use serde::Deserialize;

use super::AlsaAudio;
use crate::config::{
    limits, BackoffMs, Clips, Config, SampleWindow, Scope, Stream, StreamKind, WhenFull,
};
use crate::pipeline::processor::{self, Processor, ProcessorError};
use crate::sources::kind::{BuildContext, Kind, RateFrom};
use crate::sources::{Source, SourceError};
use crate::Modality;

/// A sample format an ALSA device can deliver (converted to f32 in [-1, 1] on capture).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlsaAudioSettings {
    /// ALSA PCM name: `default`, `hw:1,0`, `plughw:CARD=Device,DEV=0`, or a PCM defined in an
    /// asoundrc (it must carry a `hint { show on }` block to be listed).
    #[serde(default = "default_device")]
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
    /// ImageBind clips per window.
    #[serde(default)]
    pub clips: Clips,
    /// Longest wait between attempts to reopen a device that disappeared (exponential backoff
    /// from 100 ms).
    #[serde(default = "BackoffMs::device_default")]
    pub reconnect_max_backoff_ms: BackoffMs,
    /// Test/diagnostic option: stop after this many frames (the source then ends like a finished
    /// replay). The ALSA `file` plugin repeats its last period forever at end of file, so tests
    /// feeding a known signal through it need this. Leave unset on a real microphone.
    #[serde(default)]
    pub max_frames: Option<u64>,
}

fn default_device() -> String {
    "default".to_string()
}

/// An `alsa_audio` source.
pub type AlsaAudioConfig = Stream<AlsaAudioSettings>;

impl StreamKind for AlsaAudioSettings {
    const TYPE: &'static str = "alsa_audio";
    const MODALITY: Modality = Modality::Audio;
    type Cut = SampleWindow;
    /// Sample blocks (one capture period each, ~10-20 ms) waiting for the windower.
    const QUEUE_CAPACITY: std::num::NonZeroUsize = crate::config::DEFAULT_SAMPLE_QUEUE;
    /// Capture never waits for the pipeline.
    const WHEN_FULL: WhenFull = WhenFull::DropOldest;
}

impl Kind for AlsaAudioSettings {
    const RATE_FROM: Option<RateFrom> = Some(RateFrom::Device);

    /// The device itself is not checked here (`check` must not need the sound card); the daemon
    /// opens it when it starts.
    fn validate(stream: &Stream<Self>, _config: &Config, s: &mut Scope<'_>) {
        let c = &stream.settings;
        if c.device.trim().is_empty() {
            s.add(
                "device",
                "must name an ALSA PCM such as \"default\" or \"hw:1,0\"",
            );
        }
        let rate_ok = s.optional(
            "sample_rate_hz",
            c.sample_rate_hz.map(u64::from),
            &limits::AUDIO_SAMPLE_RATE_HZ,
        );
        s.optional(
            "channels",
            c.channels.map(u64::from),
            &limits::AUDIO_CHANNELS,
        );
        s.optional("max_frames", c.max_frames, &limits::MAX_FRAMES);
        if let (Some(rate), true) = (c.sample_rate_hz, rate_ok) {
            s.window_at_rate(&stream.cut, f64::from(rate), &["sample_rate_hz"]);
        }
    }

    fn open(stream: &Stream<Self>, _cx: &BuildContext<'_>) -> Result<Box<dyn Source>, SourceError> {
        Ok(Box::new(AlsaAudio::new(stream)?))
    }

    fn processor(stream: &Stream<Self>) -> Result<Box<dyn Processor>, ProcessorError> {
        processor::audio::audio_windows(stream.name(), stream.cut, stream.settings.clips)
    }

    fn item_shape(stream: &Stream<Self>) -> Vec<usize> {
        Self::MODALITY.item_shape(stream.settings.clips.get())
    }
}
