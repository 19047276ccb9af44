//! Control commands on a concept set, pure: `set` (replace), `add`, `remove`, each with a JSON
//! body, validated and applied to the active set into a new set or a typed error. Nothing is
//! changed on an error, so the caller keeps the old set active. Commands arrive at least once
//! (MQTT QoS 1), so `add` of a label already there and `remove` of one that is not are no-ops,
//! reported in [`Applied::unchanged`], not errors.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::set::{ConceptSet, ConceptSetDef, SetError, TextSet};

/// Largest command body accepted (checked before parsing).
pub const MAX_COMMAND_BYTES: usize = 1 << 20;

/// What a command asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// Replace the whole set.
    Set,
    /// Add labels (and their aliases).
    Add,
    /// Remove labels.
    Remove,
}

impl Verb {
    /// The verb of a topic's last level (`set`, `add`, `remove`).
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "set" => Some(Self::Set),
            "add" => Some(Self::Add),
            "remove" => Some(Self::Remove),
            _ => None,
        }
    }

    /// The verb as in topics.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Set => "set",
            Self::Add => "add",
            Self::Remove => "remove",
        }
    }
}

/// Body of `add`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddBody {
    /// Labels to append.
    pub labels: Vec<String>,
    /// Aliases of the added labels.
    #[serde(default)]
    pub aliases: BTreeMap<String, Vec<String>>,
}

/// Body of `remove`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveBody {
    /// Labels to take out (with their aliases).
    pub labels: Vec<String>,
}

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `set`: the new set (words, validated when applied).
    Set(ConceptSetDef),
    /// `add`.
    Add(AddBody),
    /// `remove`.
    Remove(RemoveBody),
}

/// Why a command was refused (the active set is unchanged).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// The verb is not `set`, `add` or `remove`.
    #[error("unknown command {0:?} (expected set, add or remove)")]
    UnknownVerb(String),
    /// The body is larger than [`MAX_COMMAND_BYTES`].
    #[error("body is {bytes} bytes, at most {MAX_COMMAND_BYTES}")]
    TooLarge {
        /// Its size.
        bytes: usize,
    },
    /// The body is not UTF-8.
    #[error("body is not UTF-8 (invalid byte at offset {offset})")]
    NotUtf8 {
        /// Offset of the first invalid byte.
        offset: usize,
    },
    /// The body is not the command's JSON.
    #[error("body is not a valid `{verb}` command: {message}")]
    Json {
        /// The verb.
        verb: &'static str,
        /// serde_json's message, with line and column.
        message: String,
    },
    /// The resulting set would not be valid.
    #[error(transparent)]
    Invalid(#[from] SetError),
    /// `set` with a precomputed bank: only words can be sent.
    #[error(
        "precomputed: a control command carries words; a precomputed bank is configured, not sent"
    )]
    PrecomputedInCommand,
    /// `add`/`remove` on a precomputed bank.
    #[error(
        "the active set is a precomputed bank: send `set` with labels to replace it with words"
    )]
    NotText,
}

impl ControlError {
    /// A stable, machine-readable code for error answers.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownVerb(_) => "unknown_command",
            Self::TooLarge { .. } => "too_large",
            Self::NotUtf8 { .. } => "not_utf8",
            Self::Json { .. } => "bad_json",
            Self::Invalid(_) => "invalid_set",
            Self::PrecomputedInCommand | Self::NotText => "not_text",
        }
    }

    /// The field at fault, when one is.
    #[must_use]
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Invalid(e) => Some(&e.field),
            Self::PrecomputedInCommand => Some("precomputed"),
            _ => None,
        }
    }
}

impl Command {
    /// Parses `body` as the command `verb` (a topic's last level).
    ///
    /// # Errors
    /// [`ControlError`]: unknown verb, too large, not UTF-8, not the command's JSON (unknown
    /// fields are refused).
    pub fn parse(verb: &str, body: &[u8]) -> Result<Self, ControlError> {
        let v = Verb::parse(verb).ok_or_else(|| ControlError::UnknownVerb(verb.to_string()))?;
        if body.len() > MAX_COMMAND_BYTES {
            return Err(ControlError::TooLarge { bytes: body.len() });
        }
        let text = std::str::from_utf8(body).map_err(|e| ControlError::NotUtf8 {
            offset: e.valid_up_to(),
        })?;
        let json_err = |e: serde_json::Error| ControlError::Json {
            verb: v.as_str(),
            message: e.to_string(),
        };
        Ok(match v {
            Verb::Set => Self::Set(serde_json::from_str(text).map_err(json_err)?),
            Verb::Add => Self::Add(serde_json::from_str(text).map_err(json_err)?),
            Verb::Remove => Self::Remove(serde_json::from_str(text).map_err(json_err)?),
        })
    }

    /// The verb.
    #[must_use]
    pub fn verb(&self) -> Verb {
        match self {
            Self::Set(_) => Verb::Set,
            Self::Add(_) => Verb::Add,
            Self::Remove(_) => Verb::Remove,
        }
    }
}

/// A command applied: the new set, and the labels a repeated command left as they were.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The set to put in use.
    pub set: TextSet,
    /// `add`: labels already in the set; `remove`: labels not in it.
    pub unchanged: Vec<String>,
}

/// Applies `command` to the `active` set.
///
/// # Errors
/// [`ControlError`]; `active` stays the set in use.
pub fn apply(active: &ConceptSet, command: Command) -> Result<Applied, ControlError> {
    match command {
        Command::Set(def) => match def.validate()? {
            ConceptSet::Text(set) => Ok(Applied {
                set,
                unchanged: Vec::new(),
            }),
            ConceptSet::Precomputed(_) => Err(ControlError::PrecomputedInCommand),
        },
        Command::Add(body) => {
            let ConceptSet::Text(current) = active else {
                return Err(ControlError::NotText);
            };
            add(current, body)
        }
        Command::Remove(body) => {
            let ConceptSet::Text(current) = active else {
                return Err(ControlError::NotText);
            };
            remove(current, &body)
        }
    }
}

fn add(current: &TextSet, body: AddBody) -> Result<Applied, ControlError> {
    let mut labels = current.labels().to_vec();
    let mut aliases = current.aliases().clone();
    let mut unchanged = Vec::new();
    let existing: std::collections::HashSet<&str> =
        current.labels().iter().map(String::as_str).collect();
    for label in &body.labels {
        if existing.contains(label.as_str()) {
            unchanged.push(label.clone());
        } else {
            labels.push(label.clone());
        }
    }
    for (label, list) in body.aliases {
        if existing.contains(label.as_str()) {
            // Aliases of a label already there would change its row: only `set` does that.
            return Err(SetError {
                field: format!("aliases.{label:?}"),
                message: "is already in the set; send `set` to change its aliases".into(),
            }
            .into());
        }
        aliases.insert(label, list);
    }
    // Field names of the result are positions in the new set; the added labels come last.
    let set = TextSet::new(labels, current.template().map(String::from), aliases)?;
    Ok(Applied { set, unchanged })
}

fn remove(current: &TextSet, body: &RemoveBody) -> Result<Applied, ControlError> {
    let gone: std::collections::HashSet<&str> = body.labels.iter().map(String::as_str).collect();
    let unchanged = body
        .labels
        .iter()
        .filter(|l| !current.labels().contains(l))
        .cloned()
        .collect();
    let labels: Vec<String> = current
        .labels()
        .iter()
        .filter(|l| !gone.contains(l.as_str()))
        .cloned()
        .collect();
    if labels.is_empty() {
        return Err(SetError {
            field: "labels".into(),
            message: "removing them would leave the set empty".into(),
        }
        .into());
    }
    let aliases = current
        .aliases()
        .iter()
        .filter(|(l, _)| !gone.contains(l.as_str()))
        .map(|(l, v)| (l.clone(), v.clone()))
        .collect();
    let set = TextSet::new(labels, current.template().map(String::from), aliases)?;
    Ok(Applied { set, unchanged })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn active() -> ConceptSet {
        let def: ConceptSetDef = serde_json::from_str(
            r#"{"labels":["dog","cat"],"template":"a sound of {}","aliases":{"dog":["puppy"]}}"#,
        )
        .unwrap();
        def.validate().unwrap()
    }

    fn run(verb: &str, body: &str) -> Result<Applied, ControlError> {
        apply(&active(), Command::parse(verb, body.as_bytes())?)
    }

    #[test]
    fn set_replaces_add_appends_remove_takes_out_with_aliases() {
        let s = run("set", r#"{"labels":["alarm"]}"#).unwrap();
        assert_eq!(s.set.labels(), ["alarm"]);
        assert_eq!(s.set.template(), None);

        let a = run(
            "add",
            r#"{"labels":["cat","bird"],"aliases":{"bird":["a bird"]}}"#,
        )
        .unwrap();
        assert_eq!(a.set.labels(), ["dog", "cat", "bird"]);
        assert_eq!(a.set.template(), Some("a sound of {}"));
        assert_eq!(a.unchanged, ["cat"]);
        assert_eq!(a.set.aliases()["bird"], ["a bird"]);

        let r = run("remove", r#"{"labels":["dog","emu"]}"#).unwrap();
        assert_eq!(r.set.labels(), ["cat"]);
        assert!(r.set.aliases().is_empty());
        assert_eq!(r.unchanged, ["emu"]);
    }

    #[test]
    fn bad_commands_are_typed_errors_with_codes() {
        let cases: [(&str, &[u8], &str); 8] = [
            ("drop", b"{}", "unknown_command"),
            ("set", b"\xff{}", "not_utf8"),
            ("set", b"{\"labels\":", "bad_json"),
            ("add", br#"{"labels":["x"],"template":"{}"}"#, "bad_json"),
            ("set", br#"{"labels":[]}"#, "invalid_set"),
            ("remove", br#"{"labels":["dog","cat"]}"#, "invalid_set"),
            (
                "add",
                br#"{"labels":["dog"],"aliases":{"dog":["hound"]}}"#,
                "invalid_set",
            ),
            (
                "set",
                br#"{"precomputed":{"labels":"a","embeddings":"b"}}"#,
                "not_text",
            ),
        ];
        for (verb, body, code) in cases {
            let e = Command::parse(verb, body).and_then(|c| apply(&active(), c));
            assert_eq!(
                e.as_ref().map_err(ControlError::code).err(),
                Some(code),
                "{verb} {e:?}"
            );
        }
        let big = vec![b' '; MAX_COMMAND_BYTES + 1];
        assert_eq!(
            Command::parse("set", &big).unwrap_err().to_string(),
            "body is 1048577 bytes, at most 1048576"
        );
        let e = run("add", r#"{"labels":["a\u0000b"]}"#).unwrap_err();
        assert_eq!(e.field(), Some("labels[2]"));
    }

    #[test]
    fn add_and_remove_need_a_set_of_words() {
        let pre = ConceptSet::Precomputed(super::super::set::BankFiles {
            labels: "l".into(),
            embeddings: "e".into(),
        });
        let c = Command::parse("add", br#"{"labels":["x"]}"#).unwrap();
        assert_eq!(apply(&pre, c).unwrap_err().code(), "not_text");
        let c = Command::parse("set", br#"{"labels":["x"]}"#).unwrap();
        assert_eq!(apply(&pre, c).unwrap().set.labels(), ["x"]);
    }
}
