//! Validation of trigger tables into [`TriggerSpec`]s: every problem at once, each naming its key.

use std::collections::HashSet;

use super::{
    ConfigProblem, EventParams, KindSpec, NoveltyParams, StuckParams, TriggerConfig, TriggerKind,
    TriggerSpec, MAX_COOLDOWN_WINDOWS, MAX_IGNORE_RECENT_WINDOWS, MAX_LABELS, MAX_MEMORY_WINDOWS,
    MAX_NAME_CHARS, MAX_RUN_WINDOWS, THRESHOLD_RANGE,
};

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
    use super::super::ExampleMatch;
    use super::*;
    use serde::Deserialize;

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
