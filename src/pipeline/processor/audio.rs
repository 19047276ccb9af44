//! Audio windows of channel 0 → `[clips, 1, 128, 204]` (SPEC.md §2).

use ndarray::{Array4, ArrayD};

use super::{Processor, ProcessorError, SampleTensor, SampleWindows};
use crate::config::{Clips, SampleWindow};
use crate::preprocess::audio::{AudioError, AudioParams, AudioPreprocessor};
use crate::sources::SourceMessage;
use crate::window::{Window, Windower};
use crate::Modality;

/// The processor of an audio stream: windows cut as `cut` says, `clips` ImageBind clips each.
///
/// # Errors
/// [`ProcessorError`] when the preprocessing refuses its parameters.
pub fn audio_windows(
    sensor: &str,
    cut: SampleWindow,
    clips: Clips,
) -> Result<Box<dyn Processor>, ProcessorError> {
    let pre =
        AudioWindows::new(clips).map_err(|e| ProcessorError::new(sensor, Modality::Audio, e))?;
    Ok(Box::new(SampleWindows::new(cut, pre)))
}

/// The audio preprocessing (resampling kernels cached per input rate) with its clip count.
#[derive(Debug)]
pub struct AudioWindows {
    pre: Box<AudioPreprocessor>,
    clips: Clips,
}

impl AudioWindows {
    /// ImageBind's audio preprocessing, `clips` clips per window.
    ///
    /// # Errors
    /// [`AudioError`] when the preprocessing refuses its parameters.
    pub fn new(clips: Clips) -> Result<Self, AudioError> {
        Ok(Self {
            pre: Box::new(AudioPreprocessor::new(AudioParams::default())?),
            clips,
        })
    }
}

impl SampleTensor for AudioWindows {
    type Sample = f32;
    type Error = AudioError;
    const DROPPED: &'static str = "audio block";

    fn rate_hz(message: &SourceMessage) -> Option<f64> {
        match message {
            SourceMessage::Audio { sample_rate_hz, .. } => Some(f64::from(*sample_rate_hz)),
            _ => None,
        }
    }

    fn drops(_message: &SourceMessage) -> u64 {
        1
    }

    fn push(message: SourceMessage, w: &mut Windower<f32>, out: &mut Vec<Window<f32>>) {
        let SourceMessage::Audio {
            sample_rate_hz,
            channels,
            first_seq,
            first_t,
            interleaved,
        } = message
        else {
            return;
        };
        let channels = usize::from(channels.max(1));
        let rate_hz = u64::from(sample_rate_hz.max(1));
        // ImageBind uses channel 0 only (kaldi fbank, channel=-1 → 0). Sample times in integer
        // nanoseconds, rounded half up: exact, and per sample cheaper than f64::round, a libm
        // call on baseline x86-64.
        let channel_0 = interleaved
            .chunks_exact(channels)
            .zip(0u64..)
            .map(|(frame, k)| {
                let t = first_t.plus_ns((k * 1_000_000_000 + rate_hz / 2) / rate_hz);
                (t, frame[0])
            });
        w.push_block(first_seq, channel_0, out);
    }

    fn tensor(&mut self, window: &Window<f32>) -> Result<ArrayD<f32>, AudioError> {
        // The window's rate is the device's whole-hertz rate.
        let rate_hz = window.sample_rate_hz.round() as u32;
        self.pre
            .window_tensor(&window.samples, rate_hz, self.clips.n())
            .map(Array4::into_dyn)
    }
}
