//! The one table of the daemon's metrics. Each row names a metric once — its name as scraped,
//! help, type, and how its value is read — and feeds every place that shows it:
//! - `GET /metrics`: the rows are read into an owned [`Exposition`] at scrape time (the counters
//!   stay lock-free atomics and histograms on the hot path) and encoded by prometheus-client's
//!   Prometheus text encoder (format 0.0.4) through a custom collector;
//! - `<prefix>/stats`: the rows with a `stats` key ([`StatsSnapshot`]);
//! - the bench's scrape parser, which looks series up by the names here ([`DROPS`],
//!   [`STAGE_LATENCY`], …).
//!
//! Adding a counter is its field where it is counted plus one row here.

use std::collections::BTreeMap;

use serde::ser::{SerializeMap as _, Serializer};
use serde::Serialize;

pub use super::exposition::{Exposition, CONTENT_TYPE};
use super::{DropReason, ErrorKind, ModelSnapshot, Stage, StageSummary, StreamSnapshot, Telemetry};
use std::sync::atomic::Ordering;

/// A number as read at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// A count or a size.
    Count(u64),
    /// A real number (seconds).
    Real(f64),
    /// A state: 1 or 0 in the exposition, `true`/`false` in `stats`.
    Flag(bool),
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            Self::Count(n) => s.serialize_u64(n),
            Self::Real(x) => s.serialize_f64(x),
            Self::Flag(b) => s.serialize_bool(b),
        }
    }
}

/// The exposition type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (name ends in `_total`).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Latency buckets.
    Histogram,
}

/// Labels of one series: static names, values read at scrape time.
pub type Labels = Vec<(&'static str, String)>;

/// One histogram as read: non-cumulative counts per finite upper bound (seconds), the total
/// count (the `+Inf` bucket) and the sum in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramValues {
    /// `(upper bound s, count in that bucket)`.
    pub buckets: Vec<(f64, u64)>,
    /// Observations.
    pub count: u64,
    /// Sum of the observations, seconds.
    pub sum_s: f64,
}

/// How a row's values are read.
#[derive(Debug, Clone, Copy)]
pub enum Read {
    /// One unlabelled value.
    One(fn(&Telemetry) -> Value),
    /// Labelled series.
    Series(fn(&Telemetry) -> Vec<(Labels, Value)>),
    /// Labelled histograms.
    Histograms(fn(&Telemetry) -> Vec<(Labels, HistogramValues)>),
}

/// One metric.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// Its name as scraped (counters end in `_total`).
    pub name: &'static str,
    /// What it counts.
    pub help: &'static str,
    /// Its type.
    pub kind: Kind,
    /// Its key in `<prefix>/stats`: the value, or for series with one label an object keyed by
    /// that label's value. `None`: the metrics endpoint only.
    pub stats: Option<&'static str>,
    /// How it is read.
    pub read: Read,
}

fn count(n: u64) -> Value {
    Value::Count(n)
}

fn per_sensor(t: &Telemetry, get: fn(&super::StreamStats) -> u64) -> Vec<(Labels, Value)> {
    t.streams()
        .map(|(name, s)| (vec![("sensor", name.to_string())], count(get(s))))
        .collect()
}

fn per_model(t: &Telemetry, get: fn(&super::ModelStats) -> Value) -> Vec<(Labels, Value)> {
    t.models()
        .iter()
        .map(|m| (vec![("model", m.modality.to_string())], get(m)))
        .collect()
}

fn per_queue(t: &Telemetry, get: fn(&super::QueueDepth) -> usize) -> Vec<(Labels, Value)> {
    t.queue_depths()
        .iter()
        .map(|q| {
            let labels = vec![
                ("queue", q.kind.as_str().to_string()),
                ("name", q.name.clone()),
            ];
            (labels, count(get(q) as u64))
        })
        .collect()
}

/// Samples captured per sensor.
pub const SAMPLES: Metric = Metric {
    name: "edgebind_samples_total",
    help: "Samples captured per sensor.",
    kind: Kind::Counter,
    stats: None,
    read: Read::Series(|t| per_sensor(t, super::StreamStats::samples)),
};

/// Windows cut per sensor.
pub const WINDOWS: Metric = Metric {
    name: "edgebind_windows_total",
    help: "Windows cut per sensor.",
    kind: Kind::Counter,
    stats: None,
    read: Read::Series(|t| per_sensor(t, super::StreamStats::windows)),
};

/// Embeddings reused per sensor (`skip_unchanged`).
pub const REUSED: Metric = Metric {
    name: "edgebind_embeddings_reused_total",
    help: "Embeddings published again for a window whose model input had not changed \
           (skip_unchanged), per sensor; the encoder did not run for them.",
    kind: Kind::Counter,
    stats: None,
    read: Read::Series(|t| per_sensor(t, super::StreamStats::reused)),
};

/// Drops per sensor and reason.
pub const DROPS: Metric = Metric {
    name: "edgebind_drops_total",
    help: "Items dropped per sensor and reason.",
    kind: Kind::Counter,
    stats: None,
    read: Read::Series(|t| {
        t.streams()
            .flat_map(|(name, s)| {
                DropReason::ALL.iter().map(move |r| {
                    let labels = vec![("sensor", name.to_string()), ("reason", r.as_str().into())];
                    (labels, count(s.drops(*r)))
                })
            })
            .collect()
    }),
};

/// Time per stage, per sensor.
pub const STAGE_LATENCY: Metric = Metric {
    name: "edgebind_stage_latency_seconds",
    help: "Time a window spends per stage (preprocess, queue, inference, publish = handed to the \
           publisher until PUBACK, end_to_end = window end until PUBACK).",
    kind: Kind::Histogram,
    stats: None,
    read: Read::Histograms(|t| {
        t.streams()
            .flat_map(|(name, s)| {
                Stage::ALL.iter().map(move |stage| {
                    let labels = vec![
                        ("sensor", name.to_string()),
                        ("stage", stage.as_str().to_string()),
                    ];
                    (labels, s.latency().get(*stage).values())
                })
            })
            .collect()
    }),
};

/// Worker-thread CPU inside session runs, per model.
pub const INFERENCE_CPU: Metric = Metric {
    name: "edgebind_inference_cpu_seconds_total",
    help: "CPU time of each model's worker thread inside session runs (all of the run's CPU \
           with runtime.intra_threads = 1; with more, ONNX Runtime's own pool threads are not \
           included).",
    kind: Kind::Counter,
    stats: None,
    read: Read::Series(|t| per_model(t, |m| Value::Real(m.cpu().as_secs_f64()))),
};

/// Handled errors by kind.
pub const ERRORS: Metric = Metric {
    name: "edgebind_errors_total",
    help: "Errors the daemon handled and went on from, by kind (serialize, outbox_write, \
           outbox_read, outbox_ack, outbox_sync, broker_request, metrics_response, \
           http_refused, trigger_state); each is logged, rate-limited.",
    kind: Kind::Counter,
    stats: Some("errors_total"),
    read: Read::Series(|t| {
        ErrorKind::ALL
            .iter()
            .map(|k| {
                (
                    vec![("kind", k.as_str().to_string())],
                    count(t.errors.get(*k)),
                )
            })
            .collect()
    }),
};

/// A publisher counter or gauge, as a row.
macro_rules! publish_row {
    ($name:literal, $kind:ident, $stats:expr, $help:literal, $field:ident) => {
        &Metric {
            name: $name,
            help: $help,
            kind: Kind::$kind,
            stats: $stats,
            read: Read::One(|t| count(t.publish.$field.load(Ordering::Relaxed))),
        }
    };
}

/// Every metric, in exposition order.
pub const METRICS: &[&Metric] = &[
    &SAMPLES,
    &WINDOWS,
    &REUSED,
    &DROPS,
    publish_row!("edgebind_messages_delivered_total", Counter, Some("messages_delivered_total"),
        "MQTT messages acknowledged by the broker.", delivered),
    &Metric {
        name: "edgebind_broker_connected",
        help: "1 while the MQTT connection is up.",
        kind: Kind::Gauge,
        stats: Some("broker_connected"),
        read: Read::One(|t| Value::Flag(t.publish.connected.load(Ordering::Relaxed))),
    },
    &Metric {
        name: "edgebind_embeddings_total",
        help: "Embeddings produced, all sensors.",
        kind: Kind::Counter,
        stats: None,
        read: Read::One(|t| count(t.streams().map(|(_, s)| s.embeddings()).sum())),
    },
    publish_row!("edgebind_broker_reconnects_total", Counter, Some("broker_reconnects_total"),
        "Successful MQTT connections after the first.", reconnects),
    publish_row!("edgebind_broker_refused_total", Counter, Some("broker_refused_total"),
        "Connection attempts refused by the broker.", refused),
    publish_row!("edgebind_messages_rejected_total", Counter, None,
        "MQTT 5 messages the broker refused in its PUBACK (dropped).", rejected),
    publish_row!("edgebind_messages_resent_total", Counter, Some("messages_resent_total"),
        "MQTT messages sent again after a reconnect.", resent),
    publish_row!("edgebind_messages_unacked", Gauge, Some("messages_unacked"),
        "MQTT messages waiting for acknowledgement.", unacked),
    publish_row!("edgebind_outbox_bytes", Gauge, Some("outbox_bytes"),
        "Bytes the on-disk outbox uses.", outbox_bytes),
    publish_row!("edgebind_outbox_messages", Gauge, Some("outbox_messages"),
        "Messages in the outbox not yet acknowledged.", outbox_messages),
    publish_row!("edgebind_outbox_dropped_total", Counter, Some("outbox_dropped_total"),
        "Messages dropped because the outbox was full.", outbox_dropped),
    publish_row!("edgebind_outbox_corrupt_tails_total", Counter, Some("outbox_corrupt_tails_total"),
        "Corrupt outbox tails truncated at start.", outbox_corrupt_tails),
    publish_row!("edgebind_outbox_disk_full_total", Counter, Some("outbox_disk_full_total"),
        "Outbox writes refused by a full filesystem or quota (ENOSPC, EDQUOT); outbox.when_full then applies.",
        outbox_disk_full),
    &STAGE_LATENCY,
    &Metric {
        name: "edgebind_inference_provider_info",
        help: "Execution provider, load step and ONNX Runtime version in use per model (value 1).",
        kind: Kind::Gauge,
        stats: None,
        read: Read::Series(|t| {
            t.models()
                .iter()
                .map(|m| {
                    let labels = vec![
                        ("model", m.modality.to_string()),
                        ("provider", m.provider.clone()),
                        ("step", m.step.clone()),
                        ("ort_version", m.ort_version.clone()),
                    ];
                    (labels, count(1))
                })
                .collect()
        }),
    },
    &Metric {
        name: "edgebind_inference_runs_total",
        help: "Session runs per model (one per batch).",
        kind: Kind::Counter,
        stats: None,
        read: Read::Series(|t| per_model(t, |m| count(m.runs()))),
    },
    &Metric {
        name: "edgebind_inference_windows_total",
        help: "Windows embedded per model (windows / runs = mean batch size).",
        kind: Kind::Counter,
        stats: None,
        read: Read::Series(|t| per_model(t, |m| count(m.windows()))),
    },
    &INFERENCE_CPU,
    &Metric {
        name: "edgebind_queue_depth",
        help: "Items waiting in a bounded queue: queue=sample (per sensor), inference (per \
               modality's model), publisher (per output; mqtt: events not yet in the outbox).",
        kind: Kind::Gauge,
        stats: None,
        read: Read::Series(|t| per_queue(t, |q| q.depth)),
    },
    &Metric {
        name: "edgebind_queue_capacity",
        help: "Most items a bounded queue holds before its when-full policy applies.",
        kind: Kind::Gauge,
        stats: None,
        read: Read::Series(|t| per_queue(t, |q| q.capacity)),
    },
    &Metric {
        name: "edgebind_output_events_dropped_total",
        help: "Events an output's full queue dropped (outputs whose when-full policy drops; \
               mqtt blocks instead).",
        kind: Kind::Counter,
        stats: None,
        read: Read::Series(|t| {
            t.output_drops()
                .into_iter()
                .map(|(name, n)| (vec![("output", name)], count(n)))
                .collect()
        }),
    },
    &Metric {
        name: "edgebind_concept_bank_reloads_total",
        help: "Concept banks taken into use by a reload (SIGHUP).",
        kind: Kind::Counter,
        stats: None,
        read: Read::One(|t| count(t.concepts.reloads.load(Ordering::Relaxed))),
    },
    &Metric {
        name: "edgebind_concept_bank_reload_failures_total",
        help: "Reloads refused because the new concept bank was invalid (the old one stayed).",
        kind: Kind::Counter,
        stats: None,
        read: Read::One(|t| count(t.concepts.reload_failures.load(Ordering::Relaxed))),
    },
    &Metric {
        name: "edgebind_concept_commands_total",
        help: "Concept-set control commands (MQTT) by outcome: applied (the set changed, or a \
               repeated command left it as it was) or refused (answered on the error topic).",
        kind: Kind::Counter,
        stats: None,
        read: Read::Series(|t| {
            let c = &t.concepts;
            vec![
                (vec![("outcome", "applied".to_string())], count(c.commands_applied.load(Ordering::Relaxed))),
                (vec![("outcome", "refused".to_string())], count(c.commands_refused.load(Ordering::Relaxed))),
            ]
        }),
    },
    &Metric {
        name: "edgebind_mqtt_inbound_dropped_total",
        help: "Incoming MQTT messages dropped because their route's queue was full (drop_newest).",
        kind: Kind::Counter,
        stats: None,
        read: Read::Series(|t| {
            t.inbound_dropped()
                .into_iter()
                .map(|(route, n)| (vec![("route", route)], count(n)))
                .collect()
        }),
    },
    &Metric {
        name: "edgebind_concept_bank_concepts",
        help: "Concepts in the bank in use; its sha256 (of labels and embeddings) is the label.",
        kind: Kind::Gauge,
        stats: None,
        read: Read::Series(|t| {
            t.concepts
                .active()
                .map(|(n, sha256)| (vec![("sha256", sha256)], count(n as u64)))
                .into_iter()
                .collect()
        }),
    },
    &ERRORS,
    &super::triggers::EVENTS,
    &super::triggers::SCENE_SLOTS,
    &super::triggers::COMMANDS,
    &Metric {
        name: "edgebind_uptime_seconds",
        help: "Seconds since the daemon started.",
        kind: Kind::Gauge,
        stats: Some("uptime_s"),
        read: Read::One(|t| Value::Real(t.uptime().as_secs_f64())),
    },
];

/// The values of one row at one moment.
#[derive(Debug, Clone)]
pub(super) enum Values {
    One(Value),
    Series(Vec<(Labels, Value)>),
    Histograms(Vec<(Labels, HistogramValues)>),
}

impl Read {
    pub(super) fn read(self, t: &Telemetry) -> Values {
        match self {
            Self::One(f) => Values::One(f(t)),
            Self::Series(f) => Values::Series(f(t)),
            Self::Histograms(f) => Values::Histograms(f(t)),
        }
    }
}

/// `<prefix>/stats` at one moment: the rows with a `stats` key, then every sensor's counters,
/// stage latencies and loaded models.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsSnapshot {
    /// Rows read as one value, by their `stats` key.
    pub values: Vec<(&'static str, Value)>,
    /// Rows of one label, by their `stats` key: label value → value.
    pub groups: Vec<(&'static str, BTreeMap<String, Value>)>,
    /// Each sensor's counters (its `state` body).
    pub streams: BTreeMap<String, StreamSnapshot>,
    /// Each sensor's stage latencies.
    pub latency: BTreeMap<String, BTreeMap<&'static str, StageSummary>>,
    /// Each loaded model, by modality.
    pub inference: BTreeMap<&'static str, ModelSnapshot>,
}

impl StatsSnapshot {
    /// Reads the rows with a `stats` key and the structured parts.
    #[must_use]
    pub fn read(t: &Telemetry) -> Self {
        let mut values = Vec::new();
        let mut groups = Vec::new();
        for m in METRICS {
            let Some(key) = m.stats else { continue };
            match m.read.read(t) {
                Values::One(v) => values.push((key, v)),
                Values::Series(series) => groups.push((
                    key,
                    series
                        .into_iter()
                        .filter_map(|(labels, v)| Some((labels.into_iter().next()?.1, v)))
                        .collect(),
                )),
                Values::Histograms(_) => {}
            }
        }
        Self {
            values,
            groups,
            streams: t
                .streams()
                .map(|(k, s)| (k.to_string(), s.snapshot()))
                .collect(),
            latency: t
                .streams()
                .map(|(k, s)| (k.to_string(), s.latency().summary()))
                .collect(),
            inference: t
                .models()
                .iter()
                .map(|m| (m.modality.as_str(), m.snapshot()))
                .collect(),
        }
    }
}

/// Version of the `stats` payload (`v`).
const STATS_VERSION: u32 = 1;

impl Serialize for StatsSnapshot {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("v", &STATS_VERSION)?;
        for (key, v) in &self.values {
            map.serialize_entry(key, v)?;
        }
        for (key, group) in &self.groups {
            map.serialize_entry(key, group)?;
        }
        map.serialize_entry("streams", &self.streams)?;
        map.serialize_entry("latency", &self.latency)?;
        map.serialize_entry("inference", &self.inference)?;
        map.end()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_unique_and_counters_end_in_total() {
        let mut names: Vec<&str> = METRICS.iter().map(|m| m.name).collect();
        for m in METRICS {
            assert!(m.name.starts_with("edgebind_"), "{}", m.name);
            assert_eq!(
                m.kind == Kind::Counter,
                m.name.ends_with("_total"),
                "{}",
                m.name
            );
        }
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "a metric is listed twice");
    }

    #[test]
    fn every_row_is_exposed_with_its_help_and_type() {
        let t = Telemetry::new(["a"]);
        let text = t.render_prometheus();
        for m in METRICS {
            let kind = match m.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
            };
            assert!(
                text.contains(&format!("# TYPE {} {kind}\n", m.name)),
                "{}\n{text}",
                m.name
            );
            assert!(
                text.contains(&format!("# HELP {} {}", m.name, m.help)),
                "{}",
                m.name
            );
        }
    }

    #[test]
    fn stats_keys_come_from_the_same_rows_as_the_metrics() {
        let t = Telemetry::new(["a"]);
        t.publish.delivered.fetch_add(7, Ordering::Relaxed);
        t.errors.add(ErrorKind::OutboxAck);
        let stats = t.stats_json();
        assert_eq!(stats["messages_delivered_total"], 7);
        assert_eq!(stats["broker_connected"], false);
        assert_eq!(stats["errors_total"]["outbox_ack"], 1);
        assert_eq!(stats["errors_total"]["serialize"], 0);
        let text = t.render_prometheus();
        assert!(
            text.contains("edgebind_messages_delivered_total 7\n"),
            "{text}"
        );
        assert!(
            text.contains("edgebind_errors_total{kind=\"outbox_ack\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("edgebind_broker_connected 0\n"), "{text}");
        // Every row with a stats key is in the payload, nothing else at the top level.
        let keys: Vec<&str> = METRICS.iter().filter_map(|m| m.stats).collect();
        let object = stats.as_object().unwrap();
        for k in &keys {
            assert!(object.contains_key(*k), "{k}");
        }
        assert_eq!(
            object.len(),
            keys.len() + 4,
            "v, streams, latency, inference"
        );
    }
}
