//! `GET /metrics`: the rows of the metrics table read into an owned [`Exposition`] at scrape
//! time and encoded by prometheus-client's Prometheus text encoder (format 0.0.4) through a
//! custom collector.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::metrics::{Kind, Metric, Value, Values, METRICS};
use super::Telemetry;

/// Every row's values at one moment, owned, for prometheus-client's encoder.
#[derive(Debug)]
pub struct Exposition(Vec<(&'static Metric, Values)>);

impl Exposition {
    /// Reads every row of [`METRICS`].
    #[must_use]
    pub fn read(t: &Telemetry) -> Self {
        Self(METRICS.iter().map(|m| (*m, m.read.read(t))).collect())
    }

    /// Prometheus text format 0.0.4.
    #[must_use]
    pub fn render(self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry) {
            // Writing to a String does not fail; a collector error leaves a partial text.
            tracing::warn!(error = %e, "metrics exposition incomplete");
        }
        out
    }
}

/// The exposition's content type.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

fn encode_value(e: &mut MetricEncoder<'_>, kind: Kind, v: Value) -> std::fmt::Result {
    let n = |v: Value| match v {
        Value::Count(n) => n,
        Value::Flag(b) => u64::from(b),
        Value::Real(_) => 0,
    };
    match (kind, v) {
        (Kind::Counter, Value::Real(x)) => e.encode_counter::<NoLabelSet, _, u64>(&x, None),
        (Kind::Counter, v) => e.encode_counter::<NoLabelSet, _, u64>(&n(v), None),
        (_, Value::Real(x)) => e.encode_gauge(&x),
        (_, v) => e.encode_gauge(&n(v)),
    }
}

impl Collector for Exposition {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        for (m, values) in &self.0 {
            // prometheus-client appends `_total` to counter names itself.
            let (name, kind) = match m.kind {
                Kind::Counter => (m.name.trim_end_matches("_total"), MetricType::Counter),
                Kind::Gauge => (m.name, MetricType::Gauge),
                Kind::Histogram => (m.name, MetricType::Histogram),
            };
            let mut e = encoder.encode_descriptor(name, m.help, None, kind)?;
            match values {
                Values::One(v) => encode_value(&mut e, m.kind, *v)?,
                Values::Series(series) => {
                    for (labels, v) in series {
                        encode_value(&mut e.encode_family(labels)?, m.kind, *v)?;
                    }
                }
                Values::Histograms(hs) => {
                    for (labels, h) in hs {
                        e.encode_family(labels)?
                            .encode_histogram::<NoLabelSet>(h.sum_s, h.count, &h.buckets, None)?;
                    }
                }
            }
        }
        Ok(())
    }
}
