//! Named concept sets as words: labels, an optional prompt template (`"a sound of {}"`) and
//! optional aliases per label, validated into a [`TextSet`] the text encoder can embed. A
//! precomputed bank (`concepts.txt` + `concepts.npy`) remains a valid set ([`ConceptSet`]), so a
//! model set without a text encoder keeps working.
//!
//! A label's bank row is the text encoder's output for the label put into the template; with
//! aliases, it is the mean of the unit embeddings of the label and of each alias (each put into
//! the template), the usual prompt ensembling of zero-shot CLIP. Matches always report the label.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Most labels a set may hold (each costs one text-encoder run to embed).
pub const MAX_LABELS: usize = 4096;
/// Longest label, alias or template, in UTF-8 bytes (CLIP reads at most 75 tokens anyway).
pub const MAX_LABEL_BYTES: usize = 1024;
/// Most aliases of one label.
pub const MAX_ALIASES_PER_LABEL: usize = 16;
/// Longest set name (it is part of MQTT topics and file names).
pub const MAX_SET_NAME_BYTES: usize = 64;
/// The place of the label in a template.
pub const TEMPLATE_SLOT: &str = "{}";

/// A concept set as written in a configuration file or a control command.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConceptSetDef {
    /// The concepts, in bank order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// A prompt with exactly one `{}`, replaced by each label and alias before embedding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Other phrasings of a label, embedded with it (the label's row is their mean).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aliases: BTreeMap<String, Vec<String>>,
    /// A precomputed bank instead of labels (files relative to the model set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precomputed: Option<BankFiles>,
}

/// The two files of a precomputed bank.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BankFiles {
    /// UTF-8 labels, one per line.
    pub labels: PathBuf,
    /// float32 `[K, dim]` `.npy`.
    pub embeddings: PathBuf,
}

/// A validated concept set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConceptSet {
    /// Words, embedded with the model set's text encoder.
    Text(TextSet),
    /// A bank made offline.
    Precomputed(BankFiles),
}

/// A validated set of words: 1..=[`MAX_LABELS`] distinct labels, a template with one `{}`,
/// aliases only for labels of the set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TextSet {
    labels: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    template: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    aliases: BTreeMap<String, Vec<String>>,
}

/// A set that is not valid: the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SetError {
    /// The field, as a path (`labels[3]`, `template`, `aliases."dog"[0]`, `name`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl SetError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Checks a set name: 1..=64 bytes of `a-z`, `0-9`, `_` and `-` (it becomes an MQTT topic level
/// and a file name, so nothing that needs escaping in either).
///
/// # Errors
/// [`SetError`] on the `name` field.
pub fn validate_name(name: &str) -> Result<(), SetError> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-';
    if name.is_empty() || name.len() > MAX_SET_NAME_BYTES || !name.chars().all(ok_char) {
        return Err(SetError::new(
            "name",
            format!(
                "{name:?} is not a set name (1 to {MAX_SET_NAME_BYTES} characters of a-z, 0-9, _ and -)"
            ),
        ));
    }
    Ok(())
}

/// Checks one label, alias or template text: not blank, no surrounding whitespace, no control
/// character (a newline would split a label in `concepts.txt`), at most [`MAX_LABEL_BYTES`].
fn check_text(field: &str, text: &str) -> Result<(), SetError> {
    if text.trim().is_empty() {
        return Err(SetError::new(field, "is empty"));
    }
    if text.len() > MAX_LABEL_BYTES {
        return Err(SetError::new(
            field,
            format!("is {} bytes, at most {MAX_LABEL_BYTES}", text.len()),
        ));
    }
    if text.trim() != text {
        return Err(SetError::new(
            field,
            format!("{text:?} starts or ends with whitespace"),
        ));
    }
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        return Err(SetError::new(
            field,
            format!("holds the control character U+{:04X}", u32::from(c)),
        ));
    }
    Ok(())
}

/// Checks a template: valid text with exactly one `{}`.
fn check_template(template: &str) -> Result<(), SetError> {
    check_text("template", template)?;
    let slots = template.matches(TEMPLATE_SLOT).count();
    if slots != 1 {
        return Err(SetError::new(
            "template",
            format!("{template:?} must hold exactly one {TEMPLATE_SLOT} (it holds {slots})"),
        ));
    }
    Ok(())
}

impl ConceptSetDef {
    /// Validates the set.
    ///
    /// # Errors
    /// The first [`SetError`], naming the field.
    pub fn validate(self) -> Result<ConceptSet, SetError> {
        match self.precomputed {
            Some(files) => {
                let text_field = if !self.labels.is_empty() {
                    Some("labels")
                } else if self.template.is_some() {
                    Some("template")
                } else if !self.aliases.is_empty() {
                    Some("aliases")
                } else {
                    None
                };
                if let Some(field) = text_field {
                    return Err(SetError::new(
                        field,
                        "a set is either words (labels) or a precomputed bank, not both",
                    ));
                }
                Ok(ConceptSet::Precomputed(files))
            }
            None => TextSet::new(self.labels, self.template, self.aliases).map(ConceptSet::Text),
        }
    }
}

impl TextSet {
    /// A validated set of words.
    ///
    /// # Errors
    /// [`SetError`] naming the field: no label, too many, a label or alias empty, too long, with
    /// a control character or surrounding whitespace, a duplicate, aliases of an unknown label,
    /// a template without exactly one `{}`.
    pub fn new(
        labels: Vec<String>,
        template: Option<String>,
        aliases: BTreeMap<String, Vec<String>>,
    ) -> Result<Self, SetError> {
        if labels.is_empty() {
            return Err(SetError::new(
                "labels",
                "no label: a set needs at least one",
            ));
        }
        if labels.len() > MAX_LABELS {
            return Err(SetError::new(
                "labels",
                format!("{} labels, at most {MAX_LABELS}", labels.len()),
            ));
        }
        let mut seen = HashSet::with_capacity(labels.len());
        for (i, label) in labels.iter().enumerate() {
            let field = format!("labels[{i}]");
            check_text(&field, label)?;
            if !seen.insert(label.as_str()) {
                return Err(SetError::new(field, format!("{label:?} appears twice")));
            }
        }
        if let Some(t) = &template {
            check_template(t)?;
        }
        for (label, list) in &aliases {
            let base = format!("aliases.{label:?}");
            if !seen.contains(label.as_str()) {
                return Err(SetError::new(base, "is not a label of the set"));
            }
            if list.len() > MAX_ALIASES_PER_LABEL {
                return Err(SetError::new(
                    base,
                    format!("{} aliases, at most {MAX_ALIASES_PER_LABEL}", list.len()),
                ));
            }
            let mut own = HashSet::new();
            for (j, alias) in list.iter().enumerate() {
                let field = format!("{base}[{j}]");
                check_text(&field, alias)?;
                if alias == label || !own.insert(alias.as_str()) {
                    return Err(SetError::new(field, format!("{alias:?} appears twice")));
                }
            }
        }
        let aliases = aliases.into_iter().filter(|(_, v)| !v.is_empty()).collect();
        Ok(Self {
            labels,
            template,
            aliases,
        })
    }

    /// The labels, in bank order.
    #[must_use]
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The template, if any.
    #[must_use]
    pub fn template(&self) -> Option<&str> {
        self.template.as_deref()
    }

    /// The aliases by label.
    #[must_use]
    pub fn aliases(&self) -> &BTreeMap<String, Vec<String>> {
        &self.aliases
    }

    /// `text` put into the template (as is without one).
    #[must_use]
    pub fn prompt(&self, text: &str) -> String {
        match &self.template {
            Some(t) => t.replacen(TEMPLATE_SLOT, text, 1),
            None => text.to_string(),
        }
    }

    /// The prompts to embed, each with the index of the label whose row it contributes to:
    /// every label, then (in label order) its aliases.
    #[must_use]
    pub fn prompts(&self) -> Vec<(usize, String)> {
        let mut out: Vec<(usize, String)> = self
            .labels
            .iter()
            .enumerate()
            .map(|(i, l)| (i, self.prompt(l)))
            .collect();
        for (i, label) in self.labels.iter().enumerate() {
            for alias in self.aliases.get(label).into_iter().flatten() {
                out.push((i, self.prompt(alias)));
            }
        }
        out
    }

    /// The set as its definition (for control answers and the persisted file).
    #[must_use]
    pub fn to_def(&self) -> ConceptSetDef {
        ConceptSetDef {
            labels: self.labels.clone(),
            template: self.template.clone(),
            aliases: self.aliases.clone(),
            precomputed: None,
        }
    }

    /// sha256 of what determines the bank's rows apart from the encoder: template, labels and
    /// aliases, length-prefixed so that no two sets share a byte stream (lower-case hex).
    #[must_use]
    pub fn sha256(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        let mut put = |s: &str| {
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        };
        put("edgebind concept set v1");
        put(self.template.as_deref().unwrap_or(""));
        put(if self.template.is_some() { "t" } else { "-" });
        for label in &self.labels {
            put(label);
            let aliases = self.aliases.get(label).map_or(&[][..], Vec::as_slice);
            put(&aliases.len().to_string());
            for a in aliases {
                put(a);
            }
        }
        hex(&h.finalize())
    }
}

/// Lower-case hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn def(json: &str) -> Result<ConceptSet, String> {
        let d: ConceptSetDef = serde_json::from_str(json).map_err(|e| e.to_string())?;
        d.validate().map_err(|e| e.to_string())
    }

    #[test]
    fn a_set_of_words_with_template_and_aliases_is_valid() {
        let s = def(r#"{"labels":["dog","smoke alarm"],"template":"a sound of {}","aliases":{"dog":["barking dog"]}}"#).unwrap();
        let ConceptSet::Text(t) = s else {
            panic!("not text")
        };
        assert_eq!(
            t.prompts(),
            vec![
                (0, "a sound of dog".to_string()),
                (1, "a sound of smoke alarm".to_string()),
                (0, "a sound of barking dog".to_string()),
            ]
        );
    }

    #[test]
    fn every_invalid_field_is_named() {
        let cases = [
            (r#"{"labels":[]}"#, "labels: no label"),
            (r#"{"labels":["a",""]}"#, "labels[1]: is empty"),
            (r#"{"labels":["a","a"]}"#, "labels[1]: \"a\" appears twice"),
            (r#"{"labels":[" a"]}"#, "labels[0]: \" a\" starts or ends"),
            (
                r#"{"labels":["a\nb"]}"#,
                "labels[0]: holds the control character U+000A",
            ),
            (
                r#"{"labels":["a"],"template":"x"}"#,
                "template: \"x\" must hold exactly one {} (it holds 0)",
            ),
            (r#"{"labels":["a"],"template":"{} {}"}"#, "(it holds 2)"),
            (
                r#"{"labels":["a"],"aliases":{"b":["c"]}}"#,
                "aliases.\"b\": is not a label",
            ),
            (
                r#"{"labels":["a"],"aliases":{"a":["a"]}}"#,
                "aliases.\"a\"[0]: \"a\" appears twice",
            ),
            (r#"{"labels":["a"],"colour":1}"#, "unknown field `colour`"),
            (
                r#"{"labels":["a"],"precomputed":{"labels":"l","embeddings":"e"}}"#,
                "labels: a set is either",
            ),
        ];
        for (json, want) in cases {
            let e = def(json).unwrap_err();
            assert!(e.contains(want), "{json}: {e}");
        }
        let long = format!(r#"{{"labels":["{}"]}}"#, "x".repeat(MAX_LABEL_BYTES + 1));
        assert!(def(&long)
            .unwrap_err()
            .contains("is 1025 bytes, at most 1024"));
        let many: Vec<String> = (0..=MAX_LABELS).map(|i| format!("l{i}")).collect();
        let e = TextSet::new(many, None, BTreeMap::new()).unwrap_err();
        assert_eq!(e.to_string(), "labels: 4097 labels, at most 4096");
    }

    #[test]
    fn a_precomputed_bank_is_a_set() {
        let s = def(r#"{"precomputed":{"labels":"concepts.txt","embeddings":"concepts.npy"}}"#)
            .unwrap();
        assert!(matches!(s, ConceptSet::Precomputed(_)));
    }

    #[test]
    fn set_names_are_topic_and_file_safe() {
        assert!(validate_name("audio_1").is_ok());
        for bad in ["", "Audio", "a/b", "a+", "#", "..", &"a".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_set_sha_changes_with_any_word_and_not_otherwise() {
        let mk = |l: &[&str], t: Option<&str>| {
            TextSet::new(
                l.iter().map(|s| s.to_string()).collect(),
                t.map(String::from),
                BTreeMap::new(),
            )
            .unwrap()
            .sha256()
        };
        assert_eq!(mk(&["a", "b"], None), mk(&["a", "b"], None));
        assert_ne!(mk(&["a", "b"], None), mk(&["b", "a"], None));
        assert_ne!(mk(&["ab"], None), mk(&["a", "b"], None));
        assert_ne!(mk(&["a"], None), mk(&["a"], Some("{}")));
    }
}
