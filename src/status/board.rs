//! The status page's view of the daemon (pure: no I/O, no clock of its own — the caller passes
//! `now`). Updated from the output events (windows embedded, sensor states, daemon statistics)
//! and from trigger states; rendered as the `/api/status` document ([`super::doc`]).
//!
//! Everything is bounded: one entry per configured sensor (events for other sensors are
//! ignored), [`HISTORY_POINTS`] chart points per sensor with [`LABELS_PER_POINT`] labels each,
//! and at most [`MAX_TRIGGERS`] trigger states (more are counted, not kept).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use crate::concepts::Match;
use crate::output::{EmbeddedWindow, Event, SensorState};
use crate::telemetry::StatsSnapshot;
use crate::triggers::payload::TriggerStateMessage;
use crate::triggers::TriggerState;
use crate::Modality;

/// Chart points kept per sensor: five minutes of windows at one per second (IMU and audio
/// with their default 1 s hop); faster streams show a shorter span.
pub const HISTORY_POINTS: usize = 300;
/// Labels kept per chart point (the best ones; `concepts.top_k` may ask for more).
pub const LABELS_PER_POINT: usize = 3;
/// Trigger states kept (per sensor and trigger name); more are counted in `triggers_dropped`.
pub const MAX_TRIGGERS: usize = 256;

/// A label and its score, as shown.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LabelScore {
    /// The concept's label.
    pub label: String,
    /// Cosine similarity in [-1, 1].
    pub score: f32,
}

impl From<&Match> for LabelScore {
    fn from(m: &Match) -> Self {
        Self {
            label: m.label.clone(),
            score: m.score,
        }
    }
}

/// One chart point: a window's end and its best labels.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HistoryPoint {
    /// Window end, UTC milliseconds.
    pub t_utc_ms: i64,
    /// Best labels, best first.
    pub labels: Vec<LabelScore>,
}

/// The newest window of a sensor.
#[derive(Debug, Clone, PartialEq)]
pub struct LastWindow {
    /// Window number.
    pub seq: u64,
    /// Window end, UTC milliseconds.
    pub end_utc_ms: i64,
    /// Samples missing inside it.
    pub gaps: u64,
    /// Every label above `concepts.min_score` (up to `top_k`), best first.
    pub labels: Vec<LabelScore>,
    /// Execution provider that embedded it.
    pub provider: String,
    /// When the board received it.
    pub received: Instant,
}

/// Two successive state reports: the newest one, and the windows rate between them.
#[derive(Debug, Clone, PartialEq)]
pub struct StateReport {
    /// The counters.
    pub state: Arc<SensorState>,
    /// When the board received them.
    pub received: Instant,
    /// Windows cut per second since the previous report (`None` after the first).
    pub windows_per_s: Option<f64>,
}

/// What the board knows of one sensor.
#[derive(Debug, Clone)]
pub struct SensorView {
    /// Sensor name.
    pub name: Arc<str>,
    /// Its modality.
    pub modality: Modality,
    /// The newest state report.
    pub report: Option<StateReport>,
    /// The newest window.
    pub last: Option<LastWindow>,
    /// Chart points, oldest first, at most [`HISTORY_POINTS`].
    pub history: VecDeque<HistoryPoint>,
}

/// The whole view.
#[derive(Debug, Clone)]
pub struct StatusBoard {
    /// `device.id`.
    pub device: String,
    /// When the board was made (the daemon's start, near enough).
    pub started: Instant,
    /// Configured sensors, in configuration order.
    pub sensors: Vec<SensorView>,
    /// The newest daemon statistics, and when they came.
    pub stats: Option<(Arc<StatsSnapshot>, Instant)>,
    /// Trigger states by (sensor, trigger), as their retained MQTT message reads.
    pub triggers: BTreeMap<(String, String), serde_json::Value>,
    /// Trigger states not kept because [`MAX_TRIGGERS`] were already.
    pub triggers_dropped: u64,
}

impl StatusBoard {
    /// An empty board for the configured `sensors`.
    #[must_use]
    pub fn new(device: &str, sensors: &[(Arc<str>, Modality)], now: Instant) -> Self {
        Self {
            device: device.to_string(),
            started: now,
            sensors: sensors
                .iter()
                .map(|(name, modality)| SensorView {
                    name: Arc::clone(name),
                    modality: *modality,
                    report: None,
                    last: None,
                    history: VecDeque::with_capacity(HISTORY_POINTS),
                })
                .collect(),
            stats: None,
            triggers: BTreeMap::new(),
            triggers_dropped: 0,
        }
    }

    /// Takes one output event into the view, received at `now`.
    pub fn apply(&mut self, event: &Event, now: Instant) {
        match event {
            Event::Embedded(w) => self.window(w, now),
            Event::State(s) => self.state(s, now),
            Event::Stats(s) => self.stats = Some((Arc::clone(s), now)),
            Event::TriggerState(t) => {
                self.record_triggers(&t.sensor, std::slice::from_ref(&t.state));
            }
            // A trigger removed over MQTT leaves the page as its retained state is cleared.
            Event::TriggerControl(n) => {
                if let crate::output::TriggerAnswer::Cleared(sensor, trigger) = &n.what {
                    self.remove_trigger(sensor, trigger);
                }
            }
            // Events and scenes are on MQTT; the page shows the trigger states they lead to.
            Event::Trigger(_) | Event::Scene(_) | Event::Concepts(_) => {}
        }
    }

    fn sensor_mut(&mut self, name: &str) -> Option<&mut SensorView> {
        self.sensors.iter_mut().find(|s| &*s.name == name)
    }

    fn window(&mut self, w: &EmbeddedWindow, now: Instant) {
        let Some(sensor) = self.sensor_mut(&w.sensor) else {
            return;
        };
        let end_utc_ms = w.window.end.utc_ns.div_euclid(1_000_000);
        let labels: Vec<LabelScore> = w.labels.iter().map(LabelScore::from).collect();
        if sensor.history.len() == HISTORY_POINTS {
            sensor.history.pop_front();
        }
        sensor.history.push_back(HistoryPoint {
            t_utc_ms: end_utc_ms,
            labels: labels.iter().take(LABELS_PER_POINT).cloned().collect(),
        });
        sensor.last = Some(LastWindow {
            seq: w.window.seq,
            end_utc_ms,
            gaps: w.window.gaps,
            labels,
            provider: w.encoder.provider.clone(),
            received: now,
        });
    }

    fn state(&mut self, s: &Arc<SensorState>, now: Instant) {
        let Some(sensor) = self.sensor_mut(&s.sensor) else {
            return;
        };
        let windows_per_s = sensor.report.as_ref().and_then(|prev| {
            let dt_s = now.checked_duration_since(prev.received)?.as_secs_f64();
            let before = prev.state.snapshot.windows_total;
            let windows = s.snapshot.windows_total.checked_sub(before)?;
            (dt_s > 0.0).then(|| windows as f64 / dt_s)
        });
        sensor.report = Some(StateReport {
            state: Arc::clone(s),
            received: now,
            windows_per_s,
        });
    }

    /// Records the current states of `sensor`'s triggers (each replaces the one of the same
    /// trigger name). Call it with what the trigger engine's `changed_states` returns.
    pub fn record_triggers(&mut self, sensor: &str, states: &[TriggerState]) {
        for state in states {
            let key = (sensor.to_string(), state.trigger.clone());
            if !self.triggers.contains_key(&key) && self.triggers.len() >= MAX_TRIGGERS {
                self.triggers_dropped += 1;
                continue;
            }
            // The same body as the retained `<prefix>/<sensor>/triggers/<name>` message, so a
            // reader of both sees one schema. It serializes plain fields: it cannot fail.
            let message = TriggerStateMessage::new(sensor, state);
            let value = serde_json::to_value(message).unwrap_or(serde_json::Value::Null);
            self.triggers.insert(key, value);
        }
    }

    /// Forgets the trigger `trigger` of `sensor` (removed by configuration or control).
    pub fn remove_trigger(&mut self, sensor: &str, trigger: &str) {
        self.triggers
            .remove(&(sensor.to_string(), trigger.to_string()));
    }
}
