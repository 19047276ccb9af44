//! Reading the daemon's Prometheus endpoint: a plain HTTP GET, the text format parsed into
//! series, and quantiles of the stage-latency histograms between two scrapes.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use serde::Serialize;

/// The stage-latency histogram's name (from the metrics table).
pub const STAGE_HISTOGRAM: &str = crate::telemetry::metrics::STAGE_LATENCY.name;

/// One scrape: every sample line, by name and labels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    /// `(metric name, labels)` → value.
    pub series: BTreeMap<(String, BTreeMap<String, String>), f64>,
}

/// `GET /metrics` from `addr` (`127.0.0.1:port`); the body.
///
/// # Errors
/// The I/O error, or a non-200 status as `InvalidData`.
pub fn fetch(addr: &str, timeout: Duration) -> std::io::Result<String> {
    let sock = addr
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{e}")))?;
    let mut stream = TcpStream::connect_timeout(&sock, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    if !head.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            head.lines().next().unwrap_or_default().to_string(),
        ));
    }
    Ok(body.to_string())
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let Some(end) = after.find('"') else { break };
        labels.insert(
            key.trim_start_matches(',').trim().to_string(),
            after[..end].to_string(),
        );
        rest = &after[end + 1..];
    }
    labels
}

impl Scrape {
    /// Parses the text format (comments skipped; label values without escaped quotes, as the
    /// daemon writes them).
    #[must_use]
    pub fn parse(text: &str) -> Self {
        let mut series = BTreeMap::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match key.split_once('{') {
                Some((n, l)) => (n, parse_labels(l.trim_end_matches('}'))),
                None => (key, BTreeMap::new()),
            };
            series.insert((name.to_string(), labels), value);
        }
        Self { series }
    }

    /// Sum of `name` over the series whose labels include every pair of `filter`.
    #[must_use]
    pub fn sum(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        self.series
            .iter()
            .filter(|((n, l), _)| {
                n == name
                    && filter
                        .iter()
                        .all(|(k, v)| l.get(*k).is_some_and(|x| x == v))
            })
            .map(|(_, v)| v)
            .sum()
    }

    /// Values of the label `key` that occur on `name`.
    #[must_use]
    pub fn label_values(&self, name: &str, key: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .series
            .keys()
            .filter(|(n, _)| n == name)
            .filter_map(|(_, l)| l.get(key).cloned())
            .collect();
        v.dedup();
        v.sort();
        v.dedup();
        v
    }

    /// The histogram `name` summed over the series matching `filter`.
    #[must_use]
    pub fn histogram(&self, name: &str, filter: &[(&str, &str)]) -> Histogram {
        let bucket = format!("{name}_bucket");
        let mut by_le: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        for ((n, l), v) in &self.series {
            if n != &bucket
                || !filter
                    .iter()
                    .all(|(k, val)| l.get(*k).is_some_and(|x| x == val))
            {
                continue;
            }
            let le = match l.get("le").map(String::as_str) {
                Some("+Inf") => f64::INFINITY,
                Some(s) => match s.parse::<f64>() {
                    Ok(x) => x,
                    Err(_) => continue,
                },
                None => continue,
            };
            by_le.entry(le.to_bits()).or_insert((le, 0.0)).1 += v;
        }
        let mut buckets: Vec<(f64, f64)> = by_le.into_values().collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Histogram {
            buckets,
            sum_s: self.sum(&format!("{name}_sum"), filter),
            count: self.sum(&format!("{name}_count"), filter),
        }
    }
}

/// A cumulative histogram: `(upper bound s, count ≤ bound)`, sum and count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Cumulative buckets in ascending bound order (the last is `+Inf`).
    pub buckets: Vec<(f64, f64)>,
    /// Sum of the observations, seconds.
    pub sum_s: f64,
    /// Observations.
    pub count: f64,
}

/// A latency distribution in brief.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    /// Windows measured.
    pub count: u64,
    /// Median, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile, milliseconds.
    pub p99_ms: f64,
    /// Mean, milliseconds.
    pub mean_ms: f64,
}

impl Histogram {
    /// What was observed after `earlier` (a scrape of the same histogram before this one).
    #[must_use]
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        let before = |le: f64| {
            earlier
                .buckets
                .iter()
                .find(|(b, _)| b.to_bits() == le.to_bits())
                .map_or(0.0, |(_, c)| *c)
        };
        Histogram {
            buckets: self
                .buckets
                .iter()
                .map(|(le, c)| (*le, (c - before(*le)).max(0.0)))
                .collect(),
            sum_s: (self.sum_s - earlier.sum_s).max(0.0),
            count: (self.count - earlier.count).max(0.0),
        }
    }

    /// The `q` quantile in seconds, interpolated log-linearly inside its bucket as the daemon's
    /// own summaries are (so within a bucket's width, ±15 %); `None` for an empty histogram.
    #[must_use]
    pub fn quantile_s(&self, q: f64) -> Option<f64> {
        let total = self.buckets.last().map_or(0.0, |(_, c)| *c);
        if total <= 0.0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total).max(1.0);
        let mut prev = (0.0f64, 0.0f64);
        for &(le, c) in &self.buckets {
            if c >= rank && c > prev.1 {
                if !le.is_finite() {
                    return Some(prev.0);
                }
                let lo = if prev.0 > 0.0 { prev.0 } else { le / 10.0 };
                let frac = ((rank - prev.1) / (c - prev.1)).clamp(0.0, 1.0);
                return Some(lo * (le / lo).powf(frac));
            }
            prev = (le, c);
        }
        Some(prev.0)
    }

    /// p50, p99 and mean in milliseconds; `None` when empty.
    #[must_use]
    pub fn latency(&self) -> Option<Latency> {
        Some(Latency {
            count: self.count.round() as u64,
            p50_ms: self.quantile_s(0.5)? * 1e3,
            p99_ms: self.quantile_s(0.99)? * 1e3,
            mean_ms: if self.count > 0.0 {
                self.sum_s / self.count * 1e3
            } else {
                0.0
            },
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::telemetry::{Stage, Telemetry};

    #[test]
    fn the_daemons_own_exposition_parses_back_into_its_histograms() {
        let t = Telemetry::new(["a", "b"]);
        for ms in 1..=100u64 {
            t.stream("a")
                .record_latency(Stage::Inference, Duration::from_millis(ms));
        }
        t.stream("b")
            .record_latency(Stage::Inference, Duration::from_millis(50));
        let before = Scrape::parse(&t.render_prometheus());
        t.stream("b")
            .record_latency(Stage::Inference, Duration::from_millis(200));
        let after = Scrape::parse(&t.render_prometheus());
        let all = after.histogram(STAGE_HISTOGRAM, &[("stage", "inference")]);
        assert_eq!(all.count, 102.0);
        assert!((all.sum_s - (5.05 + 0.25)).abs() < 1e-6);
        let l = all.latency().unwrap();
        assert!((l.p50_ms / 50.0 - 1.0).abs() < 0.2, "{l:?}");
        let new = all.since(&before.histogram(STAGE_HISTOGRAM, &[("stage", "inference")]));
        assert_eq!(new.count, 1.0);
        let p = new.quantile_s(0.5).unwrap();
        assert!((p / 0.2 - 1.0).abs() < 0.2, "{p}");
        assert_eq!(
            after.label_values(STAGE_HISTOGRAM.to_string().as_str(), "sensor"),
            Vec::<String>::new()
        );
        assert_eq!(
            after.label_values(&format!("{STAGE_HISTOGRAM}_count"), "sensor"),
            vec!["a".to_string(), "b".to_string()]
        );
        assert_eq!(after.sum(crate::telemetry::metrics::WINDOWS.name, &[]), 0.0);
    }

    #[test]
    fn an_empty_histogram_has_no_quantile() {
        assert_eq!(Histogram::default().quantile_s(0.5), None);
        let h = Scrape::parse("x_bucket{le=\"+Inf\"} 0\nx_sum 0\nx_count 0\n").histogram("x", &[]);
        assert_eq!(h.latency(), None);
    }
}
