//! The `[concepts]` keys of issue #16: named concept sets (words or a precomputed bank) assigned
//! to sensors, how the text encoder runs while it embeds them, where the active sets and the
//! embedded banks are kept, and whether the sets may be changed over MQTT. Checked by
//! [`check`], every problem named with its key (`concepts.sets.sounds.labels[2]`).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::validate::Problems;
use super::Config;
use crate::concepts::set::{validate_name, BankFiles, ConceptSet, ConceptSetDef};

/// A set name that would be the control answers' error topic (`<prefix>/concepts/error`).
pub const RESERVED_SET_NAME: &str = "error";

/// One named concept set in the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConceptSetConfig {
    /// Sensors whose windows are matched against this set (a sensor in no set is matched
    /// against the model set's bank).
    pub sensors: Vec<String>,
    /// The concepts, in bank order (words embedded with the model set's text encoder).
    #[serde(default)]
    pub labels: Vec<String>,
    /// A prompt with exactly one `{}`, replaced by each label and alias (`"a sound of {}"`).
    #[serde(default)]
    pub template: Option<String>,
    /// Other phrasings of a label, embedded with it (the label's row is their mean).
    #[serde(default)]
    pub aliases: BTreeMap<String, Vec<String>>,
    /// A precomputed bank instead of words (files relative to the model set's directory).
    #[serde(default)]
    pub precomputed: Option<BankFiles>,
}

impl ConceptSetConfig {
    /// The set as the concept library reads it.
    #[must_use]
    pub fn def(&self) -> ConceptSetDef {
        ConceptSetDef {
            labels: self.labels.clone(),
            template: self.template.clone(),
            aliases: self.aliases.clone(),
            precomputed: self.precomputed.clone(),
        }
    }
}

/// Whether the text encoder stays loaded between embeddings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TextResidency {
    /// Loaded for each embedding and released afterwards (ImageBind's is 1.4 GB).
    #[default]
    Transient,
    /// Loaded once and kept (no load time on a change; the memory stays in use).
    Resident,
}

/// How the text encoder runs when a set is embedded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TextEncoderConfig {
    /// `transient` (default: loaded per embedding, then released) or `resident`.
    #[serde(default)]
    pub residency: TextResidency,
}

/// Changing concept sets over MQTT.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConceptControlConfig {
    /// Subscribe to `<prefix>/concepts/<set>/{set,add,remove}` (off by default: anyone who may
    /// publish there changes what the device reports; restrict it with the broker's ACL).
    #[serde(default)]
    pub enabled: bool,
}

pub(super) fn default_state_dir() -> PathBuf {
    PathBuf::from("concepts")
}

/// Which configured set each sensor is matched against (sensors of no set are absent).
#[must_use]
pub fn set_of_sensor(config: &Config) -> HashMap<String, String> {
    config
        .concepts
        .sets
        .iter()
        .flat_map(|(set, c)| c.sensors.iter().map(move |s| (s.clone(), set.clone())))
        .collect()
}

/// Every problem of the concept sets: names, words, sensors (each in at most one set, and
/// configured), a text encoder for sets of words, the files of precomputed banks.
pub(super) fn check(config: &Config, p: &mut Problems) {
    let manifest = crate::inference::Manifest::load(&config.resolve(&config.models.dir)).ok();
    let sensors: Vec<String> = config
        .streams()
        .iter()
        .map(|(_, s)| s.name.to_string())
        .collect();
    let mut owner: HashMap<&str, &str> = HashMap::new();
    for (name, set) in &config.concepts.sets {
        let key = format!("concepts.sets.{name}");
        if let Err(e) = validate_name(name) {
            p.add(&key, e.message);
        } else if name == RESERVED_SET_NAME {
            p.add(
                &key,
                "\"error\" is reserved (<prefix>/concepts/error carries control errors)",
            );
        }
        if set.sensors.is_empty() {
            p.add(format!("{key}.sensors"), "names no sensor");
        }
        for (i, sensor) in set.sensors.iter().enumerate() {
            let field = format!("{key}.sensors[{i}]");
            if !sensors.contains(sensor) {
                p.add(field, format!("{sensor:?} is not a configured sensor"));
            } else if let Some(other) = owner.insert(sensor, name) {
                p.add(
                    field,
                    format!("{sensor:?} is in set {other:?} already (a sensor matches one set)"),
                );
            }
        }
        match set.def().validate() {
            Err(e) => p.add(format!("{key}.{}", e.field), e.message),
            Ok(ConceptSet::Text(_)) => {
                if manifest.as_ref().is_some_and(|m| m.text.is_none()) {
                    p.add(
                        format!("{key}.labels"),
                        "the model set has no text encoder (manifest `text` entry) to embed words; use a precomputed bank",
                    );
                }
            }
            Ok(ConceptSet::Precomputed(files)) => {
                if let Some(m) = &manifest {
                    let dir = config.resolve(&config.models.dir);
                    let bank = crate::concepts::ConceptBank::load(
                        &dir.join(&files.labels),
                        &dir.join(&files.embeddings),
                        m.embedding_dim,
                    );
                    if let Err(e) = bank {
                        p.add(format!("{key}.precomputed"), e.to_string());
                    }
                }
            }
        }
    }
}
