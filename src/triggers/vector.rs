//! Vector arithmetic of the engine (dot products, L2 normalisation) and the statistics of a
//! window's model input that the `stuck` detector reads.

use serde::Serialize;

/// Dot product. Eight independent accumulators let the compiler vectorise the loop without
/// `unsafe` or target-specific code.
#[must_use]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    acc.iter().sum::<f32>() + tail
}

/// `v` scaled to unit L2 norm, or `None` when it is zero or not finite.
#[must_use]
pub fn unit(v: &[f32]) -> Option<Vec<f32>> {
    let norm = dot(v, v).sqrt();
    if !(norm.is_finite() && norm > f32::MIN_POSITIVE) {
        return None;
    }
    Some(v.iter().map(|x| x / norm).collect())
}

/// Whether every value is finite.
#[must_use]
pub fn all_finite(v: &[f32]) -> bool {
    v.iter().all(|x| x.is_finite())
}

/// Summary of one window's model input (the preprocessed tensor), for health checks.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct InputStats {
    /// Values in the tensor.
    pub count: u64,
    /// Values that are NaN or infinite (left out of every other field).
    pub non_finite: u64,
    /// Smallest finite value (0 when there is none).
    pub min: f64,
    /// Largest finite value (0 when there is none).
    pub max: f64,
    /// Mean of the finite values.
    pub mean: f64,
    /// Population variance of the finite values.
    pub variance: f64,
    /// Share of finite values equal to the window's minimum or maximum, in [0, 1]. Clipping piles
    /// values up at the extremes whatever the sensor's range, so this needs no per-sensor scale; a
    /// constant window counts as fully saturated.
    pub saturated_fraction: f64,
}

impl InputStats {
    /// The statistics of a tensor's values, in one pass. Sums are taken in f64 around the first
    /// value (the shifted-data method), so that a large offset does not cancel the variance of a
    /// small signal, without Welford's division per value.
    #[must_use]
    pub fn from_values<'a>(values: impl IntoIterator<Item = &'a f32>) -> Self {
        let mut s = Accumulator::default();
        for &v in values {
            s.push(v);
        }
        s.finish()
    }

    /// [`InputStats::from_values`] of an ndarray tensor of any shape and layout.
    #[must_use]
    pub fn from_tensor(tensor: &ndarray::ArrayD<f32>) -> Self {
        match tensor.as_slice_memory_order() {
            Some(values) => Self::from_values(values),
            None => Self::from_values(tensor.iter()),
        }
    }

    /// Whether two windows' inputs look the same: every statistic within a relative `1e-6`.
    #[must_use]
    pub fn same_as(&self, other: &Self) -> bool {
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1e-12);
        self.count == other.count
            && self.non_finite == other.non_finite
            && close(self.min, other.min)
            && close(self.max, other.max)
            && close(self.mean, other.mean)
            && close(self.variance, other.variance)
    }
}

#[derive(Default)]
struct Accumulator {
    count: u64,
    non_finite: u64,
    finite: u64,
    /// The first finite value, the shift of the sums.
    shift: f64,
    sum: f64,
    sum_sq: f64,
    min: f32,
    max: f32,
    at_min: u64,
    at_max: u64,
}

impl Accumulator {
    fn push(&mut self, v: f32) {
        self.count += 1;
        if !v.is_finite() {
            self.non_finite += 1;
            return;
        }
        self.finite += 1;
        if self.finite == 1 {
            self.shift = f64::from(v);
            (self.min, self.max, self.at_min, self.at_max) = (v, v, 1, 1);
        } else {
            if v < self.min {
                (self.min, self.at_min) = (v, 1);
            } else if v == self.min {
                self.at_min += 1;
            }
            if v > self.max {
                (self.max, self.at_max) = (v, 1);
            } else if v == self.max {
                self.at_max += 1;
            }
        }
        let d = f64::from(v) - self.shift;
        self.sum += d;
        self.sum_sq += d * d;
    }

    fn finish(self) -> InputStats {
        let n = self.finite as f64;
        let (mean, variance, saturated_fraction) = if self.finite == 0 {
            (0.0, 0.0, 0.0)
        } else if self.min == self.max {
            (f64::from(self.min), 0.0, 1.0)
        } else {
            let mean_d = self.sum / n;
            (
                self.shift + mean_d,
                (self.sum_sq / n - mean_d * mean_d).max(0.0),
                (self.at_min + self.at_max) as f64 / n,
            )
        };
        InputStats {
            count: self.count,
            non_finite: self.non_finite,
            min: f64::from(self.min),
            max: f64::from(self.max),
            mean,
            variance,
            saturated_fraction,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn stats_of_a_ramp_are_exact() {
        let v: Vec<f32> = (0..5).map(|i| i as f32).collect();
        let s = InputStats::from_values(&v);
        assert_eq!((s.count, s.non_finite), (5, 0));
        assert_eq!((s.min, s.max, s.mean, s.variance), (0.0, 4.0, 2.0, 2.0));
        assert!((s.saturated_fraction - 0.4).abs() < 1e-12);
    }

    #[test]
    fn clipped_values_count_as_saturated_and_nan_is_counted_apart() {
        let v = [0.0, 1.0, 1.0, 1.0, 0.5, f32::NAN, f32::INFINITY];
        let s = InputStats::from_values(&v);
        assert_eq!(s.non_finite, 2);
        assert!((s.saturated_fraction - 0.8).abs() < 1e-12);
        let constant = InputStats::from_values(&[3.0f32; 10]);
        assert_eq!((constant.variance, constant.saturated_fraction), (0.0, 1.0));
    }

    #[test]
    fn a_large_offset_does_not_cancel_a_small_variance() {
        let v: Vec<f32> = (0..1000).map(|i| 10_000.0 + (i % 2) as f32).collect();
        let s = InputStats::from_values(&v);
        assert_eq!((s.mean, s.variance), (10_000.5, 0.25));
    }

    #[test]
    fn tensor_stats_match_value_stats() {
        let t = ndarray::ArrayD::from_shape_vec(vec![2, 3], vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 9.0])
            .unwrap();
        assert_eq!(
            InputStats::from_tensor(&t),
            InputStats::from_values(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 9.0])
        );
    }

    proptest! {
        #[test]
        fn dot_matches_a_plain_sum(v in prop::collection::vec(-10.0f32..10.0, 0..100)) {
            let plain: f64 = v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum();
            prop_assert!((f64::from(dot(&v, &v)) - plain).abs() <= 1e-3 * plain.max(1.0));
        }

        #[test]
        fn variance_matches_two_pass(v in prop::collection::vec(-1e3f32..1e3, 1..200)) {
            let s = InputStats::from_values(&v);
            let n = v.len() as f64;
            let mean = v.iter().map(|x| f64::from(*x)).sum::<f64>() / n;
            let var = v.iter().map(|x| (f64::from(*x) - mean).powi(2)).sum::<f64>() / n;
            prop_assert!((s.variance - var).abs() <= 1e-6 * var.max(1.0));
            prop_assert!(s.saturated_fraction > 0.0 && s.saturated_fraction <= 1.0);
        }
    }
}
