//! Counters shared by the pipeline's parts: samples, windows, embeddings, drops by reason, broker
//! state. Built from the config before anything runs (no globals); snapshotted for the `stats`
//! and `state` topics and rendered in Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use serde::Serialize;

pub mod histogram;
pub mod http;
pub mod inference;
pub mod log_limit;

pub use histogram::{LatencyHistogram, Stage, StageLatencies, StageSummary};
pub use inference::{ModelIdentity, ModelSnapshot, ModelStats};
pub use log_limit::{LogLimiter, Repeats, LOG_INTERVAL};

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

    fn index(self) -> usize {
        self as usize
    }
}

/// Counters of one sensor stream.
#[derive(Debug, Default)]
pub struct StreamStats {
    samples: AtomicU64,
    windows: AtomicU64,
    embeddings: AtomicU64,
    gaps: AtomicU64,
    drops: [AtomicU64; DropReason::ALL.len()],
    last_sample_utc_ns: AtomicI64,
    sample_rate_millihz: AtomicU64,
    connected: AtomicBool,
    latency: StageLatencies,
    model: OnceLock<Arc<ModelStats>>,
}

impl StreamStats {
    /// Counts `n` samples captured, the last at `utc_ns`.
    pub fn add_samples(&self, n: u64, last_utc_ns: i64) {
        self.samples.fetch_add(n, Ordering::Relaxed);
        self.last_sample_utc_ns
            .store(last_utc_ns, Ordering::Relaxed);
    }
    /// Counts one window cut, with the samples its gaps miss.
    pub fn add_window(&self, gaps: u64) {
        self.windows.fetch_add(1, Ordering::Relaxed);
        self.gaps.fetch_add(gaps, Ordering::Relaxed);
    }
    /// Counts one embedding handed to the publisher.
    pub fn add_embedding(&self) {
        self.embeddings.fetch_add(1, Ordering::Relaxed);
    }
    /// Counts `n` items dropped for `reason`.
    pub fn add_drops(&self, reason: DropReason, n: u64) {
        if let Some(c) = self.drops.get(reason.index()) {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }
    /// Records whether the device is delivering and at which rate.
    pub fn set_connected(&self, connected: bool, sample_rate_hz: f64) {
        self.connected.store(connected, Ordering::Relaxed);
        // Stored in millihertz so an atomic integer can carry it.
        let millihz = (sample_rate_hz.max(0.0) * 1000.0).round() as u64;
        self.sample_rate_millihz.store(millihz, Ordering::Relaxed);
    }
    /// Drops counted for `reason`.
    #[must_use]
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops
            .get(reason.index())
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
    /// Records the time one window spent in `stage`.
    pub fn record_latency(&self, stage: Stage, d: std::time::Duration) {
        self.latency.record(stage, d);
    }
    /// The stage latency histograms.
    #[must_use]
    pub fn latency(&self) -> &StageLatencies {
        &self.latency
    }
    /// Records which model embeds this stream's windows (once, at start).
    pub fn set_model(&self, model: Arc<ModelStats>) {
        let _ = self.model.set(model);
    }
    /// Windows cut so far.
    #[must_use]
    pub fn windows(&self) -> u64 {
        self.windows.load(Ordering::Relaxed)
    }

    /// A consistent-enough copy for reporting.
    #[must_use]
    pub fn snapshot(&self) -> StreamSnapshot {
        let last = self.last_sample_utc_ns.load(Ordering::Relaxed);
        StreamSnapshot {
            connected: self.connected.load(Ordering::Relaxed),
            sample_rate_hz: self.sample_rate_millihz.load(Ordering::Relaxed) as f64 / 1000.0,
            last_sample_utc_ns: (last != 0).then_some(last),
            samples_total: self.samples.load(Ordering::Relaxed),
            windows_total: self.windows.load(Ordering::Relaxed),
            embeddings_total: self.embeddings.load(Ordering::Relaxed),
            gap_samples_total: self.gaps.load(Ordering::Relaxed),
            drops_total: DropReason::ALL
                .iter()
                .map(|r| (r.as_str(), self.drops(*r)))
                .collect(),
            inference: self.model.get().map(|m| m.identity()),
        }
    }
}

/// What a stream's counters said at one moment (the `state` payload's body).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StreamSnapshot {
    /// The device is open and delivering.
    pub connected: bool,
    /// Nominal sample rate of the device.
    pub sample_rate_hz: f64,
    /// Capture time of the newest sample.
    pub last_sample_utc_ns: Option<i64>,
    /// Samples captured.
    pub samples_total: u64,
    /// Windows cut.
    pub windows_total: u64,
    /// Embeddings handed to the publisher.
    pub embeddings_total: u64,
    /// Samples missing inside windows (gaps).
    pub gap_samples_total: u64,
    /// Drops by reason.
    pub drops_total: BTreeMap<&'static str, u64>,
    /// The model embedding this stream's windows: provider in use, ONNX Runtime version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inference: Option<ModelIdentity>,
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
    /// Messages waiting for the MQTT publisher to take them into the outbox (one).
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
    queues: Mutex<Vec<QueueGauge>>,
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
            queues: Mutex::new(Vec::new()),
        }
    }

    /// Registers a loaded model (its provider and run counters join stats and metrics).
    pub fn add_model(&self, model: Arc<ModelStats>) {
        if let Ok(mut models) = self.models.lock() {
            models.push(model);
        }
    }

    /// The loaded models.
    #[must_use]
    pub fn models(&self) -> Vec<Arc<ModelStats>> {
        self.models.lock().map(|m| m.clone()).unwrap_or_default()
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

    /// The counters of one stream; a name not configured gets a detached set (never panics).
    #[must_use]
    pub fn stream(&self, name: &str) -> Arc<StreamStats> {
        self.streams.get(name).cloned().unwrap_or_default()
    }

    /// Names of the streams.
    pub fn stream_names(&self) -> impl Iterator<Item = &str> {
        self.streams.keys().map(String::as_str)
    }

    /// The `<prefix>/stats` body.
    #[must_use]
    pub fn stats_json(&self) -> serde_json::Value {
        let streams: BTreeMap<&str, StreamSnapshot> = self
            .streams
            .iter()
            .map(|(k, v)| (k.as_str(), v.snapshot()))
            .collect();
        serde_json::json!({
            "v": 1,
            "uptime_s": self.started.elapsed().as_secs_f64(),
            "broker_connected": self.publish.connected.load(Ordering::Relaxed),
            "messages_delivered_total": self.publish.delivered.load(Ordering::Relaxed),
            "messages_resent_total": self.publish.resent.load(Ordering::Relaxed),
            "messages_unacked": self.publish.unacked.load(Ordering::Relaxed),
            "broker_reconnects_total": self.publish.reconnects.load(Ordering::Relaxed),
            "broker_refused_total": self.publish.refused.load(Ordering::Relaxed),
            "outbox_bytes": self.publish.outbox_bytes.load(Ordering::Relaxed),
            "outbox_messages": self.publish.outbox_messages.load(Ordering::Relaxed),
            "outbox_dropped_total": self.publish.outbox_dropped.load(Ordering::Relaxed),
            "outbox_corrupt_tails_total": self.publish.outbox_corrupt_tails.load(Ordering::Relaxed),
            "outbox_disk_full_total": self.publish.outbox_disk_full.load(Ordering::Relaxed),
            "streams": streams,
            "latency": self
                .streams
                .iter()
                .map(|(k, v)| (k.as_str(), v.latency.summary()))
                .collect::<BTreeMap<_, _>>(),
            "inference": self
                .models()
                .iter()
                .map(|m| (m.modality.as_str(), m.snapshot()))
                .collect::<BTreeMap<_, _>>(),
        })
    }

    /// Prometheus text exposition of every counter.
    #[must_use]
    pub fn render_prometheus(&self) -> String {
        let mut out = String::new();
        let metric = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        metric(
            &mut out,
            "edgebind_samples_total",
            "counter",
            "Samples captured per sensor.",
        );
        for (s, st) in &self.streams {
            let _ = writeln!(
                out,
                "edgebind_samples_total{{sensor=\"{s}\"}} {}",
                st.samples.load(Ordering::Relaxed)
            );
        }
        metric(
            &mut out,
            "edgebind_windows_total",
            "counter",
            "Windows cut per sensor.",
        );
        for (s, st) in &self.streams {
            let _ = writeln!(
                out,
                "edgebind_windows_total{{sensor=\"{s}\"}} {}",
                st.windows()
            );
        }
        metric(
            &mut out,
            "edgebind_drops_total",
            "counter",
            "Items dropped per sensor and reason.",
        );
        for (s, st) in &self.streams {
            for r in DropReason::ALL {
                let _ = writeln!(
                    out,
                    "edgebind_drops_total{{sensor=\"{s}\",reason=\"{}\"}} {}",
                    r.as_str(),
                    st.drops(r)
                );
            }
        }
        metric(
            &mut out,
            "edgebind_messages_delivered_total",
            "counter",
            "MQTT messages acknowledged by the broker.",
        );
        let _ = writeln!(
            out,
            "edgebind_messages_delivered_total {}",
            self.publish.delivered.load(Ordering::Relaxed)
        );
        metric(
            &mut out,
            "edgebind_broker_connected",
            "gauge",
            "1 while the MQTT connection is up.",
        );
        let _ = writeln!(
            out,
            "edgebind_broker_connected {}",
            u8::from(self.publish.connected.load(Ordering::Relaxed))
        );
        let p = &self.publish;
        for (name, kind, help, value) in [
            (
                "edgebind_embeddings_total",
                "counter",
                "Embeddings produced, all sensors.",
                self.streams
                    .values()
                    .map(|s| s.embeddings.load(Ordering::Relaxed))
                    .sum(),
            ),
            (
                "edgebind_broker_reconnects_total",
                "counter",
                "Successful MQTT connections after the first.",
                p.reconnects.load(Ordering::Relaxed),
            ),
            (
                "edgebind_broker_refused_total",
                "counter",
                "Connection attempts refused by the broker.",
                p.refused.load(Ordering::Relaxed),
            ),
            (
                "edgebind_messages_rejected_total",
                "counter",
                "MQTT 5 messages the broker refused in its PUBACK (dropped).",
                p.rejected.load(Ordering::Relaxed),
            ),
            (
                "edgebind_messages_resent_total",
                "counter",
                "MQTT messages sent again after a reconnect.",
                p.resent.load(Ordering::Relaxed),
            ),
            (
                "edgebind_messages_unacked",
                "gauge",
                "MQTT messages waiting for acknowledgement.",
                p.unacked.load(Ordering::Relaxed),
            ),
            (
                "edgebind_outbox_bytes",
                "gauge",
                "Bytes the on-disk outbox uses.",
                p.outbox_bytes.load(Ordering::Relaxed),
            ),
            (
                "edgebind_outbox_messages",
                "gauge",
                "Messages in the outbox not yet acknowledged.",
                p.outbox_messages.load(Ordering::Relaxed),
            ),
            (
                "edgebind_outbox_dropped_total",
                "counter",
                "Messages dropped because the outbox was full.",
                p.outbox_dropped.load(Ordering::Relaxed),
            ),
            (
                "edgebind_outbox_corrupt_tails_total",
                "counter",
                "Corrupt outbox tails truncated at start.",
                p.outbox_corrupt_tails.load(Ordering::Relaxed),
            ),
            (
                "edgebind_outbox_disk_full_total",
                "counter",
                "Outbox writes refused by a full filesystem or quota (ENOSPC, EDQUOT); \
                 outbox.when_full then applies.",
                p.outbox_disk_full.load(Ordering::Relaxed),
            ),
        ] {
            metric(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
        }
        metric(
            &mut out,
            "edgebind_stage_latency_seconds",
            "histogram",
            "Time a window spends per stage (preprocess, queue, inference, publish = handed to the \
             publisher until PUBACK, end_to_end = window end until PUBACK).",
        );
        for (s, st) in &self.streams {
            for stage in Stage::ALL {
                st.latency.get(stage).render_prometheus(
                    &mut out,
                    "edgebind_stage_latency_seconds",
                    &format!("sensor=\"{s}\",stage=\"{}\"", stage.as_str()),
                );
            }
        }
        let models = self.models();
        inference::render_prometheus(&mut out, models.iter().map(AsRef::as_ref));
        let queues = self.queue_depths();
        for (name, help, value) in [
            (
                "edgebind_queue_depth",
                "Items waiting in a bounded queue: queue=sample (per sensor), inference (per \
                 modality's model), publisher (messages not yet in the outbox).",
                (|q: &QueueDepth| q.depth) as fn(&QueueDepth) -> usize,
            ),
            (
                "edgebind_queue_capacity",
                "Most items a bounded queue holds before its when-full policy applies.",
                |q: &QueueDepth| q.capacity,
            ),
        ] {
            metric(&mut out, name, "gauge", help);
            for q in &queues {
                let _ = writeln!(
                    out,
                    "{name}{{queue=\"{}\",name=\"{}\"}} {}",
                    q.kind.as_str(),
                    q.name,
                    value(q)
                );
            }
        }
        let c = &self.concepts;
        for (name, kind, help, value) in [
            (
                "edgebind_concept_bank_reloads_total",
                "counter",
                "Concept banks taken into use by a reload (SIGHUP).",
                c.reloads.load(Ordering::Relaxed),
            ),
            (
                "edgebind_concept_bank_reload_failures_total",
                "counter",
                "Reloads refused because the new concept bank was invalid (the old one stayed).",
                c.reload_failures.load(Ordering::Relaxed),
            ),
        ] {
            metric(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
        }
        if let Some((count, sha256)) = c.active() {
            metric(
                &mut out,
                "edgebind_concept_bank_concepts",
                "gauge",
                "Concepts in the bank in use; its sha256 (of labels and embeddings) is the label.",
            );
            let _ = writeln!(
                out,
                "edgebind_concept_bank_concepts{{sha256=\"{sha256}\"}} {count}"
            );
        }
        metric(
            &mut out,
            "edgebind_uptime_seconds",
            "gauge",
            "Seconds since the daemon started.",
        );
        let _ = writeln!(
            out,
            "edgebind_uptime_seconds {:.3}",
            self.started.elapsed().as_secs_f64()
        );
        out
    }
}

/// Sets up logging to stderr (journald-friendly: one line per event). `filter` follows
/// `tracing_subscriber::EnvFilter` syntax, e.g. `info` or `edgebind=debug`.
pub fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A second initialisation (tests) is harmless; ignore it.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
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
        assert!(text.contains("edgebind_inference_cpu_seconds_total{model=\"imu\"} 0.002000"));
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
