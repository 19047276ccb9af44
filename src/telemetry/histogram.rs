//! Lock-free latency histograms: the time a window spends in each stage of the pipeline.
//!
//! Buckets are log-spaced, eight per decade from 10 µs to 100 s, so a quantile read from them is
//! within ±15 % of the true value at any scale — enough to tell a 2 ms stage from a 20 ms one
//! without keeping samples. Recording is two relaxed atomic adds, cheap enough for every window.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// A stage a window passes through, from capture to the broker's acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Turning the window into the model's input tensor.
    Preprocess,
    /// Waiting in the inference queue (preprocessing done → the worker takes it).
    Queue,
    /// The encoder session run.
    Inference,
    /// Handed to the publisher → acknowledged by the broker (PUBACK; written, for QoS 0).
    Publish,
    /// End of the window's last sample → acknowledged by the broker.
    EndToEnd,
}

impl Stage {
    /// Every stage, in metric order.
    pub const ALL: [Stage; 5] = [
        Self::Preprocess,
        Self::Queue,
        Self::Inference,
        Self::Publish,
        Self::EndToEnd,
    ];

    /// The label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Preprocess => "preprocess",
            Self::Queue => "queue",
            Self::Inference => "inference",
            Self::Publish => "publish",
            Self::EndToEnd => "end_to_end",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

const BUCKETS_PER_DECADE: usize = 8;
const FIRST_BOUND_NS: f64 = 10_000.0;
const DECADES: usize = 7;
/// Finite bucket bounds; one more bucket counts everything above the last.
const FINITE_BUCKETS: usize = BUCKETS_PER_DECADE * DECADES + 1;

fn bound_ns(i: usize) -> f64 {
    FIRST_BOUND_NS * 10f64.powf(i as f64 / BUCKETS_PER_DECADE as f64)
}

/// A histogram of durations.
#[derive(Debug)]
pub struct LatencyHistogram {
    /// Non-cumulative counts; the last is the overflow bucket.
    buckets: [AtomicU64; FINITE_BUCKETS + 1],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
        }
    }
}

impl LatencyHistogram {
    /// Records one duration.
    pub fn record(&self, d: Duration) {
        self.record_ns(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Records one duration in nanoseconds.
    pub fn record_ns(&self, ns: u64) {
        let i = if (ns as f64) <= FIRST_BOUND_NS {
            0
        } else {
            // ceil of the bucket index; a float edge case lands one bucket off, never outside.
            let k = ((ns as f64 / FIRST_BOUND_NS).log10() * BUCKETS_PER_DECADE as f64).ceil();
            (k as usize).min(FINITE_BUCKETS)
        };
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Durations recorded.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Sum of the durations recorded, in seconds.
    #[must_use]
    pub fn sum_s(&self) -> f64 {
        self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9
    }

    /// The `q` quantile (0..=1) in milliseconds, interpolated log-linearly inside its bucket;
    /// `None` before anything is recorded. Values above the last bound report that bound.
    #[must_use]
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).max(1.0);
        let mut seen = 0u64;
        for (i, &c) in counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            if (seen + c) as f64 >= rank {
                let hi = bound_ns(i.min(FINITE_BUCKETS - 1));
                let lo = if i == 0 { hi / 10.0 } else { bound_ns(i - 1) };
                let frac = ((rank - seen as f64) / c as f64).clamp(0.0, 1.0);
                let ns = lo * (hi / lo).powf(frac);
                return Some(ns / 1e6);
            }
            seen += c;
        }
        Some(bound_ns(FINITE_BUCKETS - 1) / 1e6)
    }

    /// The buckets as exposed: non-cumulative counts per finite bound in seconds, and the
    /// total of every bucket (the overflow too) as the count, so that `+Inf` and `_count`
    /// agree whatever is recorded meanwhile.
    #[must_use]
    pub fn values(&self) -> super::metrics::HistogramValues {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        super::metrics::HistogramValues {
            buckets: counts
                .iter()
                .take(FINITE_BUCKETS)
                .enumerate()
                .map(|(i, c)| (bound_ns(i) / 1e9, *c))
                .collect(),
            count: counts.iter().sum(),
            sum_s: self.sum_s(),
        }
    }
}

/// One histogram per [`Stage`].
#[derive(Debug, Default)]
pub struct StageLatencies {
    stages: [LatencyHistogram; Stage::ALL.len()],
}

impl StageLatencies {
    /// The histogram of `stage`.
    #[must_use]
    pub fn get(&self, stage: Stage) -> &LatencyHistogram {
        // Stage::index is always < ALL.len(); the fallback only keeps this total.
        self.stages.get(stage.index()).unwrap_or(&self.stages[0])
    }

    /// Records `d` for `stage`.
    pub fn record(&self, stage: Stage, d: Duration) {
        self.get(stage).record(d);
    }

    /// p50/p99/count per stage, for the `stats` topic.
    #[must_use]
    pub fn summary(&self) -> std::collections::BTreeMap<&'static str, StageSummary> {
        Stage::ALL
            .iter()
            .map(|s| {
                let h = self.get(*s);
                (
                    s.as_str(),
                    StageSummary {
                        count: h.count(),
                        p50_ms: h.quantile_ms(0.5),
                        p99_ms: h.quantile_ms(0.99),
                    },
                )
            })
            .collect()
    }
}

/// A stage's latency in brief.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct StageSummary {
    /// Windows measured.
    pub count: u64,
    /// Median, milliseconds.
    pub p50_ms: Option<f64>,
    /// 99th percentile, milliseconds.
    pub p99_ms: Option<f64>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_a_bucket_of_the_truth() {
        let h = LatencyHistogram::default();
        // 1..=1000 ms, uniformly: p50 ≈ 500 ms, p99 ≈ 990 ms.
        for ms in 1..=1000u64 {
            h.record(Duration::from_millis(ms));
        }
        let p50 = h.quantile_ms(0.5).unwrap();
        let p99 = h.quantile_ms(0.99).unwrap();
        assert!((p50 / 500.0 - 1.0).abs() < 0.2, "p50 {p50}");
        assert!((p99 / 990.0 - 1.0).abs() < 0.2, "p99 {p99}");
        assert_eq!(h.count(), 1000);
        assert!((h.sum_s() - 500.5).abs() < 1e-6);
    }

    #[test]
    fn tiny_and_huge_durations_land_in_the_end_buckets() {
        let h = LatencyHistogram::default();
        h.record(Duration::from_nanos(1));
        h.record(Duration::from_secs(10_000));
        assert!(h.quantile_ms(0.0).unwrap() <= 0.01);
        assert!(h.quantile_ms(1.0).unwrap() >= 99_000.0);
        assert_eq!(LatencyHistogram::default().quantile_ms(0.5), None);
    }

    #[test]
    fn prometheus_buckets_are_cumulative_and_end_with_inf() {
        let t = super::super::Telemetry::new(["a"]);
        let h = t.stream("a");
        h.record_latency(Stage::Queue, Duration::from_micros(50));
        h.record_latency(Stage::Queue, Duration::from_millis(3));
        let out = t.render_prometheus();
        let prefix = "edgebind_stage_latency_seconds_bucket{sensor=\"a\",stage=\"queue\"";
        let counts: Vec<u64> = out
            .lines()
            .filter(|l| l.starts_with(prefix))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert!(counts.len() > 50);
        assert!(counts.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(counts.last(), Some(&2));
        assert!(out.contains(
            "edgebind_stage_latency_seconds_bucket{sensor=\"a\",stage=\"queue\",le=\"+Inf\"} 2\n"
        ));
        assert!(
            out.contains("edgebind_stage_latency_seconds_count{sensor=\"a\",stage=\"queue\"} 2\n")
        );
    }
}
