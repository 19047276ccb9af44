//! The parity check: after warm-up, a model must reproduce the reference output its manifest
//! carries (cosine per row), so that a provider that breaks the model (TensorRT has been seen
//! to wreck ViT outputs after an upgrade, FP16 can overflow) is refused instead of publishing
//! garbage.

use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayD, Ix2};

use super::manifest::{verify_sha256, ManifestError, ReferenceEntry};
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
}

impl Reference {
    /// Reads and checks the pair of `entry` (paths relative to `dir`) for a `dim`-wide model.
    ///
    /// # Errors
    /// [`ReferenceError`] naming the file.
    pub fn load(dir: &Path, entry: &ReferenceEntry, dim: usize) -> Result<Self, ReferenceError> {
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
        })
    }

    /// Compares `actual` (the model's output for [`input`](Self::input)) with the reference.
    #[must_use]
    pub fn compare(&self, actual: &Array2<f32>) -> ParityReport {
        let mut report = ParityReport {
            min_cosine: f64::INFINITY,
            worst_row: 0,
            max_abs_diff: 0.0,
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
        }
    }

    #[test]
    fn a_scaled_output_still_matches_and_a_different_one_does_not() {
        let r = reference(array![[1.0, 2.0, 3.0], [0.0, 1.0, 0.0]]);
        let same = r.compare(&array![[2.0, 4.0, 6.0], [0.0, 1.0, 0.0]]);
        assert!((same.min_cosine - 1.0).abs() < 1e-12, "{same:?}");
        let broken = r.compare(&array![[1.0, 2.0, 3.0], [1.0, 0.0, 0.0]]);
        assert!(broken.min_cosine.abs() < 1e-12, "{broken:?}");
        assert_eq!(broken.worst_row, 1);
        assert!((broken.max_abs_diff - 1.0).abs() < 1e-12);
    }

    #[test]
    fn non_finite_or_misshapen_outputs_fail() {
        let r = reference(array![[1.0, 2.0]]);
        assert!(r.compare(&array![[f32::NAN, 2.0]]).min_cosine < 0.99);
        assert!(r.compare(&array![[1.0, 2.0], [1.0, 2.0]]).min_cosine < 0.0);
    }
}
