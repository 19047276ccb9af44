//! Trigger configuration: one flat, strictly parsed table per trigger (`kind` picks which of the
//! kind-specific keys apply), validated as a whole into a typed [`TriggerSpec`]. Every problem
//! names its key relative to the trigger list (`[2].on_threshold`); the caller adds its own
//! prefix (`sources[0].triggers`).

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};

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

/// Whether `name` can be a trigger or example-set name; the reason when not.
///
/// # Errors
/// A message saying what is wrong with the name.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if name.is_empty() {
        Err("must not be empty".into())
    } else if name.chars().count() > MAX_NAME_CHARS {
        Err(format!("must be at most {MAX_NAME_CHARS} characters"))
    } else if !name.chars().all(ok) {
        Err("may contain only letters, digits, '_', '.' and '-'".into())
    } else {
        Ok(())
    }
}

/// Validates a sensor's whole trigger list: every problem at once, names unique.
///
/// # Errors
/// Every problem found, each naming its key.
pub fn validate_all(configs: &[TriggerConfig]) -> Result<Vec<TriggerSpec>, Vec<ConfigProblem>> {
    let mut problems = Vec::new();
    let mut specs = Vec::new();
    let mut seen = HashSet::new();
    for (i, config) in configs.iter().enumerate() {
        let mut p = Problems::new(format!("[{i}]"));
        if !seen.insert(config.name.as_str()) {
            p.add(
                "name",
                format!("{:?} is used by an earlier trigger", config.name),
            );
        }
        if let Some(spec) = config.check(&mut p) {
            specs.push(spec);
        }
        problems.extend(p.list);
    }
    if problems.is_empty() {
        Ok(specs)
    } else {
        Err(problems)
    }
}

impl TriggerConfig {
    /// Validates one trigger (keys in problems have no index prefix).
    ///
    /// # Errors
    /// Every problem found.
    pub fn validate(&self) -> Result<TriggerSpec, Vec<ConfigProblem>> {
        let mut p = Problems::new(String::new());
        match self.check(&mut p) {
            Some(spec) if p.list.is_empty() => Ok(spec),
            _ => Err(p.list),
        }
    }

    fn check(&self, p: &mut Problems) -> Option<TriggerSpec> {
        if let Err(message) = check_name(&self.name) {
            p.add("name", message);
        }
        self.only_for(p);
        let event = self.event_params(p)?;
        let kind = match self.kind {
            TriggerKind::Concept => self.concept(p)?,
            TriggerKind::Example => self.example(p)?,
            TriggerKind::Novelty => KindSpec::Novelty(self.novelty(p, event.min_windows)?),
            TriggerKind::Stuck => KindSpec::Stuck(self.stuck(p)?),
        };
        p.list.is_empty().then(|| TriggerSpec {
            name: self.name.clone(),
            event,
            kind,
        })
    }

    /// Kind-specific keys given to another kind.
    fn only_for(&self, p: &mut Problems) {
        let keys: [(&str, bool, TriggerKind); 10] = [
            ("labels", self.labels.is_some(), TriggerKind::Concept),
            (
                "example_set",
                self.example_set.is_some(),
                TriggerKind::Example,
            ),
            (
                "example_match",
                self.example_match.is_some(),
                TriggerKind::Example,
            ),
            (
                "memory_windows",
                self.memory_windows.is_some(),
                TriggerKind::Novelty,
            ),
            (
                "warmup_windows",
                self.warmup_windows.is_some(),
                TriggerKind::Novelty,
            ),
            (
                "ignore_recent_windows",
                self.ignore_recent_windows.is_some(),
                TriggerKind::Novelty,
            ),
            (
                "stuck_windows",
                self.stuck_windows.is_some(),
                TriggerKind::Stuck,
            ),
            (
                "identical_cosine",
                self.identical_cosine.is_some(),
                TriggerKind::Stuck,
            ),
            (
                "min_variance",
                self.min_variance.is_some(),
                TriggerKind::Stuck,
            ),
            (
                "max_saturated_fraction",
                self.max_saturated_fraction.is_some(),
                TriggerKind::Stuck,
            ),
        ];
        for (key, given, kind) in keys {
            if given && kind != self.kind {
                p.add(
                    key,
                    format!(
                        "applies only to kind \"{}\", not \"{}\"",
                        kind.as_str(),
                        self.kind.as_str()
                    ),
                );
            }
        }
    }

    fn event_params(&self, p: &mut Problems) -> Option<EventParams> {
        let on = match (self.on_threshold, self.kind) {
            (Some(v), _) => v,
            (None, TriggerKind::Stuck) => 0.5,
            (None, _) => {
                p.add("on_threshold", "is required for this kind".into());
                return None;
            }
        };
        let on_ok = p.threshold("on_threshold", on);
        let off = self.off_threshold.unwrap_or(on);
        let off_ok = p.threshold("off_threshold", off);
        if on_ok && off_ok && off > on {
            p.add(
                "off_threshold",
                format!("must be at most on_threshold ({on}), got {off}"),
            );
        }
        Some(EventParams {
            on_threshold: on,
            off_threshold: off,
            min_windows: p.int(
                "min_windows",
                self.min_windows.unwrap_or(1),
                1,
                MAX_RUN_WINDOWS,
            ),
            end_after_windows: p.int(
                "end_after_windows",
                self.end_after_windows.unwrap_or(1),
                1,
                MAX_RUN_WINDOWS,
            ),
            cooldown_windows: p.int(
                "cooldown_windows",
                self.cooldown_windows.unwrap_or(0),
                0,
                MAX_COOLDOWN_WINDOWS,
            ),
        })
    }

    fn concept(&self, p: &mut Problems) -> Option<KindSpec> {
        let Some(labels) = &self.labels else {
            p.add("labels", "is required for kind \"concept\"".into());
            return None;
        };
        if labels.is_empty() || labels.len() > MAX_LABELS {
            p.add("labels", format!("must list 1 to {MAX_LABELS} labels"));
        }
        let mut seen = HashSet::new();
        for (i, label) in labels.iter().enumerate() {
            if label.trim().is_empty() {
                p.add(&format!("labels[{i}]"), "must not be empty".into());
            } else if !seen.insert(label) {
                p.add(
                    &format!("labels[{i}]"),
                    format!("{label:?} is listed twice"),
                );
            }
        }
        Some(KindSpec::Concept {
            labels: labels.clone(),
        })
    }

    fn example(&self, p: &mut Problems) -> Option<KindSpec> {
        let Some(set) = &self.example_set else {
            p.add("example_set", "is required for kind \"example\"".into());
            return None;
        };
        if let Err(message) = check_name(set) {
            p.add("example_set", message);
        }
        Some(KindSpec::Example {
            set: set.clone(),
            matching: self.example_match.unwrap_or_default(),
        })
    }

    fn novelty(&self, p: &mut Problems, min_windows: u32) -> Option<NoveltyParams> {
        let memory = p.int(
            "memory_windows",
            self.memory_windows.unwrap_or(256),
            1,
            MAX_MEMORY_WINDOWS,
        );
        let warmup = p.int(
            "warmup_windows",
            self.warmup_windows.unwrap_or(memory.min(16)),
            1,
            memory,
        );
        let ignore = self.ignore_recent_windows.unwrap_or(min_windows);
        let ignore = p.int(
            "ignore_recent_windows",
            ignore,
            min_windows.saturating_sub(1),
            MAX_IGNORE_RECENT_WINDOWS,
        );
        Some(NoveltyParams {
            memory_windows: memory,
            warmup_windows: warmup,
            ignore_recent_windows: ignore,
        })
    }

    fn stuck(&self, p: &mut Problems) -> Option<StuckParams> {
        let cosine = self.identical_cosine.unwrap_or(0.9999);
        if !(cosine > 0.0 && cosine <= 1.0) {
            p.add(
                "identical_cosine",
                format!("must be in (0, 1], got {cosine}"),
            );
        }
        let variance = self.min_variance.unwrap_or(1e-12);
        if !(variance.is_finite() && variance >= 0.0) {
            p.add(
                "min_variance",
                format!("must be a number >= 0, got {variance}"),
            );
        }
        let saturated = self.max_saturated_fraction.unwrap_or(0.5);
        if !(saturated > 0.0 && saturated <= 1.0) {
            p.add(
                "max_saturated_fraction",
                format!("must be in (0, 1], got {saturated}"),
            );
        }
        Some(StuckParams {
            stuck_windows: p.int(
                "stuck_windows",
                self.stuck_windows.unwrap_or(10),
                2,
                MAX_RUN_WINDOWS,
            ),
            identical_cosine: cosine,
            min_variance: variance,
            max_saturated_fraction: saturated,
        })
    }
}

/// Problems under one prefix.
struct Problems {
    prefix: String,
    list: Vec<ConfigProblem>,
}

impl Problems {
    fn new(prefix: String) -> Self {
        Self {
            prefix,
            list: Vec::new(),
        }
    }

    fn add(&mut self, key: &str, message: String) {
        let path = if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.prefix)
        };
        self.list.push(ConfigProblem { path, message });
    }

    fn threshold(&mut self, key: &str, v: f32) -> bool {
        let (lo, hi) = THRESHOLD_RANGE;
        let ok = v.is_finite() && (lo..=hi).contains(&v);
        if !ok {
            self.add(key, format!("must be in [{lo}, {hi}], got {v}"));
        }
        ok
    }

    /// `v` when in `[lo, hi]`, else a problem and `lo` (so later checks still run).
    fn int(&mut self, key: &str, v: u32, lo: u32, hi: u32) -> u32 {
        if (lo..=hi).contains(&v) {
            v
        } else {
            self.add(key, format!("must be in [{lo}, {hi}], got {v}"));
            lo
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<Vec<TriggerSpec>, Vec<String>> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            triggers: Vec<TriggerConfig>,
        }
        let file: File = toml::from_str(toml_text).map_err(|e| vec![e.message().to_string()])?;
        validate_all(&file.triggers).map_err(|p| p.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn every_kind_parses_with_defaults() {
        let specs = parse(
            r#"
            [[triggers]]
            name = "shaking"
            kind = "concept"
            labels = ["shaking", "vibration"]
            on_threshold = 0.3
            off_threshold = 0.25
            min_windows = 2
            [[triggers]]
            name = "door"
            kind = "example"
            example_set = "door-opening"
            on_threshold = 0.8
            [[triggers]]
            name = "new"
            kind = "novelty"
            on_threshold = 0.4
            [[triggers]]
            name = "health"
            kind = "stuck"
            "#,
        )
        .unwrap();
        assert_eq!(specs.len(), 4);
        assert_eq!(specs[0].event.min_windows, 2);
        assert_eq!(specs[1].event.off_threshold, 0.8);
        assert_eq!(
            specs[1].kind,
            KindSpec::Example {
                set: "door-opening".into(),
                matching: ExampleMatch::Centroid
            }
        );
        let KindSpec::Novelty(n) = specs[2].kind else {
            panic!("novelty expected")
        };
        assert_eq!(
            (n.memory_windows, n.warmup_windows, n.ignore_recent_windows),
            (256, 16, 1)
        );
        assert_eq!(specs[3].event.on_threshold, 0.5);
    }

    #[test]
    fn problems_name_their_keys_and_all_are_reported() {
        let problems = parse(
            r#"
            [[triggers]]
            name = "a/b"
            kind = "concept"
            on_threshold = 0.3
            off_threshold = 0.5
            labels = []
            memory_windows = 5
            [[triggers]]
            name = "x"
            kind = "novelty"
            on_threshold = 0.3
            memory_windows = 100000
            [[triggers]]
            name = "x"
            kind = "example"
            "#,
        )
        .unwrap_err();
        let expect = [
            "[0].name: may contain only letters",
            "[0].memory_windows: applies only to kind \"novelty\", not \"concept\"",
            "[0].off_threshold: must be at most on_threshold (0.3), got 0.5",
            "[0].labels: must list 1 to 64 labels",
            "[1].memory_windows: must be in [1, 4096], got 100000",
            "[2].name: \"x\" is used by an earlier trigger",
            "[2].on_threshold: is required for this kind",
        ];
        for e in expect {
            assert!(
                problems.iter().any(|p| p.starts_with(e)),
                "{e} not in {problems:?}"
            );
        }
        assert_eq!(problems.len(), expect.len(), "{problems:?}");
    }

    #[test]
    fn unknown_keys_and_kinds_are_refused() {
        let e =
            parse("[[triggers]]\nname = \"a\"\nkind = \"concept\"\nthreshold = 1\n").unwrap_err();
        assert!(e[0].contains("unknown field `threshold`"), "{e:?}");
        let e = parse("[[triggers]]\nname = \"a\"\nkind = \"vibes\"\n").unwrap_err();
        assert!(e[0].contains("unknown variant `vibes`"), "{e:?}");
    }

    #[test]
    fn novelty_that_could_never_fire_is_refused() {
        let e = parse(
            "[[triggers]]\nname = \"n\"\nkind = \"novelty\"\non_threshold = 0.3\nmin_windows = 3\nignore_recent_windows = 1\n",
        )
        .unwrap_err();
        assert_eq!(
            e,
            ["[0].ignore_recent_windows: must be in [2, 1000], got 1"]
        );
    }

    #[test]
    fn thresholds_out_of_range_or_nan_are_refused() {
        let c = TriggerConfig {
            on_threshold: Some(f32::NAN),
            ..stuck("s")
        };
        assert_eq!(c.validate().unwrap_err()[0].path, "on_threshold");
        let c = TriggerConfig {
            identical_cosine: Some(1.5),
            ..stuck("s")
        };
        assert_eq!(c.validate().unwrap_err()[0].path, "identical_cosine");
    }

    fn stuck(name: &str) -> TriggerConfig {
        toml::from_str(&format!("name = \"{name}\"\nkind = \"stuck\"\n")).unwrap()
    }
}
