//! The parity check: after warm-up, a model must reproduce the reference output its manifest
//! carries (cosine per row), so that a provider that breaks the model (TensorRT has been seen
//! to wreck ViT outputs after an upgrade, FP16 can overflow) is refused instead of publishing
//! garbage.

use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayD, Ix2};

use super::manifest::{verify_sha256, ManifestError, Precision, ReferenceEntry};
use crate::files::{self, npy, FileError};

/// Errors reading a reference pair.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// Missing, unreadable or a checksum mismatch.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// Unreadable, not a float32 `.npy`, or sizes that do not add up.
    #[error(transparent)]
    File(#[from] FileError),
    /// Not of the expected shape.
    #[error("{path}: bad parity reference: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Expected vs actual.
        message: String,
    },
}

/// A reference input and the output the model must reproduce.
#[derive(Debug, Clone)]
pub struct Reference {
    /// `[B, …]`.
    pub input: ArrayD<f32>,
    /// `[B, dim]`.
    pub output: Array2<f32>,
    /// The output file (named in messages).
    pub output_path: PathBuf,
    /// The manifest's own threshold for this pair (`None`: `runtime.parity.min_cosine`).
    pub min_cosine: Option<f64>,
    /// Precision of the model checked against it (a reduced-precision model is compared with
    /// fp32 outputs).
    pub precision: Precision,
}

/// Where the threshold a model was held to came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThresholdSource {
    /// `runtime.parity.min_cosine`.
    Configuration,
    /// The model's `reference.min_cosine` in the manifest (a reduced-precision model's
    /// accepted distance to fp32).
    Manifest(Precision),
}

impl std::fmt::Display for ThresholdSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Configuration => f.write_str("runtime.parity.min_cosine"),
            Self::Manifest(p) => {
                write!(f, "the manifest's min_cosine for this {} model", p.as_str())
            }
        }
    }
}

/// How close a model came to its reference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParityReport {
    /// Lowest cosine similarity over the rows.
    pub min_cosine: f64,
    /// The row with that cosine.
    pub worst_row: usize,
    /// Largest absolute element difference.
    pub max_abs_diff: f64,
    /// The lowest cosine accepted.
    pub threshold: f64,
    /// Where that threshold came from.
    pub threshold_source: ThresholdSource,
}

impl ParityReport {
    /// Whether every row reached the threshold.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.min_cosine >= self.threshold
    }
}

impl Reference {
    /// Reads and checks the pair of `entry` (paths relative to `dir`) for a `dim`-wide model.
    ///
    /// # Errors
    /// [`ReferenceError`] naming the file.
    pub fn load(
        dir: &Path,
        entry: &ReferenceEntry,
        precision: Precision,
        dim: usize,
    ) -> Result<Self, ReferenceError> {
        let input_path = dir.join(&entry.input);
        let output_path = dir.join(&entry.output);
        verify_sha256(&input_path, &entry.input_sha256)?;
        verify_sha256(&output_path, &entry.output_sha256)?;
        let invalid = |path: &Path, message: String| ReferenceError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let read = |path: &Path| -> Result<ArrayD<f32>, FileError> {
            npy::read(path, files::MAX_REFERENCE_BYTES, "a parity reference")
        };
        let input = read(&input_path)?;
        let output = read(&output_path)?;
        let out_shape = output.shape().to_vec();
        let output = output.into_dimensionality::<Ix2>().map_err(|_| {
            invalid(
                &output_path,
                format!("shape {out_shape:?}, expected [B, {dim}]"),
            )
        })?;
        let rows = input.shape().first().copied().unwrap_or(0);
        if rows == 0 || output.nrows() != rows || output.ncols() != dim {
            return Err(invalid(
                &output_path,
                format!(
                    "shape {:?} does not fit the input {:?} (expected [{rows}, {dim}])",
                    output.shape(),
                    input.shape()
                ),
            ));
        }
        Ok(Self {
            input,
            output,
            output_path,
            min_cosine: entry.min_cosine,
            precision,
        })
    }

    /// The threshold this pair is held to: the manifest's own, else `configured`
    /// (`runtime.parity.min_cosine`).
    #[must_use]
    pub fn threshold(&self, configured: f64) -> (f64, ThresholdSource) {
        match self.min_cosine {
            Some(c) => (c, ThresholdSource::Manifest(self.precision)),
            None => (configured, ThresholdSource::Configuration),
        }
    }

    /// Compares `actual` (the model's output for [`input`](Self::input)) with the reference,
    /// under [`threshold`](Self::threshold)`(configured)`.
    #[must_use]
    pub fn compare(&self, actual: &Array2<f32>, configured: f64) -> ParityReport {
        let (threshold, threshold_source) = self.threshold(configured);
        let mut report = ParityReport {
            min_cosine: f64::INFINITY,
            worst_row: 0,
            max_abs_diff: 0.0,
            threshold,
            threshold_source,
        };
        if actual.shape() != self.output.shape() {
            report.min_cosine = f64::NEG_INFINITY;
            report.max_abs_diff = f64::INFINITY;
            return report;
        }
        for (i, (want, got)) in self
            .output
            .rows()
            .into_iter()
            .zip(actual.rows())
            .enumerate()
        {
            let (mut dot, mut nw, mut ng) = (0.0f64, 0.0f64, 0.0f64);
            for (&w, &g) in want.iter().zip(got.iter()) {
                let (w, g) = (f64::from(w), f64::from(g));
                dot += w * g;
                nw += w * w;
                ng += g * g;
                let d = (w - g).abs();
                // NaN compares false: count it as the worst difference.
                if d.is_nan() || d > report.max_abs_diff {
                    report.max_abs_diff = if d.is_nan() { f64::INFINITY } else { d };
                }
            }
            let cosine = match (nw > 0.0, ng > 0.0) {
                (true, true) => dot / (nw.sqrt() * ng.sqrt()),
                (false, false) => 1.0,
                _ => 0.0,
            };
            let cosine = if cosine.is_nan() { -1.0 } else { cosine };
            if cosine < report.min_cosine {
                report.min_cosine = cosine;
                report.worst_row = i;
            }
        }
        report
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ndarray::array;

    fn reference(output: Array2<f32>) -> Reference {
        Reference {
            input: ArrayD::zeros(ndarray::IxDyn(&[output.nrows(), 2])),
            output,
            output_path: PathBuf::from("ref.npy"),
            min_cosine: None,
            precision: Precision::Fp32,
        }
    }

    #[test]
    fn a_scaled_output_still_matches_and_a_different_one_does_not() {
        let r = reference(array![[1.0, 2.0, 3.0], [0.0, 1.0, 0.0]]);
        let same = r.compare(&array![[2.0, 4.0, 6.0], [0.0, 1.0, 0.0]], 0.99);
        assert!((same.min_cosine - 1.0).abs() < 1e-12, "{same:?}");
        let broken = r.compare(&array![[1.0, 2.0, 3.0], [1.0, 0.0, 0.0]], 0.99);
        assert!(broken.min_cosine.abs() < 1e-12, "{broken:?}");
        assert_eq!(broken.worst_row, 1);
        assert!((broken.max_abs_diff - 1.0).abs() < 1e-12);
    }

    #[test]
    fn non_finite_or_misshapen_outputs_fail() {
        let r = reference(array![[1.0, 2.0]]);
        assert!(!r.compare(&array![[f32::NAN, 2.0]], 0.99).passed());
        assert!(r.compare(&array![[1.0, 2.0], [1.0, 2.0]], 0.99).min_cosine < 0.0);
    }

    #[test]
    fn the_manifests_threshold_replaces_the_configured_one_for_its_model() {
        let mut r = reference(array![[1.0, 0.0]]);
        // cos = 0.98: refused at the configured 0.99 of an fp32 model…
        let got = array![[0.98, 0.198_997_5]];
        let fp32 = r.compare(&got, 0.99);
        assert!(!fp32.passed());
        assert_eq!(fp32.threshold_source, ThresholdSource::Configuration);
        // …accepted under an int8 model's own 0.97, and refused under its 0.985, whatever the
        // configuration says.
        r.precision = Precision::Int8;
        r.min_cosine = Some(0.97);
        let int8 = r.compare(&got, 0.999);
        assert!(int8.passed(), "{int8:?}");
        assert_eq!(int8.threshold, 0.97);
        assert_eq!(
            int8.threshold_source,
            ThresholdSource::Manifest(Precision::Int8)
        );
        r.min_cosine = Some(0.985);
        assert!(!r.compare(&got, 0.5).passed());
    }
}
