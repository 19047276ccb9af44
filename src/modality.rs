//! The modality table: per modality ImageBind embeds, its name (manifest key, ONNX input name,
//! topic and payload word), its model input (shape after the batch dimension, dtype), how its
//! stream is cut (sample windows or frames, with the default window) and what its preprocessing
//! is. Every other part reads shapes, names and defaults from here.

use std::num::NonZeroUsize;

use serde::{Deserialize, Serialize};

use crate::config::limits::{self, Limit, OutOfRange};

/// The sensor modalities ImageBind embeds that edgebind serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Modality {
    /// Accelerometer + gyroscope, `[B, 6, 2000]`.
    Imu,
    /// Log-mel spectrogram clips, `[B, S, 1, 128, 204]`.
    Audio,
    /// Disparity image, `[B, 1, 224, 224]`.
    Depth,
    /// Thermal intensity image, `[B, 1, 224, 224]`.
    Thermal,
    /// CLIP-normalised RGB image, `[B, 3, 224, 224]`.
    Vision,
}

/// One dimension of a model input after the batch dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    /// Always this size.
    Fixed(usize),
    /// ImageBind clips per window (audio's `S`): set per source, free in the model.
    Clips,
}

/// How a sample rate is bounded: a real number of hertz, or whole hertz.
#[derive(Debug, Clone, Copy)]
pub enum RateLimit {
    /// Any rate in the range (IMU: 1 Hz to 32 kHz).
    Real(&'static Limit<f64>),
    /// A whole number of hertz in the range (audio: 8 to 384 kHz); a rate is rounded first.
    Whole(&'static Limit<u64>),
}

impl RateLimit {
    /// Whether `rate_hz` is accepted, said as the limit says it.
    ///
    /// # Errors
    /// [`OutOfRange`] saying which bound the rate passes and why it is there.
    pub fn check(self, rate_hz: f64) -> Result<(), OutOfRange> {
        match self {
            Self::Real(l) => l.check(rate_hz).map(drop),
            Self::Whole(l) if !rate_hz.is_finite() => Err(OutOfRange(format!(
                "{rate_hz} Hz is not a number of hertz; the range is {}",
                l.describe()
            ))),
            Self::Whole(l) => l.check(rate_hz.round() as u64).map(drop),
        }
    }
}

/// How a modality's stream becomes model inputs, with its defaults.
#[derive(Debug, Clone, Copy)]
pub enum Cut {
    /// Slot-aligned windows of samples (`window_ms`, `hop_ms`) at the source's rate.
    Samples {
        /// Default window length.
        window_ms: u64,
        /// Default step between window starts.
        hop_ms: u64,
        /// The range of `window_ms` (the audio front end needs at least one 25 ms frame).
        window_limit: &'static Limit<u64>,
        /// The range of a source's sample rate.
        rate: RateLimit,
    },
    /// One frame per `interval_ms` (0: every frame).
    Frames {
        /// Default interval.
        interval_ms: u64,
    },
}

/// What the rest of edgebind knows about one modality.
#[derive(Debug, Clone, Copy)]
pub struct ModalitySpec {
    /// The modality.
    pub modality: Modality,
    /// Manifest key, ONNX input name, topic and payload word.
    pub name: &'static str,
    /// The model input after the batch dimension.
    pub input: &'static [Dim],
    /// Element type of the model input, as ONNX names it.
    pub dtype: &'static str,
    /// How the stream is cut, with the default window.
    pub cut: Cut,
    /// What the preprocessing is (SPEC.md's section), for documentation and logs.
    pub preprocessing: &'static str,
    /// What `edgebind preprocess`/`embed` read for this modality (their `--help`).
    pub file_input: &'static str,
}

/// The table, in [`Modality::ALL`] order.
const SPECS: [ModalitySpec; 5] = [
    ModalitySpec {
        modality: Modality::Imu,
        name: "imu",
        input: &[Dim::Fixed(6), Dim::Fixed(2000)],
        dtype: "float32",
        cut: Cut::Samples {
            window_ms: 5_000,
            hop_ms: 1_000,
            window_limit: &limits::WINDOW_MS,
            rate: RateLimit::Real(&limits::IMU_SAMPLE_RATE_HZ),
        },
        preprocessing: "SPEC.md §1: SI units, resampled to 2000 samples per 5 s window",
        file_input: "IMU: float32 `.npy` `[6, N]` (rows acc xyz, gyro xyz; with `--rate-hz`) or a \
                     CSV as the `imu_replay` source reads it; the first 5 s are used",
    },
    ModalitySpec {
        modality: Modality::Audio,
        name: "audio",
        input: &[Dim::Clips, Dim::Fixed(1), Dim::Fixed(128), Dim::Fixed(204)],
        dtype: "float32",
        cut: Cut::Samples {
            window_ms: 2_000,
            hop_ms: 1_000,
            window_limit: &limits::AUDIO_WINDOW_MS,
            rate: RateLimit::Whole(&limits::AUDIO_SAMPLE_RATE_HZ),
        },
        preprocessing: "SPEC.md §2: channel 0 at 16 kHz, 128-bin Kaldi fbank, 204 frames per clip",
        file_input: "Audio: WAV (any rate and channels; 8/16/24/32-bit integer or 32-bit float)",
    },
    ModalitySpec {
        modality: Modality::Depth,
        name: "depth",
        input: &[Dim::Fixed(1), Dim::Fixed(224), Dim::Fixed(224)],
        dtype: "float32",
        cut: Cut::Frames { interval_ms: 1_000 },
        preprocessing: "SPEC.md §3: depth units to disparity, resized and cropped to 224",
        file_input: "Depth: `.npy` or 16-bit grey PNG, uint16 `[H, W]` in depth units \
                     (millimetres by default)",
    },
    ModalitySpec {
        modality: Modality::Thermal,
        name: "thermal",
        input: &[Dim::Fixed(1), Dim::Fixed(224), Dim::Fixed(224)],
        dtype: "float32",
        cut: Cut::Frames { interval_ms: 1_000 },
        preprocessing: "SPEC.md §4: 8-bit intensity, Pillow bicubic to 224, centre crop",
        file_input: "Thermal: `.npy` uint8 or uint16 `[H, W]` (first frame of a stack), or a PNG",
    },
    ModalitySpec {
        modality: Modality::Vision,
        name: "vision",
        input: &[Dim::Fixed(3), Dim::Fixed(224), Dim::Fixed(224)],
        dtype: "float32",
        cut: Cut::Frames { interval_ms: 1_000 },
        preprocessing: "SPEC.md §6: Pillow bicubic short side to 224, centre crop, CLIP mean/std",
        file_input: "Vision: `.npy` uint8 `[H, W, 3]` RGB (first frame of an `[N, H, W, 3]` \
                     stack), a PNG or a JPEG",
    },
];

impl Modality {
    /// All modalities.
    pub const ALL: [Modality; SPECS.len()] = {
        let mut all = [Modality::Imu; SPECS.len()];
        let mut i = 0;
        while i < SPECS.len() {
            all[i] = SPECS[i].modality;
            i += 1;
        }
        all
    };

    /// This modality's row of the table.
    #[must_use]
    pub fn spec(self) -> &'static ModalitySpec {
        // The table is in declaration order (a unit test holds it to that).
        &SPECS[self as usize]
    }

    /// The lower-case name used in manifests, topics and payloads (also the ONNX input name).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        self.spec().name
    }

    /// The modality called `name` in manifests and topics.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == name)
    }

    /// The model input of one window without the batch dimension, with `clips` ImageBind clips
    /// where the modality has them.
    #[must_use]
    pub fn item_shape(self, clips: NonZeroUsize) -> Vec<usize> {
        self.spec()
            .input
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => *n,
                Dim::Clips => clips.get(),
            })
            .collect()
    }

    /// The input shape of one window with one clip: what warms an encoder up.
    #[must_use]
    pub fn example_shape(self) -> Vec<usize> {
        self.item_shape(NonZeroUsize::MIN)
    }

    /// The ONNX input contract, batch dimension first: `None` for a free dimension.
    #[must_use]
    pub fn contract(self) -> Vec<Option<i64>> {
        std::iter::once(None)
            .chain(self.spec().input.iter().map(|d| match d {
                Dim::Fixed(n) => i64::try_from(*n).ok(),
                Dim::Clips => None,
            }))
            .collect()
    }
}

impl std::fmt::Display for Modality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_in_declaration_order_and_names_round_trip() {
        for (i, m) in Modality::ALL.into_iter().enumerate() {
            assert_eq!(m as usize, i);
            assert_eq!(m.spec().modality, m);
            assert_eq!(Modality::from_name(m.as_str()), Some(m));
            // serde's name is the table's.
            assert_eq!(
                serde_json::to_string(&m).unwrap(),
                format!("\"{}\"", m.as_str())
            );
        }
        assert_eq!(Modality::from_name("video"), None);
    }

    #[test]
    fn shapes_are_imagebinds() {
        let three = NonZeroUsize::new(3).unwrap();
        assert_eq!(Modality::Imu.item_shape(three), vec![6, 2000]);
        assert_eq!(Modality::Audio.item_shape(three), vec![3, 1, 128, 204]);
        assert_eq!(Modality::Audio.example_shape(), vec![1, 1, 128, 204]);
        assert_eq!(Modality::Depth.example_shape(), vec![1, 224, 224]);
        assert_eq!(Modality::Thermal.example_shape(), vec![1, 224, 224]);
        assert_eq!(Modality::Vision.example_shape(), vec![3, 224, 224]);
        assert_eq!(
            Modality::Vision.contract(),
            vec![None, Some(3), Some(224), Some(224)]
        );
        assert_eq!(
            Modality::Audio.contract(),
            vec![None, None, Some(1), Some(128), Some(204)]
        );
        assert_eq!(Modality::Imu.contract(), vec![None, Some(6), Some(2000)]);
    }

    #[test]
    fn default_windows_are_within_their_limits() {
        for m in Modality::ALL {
            match m.spec().cut {
                Cut::Samples {
                    window_ms,
                    hop_ms,
                    window_limit,
                    ..
                } => {
                    window_limit.check(window_ms).unwrap();
                    limits::HOP_MS.check(hop_ms).unwrap();
                }
                Cut::Frames { interval_ms } => {
                    limits::FRAME_INTERVAL_MS.check(interval_ms).unwrap();
                }
            }
        }
    }

    #[test]
    fn rates_are_checked_as_their_modality_counts_them() {
        let Cut::Samples { rate: audio, .. } = Modality::Audio.spec().cut else {
            panic!("audio is cut in windows")
        };
        assert!(audio.check(48_000.0).is_ok());
        assert!(audio.check(7_999.6).is_ok(), "rounded to whole hertz");
        assert!(audio
            .check(1.0)
            .unwrap_err()
            .0
            .starts_with("1 Hz is less than the 8000 Hz"));
        assert!(audio.check(f64::NAN).is_err());
        let Cut::Samples { rate: imu, .. } = Modality::Imu.spec().cut else {
            panic!("imu is cut in windows")
        };
        assert!(imu.check(0.5).is_err());
        assert!(imu.check(200.0).is_ok());
    }
}
