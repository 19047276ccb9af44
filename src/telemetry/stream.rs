//! The counters of one sensor stream and their snapshot (the body of its `state` payload).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;

use super::{DropReason, ModelIdentity, ModelStats, Stage, StageLatencies};

/// Counters of one sensor stream.
#[derive(Debug, Default)]
pub struct StreamStats {
    samples: AtomicU64,
    windows: AtomicU64,
    embeddings: AtomicU64,
    reused: AtomicU64,
    gaps: AtomicU64,
    drops: [AtomicU64; DropReason::ALL.len()],
    last_sample_utc_ns: AtomicI64,
    sample_rate_millihz: AtomicU64,
    connected: AtomicBool,
    finished: AtomicBool,
    /// Why the device could not be opened or was lost, until it opens again.
    device_error: Mutex<Option<String>>,
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
    /// Counts one embedding that reused an earlier window's because the input had not changed
    /// (also counted by [`add_embedding`](Self::add_embedding)).
    pub fn add_reused(&self) {
        self.reused.fetch_add(1, Ordering::Relaxed);
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
    /// Records that a recording played to its end: the source will deliver nothing more, which
    /// is not the same as a device that went away.
    pub fn set_finished(&self) {
        self.finished.store(true, Ordering::Relaxed);
    }
    /// Records why the device cannot be opened or was lost (`None`: it opened).
    pub fn set_device_error(&self, error: Option<String>) {
        // A poisoned lock only means a panic elsewhere while it was held; the value is a plain
        // string either way.
        *self
            .device_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = error;
    }
    /// Why the device is not open, if it failed.
    #[must_use]
    pub fn device_error(&self) -> Option<String> {
        self.device_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
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
    /// Records which model embeds this stream's windows (once, at start: a second model is
    /// ignored, the first one stays).
    pub fn set_model(&self, model: Arc<ModelStats>) {
        if self.model.set(model).is_err() {
            tracing::debug!("a stream's model is set once; the later one is ignored");
        }
    }
    /// Windows cut so far.
    #[must_use]
    pub fn windows(&self) -> u64 {
        self.windows.load(Ordering::Relaxed)
    }

    /// Samples captured so far.
    #[must_use]
    pub fn samples(&self) -> u64 {
        self.samples.load(Ordering::Relaxed)
    }

    /// Embeddings handed to the outputs so far.
    #[must_use]
    pub fn embeddings(&self) -> u64 {
        self.embeddings.load(Ordering::Relaxed)
    }

    /// Embeddings reused from an earlier window so far (`skip_unchanged`).
    #[must_use]
    pub fn reused(&self) -> u64 {
        self.reused.load(Ordering::Relaxed)
    }

    /// A consistent-enough copy for reporting.
    #[must_use]
    pub fn snapshot(&self) -> StreamSnapshot {
        let last = self.last_sample_utc_ns.load(Ordering::Relaxed);
        StreamSnapshot {
            connected: self.connected.load(Ordering::Relaxed),
            finished: self.finished.load(Ordering::Relaxed),
            sample_rate_hz: self.sample_rate_millihz.load(Ordering::Relaxed) as f64 / 1000.0,
            last_sample_utc_ns: (last != 0).then_some(last),
            samples_total: self.samples(),
            windows_total: self.windows(),
            embeddings_total: self.embeddings(),
            embeddings_reused_total: self.reused(),
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
    /// A recording (replay or RealSense playback) played to its end and the source stopped.
    pub finished: bool,
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
    /// Of those, embeddings reused from an earlier window because the model input had not
    /// changed (`skip_unchanged`; the encoder did not run).
    pub embeddings_reused_total: u64,
    /// Samples missing inside windows (gaps).
    pub gap_samples_total: u64,
    /// Drops by reason.
    pub drops_total: BTreeMap<&'static str, u64>,
    /// The model embedding this stream's windows: provider in use, ONNX Runtime version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inference: Option<ModelIdentity>,
}
