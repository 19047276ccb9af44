//! What the pipeline produces, as typed events: a window embedded (by an inference worker), a
//! sensor's state and the daemon's statistics (by the reporter, from the counters). Nothing
//! here says how an output shows them: topics, QoS, retain and JSON belong to the MQTT output.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::concepts::Match;
use crate::telemetry::{StatsSnapshot, StreamSnapshot, StreamStats};
use crate::time::Timestamp;
use crate::triggers::{InputStats, SceneFrame, TriggerEvent, TriggerState};
use crate::Modality;

/// One event, shared by every output that receives it (cloning is cheap).
#[derive(Debug, Clone)]
pub enum Event {
    /// A window was embedded and matched against the concept bank.
    Embedded(Arc<EmbeddedWindow>),
    /// A sensor's counters now.
    State(Arc<SensorState>),
    /// The daemon's statistics now.
    Stats(Arc<StatsSnapshot>),
    /// A trigger's `start`, `update` or `end` (the trigger stage).
    Trigger(Arc<TriggerEventOut>),
    /// A trigger's phase changed (the trigger stage; shown as retained state).
    TriggerState(Arc<TriggerStateOut>),
    /// A fused scene embedding (the trigger stage).
    Scene(Arc<SceneOut>),
    /// A concept set in use (at start, or changed by a control command), or a command refused.
    Concepts(Arc<ConceptsNotice>),
    /// The answer to a trigger control command, or a sensor's triggers in use (the trigger stage).
    TriggerControl(Arc<TriggerControlNotice>),
}

/// What a trigger control command did, and who asked (`crate::output::triggers::control`).
#[derive(Debug, Clone)]
pub struct TriggerControlNotice {
    /// The answer.
    pub what: TriggerAnswer,
    /// MQTT 5: the request's response topic and correlation data, where it wants the answer too.
    pub reply: Option<(String, Option<Vec<u8>>)>,
}

/// The answer of a [`TriggerControlNotice`].
#[derive(Debug, Clone)]
pub enum TriggerAnswer {
    /// A sensor's triggers in use (retained).
    Triggers(crate::output::triggers::control::TriggerList),
    /// An example set stored.
    Remembered(crate::output::triggers::control::ExampleStored),
    /// A command refused (nothing changed).
    Refused(crate::output::triggers::control::Refusal),
    /// A trigger removed: its retained state is cleared (sensor, trigger).
    Cleared(String, String),
}

/// What happened to a concept set, and who asked (`crate::concepts::live`).
#[derive(Debug, Clone)]
pub struct ConceptsNotice {
    /// The set in use now, or the refusal.
    pub what: ConceptsAnswer,
    /// MQTT 5: the request's response topic and correlation data, where it wants the answer too.
    pub reply: Option<(String, Option<Vec<u8>>)>,
}

/// The answer of a [`ConceptsNotice`].
#[derive(Debug, Clone)]
pub enum ConceptsAnswer {
    /// The set in use.
    Active(crate::concepts::live::ActiveSetInfo),
    /// A command refused (the set is unchanged).
    Refused(crate::concepts::live::Refusal),
}

/// A trigger event, and who waits for it to be stored durably.
#[derive(Debug)]
pub struct TriggerEventOut {
    /// The message.
    pub event: TriggerEvent,
    /// Dropped once the event is in the outbox (the trigger stage saves its state only then).
    pub stored: Option<StoredNotice>,
}

/// A trigger's current state.
#[derive(Debug)]
pub struct TriggerStateOut {
    /// Sensor (or scene) name.
    pub sensor: Arc<str>,
    /// The state.
    pub state: TriggerState,
}

/// A scene embedding with its nearest concepts.
#[derive(Debug)]
pub struct SceneOut {
    /// The fused slot.
    pub frame: SceneFrame,
    /// Nearest concepts, best first.
    pub labels: Vec<Match>,
}

/// Signals, when dropped, that the message carrying it was stored (in the outbox: it survives a
/// crash of the daemon) or given up. Shared by the event and the message encoded from it, so it
/// fires when the last holder is done.
#[derive(Debug)]
pub struct Stored(std::sync::mpsc::SyncSender<()>);

impl Drop for Stored {
    fn drop(&mut self) {
        // Full or gone: the waiter has enough signals or stopped waiting.
        let _ = self.0.try_send(());
    }
}

/// A shared [`Stored`].
pub type StoredNotice = Arc<Stored>;

/// A notice that signals on `tx` when its last holder drops it.
#[must_use]
pub fn stored_notice(tx: &std::sync::mpsc::SyncSender<()>) -> StoredNotice {
    Arc::new(Stored(tx.clone()))
}

/// Which window of a sensor's stream, and when.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowSpan {
    /// Window number in the sensor's stream (0, 1, 2, …; a jump means windows were dropped).
    pub seq: u64,
    /// First sample's capture time.
    pub start: Timestamp,
    /// Capture time just after the last sample.
    pub end: Timestamp,
    /// Samples in the window.
    pub sample_count: u64,
    /// Samples missing inside it.
    pub gaps: u64,
}

/// The encoder that embedded a window (fixed for a worker's life, shared by its windows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderInfo {
    /// Model-set name.
    pub name: String,
    /// sha256 of the encoder file.
    pub sha256: String,
    /// Execution provider in use.
    pub provider: String,
    /// ONNX Runtime version.
    pub ort_version: String,
}

/// Where a window's time went before it was handed to the outputs, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowLatency {
    /// Window → model input.
    pub preprocess_ms: f64,
    /// Waiting for the inference worker.
    pub queue_ms: f64,
    /// The encoder run (of the whole batch the window was in).
    pub inference_ms: f64,
}

/// A window embedded by its encoder.
#[derive(Debug, Clone)]
pub struct EmbeddedWindow {
    /// Sensor name.
    pub sensor: Arc<str>,
    /// Its modality.
    pub modality: Modality,
    /// Which window.
    pub window: WindowSpan,
    /// The encoder.
    pub encoder: Arc<EncoderInfo>,
    /// The unit-norm embedding.
    pub embedding: Vec<f32>,
    /// L2 norm of the encoder's raw output.
    pub norm: f32,
    /// The window whose embedding this is when the encoder did not run because the input had
    /// not changed (`skip_unchanged`); `None` when it was embedded.
    pub reused_from_seq: Option<u64>,
    /// Nearest concepts, best first.
    pub labels: Vec<Match>,
    /// Where the time went.
    pub latency: WindowLatency,
    /// Window end (monotonic) → handed to the outputs.
    pub window_end_age: Duration,
    /// When it was handed to the outputs.
    pub emitted_at: Instant,
    /// The sensor's counters: where an output records the window's delivery latencies.
    pub stats: Arc<StreamStats>,
    /// Statistics of the model input, for `stuck` triggers (only for sensors that have one).
    pub input: Option<InputStats>,
}

/// A sensor's counters at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorState {
    /// Sensor name.
    pub sensor: Arc<str>,
    /// Its modality.
    pub modality: Modality,
    /// The counters.
    pub snapshot: StreamSnapshot,
}

/// `raw / ‖raw‖` and `‖raw‖` (a zero or non-finite vector is returned as it is).
#[must_use]
pub fn unit_norm(raw: &[f32]) -> (Vec<f32>, f32) {
    let norm = raw.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > f32::MIN_POSITIVE && norm.is_finite() {
        (raw.iter().map(|v| v / norm).collect(), norm)
    } else {
        (raw.to_vec(), norm)
    }
}
