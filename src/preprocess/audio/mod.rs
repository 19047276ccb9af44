//! ImageBind-exact audio preprocessing (SPEC.md §2), pure Rust, no I/O.
//!
//! Pipeline of `imagebind.data.load_and_transform_audio_data`:
//! resample every channel to 16 kHz ([`SincResampler`]) → cut clips ([`clip_ranges`]) →
//! per clip, in order, subtract the clip's mean over all channels **in place** on the shared
//! resampled buffer → Kaldi fbank of channel 0 ([`KaldiFbank`]) → pad/crop to 204 frames →
//! `(x - mean) / std` → `[clips, 1, 128, 204]`.
//!
//! # Layout
//! - `resample`: torchaudio `functional.resample` with sparse taps.
//! - `fbank`: torchaudio `compliance.kaldi.fbank` as ImageBind calls it.
//! - `clips`: pytorchvideo `ConstantClipsPerVideoSampler` with exact rational arithmetic.

mod clips;
mod fbank;
mod resample;

use std::collections::HashMap;

use ndarray::{Array2, Array4, ArrayViewMut4, Axis};

pub use clips::{
    clip_ranges, CLIP_DURATION_S, CLIP_SAMPLES, CLIP_SAMPLE_RATE_HZ, DEFAULT_CLIPS, MAX_CLIPS,
};
pub use fbank::{
    KaldiFbank, FFT_SIZE, FRAME_LENGTH, FRAME_SHIFT, MAX_MEL_BINS, MIN_FBANK_SAMPLES, MIN_MEL_BINS,
};
pub use resample::{SincResampler, MAX_SAMPLE_RATE_HZ};

/// Errors of the audio preprocessing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AudioError {
    /// No channels, or channels without samples.
    #[error("audio input is empty: {what}")]
    Empty {
        /// Which part of the input is empty.
        what: &'static str,
    },
    /// Fewer samples than one 400-sample Kaldi frame.
    #[error("{what} has {samples} samples, at least {min} are needed")]
    TooShort {
        /// Which signal is too short.
        what: &'static str,
        /// Samples present.
        samples: usize,
        /// Samples required.
        min: usize,
    },
    /// Sample rate 0 or above the supported maximum.
    #[error("{field} = {sample_rate_hz} Hz is not in 1..={max_hz} Hz")]
    InvalidSampleRate {
        /// Which rate.
        field: &'static str,
        /// The rejected rate.
        sample_rate_hz: u32,
        /// Highest supported rate.
        max_hz: u32,
    },
    /// Planar channels of different lengths.
    #[error("channel {channel} has {actual} samples, channel 0 has {expected}")]
    ChannelLengthMismatch {
        /// Index of the offending channel.
        channel: usize,
        /// Length of channel 0.
        expected: usize,
        /// Length of this channel.
        actual: usize,
    },
    /// A NaN or infinite sample.
    #[error("channel {channel} sample {index} is not finite ({value})")]
    NonFinite {
        /// Channel index.
        channel: usize,
        /// Sample index within the channel.
        index: usize,
        /// The offending value.
        value: f32,
    },
    /// Clip count 0 or too large.
    #[error("clips = {clips} is not in 1..={max}")]
    InvalidClips {
        /// Requested clip count.
        clips: usize,
        /// Largest accepted count.
        max: usize,
    },
    /// An [`AudioParams`] field is unusable.
    #[error("invalid audio parameter {field}: {reason}")]
    InvalidParams {
        /// Field name.
        field: &'static str,
        /// Why it is rejected.
        reason: String,
    },
    /// An output buffer has the wrong shape.
    #[error("{what}: expected {expected}, got {actual}")]
    ShapeMismatch {
        /// Which dimension.
        what: &'static str,
        /// Expected size.
        expected: usize,
        /// Actual size.
        actual: usize,
    },
    /// The FFT library rejected its buffers (cannot happen with the planned sizes).
    #[error("FFT failed: {0}")]
    Fft(String),
}

/// ImageBind's audio constants (data.py L118-128). Model inputs change with any of them.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioParams {
    /// Mel bins (rows of each clip's spectrogram). ImageBind: 128.
    pub num_mel_bins: usize,
    /// Frames per clip after padding/cropping (columns). ImageBind: 204.
    pub target_length: usize,
    /// Normalisation mean (log-mel units). ImageBind: -4.268.
    pub mean: f32,
    /// Normalisation standard deviation (log-mel units). ImageBind: 9.138.
    pub std: f32,
}

impl Default for AudioParams {
    fn default() -> Self {
        Self {
            num_mel_bins: 128,
            target_length: 204,
            mean: -4.268,
            std: 9.138,
        }
    }
}

/// Largest `target_length` accepted (bounds output allocations).
pub const MAX_TARGET_LENGTH: usize = 65_536;

/// ImageBind audio preprocessor: fbank tables, one resampler per input rate (built on first
/// use) and reusable buffers. Not thread-safe by design (`&mut self`); build one per thread.
#[derive(Debug)]
pub struct AudioPreprocessor {
    params: AudioParams,
    fbank: KaldiFbank,
    resamplers: HashMap<u32, SincResampler>,
    /// Resampled channels of the current input (reused between calls).
    channels_16k: Vec<Vec<f32>>,
}

impl AudioPreprocessor {
    /// Precomputes the fbank tables for `params`.
    ///
    /// # Errors
    /// [`AudioError::InvalidParams`] if `num_mel_bins` is outside 4..=1024, `target_length` is 0
    /// or above [`MAX_TARGET_LENGTH`], `mean` is not finite or `std` is not finite and non-zero.
    pub fn new(params: AudioParams) -> Result<Self, AudioError> {
        if params.target_length == 0 || params.target_length > MAX_TARGET_LENGTH {
            return Err(AudioError::InvalidParams {
                field: "target_length",
                reason: format!("{} is not in 1..={MAX_TARGET_LENGTH}", params.target_length),
            });
        }
        if !params.mean.is_finite() {
            return Err(AudioError::InvalidParams {
                field: "mean",
                reason: format!("{} is not finite", params.mean),
            });
        }
        if !params.std.is_finite() || params.std == 0.0 {
            return Err(AudioError::InvalidParams {
                field: "std",
                reason: format!("{} must be finite and non-zero", params.std),
            });
        }
        let fbank = KaldiFbank::new(params.num_mel_bins)?;
        Ok(Self {
            params,
            fbank,
            resamplers: HashMap::new(),
            channels_16k: Vec::new(),
        })
    }

    /// The parameters this preprocessor was built with.
    pub fn params(&self) -> &AudioParams {
        &self.params
    }

    /// Resamples one channel from `sample_rate_hz` to 16 kHz exactly like
    /// `torchaudio.functional.resample` (a copy when the rate already is 16 kHz).
    ///
    /// # Errors
    /// [`AudioError::InvalidSampleRate`] for rate 0 or above [`MAX_SAMPLE_RATE_HZ`];
    /// [`AudioError::NonFinite`] for NaN/inf samples.
    pub fn resample(
        &mut self,
        samples: &[f32],
        sample_rate_hz: u32,
    ) -> Result<Vec<f32>, AudioError> {
        check_finite(0, samples)?;
        let mut out = Vec::new();
        self.resampler(sample_rate_hz)?
            .process_into(samples, &mut out);
        Ok(out)
    }

    /// Log-mel spectrogram `[num_mel_bins, target_length]` of 16 kHz samples, zero-padded or
    /// cropped, before normalisation (ImageBind's `waveform2melspec` without the mean removal,
    /// which the per-frame DC removal cancels anyway).
    ///
    /// # Errors
    /// [`AudioError::TooShort`] below 400 samples; [`AudioError::NonFinite`] for NaN/inf.
    pub fn fbank(&mut self, samples_16k: &[f32]) -> Result<Array2<f32>, AudioError> {
        check_finite(0, samples_16k)?;
        let mut out = Array2::zeros((self.params.num_mel_bins, self.params.target_length));
        self.fbank.compute_into(samples_16k, out.view_mut())?;
        Ok(out)
    }

    /// Channel-0 samples that kaldi.fbank sees for each clip of ImageBind's file loader: all
    /// channels resampled, then per clip (in order) the mean over all channels of that clip is
    /// subtracted in place on the shared buffer, so overlapping clips see earlier subtractions.
    ///
    /// # Errors
    /// As [`AudioPreprocessor::file_tensor`].
    pub fn file_clip_inputs<C: AsRef<[f32]>>(
        &mut self,
        planar: &[C],
        sample_rate_hz: u32,
        clips: usize,
    ) -> Result<Vec<Vec<f32>>, AudioError> {
        let ranges = self.prepare_file(planar, sample_rate_hz, clips)?;
        let mut out = Vec::with_capacity(ranges.len());
        for &(start, end) in &ranges {
            subtract_clip_mean(&mut self.channels_16k, start, end);
            let ch0 = self.channels_16k.first().map(Vec::as_slice).unwrap_or(&[]);
            out.push(ch0.get(start..end).unwrap_or(&[]).to_vec());
        }
        Ok(out)
    }

    /// ImageBind's `load_and_transform_audio_data` for one decoded file: `planar[c][i]` is
    /// sample `i` of channel `c` in [-1, 1] (int16 / 32768). Returns `[clips, 1, mels, frames]`
    /// (`[3, 1, 128, 204]` with ImageBind's defaults).
    ///
    /// # Errors
    /// [`AudioError::Empty`] without channels or samples; [`AudioError::ChannelLengthMismatch`];
    /// [`AudioError::NonFinite`]; [`AudioError::InvalidSampleRate`]; [`AudioError::InvalidClips`];
    /// [`AudioError::TooShort`] if fewer than 400 samples remain at 16 kHz.
    pub fn file_tensor<C: AsRef<[f32]>>(
        &mut self,
        planar: &[C],
        sample_rate_hz: u32,
        clips: usize,
    ) -> Result<Array4<f32>, AudioError> {
        let ranges = self.prepare_file(planar, sample_rate_hz, clips)?;
        let (mels, width) = (self.params.num_mel_bins, self.params.target_length);
        let mut out = Array4::zeros((ranges.len(), 1, mels, width));
        for (mut clip_out, &(start, end)) in out.axis_iter_mut(Axis(0)).zip(&ranges) {
            subtract_clip_mean(&mut self.channels_16k, start, end);
            let ch0 = self.channels_16k.first().map(Vec::as_slice).unwrap_or(&[]);
            let clip = ch0.get(start..end).unwrap_or(&[]);
            self.fbank
                .compute_into(clip, clip_out.index_axis_mut(Axis(0), 0))?;
        }
        normalise(out.view_mut().into_dyn(), &self.params);
        Ok(out)
    }

    /// The daemon's fast path for one window of channel 0: same result as
    /// [`AudioPreprocessor::file_tensor`] on the whole multi-channel window, resampling only
    /// channel 0.
    ///
    /// Why only channel 0 is needed: the other channels enter ImageBind's result only through
    /// the per-clip mean subtraction, a constant over the clip that kaldi's per-frame DC removal
    /// cancels (up to f32 rounding; checked against `window_2s_44k1_stereo.out.npy`, stereo,
    /// in `tests/preprocess_audio.rs`). That holds whenever clips are identical (every 2 s
    /// window: all clips are `[0, 32000)`, computed once and copied) or disjoint. When clips
    /// partially overlap (windows between 2 s and 6 s) the earlier clip's mean shifts part of a
    /// later clip; we then apply the in-place subtraction with channel 0's mean, which is exact
    /// for mono input and differs from ImageBind only in the frames straddling the overlap
    /// boundary for multi-channel input.
    ///
    /// # Errors
    /// As [`AudioPreprocessor::file_tensor`].
    pub fn window_tensor(
        &mut self,
        channel0: &[f32],
        sample_rate_hz: u32,
        clips: usize,
    ) -> Result<Array4<f32>, AudioError> {
        if clips == 0 || clips > MAX_CLIPS {
            return Err(AudioError::InvalidClips {
                clips,
                max: MAX_CLIPS,
            });
        }
        let (mels, width) = (self.params.num_mel_bins, self.params.target_length);
        let mut out = Array4::zeros((clips, 1, mels, width));
        self.window_tensor_into(channel0, sample_rate_hz, out.view_mut())?;
        Ok(out)
    }

    /// [`AudioPreprocessor::window_tensor`] into a caller-owned `[clips, 1, mels, frames]`
    /// buffer (no per-call allocation beyond the small clip-range list once the resampler for
    /// the rate exists); `clips = out.dim().0`.
    ///
    /// # Errors
    /// As [`AudioPreprocessor::window_tensor`], plus [`AudioError::ShapeMismatch`] if `out` is
    /// not `[clips, 1, num_mel_bins, target_length]`.
    pub fn window_tensor_into(
        &mut self,
        channel0: &[f32],
        sample_rate_hz: u32,
        mut out: ArrayViewMut4<'_, f32>,
    ) -> Result<(), AudioError> {
        let (clips, one, mels, width) = out.dim();
        for (what, expected, actual) in [
            ("window output dim 1", 1, one),
            (
                "window output dim 2 (mel bins)",
                self.params.num_mel_bins,
                mels,
            ),
            (
                "window output dim 3 (frames)",
                self.params.target_length,
                width,
            ),
        ] {
            if expected != actual {
                return Err(AudioError::ShapeMismatch {
                    what,
                    expected,
                    actual,
                });
            }
        }
        if channel0.is_empty() {
            return Err(AudioError::Empty {
                what: "channel 0 has no samples",
            });
        }
        check_finite(0, channel0)?;
        clip_ranges(0, clips)?; // validates `clips` before resampling
        let mut buf = std::mem::take(&mut self.channels_16k);
        buf.resize_with(1, Vec::new);
        let result = self.window_into_with(&mut buf, channel0, sample_rate_hz, &mut out);
        self.channels_16k = buf;
        result
    }

    fn window_into_with(
        &mut self,
        buf: &mut [Vec<f32>],
        channel0: &[f32],
        sample_rate_hz: u32,
        out: &mut ArrayViewMut4<'_, f32>,
    ) -> Result<(), AudioError> {
        let Some(ch0) = buf.first_mut() else {
            return Err(AudioError::Empty {
                what: "resample buffer",
            });
        };
        self.resampler(sample_rate_hz)?.process_into(channel0, ch0);
        check_min_len(ch0.len())?;
        let len = ch0.len();
        // Python slicing truncates clips at the end of the signal.
        let ranges: Vec<(usize, usize)> = clip_ranges(len, out.dim().0)?
            .into_iter()
            .map(|(a, b)| (a.min(len), b.min(len)))
            .collect();
        let partial_overlap = ranges.windows(2).any(|w| match w {
            [(a0, b0), (a1, _)] => a0 != a1 && a1 < b0,
            _ => false,
        });
        let mut previous: Option<(usize, usize)> = None;
        for i in 0..ranges.len() {
            let Some(&(start, end)) = ranges.get(i) else {
                break;
            };
            if partial_overlap {
                subtract_clip_mean(buf, start, end);
            } else if previous == Some((start, end)) && i > 0 {
                // Identical clip: ImageBind's result differs only by f32 rounding of a
                // cancelled constant, so copy instead of recomputing.
                let (done, mut rest) = out.view_mut().split_at(Axis(0), i);
                if let Some(mut dst) = rest.axis_iter_mut(Axis(0)).next() {
                    dst.assign(&done.index_axis(Axis(0), i - 1));
                }
                continue;
            }
            let ch0 = buf.first().map(Vec::as_slice).unwrap_or(&[]);
            let clip = ch0.get(start..end).unwrap_or(&[]);
            let mut clip_out = out.index_axis_mut(Axis(0), i);
            self.fbank
                .compute_into(clip, clip_out.index_axis_mut(Axis(0), 0))?;
            // Normalise before later identical clips copy this one.
            normalise(clip_out.into_dyn(), &self.params);
            previous = Some((start, end));
        }
        Ok(())
    }

    /// Validates the planar input, resamples all channels into `self.channels_16k` and returns
    /// the clip ranges truncated to the signal (Python slicing).
    fn prepare_file<C: AsRef<[f32]>>(
        &mut self,
        planar: &[C],
        sample_rate_hz: u32,
        clips: usize,
    ) -> Result<Vec<(usize, usize)>, AudioError> {
        let Some(first) = planar.first() else {
            return Err(AudioError::Empty {
                what: "no channels",
            });
        };
        let expected = first.as_ref().len();
        if expected == 0 {
            return Err(AudioError::Empty {
                what: "channel 0 has no samples",
            });
        }
        for (channel, samples) in planar.iter().enumerate() {
            let actual = samples.as_ref().len();
            if actual != expected {
                return Err(AudioError::ChannelLengthMismatch {
                    channel,
                    expected,
                    actual,
                });
            }
            check_finite(channel, samples.as_ref())?;
        }
        clip_ranges(0, clips)?; // validate `clips` before the expensive part
        let resampler = resampler_for(&mut self.resamplers, sample_rate_hz)?;
        let out_len = resampler.output_len(expected);
        check_min_len(out_len)?;
        self.channels_16k.resize_with(planar.len(), Vec::new);
        for (buf, samples) in self.channels_16k.iter_mut().zip(planar) {
            resampler.process_into(samples.as_ref(), buf);
        }
        let ranges = clip_ranges(out_len, clips)?;
        Ok(ranges
            .into_iter()
            .map(|(a, b)| (a.min(out_len), b.min(out_len)))
            .collect())
    }

    /// The cached resampler `sample_rate_hz → 16 kHz`, built on first use.
    fn resampler(&mut self, sample_rate_hz: u32) -> Result<&SincResampler, AudioError> {
        resampler_for(&mut self.resamplers, sample_rate_hz)
    }
}

/// The resampler `sample_rate_hz → 16 kHz` from `cache`, built on first use.
fn resampler_for(
    cache: &mut HashMap<u32, SincResampler>,
    sample_rate_hz: u32,
) -> Result<&SincResampler, AudioError> {
    use std::collections::hash_map::Entry;
    match cache.entry(sample_rate_hz) {
        Entry::Occupied(e) => Ok(e.into_mut()),
        Entry::Vacant(v) => Ok(v.insert(SincResampler::new(sample_rate_hz, CLIP_SAMPLE_RATE_HZ)?)),
    }
}

fn check_min_len(samples_16k: usize) -> Result<(), AudioError> {
    if samples_16k < MIN_FBANK_SAMPLES {
        return Err(AudioError::TooShort {
            what: "audio resampled to 16 kHz",
            samples: samples_16k,
            min: MIN_FBANK_SAMPLES,
        });
    }
    Ok(())
}

/// Rejects NaN/inf with the first offending position. Chunked with a branch-free inner fold so
/// the common (all finite) case vectorises.
fn check_finite(channel: usize, samples: &[f32]) -> Result<(), AudioError> {
    const CHUNK: usize = 256;
    for (c, chunk) in samples.chunks(CHUNK).enumerate() {
        if !chunk.iter().fold(true, |ok, v| ok & v.is_finite()) {
            if let Some((i, &value)) = chunk.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                return Err(AudioError::NonFinite {
                    channel,
                    index: c * CHUNK + i,
                    value,
                });
            }
        }
    }
    Ok(())
}

/// `waveform -= waveform.mean()` on the clip view `[:, start:end]` of all channels (data.py L34):
/// the f32 mean over every channel and sample, subtracted in place.
fn subtract_clip_mean(channels: &mut [Vec<f32>], start: usize, end: usize) {
    let mut sum = 0.0f64;
    let mut count = 0usize;
    for ch in channels.iter() {
        if let Some(clip) = ch.get(start..end) {
            sum += clip.iter().map(|&v| f64::from(v)).sum::<f64>();
            count += clip.len();
        }
    }
    if count == 0 {
        return;
    }
    // torch accumulates the f32 mean with cascade summation; f64 then rounding to f32 lands on
    // the same or the adjacent f32.
    let mean = (sum / count as f64) as f32;
    for ch in channels.iter_mut() {
        if let Some(clip) = ch.get_mut(start..end) {
            clip.iter_mut().for_each(|v| *v -= mean);
        }
    }
}

/// `transforms.Normalize(mean, std)`: `tensor.sub_(mean).div_(std)` in f32.
fn normalise(mut out: ndarray::ArrayViewMutD<'_, f32>, params: &AudioParams) {
    let (mean, std) = (params.mean, params.std);
    out.mapv_inplace(|x| (x - mean) / std);
}
