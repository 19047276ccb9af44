//! Counters shared by the pipeline's parts: samples, windows, embeddings, drops by reason, broker
//! state, handled errors. Built from the config before anything runs (no globals); read through
//! one table of metrics ([`metrics`]) for the `stats` topic and the Prometheus endpoint
//! (served by [`crate::status`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;

pub mod errors;
mod exposition;
pub mod histogram;
pub mod inference;
pub mod log_limit;
pub mod metrics;
mod stream;
pub mod triggers;

pub use errors::{ErrorKind, ErrorStats};
pub use histogram::{LatencyHistogram, Stage, StageLatencies, StageSummary};
pub use inference::{ModelIdentity, ModelSnapshot, ModelStats};
pub use log_limit::{LogLimiter, Repeats, LOG_INTERVAL};
pub use metrics::StatsSnapshot;
pub use stream::{StreamSnapshot, StreamStats};

/// Why something was dropped. Every drop in the daemon is counted under one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// The sample queue between a source and its windower was full.
    SampleQueueFull,
    /// The inference queue was full: the model cannot keep up.
    InferenceBacklog,
    /// A sample or frame was malformed and skipped.
    BadInput,
    /// Preprocessing rejected a window.
    PreprocessError,
    /// The model failed on a window.
    InferenceError,
    /// A camera frame was passed over: one frame per interval is embedded.
    FrameSkipped,
    /// The on-disk outbox was full (broker unreachable for long): the oldest message was dropped.
    OutboxFull,
    /// The capture device overran (ALSA xrun): it lost frames before the daemon read them. Counts
    /// overrun events; the frames missing show as gaps.
    DeviceOverrun,
}

impl DropReason {
    /// Every reason, in metric order.
    pub const ALL: [DropReason; 8] = [
        Self::SampleQueueFull,
        Self::InferenceBacklog,
        Self::BadInput,
        Self::PreprocessError,
        Self::InferenceError,
        Self::FrameSkipped,
        Self::OutboxFull,
        Self::DeviceOverrun,
    ];

    /// The label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SampleQueueFull => "sample_queue_full",
            Self::InferenceBacklog => "inference_backlog",
            Self::BadInput => "bad_input",
            Self::PreprocessError => "preprocess_error",
            Self::InferenceError => "inference_error",
            Self::FrameSkipped => "frame_skipped",
            Self::OutboxFull => "outbox_full",
            Self::DeviceOverrun => "device_overrun",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Counters of the publisher.
#[derive(Debug, Default)]
pub struct PublishStats {
    /// Messages acknowledged by the broker (or written, for QoS 0).
    pub delivered: AtomicU64,
    /// Messages sent again after a reconnect.
    pub resent: AtomicU64,
    /// Successful connections after the first.
    pub reconnects: AtomicU64,
    /// Whether the broker connection is up.
    pub connected: AtomicBool,
    /// Messages waiting for acknowledgement.
    pub unacked: AtomicU64,
    /// Bytes the outbox uses on disk.
    pub outbox_bytes: AtomicU64,
    /// Messages in the outbox (not yet acknowledged).
    pub outbox_messages: AtomicU64,
    /// Messages dropped because the outbox was full.
    pub outbox_dropped: AtomicU64,
    /// Corrupt tails truncated when the outbox was opened.
    pub outbox_corrupt_tails: AtomicU64,
    /// Outbox writes refused by a full filesystem or quota (ENOSPC, EDQUOT).
    pub outbox_disk_full: AtomicU64,
    /// Connection attempts refused by the broker (bad credentials, not authorised).
    pub refused: AtomicU64,
    /// Messages an MQTT 5 broker refused in its PUBACK (not authorised, quota): dropped.
    pub rejected: AtomicU64,
}

/// A bounded queue whose depth is a gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum QueueKind {
    /// A source's samples or frames waiting for its stream thread (one per sensor).
    Sample,
    /// Preprocessed windows waiting for a model's inference worker (one per modality).
    Inference,
    /// Events waiting for an output (one per output; `mqtt`: not yet in the outbox).
    Publisher,
}

impl QueueKind {
    /// The label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sample => "sample",
            Self::Inference => "inference",
            Self::Publisher => "publisher",
        }
    }
}

/// Reads a queue's current depth; must not keep the queue open (hold a weak handle).
pub type DepthProbe = Box<dyn Fn() -> usize + Send + Sync>;

struct QueueGauge {
    kind: QueueKind,
    name: String,
    capacity: usize,
    depth: DepthProbe,
}

impl std::fmt::Debug for QueueGauge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueGauge")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

/// The depth of one queue at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDepth {
    /// Which queue.
    pub kind: QueueKind,
    /// Its sensor, modality or `mqtt`.
    pub name: String,
    /// Items waiting.
    pub depth: usize,
    /// Most items it holds.
    pub capacity: usize,
}

/// The concept bank in use and its reloads.
#[derive(Debug, Default)]
pub struct ConceptStats {
    /// Concepts and sha256 of the bank in use.
    active: Mutex<Option<(usize, String)>>,
    /// Banks taken into use by a reload (SIGHUP).
    pub reloads: AtomicU64,
    /// Reloads refused because the new bank was invalid (the old one stayed).
    pub reload_failures: AtomicU64,
    /// Control commands (MQTT) that changed a set or left it as it was.
    pub commands_applied: AtomicU64,
    /// Control commands refused (answered on the error topic; the set stayed).
    pub commands_refused: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Counters stay meaningful after a panic elsewhere; never propagate the poison.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ConceptStats {
    /// Records the bank now in use.
    pub fn set_active(&self, count: usize, sha256: &str) {
        *lock(&self.active) = Some((count, sha256.to_string()));
    }

    /// Concepts and sha256 of the bank in use, once one is loaded.
    #[must_use]
    pub fn active(&self) -> Option<(usize, String)> {
        lock(&self.active).clone()
    }
}

/// All counters of one daemon.
#[derive(Debug)]
pub struct Telemetry {
    started: Instant,
    streams: BTreeMap<String, Arc<StreamStats>>,
    /// The publisher's counters.
    pub publish: PublishStats,
    models: Mutex<Vec<Arc<ModelStats>>>,
    /// The concept bank.
    pub concepts: ConceptStats,
    /// Errors handled, by kind.
    pub errors: ErrorStats,
    /// The trigger stage's events, scene slots and control commands.
    pub triggers: triggers::TriggerStats,
    queues: Mutex<Vec<QueueGauge>>,
    /// Events each output dropped (by name).
    outputs: Mutex<Vec<(String, Arc<AtomicU64>)>>,
    /// Incoming MQTT messages each inbound route dropped because its queue was full (by name).
    inbound: Mutex<Vec<(String, Arc<AtomicU64>)>>,
}

impl Telemetry {
    /// Counters for the named streams.
    #[must_use]
    pub fn new<'a>(stream_names: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            started: Instant::now(),
            streams: stream_names
                .into_iter()
                .map(|n| (n.to_string(), Arc::new(StreamStats::default())))
                .collect(),
            publish: PublishStats::default(),
            models: Mutex::new(Vec::new()),
            concepts: ConceptStats::default(),
            errors: ErrorStats::default(),
            triggers: triggers::TriggerStats::default(),
            queues: Mutex::new(Vec::new()),
            outputs: Mutex::new(Vec::new()),
            inbound: Mutex::new(Vec::new()),
        }
    }

    /// The drop counter of the inbound MQTT route `name` (registered on first use).
    pub fn inbound_drops(&self, name: &str) -> Arc<AtomicU64> {
        let mut routes = lock(&self.inbound);
        if let Some((_, n)) = routes.iter().find(|(r, _)| r == name) {
            return Arc::clone(n);
        }
        let n = Arc::new(AtomicU64::new(0));
        routes.push((name.to_string(), Arc::clone(&n)));
        n
    }

    /// Incoming MQTT messages dropped per inbound route.
    #[must_use]
    pub fn inbound_dropped(&self) -> Vec<(String, u64)> {
        lock(&self.inbound)
            .iter()
            .map(|(r, n)| (r.clone(), n.load(Ordering::Relaxed)))
            .collect()
    }

    /// Time since the counters were created (the daemon's start).
    #[must_use]
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Registers a loaded model (its provider and run counters join stats and metrics).
    pub fn add_model(&self, model: Arc<ModelStats>) {
        lock(&self.models).push(model);
    }

    /// The loaded models.
    #[must_use]
    pub fn models(&self) -> Vec<Arc<ModelStats>> {
        lock(&self.models).clone()
    }

    /// Makes the depth of a bounded queue a gauge. `depth` is read when metrics are rendered.
    pub fn register_queue(&self, kind: QueueKind, name: &str, capacity: usize, depth: DepthProbe) {
        lock(&self.queues).push(QueueGauge {
            kind,
            name: name.to_string(),
            capacity,
            depth,
        });
    }

    /// Every registered queue's depth now, by kind and name.
    #[must_use]
    pub fn queue_depths(&self) -> Vec<QueueDepth> {
        let mut v: Vec<QueueDepth> = lock(&self.queues)
            .iter()
            .map(|q| QueueDepth {
                kind: q.kind,
                name: q.name.clone(),
                depth: (q.depth)(),
                capacity: q.capacity,
            })
            .collect();
        v.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
        v
    }

    /// The drop counter of the output `name` (registered on first use).
    #[must_use]
    pub fn output_drops_counter(&self, name: &str) -> Arc<AtomicU64> {
        let mut outputs = lock(&self.outputs);
        if let Some((_, c)) = outputs.iter().find(|(n, _)| n == name) {
            return Arc::clone(c);
        }
        let c = Arc::new(AtomicU64::new(0));
        outputs.push((name.to_string(), Arc::clone(&c)));
        c
    }

    /// Events dropped per output.
    #[must_use]
    pub fn output_drops(&self) -> Vec<(String, u64)> {
        lock(&self.outputs)
            .iter()
            .map(|(n, c)| (n.clone(), c.load(Ordering::Relaxed)))
            .collect()
    }

    /// The counters of one stream; a name not configured gets a detached set (never panics).
    #[must_use]
    pub fn stream(&self, name: &str) -> Arc<StreamStats> {
        self.streams.get(name).cloned().unwrap_or_default()
    }

    /// Names of the streams.
    pub fn stream_names(&self) -> impl Iterator<Item = &str> {
        self.streams.keys().map(String::as_str)
    }

    /// Every stream's counters, by name.
    pub fn streams(&self) -> impl Iterator<Item = (&str, &StreamStats)> {
        self.streams.iter().map(|(k, v)| (k.as_str(), v.as_ref()))
    }

    /// The `<prefix>/stats` body now.
    #[must_use]
    pub fn stats_snapshot(&self) -> StatsSnapshot {
        StatsSnapshot::read(self)
    }

    /// The `<prefix>/stats` body now, as JSON (tests; the MQTT output encodes its own).
    #[cfg(test)]
    #[must_use]
    pub fn stats_json(&self) -> serde_json::Value {
        serde_json::to_value(self.stats_snapshot()).unwrap_or_default()
    }

    /// Prometheus text exposition of every metric ([`metrics::METRICS`]).
    #[must_use]
    pub fn render_prometheus(&self) -> String {
        metrics::Exposition::read(self).render()
    }
}

/// Sets up logging to stderr (journald-friendly: one line per event). `filter` follows
/// `tracing_subscriber::EnvFilter` syntax, e.g. `info` or `edgebind=debug`.
pub fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A second initialisation (tests) keeps the first subscriber: nothing to report.
    if tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init()
        .is_err()
    {
        tracing::debug!("logging was already set up");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_are_counted_by_reason() {
        let t = Telemetry::new(["imu0"]);
        t.stream("imu0").add_drops(DropReason::InferenceBacklog, 3);
        let s = t.stream("imu0").snapshot();
        assert_eq!(s.drops_total["inference_backlog"], 3);
        assert_eq!(s.drops_total["sample_queue_full"], 0);
        assert!(t
            .render_prometheus()
            .contains("edgebind_drops_total{sensor=\"imu0\",reason=\"inference_backlog\"} 3"));
    }

    #[test]
    fn stage_latencies_reach_stats_and_metrics() {
        let t = Telemetry::new(["imu0"]);
        t.stream("imu0")
            .record_latency(Stage::Inference, std::time::Duration::from_millis(4));
        let stats = t.stats_json();
        let inf = &stats["latency"]["imu0"]["inference"];
        assert_eq!(inf["count"], 1);
        let p50 = inf["p50_ms"].as_f64().unwrap_or(0.0);
        assert!((3.0..5.0).contains(&p50), "{p50}");
        assert_eq!(stats["latency"]["imu0"]["queue"]["count"], 0);
        assert!(t.render_prometheus().contains(
            "edgebind_stage_latency_seconds_count{sensor=\"imu0\",stage=\"inference\"} 1"
        ));
    }

    #[test]
    fn the_provider_in_use_reaches_state_stats_and_metrics() {
        let t = Telemetry::new(["imu0"]);
        let m = Arc::new(
            ModelStats::new(crate::Modality::Imu, "tensorrt", "1.31.1", "ab12")
                .with_step("tensorrt-fp32"),
        );
        t.add_model(Arc::clone(&m));
        t.stream("imu0").set_model(Arc::clone(&m));
        m.add_run(3, Some(std::time::Duration::from_millis(2)));
        let state = serde_json::to_value(t.stream("imu0").snapshot()).unwrap_or_default();
        assert_eq!(state["inference"]["provider"], "tensorrt");
        assert_eq!(state["inference"]["step"], "tensorrt-fp32");
        assert_eq!(state["inference"]["ort_version"], "1.31.1");
        let stats = t.stats_json();
        assert_eq!(stats["inference"]["imu"]["step"], "tensorrt-fp32");
        assert_eq!(stats["inference"]["imu"]["runs_total"], 1);
        assert_eq!(stats["inference"]["imu"]["windows_total"], 3);
        let text = t.render_prometheus();
        assert!(text.contains(
            "edgebind_inference_provider_info{model=\"imu\",provider=\"tensorrt\",step=\"tensorrt-fp32\",ort_version=\"1.31.1\"} 1"
        ));
        assert!(text.contains("edgebind_inference_runs_total{model=\"imu\"} 1"));
        assert!(text.contains("edgebind_inference_windows_total{model=\"imu\"} 3"));
        assert!(text.contains("edgebind_inference_cpu_seconds_total{model=\"imu\"} 0.002\n"));
    }

    #[test]
    fn reused_embeddings_reach_state_stats_and_metrics() {
        let t = Telemetry::new(["therm"]);
        let s = t.stream("therm");
        s.add_embedding();
        s.add_embedding();
        s.add_reused();
        let state = serde_json::to_value(s.snapshot()).unwrap_or_default();
        assert_eq!(state["embeddings_total"], 2);
        assert_eq!(state["embeddings_reused_total"], 1);
        assert_eq!(
            t.stats_json()["streams"]["therm"]["embeddings_reused_total"],
            1
        );
        assert!(t
            .render_prometheus()
            .contains("edgebind_embeddings_reused_total{sensor=\"therm\"} 1\n"));
    }

    #[test]
    fn queue_depths_are_read_when_rendered() {
        let t = Telemetry::new(["imu0"]);
        let depth = Arc::new(AtomicU64::new(3));
        let probe = Arc::clone(&depth);
        t.register_queue(
            QueueKind::Inference,
            "imu",
            8,
            Box::new(move || probe.load(Ordering::Relaxed) as usize),
        );
        t.register_queue(QueueKind::Sample, "imu0", 64, Box::new(|| 0));
        let text = t.render_prometheus();
        assert!(text.contains("edgebind_queue_depth{queue=\"inference\",name=\"imu\"} 3"));
        assert!(text.contains("edgebind_queue_capacity{queue=\"sample\",name=\"imu0\"} 64"));
        depth.store(7, Ordering::Relaxed);
        assert!(t
            .render_prometheus()
            .contains("edgebind_queue_depth{queue=\"inference\",name=\"imu\"} 7"));
        assert_eq!(t.queue_depths()[0].kind, QueueKind::Sample);
    }

    #[test]
    fn the_active_concept_bank_is_a_metric() {
        let t = Telemetry::new(["a"]);
        assert!(!t
            .render_prometheus()
            .contains("edgebind_concept_bank_concepts{"));
        t.concepts.set_active(12, "abc123");
        t.concepts.reloads.fetch_add(1, Ordering::Relaxed);
        let text = t.render_prometheus();
        assert!(text.contains("edgebind_concept_bank_concepts{sha256=\"abc123\"} 12"));
        assert!(text.contains("edgebind_concept_bank_reloads_total 1"));
    }

    #[test]
    fn unknown_stream_gets_detached_counters() {
        let t = Telemetry::new(["a"]);
        t.stream("zzz").add_window(0);
        assert_eq!(t.stream("a").windows(), 0);
    }
}
