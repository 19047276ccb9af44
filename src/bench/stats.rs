//! Summaries of repeated measurements (pure): median and p99 of durations, and of rates.

use serde::Serialize;

/// Median and 99th percentile of a set of measured durations, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// Measured runs (warm-up runs excluded).
    pub runs: usize,
    /// Median, milliseconds.
    pub median_ms: f64,
    /// 99th percentile (nearest rank; the slowest run when there are fewer than 100), ms.
    pub p99_ms: f64,
}

/// The `q` quantile (0..=1) of sorted values by nearest rank: the smallest value with at least
/// `q·n` values at or below it, so it is always a measured value and p99 ≥ median.
#[must_use]
pub fn nearest_rank(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let rank = (q.clamp(0.0, 1.0) * n as f64).ceil() as usize;
    sorted.get(rank.clamp(1, n) - 1).copied()
}

fn sorted(values: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    v
}

/// Median and p99 of durations in milliseconds; `None` for no finite value.
#[must_use]
pub fn summarize_ms(values_ms: &[f64]) -> Option<Summary> {
    let v = sorted(values_ms);
    Some(Summary {
        runs: v.len(),
        median_ms: nearest_rank(&v, 0.5)?,
        p99_ms: nearest_rank(&v, 0.99)?,
    })
}

/// A throughput: median and the rate at the slow end.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rate {
    /// Intervals measured.
    pub intervals: usize,
    /// Median rate over the intervals, windows per second.
    pub median_per_s: f64,
    /// The rate reached by 99 % of the intervals (the slow end, so never above the median):
    /// the rate at the p99 interval time.
    pub p99_per_s: f64,
}

/// Rates from `(items, seconds)` per interval; `None` when no interval has a positive time.
#[must_use]
pub fn summarize_rates(intervals: &[(usize, f64)]) -> Option<Rate> {
    let rates: Vec<f64> = intervals
        .iter()
        .filter(|(_, s)| *s > 0.0)
        .map(|(n, s)| *n as f64 / s)
        .collect();
    let v = sorted(&rates);
    Some(Rate {
        intervals: v.len(),
        median_per_s: nearest_rank(&v, 0.5)?,
        p99_per_s: nearest_rank(&v, 0.01)?,
    })
}

/// Splits completion times (seconds since a start, ascending) into consecutive intervals of at
/// least `min_interval_s` and returns `(items, seconds)` for each full interval.
#[must_use]
pub fn intervals_from_completions(
    completions: &[(f64, usize)],
    start_s: f64,
    min_interval_s: f64,
) -> Vec<(usize, f64)> {
    let mut out = Vec::new();
    let (mut from, mut items) = (start_s, 0usize);
    for &(t, n) in completions {
        items += n;
        if t - from >= min_interval_s {
            out.push((items, t - from));
            from = t;
            items = 0;
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p99_are_measured_values_in_order() {
        let values: Vec<f64> = (1..=200).map(f64::from).rev().collect();
        let s = summarize_ms(&values).unwrap();
        assert_eq!(s.runs, 200);
        assert_eq!(s.median_ms, 100.0);
        assert_eq!(s.p99_ms, 198.0);
        let few = summarize_ms(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((few.median_ms, few.p99_ms), (2.0, 3.0));
    }

    #[test]
    fn nothing_measured_has_no_summary() {
        assert_eq!(summarize_ms(&[]), None);
        assert_eq!(summarize_ms(&[f64::NAN]), None);
        assert_eq!(summarize_rates(&[(3, 0.0)]), None);
    }

    #[test]
    fn the_p99_rate_is_the_slow_end() {
        let mut intervals: Vec<(usize, f64)> = (0..99).map(|_| (10, 0.1)).collect();
        intervals.push((10, 1.0));
        let r = summarize_rates(&intervals).unwrap();
        assert_eq!(r.median_per_s, 100.0);
        assert_eq!(r.p99_per_s, 10.0);
    }

    #[test]
    fn completions_are_grouped_into_intervals_of_at_least_the_minimum() {
        let c = [(0.05, 1), (0.1, 2), (0.12, 1), (0.25, 4), (0.3, 1)];
        let iv = intervals_from_completions(&c, 0.0, 0.1);
        assert_eq!(iv.len(), 2);
        assert_eq!(iv[0].0, 3);
        assert!((iv[0].1 - 0.1).abs() < 1e-12);
        assert_eq!(iv[1].0, 5);
    }
}
