//! IMU windows → ImageBind's `[6, 2000]` input (SPEC.md §5): channels acc xyz (m/s²), gyro xyz
//! (rad/s), no normalisation, 5 s at 400 Hz; other lengths are resampled exactly as
//! `torch.nn.functional.interpolate(x[None], size=2000, mode="linear", align_corners=False)`
//! computes it in float32.

use ndarray::Array2;

/// Channels of an ImageBind IMU input.
pub const IMU_CHANNELS: usize = 6;
/// Samples per channel of an ImageBind IMU input (5 s at 400 Hz).
pub const IMU_SAMPLES: usize = 2000;

/// Bad IMU input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ImuError {
    /// No samples.
    #[error("IMU window is empty")]
    Empty,
    /// A value is NaN or infinite.
    #[error("IMU sample {index} channel {channel} is not finite")]
    NotFinite {
        /// Sample index in the window.
        index: usize,
        /// Channel (0-2 acc, 3-5 gyro).
        channel: usize,
    },
    /// A channel-major array does not have 6 rows.
    #[error("IMU array has shape [{rows}, {cols}], expected [6, N]")]
    Shape {
        /// Rows found.
        rows: usize,
        /// Columns found.
        cols: usize,
    },
}

/// Source index and weights of linear interpolation from `in_len` to `out_len` samples, as
/// PyTorch's CPU kernel computes them (float32 scale and source positions, clamped at 0).
#[derive(Debug, Clone)]
pub struct LinearPlan {
    in_len: usize,
    taps: Vec<(usize, usize, f32, f32)>,
}

impl LinearPlan {
    /// The plan for `in_len` → `out_len` (both ≥ 1).
    #[must_use]
    pub fn new(in_len: usize, out_len: usize) -> Self {
        let scale = in_len as f32 / out_len as f32;
        let taps = (0..out_len)
            .map(|i| {
                let src = (scale * (i as f32 + 0.5) - 0.5).max(0.0);
                let i0 = (src as usize).min(in_len.saturating_sub(1));
                let i1 = if i0 + 1 < in_len { i0 + 1 } else { i0 };
                let l1 = (src - i0 as f32).clamp(0.0, 1.0);
                (i0, i1, 1.0 - l1, l1)
            })
            .collect();
        Self { in_len, taps }
    }

    /// Resamples `x` (length `in_len`) into `out`.
    fn apply(&self, x: &[f32], out: &mut [f32]) {
        debug_assert_eq!(x.len(), self.in_len);
        for (o, &(i0, i1, w0, w1)) in out.iter_mut().zip(&self.taps) {
            let a = x.get(i0).copied().unwrap_or(0.0);
            let b = x.get(i1).copied().unwrap_or(0.0);
            // PyTorch's kernel computes fma(x0, w0, x1 * w1); the same rounding gives the same
            // bits (a plain a*w0 + b*w1 is up to 1 ulp off).
            *o = a.mul_add(w0, b * w1);
        }
    }
}

/// Turns IMU windows into model inputs, caching the interpolation plan per window length.
#[derive(Debug, Default)]
pub struct ImuPreprocessor {
    plan: Option<LinearPlan>,
    channel: Vec<f32>,
}

impl ImuPreprocessor {
    /// A preprocessor with no cached plan.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// `[6, 2000]` from samples `[acc xyz, gyro xyz]` in time order.
    ///
    /// # Errors
    /// [`ImuError::Empty`] or [`ImuError::NotFinite`].
    pub fn tensor_from_samples(&mut self, samples: &[[f32; 6]]) -> Result<Array2<f32>, ImuError> {
        if samples.is_empty() {
            return Err(ImuError::Empty);
        }
        if let Some((index, channel)) = samples
            .iter()
            .enumerate()
            .find_map(|(i, s)| s.iter().position(|v| !v.is_finite()).map(|c| (i, c)))
        {
            return Err(ImuError::NotFinite { index, channel });
        }
        let n = samples.len();
        let mut out = Array2::<f32>::zeros((IMU_CHANNELS, IMU_SAMPLES));
        if n == IMU_SAMPLES {
            for (t, s) in samples.iter().enumerate() {
                for (c, v) in s.iter().enumerate() {
                    out[[c, t]] = *v;
                }
            }
            return Ok(out);
        }
        let plan = match &self.plan {
            Some(p) if p.in_len == n => p,
            _ => self.plan.insert(LinearPlan::new(n, IMU_SAMPLES)),
        };
        self.channel.resize(n, 0.0);
        for (c, mut row) in out.rows_mut().into_iter().enumerate() {
            for (dst, s) in self.channel.iter_mut().zip(samples) {
                *dst = s[c];
            }
            if let Some(row) = row.as_slice_mut() {
                plan.apply(&self.channel, row);
            }
        }
        Ok(out)
    }

    /// `[6, 2000]` from a channel-major `[6, N]` array (the CLI's `.npy` input).
    ///
    /// # Errors
    /// [`ImuError`] for a wrong shape, no samples or non-finite values.
    pub fn tensor_from_array(&mut self, x: &Array2<f32>) -> Result<Array2<f32>, ImuError> {
        if x.nrows() != IMU_CHANNELS {
            return Err(ImuError::Shape {
                rows: x.nrows(),
                cols: x.ncols(),
            });
        }
        let samples: Vec<[f32; 6]> = x
            .columns()
            .into_iter()
            .map(|c| [c[0], c[1], c[2], c[3], c[4], c[5]])
            .collect();
        self.tensor_from_samples(&samples)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn doubling_matches_torch_linear_weights() {
        // align_corners=False, scale 0.5: out[0] = x0, out[1] = .75 x0 + .25 x1, out[2] = .25 x0 + .75 x1
        let plan = LinearPlan::new(3, 6);
        let mut out = [0f32; 6];
        plan.apply(&[0.0, 4.0, 8.0], &mut out);
        assert_eq!(out, [0.0, 1.0, 3.0, 5.0, 7.0, 8.0]);
    }

    #[test]
    fn window_of_2000_passes_through() {
        let samples: Vec<[f32; 6]> = (0..2000).map(|i| [i as f32; 6]).collect();
        let t = ImuPreprocessor::new()
            .tensor_from_samples(&samples)
            .unwrap();
        assert_eq!(t[[5, 1999]], 1999.0);
    }

    #[test]
    fn non_finite_and_empty_windows_are_errors() {
        let mut p = ImuPreprocessor::new();
        assert_eq!(p.tensor_from_samples(&[]), Err(ImuError::Empty));
        let mut s = vec![[0f32; 6]; 10];
        s[3][4] = f32::NAN;
        assert_eq!(
            p.tensor_from_samples(&s),
            Err(ImuError::NotFinite {
                index: 3,
                channel: 4
            })
        );
    }

    #[test]
    fn single_sample_window_is_constant() {
        let t = ImuPreprocessor::new()
            .tensor_from_samples(&[[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])
            .unwrap();
        assert!(t.row(2).iter().all(|v| *v == 3.0));
    }
}
