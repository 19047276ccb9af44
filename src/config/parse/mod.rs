//! Reading a configuration file so that one run finds every problem in it. serde stops at the
//! first error, so the file is parsed once into a spanned document and deserialized repeatedly:
//! each error is recorded with its key and line:column, the offending key is taken out of the
//! document (or, for a required key, replaced by a placeholder of the right type) and the
//! deserialization is tried again. Keys taken out or replaced are remembered, so that validation
//! never reports on a placeholder. `[[sources]]` entries are read one by one by their `type`:
//! serde's tagged enums buffer the table and lose the position of every error inside it.

mod document;
mod explain;

use std::borrow::Cow;
use std::ops::Range;

use serde::Deserialize;
use toml::de::{DeArray, DeTable, DeValue, Deserializer};
use toml::Spanned;

pub use document::Locations;
use document::{find_table, is_under_any, join, locate, remove_value, set_value, Lines, Seg};
use explain::{expected_names, explain, quoted_after, suggestion};

use super::validate::Problem;
use super::{Config, SourceConfig, SOURCE_TYPES};

/// Deserialization attempts per table before giving up (each one finds one more problem).
const MAX_ATTEMPTS: usize = 256;

/// The text a placeholder for an unreadable text key holds: a valid sensor name, never named
/// in a problem (`finish` leaves it out).
pub(super) const PLACEHOLDER_NAME: &str = "edgebind-placeholder";

/// A placeholder put in for a required key that is missing or could not be read.
#[derive(Debug)]
struct Placeholder {
    segs: Vec<Seg>,
    span: Range<usize>,
    /// What is still to try, in order.
    candidates: Vec<DeValue<'static>>,
    /// Whether the names an enum expects were added already.
    named: bool,
}

/// Values of every type, tried in turn until one deserializes; the last ones satisfy the
/// ranges of validated values (`config::ranged`: counts, rates, sensor names).
fn generic_candidates() -> Vec<DeValue<'static>> {
    fn parsed(text: &'static str) -> Option<DeValue<'static>> {
        DeValue::parse(text).map(Spanned::into_inner).ok()
    }
    [
        Some(DeValue::String(Cow::Borrowed(""))),
        Some(DeValue::Integer(toml::de::DeInteger::default())),
        parsed("0.0"),
        Some(DeValue::Boolean(false)),
        Some(DeValue::Array(DeArray::new())),
        Some(DeValue::Table(DeTable::new())),
        parsed("1"),
        parsed("1.0"),
        Some(DeValue::String(Cow::Borrowed(PLACEHOLDER_NAME))),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The problems found so far and the keys they made unreadable.
struct Recovery<'t> {
    lines: Lines<'t>,
    problems: Vec<Problem>,
    poisoned: Vec<String>,
    next_fake: usize,
}

impl<'t> Recovery<'t> {
    fn fake_span(&mut self) -> Range<usize> {
        self.next_fake += 1;
        let at = self.lines.text.len() + self.next_fake;
        at..at
    }

    fn is_poisoned(&self, path: &str) -> bool {
        is_under_any(path, &self.poisoned)
    }

    fn report(&mut self, path: String, span: Option<&Range<usize>>, message: String) {
        self.problems.push(Problem {
            path,
            message,
            location: span.and_then(|s| self.lines.at(s.start)),
            ..Problem::default()
        });
    }

    /// Deserializes `table` with `de`, recording each error and working around it, until it
    /// succeeds (`Some`, with placeholders where keys were unreadable) or cannot go on.
    fn recover<T>(
        &mut self,
        table: Spanned<DeTable<'t>>,
        prefix: &str,
        de: impl Fn(Deserializer<'t>) -> Result<T, toml::de::Error>,
    ) -> Option<T> {
        let mut unit = table;
        let mut placeholders = Vec::new();
        for _ in 0..MAX_ATTEMPTS {
            let error = match de(Deserializer::from(unit.clone())) {
                Ok(value) => return Some(value),
                Err(e) => e,
            };
            if !self.work_around(&mut unit, &mut placeholders, prefix, &error) {
                return None;
            }
        }
        self.report(
            prefix.to_string(),
            None,
            "too many problems; fix these and check again".into(),
        );
        None
    }

    /// Records `error` and changes `unit` so that the next attempt gets past it; false when
    /// that is not possible.
    fn work_around(
        &mut self,
        unit: &mut Spanned<DeTable<'t>>,
        placeholders: &mut Vec<Placeholder>,
        prefix: &str,
        error: &toml::de::Error,
    ) -> bool {
        let message = error.message().trim();
        let span = error.span();
        if let Some(field) = quoted_after(message, "missing field ") {
            let Some(table) = span.as_ref().and_then(|s| find_table(unit, s)) else {
                self.report(prefix.to_string(), span.as_ref(), message.to_string());
                return false;
            };
            let mut segs = table;
            segs.push(Seg::Key(field.to_string()));
            let path = join(prefix, &segs);
            if !self.is_poisoned(&path) {
                // A section missing from the document has no place in it to point at.
                let at = span.as_ref().filter(|s| s.start < self.lines.text.len());
                self.report(path.clone(), at, "is required and missing".into());
                self.poisoned.push(path);
            }
            let fake = self.fake_span();
            let mut p = Placeholder {
                segs,
                span: fake,
                candidates: generic_candidates(),
                named: false,
            };
            p.candidates.reverse();
            let ok = next_candidate(unit, &mut p, message);
            placeholders.push(p);
            return ok;
        }
        let Some(span) = span else {
            self.report(prefix.to_string(), None, message.to_string());
            return false;
        };
        if span.start > self.lines.text.len() {
            // The placeholder of a required key is of the wrong type: try the next one.
            return placeholders
                .iter_mut()
                .find(|p| p.span == span)
                .is_some_and(|p| next_candidate(unit, p, message));
        }
        let segs = locate(unit.get_ref(), &span).unwrap_or_default();
        let path = join(prefix, &segs);
        let found = self.lines.text.get(span.clone()).unwrap_or("");
        let key = segs.iter().rev().find_map(|s| match s {
            Seg::Key(k) => Some(k.as_str()),
            Seg::Index(_) => None,
        });
        self.report(path, Some(&span), explain(message, key, found));
        // An element of a list is taken out with its list.
        let cut = segs
            .iter()
            .position(|s| matches!(s, Seg::Index(_)))
            .unwrap_or(segs.len());
        let removed = &segs[..cut];
        if removed.is_empty() || !remove_value(unit.get_mut(), removed) {
            return false;
        }
        self.poisoned.push(join(prefix, removed));
        true
    }

    /// Every `[[sources]]` entry, read by its type; a placeholder for an entry that cannot be
    /// read, so that the others keep their index.
    fn sources(&mut self, value: Spanned<DeValue<'t>>) -> Vec<SourceConfig> {
        let span = value.span();
        let DeValue::Array(items) = value.into_inner() else {
            self.report(
                "sources".into(),
                Some(&span),
                "expected [[sources]] tables, one per sensor".into(),
            );
            self.poisoned.push("sources".into());
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let prefix = format!("sources[{i}]");
            let source = self.source(item.clone(), &prefix);
            match source.or_else(placeholder_source) {
                Some(s) => out.push(s),
                None => return out,
            }
        }
        out
    }

    fn source(&mut self, item: Spanned<DeValue<'t>>, prefix: &str) -> Option<SourceConfig> {
        let span = item.span();
        let DeValue::Table(mut table) = item.into_inner() else {
            self.report(
                prefix.into(),
                Some(&span),
                "expected a [[sources]] table".into(),
            );
            self.poisoned.push(prefix.into());
            return None;
        };
        let kind = table.remove("type");
        let types = SOURCE_TYPES.join(", ");
        let kind = match kind.as_ref().map(|k| (k.span(), k.get_ref().as_str())) {
            Some((_, Some(kind))) if SOURCE_TYPES.contains(&kind) => kind.to_string(),
            Some((at, Some(kind))) => {
                let hint = suggestion(kind, SOURCE_TYPES.iter().copied())
                    .map_or(String::new(), |s| format!(" (did you mean \"{s}\"?)"));
                self.report(
                    format!("{prefix}.type"),
                    Some(&at),
                    format!("\"{kind}\" is not a source type{hint}; one of {types}"),
                );
                self.poisoned.push(prefix.into());
                return None;
            }
            Some((at, None)) => {
                self.report(
                    format!("{prefix}.type"),
                    Some(&at),
                    format!("expected a source type in quotes: one of {types}"),
                );
                self.poisoned.push(prefix.into());
                return None;
            }
            None => {
                self.report(
                    format!("{prefix}.type"),
                    Some(&span),
                    format!("is required and missing: one of {types}"),
                );
                self.poisoned.push(prefix.into());
                return None;
            }
        };
        let source = self.recover(Spanned::new(span, table), prefix, |de| {
            SourceConfig::read(&kind, de).unwrap_or_else(|| {
                Err(serde::de::Error::custom(format!(
                    "unknown source type {kind}"
                )))
            })
        });
        if source.is_none() {
            self.poisoned.push(prefix.into());
        }
        source
    }
}

/// Puts the next candidate value at the placeholder's key; false when none is left.
fn next_candidate(unit: &mut Spanned<DeTable<'_>>, p: &mut Placeholder, message: &str) -> bool {
    if !p.named && message.starts_with("unknown variant") {
        p.named = true;
        // Only the names the enum expects can satisfy it: the first will do.
        p.candidates = expected_names(message)
            .into_iter()
            .take(1)
            .map(|n| DeValue::String(Cow::Owned(n)))
            .collect();
    }
    match p.candidates.pop() {
        Some(value) => set_value(unit.get_mut(), &p.segs, Spanned::new(p.span.clone(), value)),
        None => false,
    }
}

/// A source that deserializes for sure, standing in for an entry that could not be read.
fn placeholder_source() -> Option<SourceConfig> {
    let text = format!(
        "name = \"{PLACEHOLDER_NAME}\"\npath = \"\"\nprotocol = \"witmotion\"\nsample_rate_hz = 100.0\n"
    );
    let table = Deserializer::parse(&text).ok()?;
    SourceConfig::read("imu_serial", table)?.ok()
}

/// A configuration file read with every problem found.
#[derive(Debug)]
pub(super) struct Parsed {
    /// The configuration, when it could be built (with placeholders where keys were unreadable:
    /// never used when `problems` is not empty).
    pub config: Option<Config>,
    /// Every syntax, type and unknown-key problem, each with its location.
    pub problems: Vec<Problem>,
    /// Keys taken out or replaced by a placeholder: nothing about them is reported again.
    pub poisoned: Vec<String>,
    /// Where every key is.
    pub locations: Locations,
}

/// Whether `problem` is about one of `keys` (or a key below one), directly or through a key it
/// depends on.
pub(super) fn concerns(problem: &Problem, keys: &[String]) -> bool {
    is_under_any(&problem.path, keys) || problem.related.iter().any(|r| is_under_any(r, keys))
}

/// Parses `text` and reads it into a [`Config`], collecting every problem.
pub(super) fn parse(text: &str) -> Parsed {
    let lines = Lines::new(text);
    let (root, syntax) = DeTable::parse_recoverable(text);
    let locations = Locations::of(&lines, root.get_ref());
    if !syntax.is_empty() {
        let problems = syntax
            .iter()
            .map(|e| Problem {
                message: format!("TOML syntax: {}", e.message().trim()),
                location: e.span().and_then(|s| lines.at(s.start)),
                ..Problem::default()
            })
            .collect();
        return Parsed {
            config: None,
            problems,
            poisoned: Vec::new(),
            locations,
        };
    }
    let mut r = Recovery {
        lines,
        problems: Vec::new(),
        poisoned: Vec::new(),
        next_fake: 0,
    };
    let mut root = root.into_inner();
    let sources = root.remove("sources");
    // The whole document has no header: a span of its own (the end of the text) tells a key
    // missing at the top level from one missing in a table.
    let end = text.len()..text.len();
    let config = r.recover(Spanned::new(end, root), "", Config::deserialize);
    let sources = sources.map(|s| r.sources(s)).unwrap_or_default();
    let config = config.map(|mut c| {
        c.sources = sources;
        c
    });
    Parsed {
        config,
        problems: r.problems,
        poisoned: r.poisoned,
        locations,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const BASE: &str = "[device]\nid = \"d\"\n[models]\ndir = \"m\"\n[mqtt]\nurl = \"mqtt://h\"\n";

    fn problems(text: &str) -> Vec<String> {
        parse(text)
            .problems
            .iter()
            .map(|p| {
                let (l, c) = p.location.unwrap_or((0, 0));
                format!("{l}:{c}: {p}")
            })
            .collect()
    }

    #[test]
    fn three_type_errors_are_three_problems_at_their_values() {
        let text = format!(
            "{BASE}[[sources]]\ntype = \"imu_serial\"\nname = \"imu\"\npath = \"/dev/x\"\n\
             protocol = \"witmotion\"\nsample_rate_hz = \"fast\"\nwindow_ms = \"5s\"\n\
             queue_capacity = 1e12\n"
        );
        let mut p = problems(&text);
        p.sort();
        assert_eq!(
            p,
            vec![
                "12:18: sources[0].sample_rate_hz: expected a number of hertz, found \"fast\"",
                "13:13: sources[0].window_ms: expected a whole number of milliseconds from 1 (25 for audio) to 600000 ms (10 min), found \"5s\"",
                "14:18: sources[0].queue_capacity: expected a whole number of items waiting, found 1e12",
            ]
        );
    }

    #[test]
    fn a_wrong_type_and_an_unknown_key_are_both_reported() {
        let text = format!("{BASE}keep_alive_s = -3\nkeep_alive = 5\n");
        let p = problems(&text);
        assert_eq!(
            p,
            vec![
                "8:1: mqtt.keep_alive: unknown key \"keep_alive\" (did you mean \"keep_alive_s\"?)",
                "7:16: mqtt.keep_alive_s: expected a whole number of seconds from 1 to 65535 s (18.2 h), found -3 (negative)",
            ]
        );
    }

    #[test]
    fn a_key_missing_from_a_source_is_reported_at_its_header_once() {
        // `name` is missing; `path` has the wrong type and gets a placeholder without a second
        // report.
        let text = format!("{BASE}[[sources]]\ntype = \"imu_replay\"\npath = 3\n");
        let parsed = parse(&text);
        let p: Vec<String> = parsed.problems.iter().map(ToString::to_string).collect();
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p.contains(&"sources[0].name: is required and missing".to_string()),
            "{p:?}"
        );
        assert!(
            p.contains(&"sources[0].path: expected a path in quotes, found 3".to_string()),
            "{p:?}"
        );
        assert_eq!(
            parsed
                .problems
                .iter()
                .find(|p| p.path.ends_with("name"))
                .unwrap()
                .location,
            Some((7, 1))
        );
        assert!(parsed.config.is_some());
    }

    #[test]
    fn a_bad_source_type_keeps_the_index_of_the_next_source() {
        let text = format!(
            "{BASE}[[sources]]\ntype = \"imu_replayy\"\nname = \"a\"\n[[sources]]\n\
             type = \"imu_serial\"\nname = \"b\"\npath = \"/dev/x\"\nprotocol = \"serial\"\n\
             sample_rate_hz = 100.0\nbaud = 9600\n"
        );
        let parsed = parse(&text);
        let p: Vec<String> = parsed.problems.iter().map(ToString::to_string).collect();
        // Every registered type is offered, in registry order.
        let types = crate::sources::registry::SOURCE_TYPES.join(", ");
        assert!(types.starts_with("imu_replay, thermal_replay, depth_replay, audio_replay"));
        assert_eq!(
            p,
            vec![
                format!("sources[0].type: \"imu_replayy\" is not a source type (did you mean \"imu_replay\"?); one of {types}"),
                "sources[1].baud: unknown key \"baud\" (did you mean \"baud_rate\"?)".into(),
                "sources[1].protocol: \"serial\" is not one of \"csv\", \"witmotion\"".into(),
            ]
        );
        // The protocol was replaced by a placeholder: nothing more is said about it.
        let config = parsed.config.as_ref().unwrap();
        assert_eq!(config.sources.len(), 2);
        assert_eq!(config.sources[1].name(), "b");
        let about_protocol = Problem {
            path: "sources[1].acc_unit".into(),
            related: vec!["sources[1].protocol".into()],
            ..Problem::default()
        };
        assert!(concerns(&about_protocol, &parsed.poisoned));
    }

    #[test]
    fn missing_sections_get_placeholders_and_one_problem_each() {
        let parsed = parse("[device]\nid = 3\n");
        let p: Vec<String> = parsed.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            p,
            vec![
                "device.id: expected text in quotes, found 3",
                "models: is required and missing",
                "mqtt: is required and missing",
            ]
        );
    }

    #[test]
    fn syntax_errors_are_all_reported_with_their_lines() {
        let p = problems("[device\nid = \"x\"\n[mqtt]\nurl = = 3\n");
        assert!(p.len() >= 2, "{p:?}");
        assert!(p[0].starts_with("1:8: TOML syntax: "), "{p:?}");
        assert!(p.iter().any(|m| m.starts_with("4:")), "{p:?}");
    }

    #[test]
    fn locations_fall_back_to_the_enclosing_table() {
        let text = format!("{BASE}[[sources]]\ntype = \"imu_replay\"\nname = \"a\"\n");
        let parsed = parse(&text);
        assert_eq!(parsed.locations.find("sources[0].name"), Some((9, 8)));
        assert_eq!(parsed.locations.find("sources[0].window_ms"), Some((7, 1)));
        assert_eq!(parsed.locations.find("mqtt.queue_capacity"), Some((5, 1)));
        assert_eq!(parsed.locations.find("nowhere"), None);
    }

    #[test]
    fn every_source_type_is_read_by_its_own_name() {
        for kind in SOURCE_TYPES {
            let de = Deserializer::parse("").unwrap();
            assert!(SourceConfig::read(kind, de).is_some(), "{kind}");
        }
        // The placeholder is a source of a registered type.
        let s = placeholder_source().unwrap();
        assert_eq!(s.kind().type_name(), "imu_serial");
    }
}
