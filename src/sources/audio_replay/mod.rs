//! Audio replay: a WAV file (any rate and channel count; 8/16/24/32-bit integer or 32-bit float)
//! played back as a microphone, paced in real time or as fast as the pipeline takes it.

pub mod config;

use std::cell::Cell;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::{replay_block_end, replay_block_len, Source, SourceContext, SourceMessage};
use crate::config::ReplaySpeed;
use crate::files::{self, human_bytes, FileError};

/// Problems with a WAV file.
#[derive(Debug, thiserror::Error)]
pub enum WavError {
    /// Missing, unreadable, too large, not a WAV file, or sizes that do not add up.
    #[error(transparent)]
    File(#[from] FileError),
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

/// Most samples (all channels) decoded from one file: 1 GiB as float32, 93 minutes of 48 kHz
/// stereo.
pub const MAX_WAV_SAMPLES: u64 = files::MAX_RECORDING_BYTES / 4;

/// Reads a WAV file. Integer samples are divided by 2^(bits-1) (int16 / 32768, as torchaudio).
///
/// # Errors
/// [`WavError`] naming the file.
pub fn load_wav(path: &Path) -> Result<WavAudio, WavError> {
    let (file, len) = files::open_limited(path, files::MAX_RECORDING_BYTES, "a WAV recording")?;
    decode_wav(std::io::BufReader::new(file), len, path)
}

/// Counts the bytes read through it (how long the header was).
struct Counted<R> {
    inner: R,
    read: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
}

/// [`load_wav`] from any reader over a file of `file_len` bytes (`path` names it in messages).
/// The sample count the data chunk declares is checked against the bytes left in the file and
/// [`MAX_WAV_SAMPLES`] before any sample is allocated.
///
/// # Errors
/// As [`load_wav`].
pub fn decode_wav(reader: impl Read, file_len: u64, path: &Path) -> Result<WavAudio, WavError> {
    let format = |message: String| WavError::File(FileError::format(path, message));
    let header_bytes = Rc::new(Cell::new(0));
    let counted = Counted {
        inner: reader,
        read: Rc::clone(&header_bytes),
    };
    let mut reader = hound::WavReader::new(counted).map_err(|e| match e {
        hound::Error::IoError(io) => WavError::File(FileError::io(path, &io)),
        e => format(format!("not a WAV file ({e})")),
    })?;
    let spec = reader.spec();
    let channels = usize::from(spec.channels);
    if channels == 0 || spec.sample_rate == 0 {
        return Err(WavError::Unsupported {
            path: path.to_path_buf(),
            format: format!("{} channels at {} Hz", spec.channels, spec.sample_rate),
        });
    }
    // hound's own sample iterator reports the declared count as its size, so collecting it
    // would allocate whatever the header claims.
    let samples = u64::from(reader.len());
    let declared = samples * u64::from(spec.bits_per_sample.div_ceil(8));
    let left = file_len.saturating_sub(header_bytes.get());
    if declared > left {
        return Err(format(format!(
            "the data chunk declares {}, but the file holds {} after the header",
            human_bytes(declared),
            human_bytes(left)
        )));
    }
    if samples > MAX_WAV_SAMPLES {
        return Err(format(format!(
            "{samples} samples is more than the {MAX_WAV_SAMPLES} accepted for a WAV recording"
        )));
    }
    let read_err = |e: hound::Error| format(format!("cannot read the samples: {e}"));
    let mut interleaved: Vec<f32> = Vec::with_capacity(samples as usize);
    match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => {
            for s in reader.samples::<f32>() {
                interleaved.push(s.map_err(read_err)?);
            }
        }
        (hound::SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
            let scale = 1.0 / f64::from(1u32 << (bits - 1));
            for s in reader.samples::<i32>() {
                interleaved.push((f64::from(s.map_err(read_err)?) * scale) as f32);
            }
        }
        (format, bits) => {
            return Err(WavError::Unsupported {
                path: path.to_path_buf(),
                format: format!("{bits}-bit {format:?}"),
            })
        }
    }
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
                ctx.stats.set_finished();
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
            others: Vec::new(),
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
