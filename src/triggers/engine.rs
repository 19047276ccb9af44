//! The engine of one sensor (or scene): its triggers, the novelty memory they share, a ring of
//! recent windows to capture example sets from, and the example sets.

use std::collections::{BTreeMap, VecDeque};

use super::config::{KindSpec, TriggerSpec};
use super::event::{
    EndReason, EventKind, EventMachine, OpenEvent, Step, TriggerEvent, TriggerState, Unscored,
    WindowRef,
};
use super::novelty::NoveltyMemory;
use super::scorer::{ExampleSet, ScoreInput, Scorer, MAX_EXAMPLES, MAX_EXAMPLE_SETS};
use super::stuck::{usable, StuckReason};
use super::vector::{unit, InputStats};
use crate::time::Timestamp;

/// Widest embedding an engine takes.
pub const MAX_DIM: usize = 4096;
/// Most recent windows an engine keeps for example capture.
pub const MAX_RECENT_WINDOWS: usize = MAX_EXAMPLES;

/// Errors building or editing an engine.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TriggerError {
    /// A concept trigger names a label the concept bank does not have.
    #[error("trigger {trigger}: concept label {label:?} is not in the concept bank")]
    UnknownLabel {
        /// Trigger name.
        trigger: String,
        /// The label.
        label: String,
    },
    /// A label's text embedding is of another width, zero or not finite.
    #[error("trigger {trigger}: concept label {label:?} has no usable embedding of width {dim}")]
    BadLabel {
        /// Trigger name.
        trigger: String,
        /// The label.
        label: String,
        /// The engine's embedding width.
        dim: usize,
    },
    /// An example set cannot be made.
    #[error("example set {name:?}: {message}")]
    ExampleSet {
        /// Set name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// The embedding width is out of range.
    #[error("embedding width must be 1 to {MAX_DIM}, got {0}")]
    Dim(usize),
    /// The recent-window ring size is out of range.
    #[error("recent_windows must be 1 to {MAX_RECENT_WINDOWS}, got {0}")]
    RecentWindows(usize),
    /// The sensor name is empty or too long to be saved.
    #[error("sensor name must be 1 to {MAX_SENSOR_NAME_BYTES} bytes, got {0}")]
    SensorName(usize),
}

/// Longest sensor name (it is saved with the state and starts every event id).
pub const MAX_SENSOR_NAME_BYTES: usize = 256;

/// Engine-wide settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineOptions {
    /// Recent windows kept for "remember the last N windows" (at most [`MAX_RECENT_WINDOWS`]).
    pub recent_windows: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self { recent_windows: 64 }
    }
}

/// One embedded window, as the engine sees it.
#[derive(Debug, Clone, Copy)]
pub struct WindowObservation<'a> {
    /// Sensor (or scene) name; a window of another sensor is counted and ignored.
    pub sensor: &'a str,
    /// Window number.
    pub seq: u64,
    /// First sample's capture time.
    pub start: Timestamp,
    /// Capture time just after the last sample.
    pub end: Timestamp,
    /// The unit embedding.
    pub embedding: &'a [f32],
    /// Statistics of the model input ([`InputStats::from_tensor`]); `None` for a scene.
    pub input: Option<&'a InputStats>,
}

/// Looks up a concept label's text embedding.
pub type ConceptLookup<'a> = &'a dyn Fn(&str) -> Option<Vec<f32>>;

/// A trigger with its scorer, state machine and last result.
#[derive(Debug, Clone)]
pub(super) struct Slot {
    pub(super) spec: TriggerSpec,
    scorer: Scorer,
    pub(super) machine: EventMachine,
    score: Option<f32>,
    unscored: Option<Unscored>,
    stuck_reason: Option<StuckReason>,
    seq: Option<u64>,
    /// The retained state changed since [`TriggerEngine::changed_states`] last ran.
    dirty: bool,
}

/// Counters of an engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineCounters {
    /// Windows scored.
    pub windows: u64,
    /// Windows of another sensor, ignored.
    pub foreign_windows: u64,
    /// Windows whose embedding was not usable (wrong width, zero, NaN/Inf).
    pub bad_embeddings: u64,
}

/// The triggers of one sensor.
#[derive(Debug)]
pub struct TriggerEngine {
    pub(super) sensor: String,
    pub(super) dim: usize,
    pub(super) slots: Vec<Slot>,
    pub(super) memory: NoveltyMemory,
    recent_capacity: usize,
    recent: VecDeque<Vec<f32>>,
    pub(super) examples: BTreeMap<String, ExampleSet>,
    scratch: Vec<f32>,
    similarities: Vec<f32>,
    counters: EngineCounters,
}

impl TriggerEngine {
    /// An engine for `sensor` with embeddings of width `dim`; `concepts` gives the text embedding
    /// of a concept label.
    ///
    /// # Errors
    /// A width or ring size out of range, or a concept label that is unknown or unusable.
    pub fn new(
        sensor: &str,
        dim: usize,
        specs: Vec<TriggerSpec>,
        concepts: ConceptLookup<'_>,
        options: EngineOptions,
    ) -> Result<Self, TriggerError> {
        if dim == 0 || dim > MAX_DIM {
            return Err(TriggerError::Dim(dim));
        }
        if sensor.is_empty() || sensor.len() > MAX_SENSOR_NAME_BYTES {
            return Err(TriggerError::SensorName(sensor.len()));
        }
        if options.recent_windows == 0 || options.recent_windows > MAX_RECENT_WINDOWS {
            return Err(TriggerError::RecentWindows(options.recent_windows));
        }
        let mut engine = Self {
            sensor: sensor.to_string(),
            dim,
            slots: Vec::new(),
            memory: NoveltyMemory::new(dim, 0),
            recent_capacity: options.recent_windows,
            recent: VecDeque::with_capacity(options.recent_windows),
            examples: BTreeMap::new(),
            scratch: Vec::new(),
            similarities: Vec::new(),
            counters: EngineCounters::default(),
        };
        engine.set_triggers(specs, concepts)?;
        Ok(engine)
    }

    /// Replaces the triggers (an edit over MQTT, a reload). A trigger whose spec is unchanged keeps
    /// its state; an open event of a removed or changed trigger ends (reason `reconfigured`). The
    /// novelty memory and example sets are kept. On error nothing changes.
    ///
    /// # Errors
    /// A concept label that is unknown or unusable.
    pub fn set_triggers(
        &mut self,
        specs: Vec<TriggerSpec>,
        concepts: ConceptLookup<'_>,
    ) -> Result<Vec<TriggerEvent>, TriggerError> {
        let mut fresh = Vec::with_capacity(specs.len());
        for spec in specs {
            let labels = match &spec.kind {
                KindSpec::Concept { labels } => self.label_rows(&spec.name, labels, concepts)?,
                _ => Vec::new(),
            };
            fresh.push(Slot {
                scorer: Scorer::new(&spec, labels, self.dim),
                machine: EventMachine::new(spec.event),
                spec,
                score: None,
                unscored: None,
                stuck_reason: None,
                seq: None,
                dirty: true,
            });
        }
        let mut old: Vec<Slot> = std::mem::take(&mut self.slots);
        let mut ended = Vec::new();
        for slot in &mut fresh {
            if let Some(i) = old.iter().position(|o| o.spec == slot.spec) {
                *slot = old.swap_remove(i);
            }
        }
        for mut slot in old {
            if let Some(event) = slot.machine.close() {
                ended.push(self.closed(&slot, event, EndReason::Reconfigured));
            }
        }
        self.slots = fresh;
        let capacity =
            NoveltyMemory::capacity_for(self.slots.iter().filter_map(|s| match &s.spec.kind {
                KindSpec::Novelty(p) => Some(p),
                _ => None,
            }));
        if capacity != self.memory.capacity() {
            self.memory = self.memory.resized(capacity);
        }
        Ok(ended)
    }

    fn label_rows(
        &self,
        trigger: &str,
        labels: &[String],
        concepts: ConceptLookup<'_>,
    ) -> Result<Vec<f32>, TriggerError> {
        let mut rows = Vec::with_capacity(labels.len() * self.dim);
        for label in labels {
            let embedding = concepts(label).ok_or_else(|| TriggerError::UnknownLabel {
                trigger: trigger.to_string(),
                label: label.clone(),
            })?;
            let u = (embedding.len() == self.dim)
                .then(|| unit(&embedding))
                .flatten()
                .ok_or_else(|| TriggerError::BadLabel {
                    trigger: trigger.to_string(),
                    label: label.clone(),
                    dim: self.dim,
                })?;
            rows.extend_from_slice(&u);
        }
        Ok(rows)
    }

    /// Scores one window against every trigger: the `start`, `update` and `end` messages it causes,
    /// in trigger order.
    pub fn observe(&mut self, obs: &WindowObservation<'_>) -> Vec<TriggerEvent> {
        if obs.sensor != self.sensor {
            self.counters.foreign_windows += 1;
            return Vec::new();
        }
        self.counters.windows += 1;
        let unit_embedding = usable(obs.embedding, self.dim)
            .then(|| unit(obs.embedding))
            .flatten();
        if unit_embedding.is_none() {
            self.counters.bad_embeddings += 1;
        }
        match &unit_embedding {
            Some(u) if !self.memory.is_empty() => {
                self.memory
                    .similarities(u, &mut self.scratch, &mut self.similarities);
            }
            _ => self.similarities.clear(),
        }
        let input = ScoreInput {
            unit: unit_embedding.as_deref(),
            input: obs.input,
            novelty_similarities: &self.similarities,
            examples: &self.examples,
        };
        let window = WindowRef {
            seq: obs.seq,
            start: obs.start,
            end: obs.end,
        };
        let mut events = Vec::new();
        for slot in &mut self.slots {
            if let Some(event) = Self::step_slot(&self.sensor, slot, &input, window) {
                events.push(event);
            }
        }
        if let Some(u) = unit_embedding {
            self.memory.push(&u);
            if self.recent.len() == self.recent_capacity {
                self.recent.pop_front();
            }
            self.recent.push_back(u);
        }
        events
    }

    fn step_slot(
        sensor: &str,
        slot: &mut Slot,
        input: &ScoreInput<'_>,
        window: WindowRef,
    ) -> Option<TriggerEvent> {
        let (score, stuck_reason) = slot.scorer.score(input);
        let phase = slot.machine.phase();
        slot.score = score.ok();
        slot.unscored = score.err();
        slot.stuck_reason = stuck_reason;
        slot.seq = Some(window.seq);
        let name = &slot.spec.name;
        let step = slot
            .machine
            .step(slot.score, window, stuck_reason, |first| {
                event_id(sensor, name, first.start)
            });
        slot.dirty |= slot.machine.phase() != phase;
        let Step { kind, event } = step?;
        Some(TriggerEvent {
            kind,
            sensor: sensor.to_string(),
            trigger: slot.spec.name.clone(),
            trigger_kind: slot.spec.kind(),
            seq: Some(window.seq),
            score: slot.score,
            event,
            end_reason: (kind == EventKind::End).then_some(EndReason::BelowThreshold),
        })
    }

    /// The `end` of an event closed without a window.
    pub(super) fn closed(&self, slot: &Slot, event: OpenEvent, reason: EndReason) -> TriggerEvent {
        TriggerEvent {
            kind: EventKind::End,
            sensor: self.sensor.clone(),
            trigger: slot.spec.name.clone(),
            trigger_kind: slot.spec.kind(),
            seq: None,
            score: None,
            event,
            end_reason: Some(reason),
        }
    }

    /// Every trigger's state, in trigger order.
    #[must_use]
    pub fn states(&self) -> Vec<TriggerState> {
        self.slots.iter().map(state_of).collect()
    }

    /// The states that changed phase (or were never returned) since the last call: what the
    /// retained `triggers/<name>` messages need.
    pub fn changed_states(&mut self) -> Vec<TriggerState> {
        self.slots
            .iter_mut()
            .filter_map(|s| std::mem::take(&mut s.dirty).then(|| state_of(s)))
            .collect()
    }

    /// Stores the last `windows` usable windows as example set `name` (replacing a set of that
    /// name). Returns how many were stored.
    ///
    /// # Errors
    /// A bad name, zero or more windows than the ring holds, or too many sets.
    pub fn remember(&mut self, name: &str, windows: usize) -> Result<usize, TriggerError> {
        let rows = self
            .last_windows(windows)
            .map_err(|message| TriggerError::ExampleSet {
                name: name.to_string(),
                message,
            })?;
        self.set_example_set(name, &rows)?;
        Ok(windows)
    }

    /// The unit embeddings of the last `windows` usable windows, oldest first (what
    /// [`Self::remember`] stores; the daemon writes them to disk first).
    ///
    /// # Errors
    /// Zero, or more windows than the ring holds now, said in words.
    pub fn last_windows(&self, windows: usize) -> Result<Vec<Vec<f32>>, String> {
        if windows == 0 || windows > self.recent.len() {
            return Err(format!(
                "asked for the last {windows} windows, {} are available (at most {} are kept)",
                self.recent.len(),
                self.recent_capacity
            ));
        }
        Ok(self
            .recent
            .iter()
            .skip(self.recent.len() - windows)
            .cloned()
            .collect())
    }

    /// Stores `embeddings` as example set `name` (replacing a set of that name).
    ///
    /// # Errors
    /// A bad name, an empty or over-long set, an embedding of the wrong width, zero or not finite,
    /// or too many sets.
    pub fn set_example_set(
        &mut self,
        name: &str,
        embeddings: &[Vec<f32>],
    ) -> Result<(), TriggerError> {
        let err = |message: String| TriggerError::ExampleSet {
            name: name.to_string(),
            message,
        };
        super::config::check_name(name).map_err(|m| err(format!("name {m}")))?;
        if !self.examples.contains_key(name) && self.examples.len() >= MAX_EXAMPLE_SETS {
            return Err(err(format!(
                "at most {MAX_EXAMPLE_SETS} example sets per sensor"
            )));
        }
        let set =
            ExampleSet::new(self.dim, embeddings.iter().map(Vec::as_slice)).ok_or_else(|| {
                err(format!(
                    "needs 1 to {MAX_EXAMPLES} finite, non-zero embeddings of width {}",
                    self.dim
                ))
            })?;
        self.examples.insert(name.to_string(), set);
        Ok(())
    }

    /// Forgets example set `name`; whether it existed.
    pub fn remove_example_set(&mut self, name: &str) -> bool {
        self.examples.remove(name).is_some()
    }

    /// The example sets by name.
    #[must_use]
    pub fn example_sets(&self) -> &BTreeMap<String, ExampleSet> {
        &self.examples
    }

    /// The sensor (or scene) name.
    #[must_use]
    pub fn sensor(&self) -> &str {
        &self.sensor
    }

    /// Embedding width.
    #[must_use]
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The triggers, in order.
    pub fn specs(&self) -> impl Iterator<Item = &TriggerSpec> {
        self.slots.iter().map(|s| &s.spec)
    }

    /// Windows seen, ignored, unusable.
    #[must_use]
    pub fn counters(&self) -> EngineCounters {
        self.counters
    }

    /// Bytes held by the memory that grows with windows (novelty memory, recent ring, example
    /// sets); bounded by the configuration whatever the number of windows.
    #[must_use]
    pub fn heap_bytes(&self) -> usize {
        let f32s = self.recent.iter().map(Vec::capacity).sum::<usize>()
            + self
                .examples
                .values()
                .map(|s| (s.len() + 1) * s.dim())
                .sum::<usize>();
        self.memory.heap_bytes() + f32s * std::mem::size_of::<f32>()
    }
}

/// The id of an event: `<sensor>:<trigger>:<first window's start, UTC milliseconds>` — stable,
/// and unique as long as the wall clock does not step back over an earlier event.
#[must_use]
pub fn event_id(sensor: &str, trigger: &str, first_start: Timestamp) -> String {
    format!(
        "{sensor}:{trigger}:{}",
        first_start.utc_ns.div_euclid(1_000_000)
    )
}

fn state_of(slot: &Slot) -> TriggerState {
    TriggerState {
        trigger: slot.spec.name.clone(),
        trigger_kind: slot.spec.kind(),
        phase: slot.machine.phase(),
        score: slot.score,
        unscored: slot.unscored,
        seq: slot.seq,
        event_id: slot.machine.open_event().map(|e| e.id.clone()),
        stuck_reason: slot.stuck_reason,
        on_threshold: slot.spec.event.on_threshold,
        off_threshold: slot.spec.event.off_threshold,
    }
}
