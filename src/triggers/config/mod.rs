//! Trigger configuration: one flat, strictly parsed table per trigger (`kind` picks which of the
//! kind-specific keys apply), validated as a whole into a typed [`TriggerSpec`]. Every problem
//! names its key relative to the trigger list (`[2].on_threshold`); the caller adds its own
//! prefix (`sources[0].triggers`).

use std::fmt;

use serde::{Deserialize, Serialize};

mod validate;

pub use validate::{check_name, validate_all};

/// Longest trigger or example-set name (it becomes an MQTT topic level).
pub const MAX_NAME_CHARS: usize = 64;
/// Most labels of one `concept` trigger.
pub const MAX_LABELS: usize = 64;
/// Most windows a `novelty` trigger remembers.
pub const MAX_MEMORY_WINDOWS: u32 = 4096;
/// Most windows a `novelty` trigger leaves out of its comparison.
pub const MAX_IGNORE_RECENT_WINDOWS: u32 = 1000;
/// Longest run a trigger can require to start or to end.
pub const MAX_RUN_WINDOWS: u32 = 10_000;
/// Longest cooldown.
pub const MAX_COOLDOWN_WINDOWS: u32 = 1_000_000;
/// Scores live in [-1, 1] (cosines) or [0, 2] (novelty); thresholds outside can never be met.
const THRESHOLD_RANGE: (f32, f32) = (-1.0, 2.0);

/// What a trigger scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    /// Cosine to the text embeddings of some concept labels (the best of them).
    Concept,
    /// Cosine to a set of reference embeddings captured from live windows.
    Example,
    /// 1 − the best cosine to a memory of the sensor's recent windows.
    Novelty,
    /// 1 when the sensor looks broken (stuck, flat, saturated, NaN), else 0.
    Stuck,
}

impl TriggerKind {
    /// The name used in configs and payloads.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Concept => "concept",
            Self::Example => "example",
            Self::Novelty => "novelty",
            Self::Stuck => "stuck",
        }
    }
}

/// How an `example` trigger compares a window with its example set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExampleMatch {
    /// Cosine to the normalised mean of the examples (robust to one odd example).
    #[default]
    Centroid,
    /// Best cosine to any one example (catches a set of distinct variants).
    Nearest,
}

/// One trigger as written in the configuration (or sent over MQTT).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerConfig {
    /// Unique per sensor; `[A-Za-z0-9_.-]`, at most 64 characters.
    pub name: String,
    /// What the trigger scores.
    pub kind: TriggerKind,
    /// Score at or above which a window counts as "on". Required except for `stuck` (0.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_threshold: Option<f32>,
    /// Score below which an open event's window counts as "off" (hysteresis); at most
    /// `on_threshold`, which it defaults to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub off_threshold: Option<f32>,
    /// Consecutive "on" windows before an event starts (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_windows: Option<u32>,
    /// Consecutive "off" windows that end an event (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_after_windows: Option<u32>,
    /// Windows after an event's end during which no event starts (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown_windows: Option<u32>,
    /// `concept`: the concept labels to score against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
    /// `example`: the example set's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example_set: Option<String>,
    /// `example`: `centroid` (default) or `nearest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example_match: Option<ExampleMatch>,
    /// `novelty`: windows remembered (default 256, at most 4096).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_windows: Option<u32>,
    /// `novelty`: remembered windows needed before it scores (default min(16, memory_windows)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_windows: Option<u32>,
    /// `novelty`: newest windows left out of the comparison, so that a new segment is not
    /// "known" from its own first window (default `min_windows`; at least `min_windows` − 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_recent_windows: Option<u32>,
    /// `stuck`: consecutive near-identical windows that count as stuck (default 10, at least 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stuck_windows: Option<u32>,
    /// `stuck`: cosine between consecutive embeddings at or above which they are near-identical
    /// (default 0.9999).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identical_cosine: Option<f32>,
    /// `stuck`: input variance at or below which the input is flat (default 1e-12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_variance: Option<f64>,
    /// `stuck`: share of input values at the window's extremes at or above which the input is
    /// saturated (default 0.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_saturated_fraction: Option<f64>,
}

/// A validated trigger.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerSpec {
    /// Unique name.
    pub name: String,
    /// Event semantics.
    pub event: EventParams,
    /// What is scored, with the kind's parameters.
    pub kind: KindSpec,
}

impl TriggerSpec {
    /// The trigger's kind.
    #[must_use]
    pub fn kind(&self) -> TriggerKind {
        match self.kind {
            KindSpec::Concept { .. } => TriggerKind::Concept,
            KindSpec::Example { .. } => TriggerKind::Example,
            KindSpec::Novelty(_) => TriggerKind::Novelty,
            KindSpec::Stuck(_) => TriggerKind::Stuck,
        }
    }
}

/// Thresholds and run lengths of the event state machine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EventParams {
    /// A window is "on" at or above this score.
    pub on_threshold: f32,
    /// An open event's window is "off" below this score.
    pub off_threshold: f32,
    /// "On" windows in a row that start an event.
    pub min_windows: u32,
    /// "Off" windows in a row that end an event.
    pub end_after_windows: u32,
    /// Windows after an end during which nothing starts.
    pub cooldown_windows: u32,
}

/// The kind-specific parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum KindSpec {
    /// Best cosine to these labels' text embeddings.
    Concept {
        /// Concept labels.
        labels: Vec<String>,
    },
    /// Cosine to an example set.
    Example {
        /// Example-set name.
        set: String,
        /// Centroid or nearest member.
        matching: ExampleMatch,
    },
    /// Distance to recent windows.
    Novelty(NoveltyParams),
    /// Sensor health.
    Stuck(StuckParams),
}

/// `novelty` parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NoveltyParams {
    /// Windows compared against.
    pub memory_windows: u32,
    /// Remembered windows needed before scoring.
    pub warmup_windows: u32,
    /// Newest windows left out.
    pub ignore_recent_windows: u32,
}

/// `stuck` parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StuckParams {
    /// Near-identical windows in a row that count as stuck.
    pub stuck_windows: u32,
    /// Cosine of near-identical embeddings.
    pub identical_cosine: f32,
    /// Variance of a flat input.
    pub min_variance: f64,
    /// Share of values at the extremes of a saturated input.
    pub max_saturated_fraction: f64,
}

/// One thing wrong with a trigger configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The key, relative to the trigger list: `[1].labels`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}
