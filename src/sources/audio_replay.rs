//! Audio replay: a WAV file (any rate and channel count; 8/16/24/32-bit integer or 32-bit float)
//! played back as a microphone, paced in real time or as fast as the pipeline takes it.

use std::path::{Path, PathBuf};

use super::{replay_block_end, replay_block_len, Source, SourceContext, SourceMessage};
use crate::config::ReplaySpeed;

/// Problems with a WAV file.
#[derive(Debug, thiserror::Error)]
pub enum WavError {
    /// Unreadable, truncated or not a WAV file.
    #[error("{path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// hound's message.
        message: String,
    },
    /// A sample format torchaudio would not give us either.
    #[error("{path}: unsupported WAV format: {format}")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What it is.
        format: String,
    },
    /// No samples.
    #[error("{path}: no samples")]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// Decoded audio, one `Vec` per channel, scaled to [-1, 1] as `torchaudio.load` does.
#[derive(Debug, Clone)]
pub struct WavAudio {
    /// Sample rate.
    pub sample_rate_hz: u32,
    /// Samples per channel.
    pub planar: Vec<Vec<f32>>,
}

/// Reads a WAV file. Integer samples are divided by 2^(bits-1) (int16 / 32768, as torchaudio).
///
/// # Errors
/// [`WavError`] naming the file.
pub fn load_wav(path: &Path) -> Result<WavAudio, WavError> {
    let read_err = |e: hound::Error| WavError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let mut reader = hound::WavReader::open(path).map_err(read_err)?;
    let spec = reader.spec();
    let channels = usize::from(spec.channels);
    if channels == 0 || spec.sample_rate == 0 {
        return Err(WavError::Unsupported {
            path: path.to_path_buf(),
            format: format!("{} channels at {} Hz", spec.channels, spec.sample_rate),
        });
    }
    let interleaved: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => reader
            .samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(read_err)?,
        (hound::SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
            let scale = 1.0 / f64::from(1u32 << (bits - 1));
            reader
                .samples::<i32>()
                .map(|s| s.map(|v| (f64::from(v) * scale) as f32))
                .collect::<Result<_, _>>()
                .map_err(read_err)?
        }
        (format, bits) => {
            return Err(WavError::Unsupported {
                path: path.to_path_buf(),
                format: format!("{bits}-bit {format:?}"),
            })
        }
    };
    let frames = interleaved.len() / channels;
    if frames == 0 {
        return Err(WavError::Empty {
            path: path.to_path_buf(),
        });
    }
    let mut planar = vec![Vec::with_capacity(frames); channels];
    for frame in interleaved.chunks_exact(channels) {
        for (ch, v) in planar.iter_mut().zip(frame) {
            ch.push(*v);
        }
    }
    Ok(WavAudio {
        sample_rate_hz: spec.sample_rate,
        planar,
    })
}

/// The WAV replay source.
#[derive(Debug)]
pub struct AudioReplay {
    path: PathBuf,
    sample_rate_hz: u32,
    channels: usize,
    /// The recording interleaved as blocks are sent, so that a block is one copy of a slice.
    interleaved: Vec<f32>,
    speed: ReplaySpeed,
    looping: bool,
    window_hop_ms: (u64, u64),
}

impl AudioReplay {
    /// Loads the file; `window_hop_ms` (the stream's window and hop) sets the block length.
    ///
    /// # Errors
    /// [`WavError`].
    pub fn open(
        path: &Path,
        speed: ReplaySpeed,
        looping: bool,
        window_hop_ms: (u64, u64),
    ) -> Result<Self, WavError> {
        let audio = load_wav(path)?;
        let channels = audio.planar.len();
        let frames = audio.planar.first().map_or(0, Vec::len);
        let mut interleaved = Vec::with_capacity(frames * channels);
        for k in 0..frames {
            for ch in &audio.planar {
                interleaved.push(ch.get(k).copied().unwrap_or(0.0));
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            sample_rate_hz: audio.sample_rate_hz,
            channels,
            interleaved,
            speed,
            looping,
            window_hop_ms,
        })
    }
}

impl Source for AudioReplay {
    fn sample_rate_hz(&self) -> f64 {
        f64::from(self.sample_rate_hz)
    }

    fn run(self: Box<Self>, ctx: SourceContext) {
        let _span = tracing::info_span!("source", sensor = %ctx.name).entered();
        let rate = self.sample_rate_hz;
        let channels = self.channels;
        let frames = self.interleaved.len() / channels.max(1);
        ctx.stats.set_connected(true, f64::from(rate));
        tracing::info!(file = %self.path.display(), sample_rate_hz = rate, channels, frames, "replaying audio");
        let period_ns = 1e9 / f64::from(rate);
        let (window_ms, hop_ms) = self.window_hop_ms;
        let block = replay_block_len(f64::from(rate), window_ms, hop_ms, self.speed);
        let start = ctx.clock.now();
        let mut seq: u64 = 0;
        'outer: loop {
            let mut i = 0;
            while i < frames {
                if ctx.cancel.is_cancelled() {
                    break 'outer;
                }
                let end = replay_block_end(seq, i, frames, block);
                let first_t = start.plus_ns((seq as f64 * period_ns).round() as u64);
                let last_t =
                    start.plus_ns(((seq + (end - i) as u64) as f64 * period_ns).round() as u64);
                if self.speed == ReplaySpeed::Realtime
                    && !ctx.sleep_until(ctx.clock.instant_of(last_t.mono_ns))
                {
                    break 'outer;
                }
                let interleaved = self
                    .interleaved
                    .get(i * channels..end * channels)
                    .unwrap_or_default()
                    .to_vec();
                if !ctx.send(SourceMessage::Audio {
                    sample_rate_hz: rate,
                    channels: channels as u16,
                    first_seq: seq,
                    first_t,
                    interleaved,
                }) {
                    break 'outer;
                }
                ctx.stats.add_samples((end - i) as u64, last_t.utc_ns);
                seq += (end - i) as u64;
                i = end;
            }
            if !self.looping {
                tracing::info!("audio recording finished");
                break;
            }
        }
        ctx.stats.set_connected(false, f64::from(rate));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn write(path: &Path, spec: hound::WavSpec, samples: &[i32]) {
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for s in samples {
            w.write_sample(*s).unwrap();
        }
        w.finalize().unwrap();
    }

    #[test]
    fn int16_is_scaled_like_torchaudio_and_split_by_channel() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        write(&p, spec, &[16384, -32768, 0, 32767]);
        let a = load_wav(&p).unwrap();
        assert_eq!(
            a.planar,
            vec![vec![0.5, 0.0], vec![-1.0, 32767.0 / 32768.0]]
        );
    }

    #[test]
    fn a_replay_sends_the_file_interleaved_in_blocks_that_end_every_window() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        // 2000 frames: left counts up, right counts down.
        let samples: Vec<i32> = (0..2000).flat_map(|k| [k, -k]).collect();
        write(&p, spec, &samples);
        // 2 s windows, 1 s hop: 100 ms blocks of 800 frames.
        let replay = AudioReplay::open(&p, ReplaySpeed::Max, false, (2000, 1000)).unwrap();
        let stats = std::sync::Arc::new(crate::telemetry::StreamStats::default());
        let (out, rx) = crate::pipeline::queue::bounded(
            64,
            crate::config::WhenFull::Block,
            crate::telemetry::DropReason::SampleQueueFull,
            std::sync::Arc::clone(&stats),
        );
        let ctx = SourceContext {
            name: "mic".into(),
            clock: crate::time::Clock::new(),
            cancel: tokio_util::sync::CancellationToken::new(),
            stats: std::sync::Arc::clone(&stats),
            out,
        };
        Box::new(replay).run(ctx);
        let mut blocks = Vec::new();
        let mut all = Vec::new();
        for m in rx.try_iter() {
            let SourceMessage::Audio {
                first_seq,
                channels,
                interleaved,
                ..
            } = m
            else {
                panic!("not audio: {m:?}");
            };
            assert_eq!(channels, 2);
            blocks.push((first_seq, interleaved.len() / 2));
            all.extend(interleaved);
        }
        assert_eq!(blocks, vec![(0, 800), (800, 800), (1600, 400)]);
        let expected: Vec<f32> = samples.iter().map(|v| *v as f32 / 32768.0).collect();
        assert_eq!(all, expected);
        assert_eq!(stats.snapshot().samples_total, 2000);
    }

    #[test]
    fn empty_truncated_and_missing_files_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 16000,
            bits_per_sample: 24,
            sample_format: hound::SampleFormat::Int,
        };
        write(&p, spec, &[]);
        assert!(matches!(load_wav(&p), Err(WavError::Empty { .. })));
        let t = dir.path().join("t.wav");
        write(&t, spec, &[1, 2, 3, 4, 5, 6]);
        let bytes = std::fs::read(&t).unwrap();
        std::fs::write(&t, &bytes[..bytes.len() - 4]).unwrap();
        let e = load_wav(&t).unwrap_err();
        assert!(e.to_string().contains("t.wav"), "{e}");
        let m = load_wav(&dir.path().join("missing.wav")).unwrap_err();
        assert!(m.to_string().contains("missing.wav"), "{m}");
    }
}
