//! Realistic benchmark inputs per modality, turned into model inputs by the daemon's own
//! preprocessors: IMU windows, thermal and depth frames from the bundled recordings
//! (`tests/fixtures/recordings`), a synthetic microphone signal (no audio recording is
//! bundled: a few seconds of 48 kHz stereo would be megabytes) and synthetic 640×480 colour
//! frames (the size #15's speed target names). Without the recordings (an
//! installed package) deterministic synthetic frames and motion of the same sizes are used.

use std::path::{Path, PathBuf};

use ndarray::{Array2, Array3, Array4, ArrayD};

use super::BenchError;
use crate::config::{DepthPreprocessConfig, ThermalPreprocessConfig};
use crate::modality::Cut;
use crate::preprocess::audio::{AudioParams, AudioPreprocessor};
use crate::preprocess::depth::DepthPreprocessor;
use crate::preprocess::imu::ImuPreprocessor;
use crate::preprocess::thermal::ThermalPreprocessor;
use crate::preprocess::vision::VisionPreprocessor;
use crate::sources::frame_replay::{load_stack, FrameKind, FrameStack};
use crate::sources::imu_replay::ImuFileFormat;
use crate::Modality;

/// IMU recording used (5 s windows at 200 Hz, resampled to ImageBind's 2000 samples).
pub const IMU_RECORDING: &str = "imu_demo_200hz.csv";
/// Thermal recording used (Lepton-size 160×120 centi-kelvin frames).
pub const THERMAL_RECORDING: &str = "thermal_demo_160x120_u16.npy";
/// Depth recording used (256×192 millimetre frames).
pub const DEPTH_RECORDING: &str = "depth_demo_256x192_u16.npy";
/// Rate of the synthetic microphone signal.
pub const AUDIO_RATE_HZ: u32 = 48_000;
/// Channels of the synthetic microphone signal.
pub const AUDIO_CHANNELS: u16 = 2;

const AUDIO_SECONDS: f64 = 12.0;

/// Where the bundled recordings are: `explicit`, else the repository or package locations.
/// `None` when no location has them (synthetic inputs are used then).
///
/// # Errors
/// [`BenchError::Recordings`] when `explicit` is given but is not a directory.
pub fn find_recordings(explicit: Option<&Path>) -> Result<Option<PathBuf>, BenchError> {
    if let Some(p) = explicit {
        if p.is_dir() {
            return Ok(Some(p.to_path_buf()));
        }
        return Err(BenchError::Recordings {
            path: p.to_path_buf(),
            message: "not a directory".into(),
        });
    }
    let mut candidates = vec![PathBuf::from("tests/fixtures/recordings")];
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            candidates.push(dir.join("../../tests/fixtures/recordings"));
            candidates.push(dir.join("../share/edgebind/recordings"));
        }
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/recordings"));
    Ok(candidates
        .into_iter()
        .find(|p| p.join(IMU_RECORDING).is_file())
        .map(|p| std::fs::canonicalize(&p).unwrap_or(p)))
}

/// A deterministic pseudo-random sequence in [-1, 1) (64-bit LCG, top bits).
#[derive(Debug, Clone)]
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// A microphone-like signal, planar `[channels][samples]`: background noise, a voiced
/// harmonic series with a syllable-rate envelope, and a short click every 0.7 s — enough
/// spectral variety that no fbank bin is constant.
#[must_use]
pub fn synthetic_audio(rate_hz: u32, channels: u16, seconds: f64) -> Vec<Vec<f32>> {
    let n = (seconds * f64::from(rate_hz)).round() as usize;
    let mut noise = Noise(0x5eed);
    let mut planar = vec![Vec::with_capacity(n); usize::from(channels.max(1))];
    for i in 0..n {
        let t = i as f64 / f64::from(rate_hz);
        let pitch = 140.0 + 30.0 * (2.0 * std::f64::consts::PI * 0.3 * t).sin();
        let envelope = 0.5 + 0.5 * (2.0 * std::f64::consts::PI * 4.0 * t).sin();
        let voiced: f64 = (1..=6)
            .map(|h| (2.0 * std::f64::consts::PI * pitch * f64::from(h) * t).sin() / f64::from(h))
            .sum();
        let click = if (t % 0.7) < 0.002 { 0.5 } else { 0.0 };
        let base = 0.15 * envelope * voiced + click;
        for (c, ch) in planar.iter_mut().enumerate() {
            let v = base * (1.0 - 0.2 * c as f64) + 0.02 * f64::from(noise.next());
            ch.push(v.clamp(-1.0, 1.0) as f32);
        }
    }
    planar
}

/// Writes planar samples as a 16-bit PCM WAV (for the end-to-end replay).
///
/// # Errors
/// [`BenchError::Io`] naming the file.
pub fn write_wav(path: &Path, planar: &[Vec<f32>], rate_hz: u32) -> Result<(), BenchError> {
    let io = |e: hound::Error| BenchError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let spec = hound::WavSpec {
        channels: u16::try_from(planar.len()).unwrap_or(1),
        sample_rate: rate_hz,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).map_err(io)?;
    let n = planar.first().map_or(0, Vec::len);
    for i in 0..n {
        for ch in planar {
            let v = ch.get(i).copied().unwrap_or(0.0);
            w.write_sample((v * 32767.0).round() as i16).map_err(io)?;
        }
    }
    w.finalize().map_err(io)
}

pub(crate) fn synthetic_imu(rate_hz: f64, seconds: f64) -> Vec<[f32; 6]> {
    let n = (rate_hz * seconds).round() as usize;
    let mut noise = Noise(0x1a0);
    (0..n)
        .map(|i| {
            let t = i as f64 / rate_hz;
            let shake = if (t % 8.0) < 4.0 { 0.0 } else { 3.0 };
            let w = 2.0 * std::f64::consts::PI * 2.5 * t;
            let mut s = [
                (shake * w.sin()) as f32,
                (shake * w.cos()) as f32,
                9.81,
                (0.5 * shake * w.cos()) as f32,
                0.0,
                (0.2 * shake * w.sin()) as f32,
            ];
            for v in &mut s {
                *v += 0.02 * noise.next();
            }
            s
        })
        .collect()
}

pub(crate) fn synthetic_frames(
    frames: usize,
    h: usize,
    w: usize,
    base: u16,
    span: f32,
) -> Array3<u16> {
    let mut noise = Noise(0xf00d);
    Array3::from_shape_fn((frames, h, w), |(f, y, x)| {
        let ramp = (x + y + 7 * f) as f32 / (h + w) as f32;
        let v = f32::from(base) + span * (ramp.fract() + 0.01 * noise.next());
        v.max(0.0) as u16
    })
}

/// Colour frames `[N, H, W, 3]` of a scene with a gradient, a bright disc that moves and
/// noise, so that no resize tap sees a constant.
fn synthetic_rgb(frames: usize, h: usize, w: usize) -> Array4<u8> {
    let mut noise = Noise(0xc01);
    Array4::from_shape_fn((frames, h, w, 3), |(f, y, x, c)| {
        let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
        let (cx, cy) = (0.3 + 0.1 * f as f32, 0.5);
        let disc = if (fx - cx).powi(2) + (fy - cy).powi(2) < 0.02 {
            120.0
        } else {
            0.0
        };
        let v = 60.0 + 80.0 * fy + 40.0 * fx * c as f32 + disc + 8.0 * noise.next();
        v.clamp(0.0, 255.0) as u8
    })
}

/// Cuts model inputs from one modality's recording, one window per call, cycling through it.
#[derive(Debug)]
pub enum Preparer {
    /// IMU windows of a recording.
    Imu {
        /// The preprocessor.
        pre: ImuPreprocessor,
        /// All samples.
        samples: Vec<[f32; 6]>,
        /// Samples per window.
        window: usize,
        /// Samples per hop.
        hop: usize,
        /// Next window start.
        next: usize,
    },
    /// Audio windows of channel 0 (as the daemon's windower hands them over).
    Audio {
        /// The preprocessor.
        pre: Box<AudioPreprocessor>,
        /// Channel 0.
        channel0: Vec<f32>,
        /// Its rate.
        rate_hz: u32,
        /// Samples per window.
        window: usize,
        /// Samples per hop.
        hop: usize,
        /// Next window start.
        next: usize,
    },
    /// Depth frames.
    Depth {
        /// The preprocessor.
        pre: Box<DepthPreprocessor>,
        /// The frames.
        frames: Array3<u16>,
        /// Next frame.
        next: usize,
    },
    /// Thermal frames (16-bit).
    Thermal {
        /// The preprocessor.
        pre: Box<ThermalPreprocessor>,
        /// The frames.
        frames: Array3<u16>,
        /// Next frame.
        next: usize,
    },
    /// Colour frames.
    Vision {
        /// The preprocessor.
        pre: Box<VisionPreprocessor>,
        /// The frames, `[N, H, W, 3]`.
        frames: Array4<u8>,
        /// Next frame.
        next: usize,
    },
}

/// One modality's benchmark input.
#[derive(Debug)]
pub struct ModalityInput {
    /// The modality.
    pub modality: Modality,
    /// What a window is, for the report (`5 s at 200 Hz from imu_demo_200hz.csv`).
    pub description: String,
    /// The window cutter and preprocessor.
    pub preparer: Preparer,
}

fn frames_u16(
    dir: Option<&Path>,
    file: &str,
    kind: FrameKind,
) -> Result<Option<Array3<u16>>, BenchError> {
    let Some(dir) = dir else { return Ok(None) };
    let path = dir.join(file);
    match load_stack(&path, kind).map_err(|e| BenchError::Recordings {
        path: path.clone(),
        message: e.to_string(),
    })? {
        FrameStack::U16(a) if !a.is_empty() => Ok(Some(a)),
        _ => Err(BenchError::Recordings {
            path,
            message: "expected a non-empty uint16 [N, H, W] stack".into(),
        }),
    }
}

/// The default window and hop of a windowed modality, in seconds (the modality table's).
fn window_and_hop_s(modality: Modality) -> (f64, f64) {
    match modality.spec().cut {
        Cut::Samples {
            window_ms, hop_ms, ..
        } => (window_ms as f64 / 1000.0, hop_ms as f64 / 1000.0),
        Cut::Frames { .. } => (0.0, 0.0),
    }
}

fn preprocess_error(modality: Modality, e: &dyn std::fmt::Display) -> BenchError {
    BenchError::Preprocess {
        modality,
        message: e.to_string(),
    }
}

/// IMU windows of the bundled recording (or synthetic motion).
fn imu_input(dir: Option<&Path>) -> Result<(String, Preparer), BenchError> {
    let (samples, rate_hz, from) =
        match dir {
            Some(d) => {
                let path = d.join(IMU_RECORDING);
                let rec = crate::sources::imu_replay::load(&path, ImuFileFormat::Csv, None)
                    .map_err(|e| BenchError::Recordings {
                        path: path.clone(),
                        message: e.to_string(),
                    })?;
                let samples: Vec<[f32; 6]> = rec.samples.into_iter().flatten().collect();
                (samples, rec.sample_rate_hz, IMU_RECORDING.to_string())
            }
            None => (synthetic_imu(200.0, 16.0), 200.0, "synthetic motion".into()),
        };
    let (window_s, hop_s) = window_and_hop_s(Modality::Imu);
    let window = (window_s * rate_hz).round() as usize;
    if samples.len() < window {
        return Err(BenchError::Recordings {
            path: PathBuf::from(from),
            message: format!("{} samples, a window needs {window}", samples.len()),
        });
    }
    Ok((
        format!("{window_s} s at {rate_hz} Hz from {from}"),
        Preparer::Imu {
            pre: ImuPreprocessor::new(),
            samples,
            window,
            hop: (hop_s * rate_hz).round() as usize,
            next: 0,
        },
    ))
}

/// Windows of channel 0 of a synthetic microphone signal.
fn audio_input() -> Result<(String, Preparer), BenchError> {
    let planar = synthetic_audio(AUDIO_RATE_HZ, AUDIO_CHANNELS, AUDIO_SECONDS);
    let channel0 = planar.into_iter().next().unwrap_or_default();
    let pre = AudioPreprocessor::new(AudioParams::default())
        .map_err(|e| preprocess_error(Modality::Audio, &e))?;
    let (window_s, hop_s) = window_and_hop_s(Modality::Audio);
    Ok((
        format!(
            "{window_s} s of synthetic {} kHz {AUDIO_CHANNELS}-channel audio, 1 clip",
            f64::from(AUDIO_RATE_HZ) / 1000.0
        ),
        Preparer::Audio {
            pre: Box::new(pre),
            channel0,
            rate_hz: AUDIO_RATE_HZ,
            window: (window_s * f64::from(AUDIO_RATE_HZ)) as usize,
            hop: (hop_s * f64::from(AUDIO_RATE_HZ)) as usize,
            next: 0,
        },
    ))
}

/// Frames of the bundled depth recording (or synthetic ones).
fn depth_input(dir: Option<&Path>) -> Result<(String, Preparer), BenchError> {
    let (frames, from) = match frames_u16(dir, DEPTH_RECORDING, FrameKind::Depth)? {
        Some(f) => (f, DEPTH_RECORDING.to_string()),
        None => (
            synthetic_frames(8, 480, 640, 500, 4000.0),
            "synthetic frames".into(),
        ),
    };
    let pre = DepthPreprocessor::new(DepthPreprocessConfig::default().params(None))
        .map_err(|e| preprocess_error(Modality::Depth, &e))?;
    let (_, h, w) = frames.dim();
    Ok((
        format!("{w}×{h} u16 depth frame from {from}"),
        Preparer::Depth {
            pre: Box::new(pre),
            frames,
            next: 0,
        },
    ))
}

/// Frames of the bundled thermal recording (or synthetic ones).
fn thermal_input(dir: Option<&Path>) -> Result<(String, Preparer), BenchError> {
    let kind = FrameKind::Thermal { radiometric: true };
    let (frames, from) = match frames_u16(dir, THERMAL_RECORDING, kind)? {
        Some(f) => (f, THERMAL_RECORDING.to_string()),
        None => (
            synthetic_frames(8, 120, 160, 29_000, 1500.0),
            "synthetic frames".into(),
        ),
    };
    let pre = ThermalPreprocessor::new(ThermalPreprocessConfig::default().params())
        .map_err(|e| preprocess_error(Modality::Thermal, &e))?;
    let (_, h, w) = frames.dim();
    Ok((
        format!("{w}×{h} u16 thermal frame from {from}"),
        Preparer::Thermal {
            pre: Box::new(pre),
            frames,
            next: 0,
        },
    ))
}

/// Synthetic 640×480 colour frames (the size of the speed target in #15).
fn vision_input() -> (String, Preparer) {
    (
        "640×480 synthetic RGB frame".into(),
        Preparer::Vision {
            pre: Box::default(),
            frames: synthetic_rgb(4, 480, 640),
            next: 0,
        },
    )
}

impl ModalityInput {
    /// The input of `modality`, from the recordings in `dir` (synthetic when `None`).
    ///
    /// # Errors
    /// [`BenchError::Recordings`] for an unreadable recording; [`BenchError::Preprocess`] when
    /// a preprocessor cannot be built.
    pub fn new(modality: Modality, dir: Option<&Path>) -> Result<Self, BenchError> {
        let (description, preparer) = match modality {
            Modality::Imu => imu_input(dir)?,
            Modality::Audio => audio_input()?,
            Modality::Depth => depth_input(dir)?,
            Modality::Thermal => thermal_input(dir)?,
            Modality::Vision => vision_input(),
        };
        Ok(Self {
            modality,
            description,
            preparer,
        })
    }

    /// Preprocesses the next window into the model input (without the batch dimension).
    ///
    /// # Errors
    /// [`BenchError::Preprocess`] with the preprocessor's message.
    pub fn prepare(&mut self) -> Result<ArrayD<f32>, BenchError> {
        let modality = self.modality;
        let err = |e: &dyn std::fmt::Display| BenchError::Preprocess {
            modality,
            message: e.to_string(),
        };
        match &mut self.preparer {
            Preparer::Imu {
                pre,
                samples,
                window,
                hop,
                next,
            } => {
                if *next + *window > samples.len() {
                    *next = 0;
                }
                let w = samples.get(*next..*next + *window).unwrap_or_default();
                *next += *hop;
                pre.tensor_from_samples(w)
                    .map(Array2::into_dyn)
                    .map_err(|e| err(&e))
            }
            Preparer::Audio {
                pre,
                channel0,
                rate_hz,
                window,
                hop,
                next,
            } => {
                if *next + *window > channel0.len() {
                    *next = 0;
                }
                let w = channel0.get(*next..*next + *window).unwrap_or_default();
                *next += *hop;
                pre.window_tensor(w, *rate_hz, 1)
                    .map(ndarray::Array4::into_dyn)
                    .map_err(|e| err(&e))
            }
            Preparer::Depth { pre, frames, next } => {
                let i = *next % frames.dim().0;
                *next = i + 1;
                pre.tensor(frames.index_axis(ndarray::Axis(0), i))
                    .map(Array3::into_dyn)
                    .map_err(|e| err(&e))
            }
            Preparer::Thermal { pre, frames, next } => {
                let i = *next % frames.dim().0;
                *next = i + 1;
                pre.tensor_u16(frames.index_axis(ndarray::Axis(0), i))
                    .map(Array3::into_dyn)
                    .map_err(|e| err(&e))
            }
            Preparer::Vision { pre, frames, next } => {
                let i = *next % frames.dim().0;
                *next = i + 1;
                pre.tensor_rgb(frames.index_axis(ndarray::Axis(0), i))
                    .map(Array3::into_dyn)
                    .map_err(|e| err(&e))
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_audio_is_bounded_deterministic_and_not_silent() {
        let a = synthetic_audio(16_000, 2, 1.0);
        let b = synthetic_audio(16_000, 2, 1.0);
        assert_eq!(a, b);
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].len(), 16_000);
        assert!(a[0].iter().all(|v| (-1.0..=1.0).contains(v)));
        let rms = (a[0].iter().map(|v| v * v).sum::<f32>() / 16_000.0).sqrt();
        assert!(rms > 0.01, "{rms}");
    }

    #[test]
    fn synthetic_inputs_give_model_shaped_tensors() {
        for (m, shape) in [
            (Modality::Imu, vec![6, 2000]),
            (Modality::Audio, vec![1, 1, 128, 204]),
            (Modality::Depth, vec![1, 224, 224]),
            (Modality::Thermal, vec![1, 224, 224]),
            (Modality::Vision, vec![3, 224, 224]),
        ] {
            let mut input = ModalityInput::new(m, None).unwrap();
            for _ in 0..3 {
                let t = input.prepare().unwrap();
                assert_eq!(t.shape(), shape.as_slice(), "{m}");
                assert!(t.iter().all(|v| v.is_finite()), "{m}");
            }
        }
    }
}
