//! The daemon's concept sets (issue #16): each named set of the configuration, as words embedded
//! with the model set's text encoder (through the disk [`cache`](super::cache)) or as a
//! precomputed bank, in use for its sensors through a [`SharedConcepts`] handle. A set changed by
//! a control command ([`LiveSets::apply`]) is embedded, persisted ([`SetStore`]) and only then
//! swapped in, so a window is always matched against one complete set and a restart keeps the
//! change. Sensors of no set are matched against the model set's bank (reloaded by SIGHUP).
//!
//! Blocking (file I/O, the text encoder): [`LiveSets`] lives on the build thread at start and on
//! the control thread afterwards.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::cache::{self, BankCache, CacheOutcome};
use super::control::{self, Command};
use super::embed::{EmbedError, EmbedOptions, Residency, TextEmbedder, TextModel};
use super::set::{BankFiles, ConceptSet, SetError, TextSet};
use super::state::{SetStore, StateError};
use super::{ConceptBank, ConceptError, SharedConcepts};
use crate::config::{Config, TextResidency};
use crate::inference::{Manifest, OrtRuntime};
use crate::publish::payload::ENVELOPE_VERSION;

/// Why a configured set cannot be put in use at start.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// The set is not valid.
    #[error("concepts.sets.{set}.{source}")]
    Set {
        /// The set.
        set: String,
        /// The field and what is wrong.
        source: SetError,
    },
    /// A set of words, but the model set has no text encoder.
    #[error("concepts.sets.{set}: the model set has no text encoder (manifest `text` entry) to embed words")]
    NoTextEncoder {
        /// The set.
        set: String,
    },
    /// The words could not be embedded.
    #[error("concepts.sets.{set}: {source}")]
    Embed {
        /// The set.
        set: String,
        /// Why.
        source: EmbedError,
    },
    /// The embedded or precomputed rows do not form a bank.
    #[error("concepts.sets.{set}: {message}")]
    Bank {
        /// The set.
        set: String,
        /// Why.
        message: String,
    },
    /// A precomputed bank does not load.
    #[error("concepts.sets.{set}.precomputed: {source}")]
    Precomputed {
        /// The set.
        set: String,
        /// Why.
        source: ConceptError,
    },
    /// The persisted state of a set cannot be read.
    #[error(
        "concepts.sets.{set}: {source} (delete the file to start from the configuration's set)"
    )]
    State {
        /// The set.
        set: String,
        /// Why.
        source: StateError,
    },
}

/// Where the set in use came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// The configuration file.
    Config,
    /// A control command (persisted; kept across restarts).
    Control,
}

/// The text encoder that embedded a set, as answers name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TextModelInfo {
    /// The encoder's file name.
    pub file: String,
    /// Its sha256.
    pub sha256: String,
    /// sha256 of the vocabulary.
    pub vocabulary_sha256: String,
}

/// A set in use, as published retained on `<prefix>/concepts/<set>`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActiveSetInfo {
    /// Envelope version (`crate::publish::payload::ENVELOPE_VERSION`).
    pub v: u32,
    /// The set's name.
    pub set: String,
    /// The sensors matched against it.
    pub sensors: Vec<String>,
    /// Its labels, in bank order.
    pub labels: Vec<String>,
    /// The prompt template.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Aliases by label.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub aliases: BTreeMap<String, Vec<String>>,
    /// A precomputed bank's files (instead of words).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub precomputed: Option<BankFiles>,
    /// sha256 of the words (template, labels, aliases); none for a precomputed bank.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// sha256 of the bank matched against (labels and embeddings).
    pub bank_sha256: String,
    /// The text encoder that embedded the words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text_model: Option<TextModelInfo>,
    /// Configuration or control command.
    pub origin: Origin,
    /// When the set was put in use (a control change: when it was made), ms since the epoch.
    pub updated_unix_ms: u64,
}

/// A control command refused, as published on `<prefix>/concepts/error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// Envelope version (`crate::publish::payload::ENVELOPE_VERSION`).
    pub v: u32,
    /// The set named by the topic.
    pub set: String,
    /// The command (`set`, `add`, `remove`).
    pub command: String,
    /// A stable code: `unknown_set`, `unknown_command`, `too_large`, `not_utf8`, `bad_json`,
    /// `invalid_set`, `not_text`, `embedding_failed`, `not_persisted`.
    pub code: String,
    /// What is wrong, for people.
    pub message: String,
    /// The field at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// sha256 of the bank still in use for the set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_bank_sha256: Option<String>,
    /// When it was refused, ms since the epoch.
    pub time_unix_ms: u64,
}

/// What a command came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The set in use now (changed, or unchanged for a repeated command).
    Applied {
        /// The set.
        info: ActiveSetInfo,
        /// Labels a repeated `add`/`remove` left as they were.
        unchanged: Vec<String>,
    },
    /// Refused; the set in use is as before.
    Refused(Refusal),
}

struct Live {
    set: ConceptSet,
    /// Identity of the configuration's set, written beside a persisted change: a restart whose
    /// configuration names other words takes those, not the older change.
    config_sha256: String,
    shared: SharedConcepts,
    sensors: Vec<String>,
    origin: Origin,
    updated_unix_ms: u64,
}

/// Every configured set in use, with what changing one needs.
pub struct LiveSets {
    sets: BTreeMap<String, Live>,
    embedder: Option<TextEmbedder>,
    cache: BankCache,
    store: SetStore,
    state_dir: PathBuf,
    model_dir: PathBuf,
    dim: usize,
}

impl std::fmt::Debug for LiveSets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSets")
            .field("sets", &self.sets.keys().collect::<Vec<_>>())
            .field("embedder", &self.embedder)
            .finish_non_exhaustive()
    }
}

/// Milliseconds since the Unix epoch now.
#[must_use]
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl LiveSets {
    /// Puts every configured set in use: a set changed over MQTT before (persisted under
    /// `concepts.state_dir`) replaces the configuration's words; words are embedded with the
    /// text encoder unless the cache holds them; precomputed banks are loaded.
    ///
    /// # Errors
    /// [`LiveError`] naming the set and what is wrong.
    pub fn start(
        config: &Config,
        runtime: &OrtRuntime,
        manifest: &Manifest,
        model_dir: &Path,
    ) -> Result<Self, LiveError> {
        let state_dir = config.resolve(&config.concepts.state_dir);
        let options = EmbedOptions {
            providers: config.runtime.execution_providers.clone(),
            intra_threads: config.runtime.intra_threads.n(),
            residency: match config.concepts.text.residency {
                TextResidency::Transient => Residency::Transient,
                TextResidency::Resident => Residency::Resident,
            },
            ..EmbedOptions::default()
        };
        let mut live = Self {
            sets: BTreeMap::new(),
            embedder: TextModel::from_manifest(manifest)
                .map(|m| TextEmbedder::new(runtime.clone(), m, options)),
            cache: BankCache::new(state_dir.join("cache")),
            store: SetStore::new(state_dir.join("sets")),
            state_dir: state_dir.clone(),
            model_dir: model_dir.to_path_buf(),
            dim: manifest.embedding_dim,
        };
        for (name, c) in &config.concepts.sets {
            let set = c.def().validate().map_err(|source| LiveError::Set {
                set: name.clone(),
                source,
            })?;
            let set_live = live.start_one(name, set, c.sensors.clone())?;
            live.sets.insert(name.clone(), set_live);
        }
        Ok(live)
    }

    fn start_one(
        &mut self,
        name: &str,
        configured: ConceptSet,
        sensors: Vec<String>,
    ) -> Result<Live, LiveError> {
        let config_sha256 = config_identity(&configured);
        let persisted = self.store.load(name).map_err(|source| LiveError::State {
            set: name.to_string(),
            source,
        })?;
        let base = std::fs::read_to_string(self.base_path(name)).unwrap_or_default();
        let (set, origin, updated_unix_ms) = match persisted {
            Some(p) if base.trim() == config_sha256 => {
                tracing::info!(set = name, labels = p.set.labels().len(),
                    "using the concept set changed over MQTT (persisted); it replaces the configuration's");
                (ConceptSet::Text(p.set), Origin::Control, p.updated_unix_ms)
            }
            Some(_) => {
                tracing::warn!(set = name,
                    "the configuration's words changed since the set was changed over MQTT; using the configuration's");
                (configured, Origin::Config, now_unix_ms())
            }
            None => (configured, Origin::Config, now_unix_ms()),
        };
        let bank = self.bank(name, &set)?;
        tracing::info!(set = name, concepts = bank.len(), sha256 = %bank.sha256(), sensors = %sensors.join(","),
            "concept set in use");
        Ok(Live {
            set,
            config_sha256,
            shared: SharedConcepts::new(bank),
            sensors,
            origin,
            updated_unix_ms,
        })
    }

    /// The file beside a persisted set naming the configuration's set it replaced.
    fn base_path(&self, name: &str) -> PathBuf {
        self.state_dir
            .join("sets")
            .join(format!("{name}.config-sha256"))
    }

    /// The bank of `set`: loaded (precomputed) or embedded (words, through the cache).
    fn bank(&mut self, name: &str, set: &ConceptSet) -> Result<ConceptBank, LiveError> {
        match set {
            ConceptSet::Precomputed(files) => ConceptBank::load(
                &self.model_dir.join(&files.labels),
                &self.model_dir.join(&files.embeddings),
                self.dim,
            )
            .map_err(|source| LiveError::Precomputed {
                set: name.to_string(),
                source,
            }),
            ConceptSet::Text(words) => self.embed(name, words),
        }
    }

    fn embed(&mut self, name: &str, words: &TextSet) -> Result<ConceptBank, LiveError> {
        let embedder = self
            .embedder
            .as_mut()
            .ok_or_else(|| LiveError::NoTextEncoder {
                set: name.to_string(),
            })?;
        let mut progress = |done: usize, total: usize| {
            tracing::debug!(set = name, done, total, "embedding concept set");
        };
        let (rows, outcome) = cache::cached_rows(embedder, Some(&self.cache), words, &mut progress)
            .map_err(|source| LiveError::Embed {
                set: name.to_string(),
                source,
            })?;
        if outcome == CacheOutcome::Hit {
            tracing::info!(
                set = name,
                "concept set read from the cache (not embedded again)"
            );
        } else {
            tracing::info!(
                set = name,
                labels = rows.labels.len(),
                "concept set embedded"
            );
        }
        let bank = rows.bank().map_err(|message| LiveError::Bank {
            set: name.to_string(),
            message,
        })?;
        if bank.dim() != self.dim {
            return Err(LiveError::Bank {
                set: name.to_string(),
                message: format!(
                    "the text encoder's rows are {} wide, the models produce {}",
                    bank.dim(),
                    self.dim
                ),
            });
        }
        Ok(bank)
    }

    /// The concepts each sensor is matched against (`default`: the model set's bank).
    #[must_use]
    pub fn router(&self, default: SharedConcepts) -> SensorConcepts {
        let by_sensor = self
            .sets
            .values()
            .flat_map(|l| l.sensors.iter().map(|s| (s.clone(), l.shared.clone())))
            .collect();
        SensorConcepts { default, by_sensor }
    }

    /// The names of the sets.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.sets.keys().map(String::as_str)
    }

    /// The set `name` as published (`None`: no such set).
    #[must_use]
    pub fn info(&self, name: &str) -> Option<ActiveSetInfo> {
        let l = self.sets.get(name)?;
        let text_model = self.embedder.as_ref().map(|e| e.model());
        let (labels, template, aliases, precomputed, sha256, model) = match &l.set {
            ConceptSet::Text(t) => (
                t.labels().to_vec(),
                t.template().map(String::from),
                t.aliases().clone(),
                None,
                Some(t.sha256()),
                text_model.map(model_info),
            ),
            ConceptSet::Precomputed(files) => (
                l.shared.current().labels().to_vec(),
                None,
                BTreeMap::new(),
                Some(files.clone()),
                None,
                None,
            ),
        };
        Some(ActiveSetInfo {
            v: ENVELOPE_VERSION,
            set: name.to_string(),
            sensors: l.sensors.clone(),
            labels,
            template,
            aliases,
            precomputed,
            sha256,
            bank_sha256: l.shared.current().sha256().to_string(),
            text_model: model,
            origin: l.origin,
            updated_unix_ms: l.updated_unix_ms,
        })
    }

    /// Applies the command `verb` with `body` to set `name`: parsed, validated, embedded,
    /// persisted, then put in use; on any error nothing changes and the refusal says why.
    pub fn apply(&mut self, name: &str, verb: &str, body: &[u8]) -> Outcome {
        let refuse =
            |code: &str, message: String, field: Option<String>, active: Option<String>| {
                Outcome::Refused(Refusal {
                    v: ENVELOPE_VERSION,
                    set: name.to_string(),
                    command: verb.to_string(),
                    code: code.to_string(),
                    message,
                    field,
                    active_bank_sha256: active,
                    time_unix_ms: now_unix_ms(),
                })
            };
        let Some(l) = self.sets.get(name) else {
            let known: Vec<&str> = self.names().collect();
            return refuse(
                "unknown_set",
                format!(
                    "no concept set {name:?} is configured (configured: {})",
                    known.join(", ")
                ),
                None,
                None,
            );
        };
        let active = Some(l.shared.current().sha256().to_string());
        let config_sha256 = l.config_sha256.clone();
        let applied = match Command::parse(verb, body).and_then(|c| control::apply(&l.set, c)) {
            Ok(a) => a,
            Err(e) => return refuse(e.code(), e.to_string(), e.field().map(String::from), active),
        };
        if matches!(&l.set, ConceptSet::Text(t) if *t == applied.set) {
            return self.applied(name, applied.unchanged);
        }
        let bank = match self.embed(name, &applied.set) {
            Ok(b) => b,
            Err(e) => return refuse("embedding_failed", e.to_string(), None, active),
        };
        let now = now_unix_ms();
        let base = (self.base_path(name), config_sha256);
        let saved = self.store.save(name, &applied.set, now).and_then(|()| {
            super::state::atomic_write(&base.0, base.1.as_bytes()).map_err(|e| StateError::Write {
                path: base.0.clone(),
                message: e.to_string(),
            })
        });
        if let Err(e) = saved {
            return refuse("not_persisted", e.to_string(), None, active);
        }
        if let Some(l) = self.sets.get_mut(name) {
            l.shared.replace(bank);
            l.set = ConceptSet::Text(applied.set);
            l.origin = Origin::Control;
            l.updated_unix_ms = now;
        }
        self.applied(name, applied.unchanged)
    }

    fn applied(&self, name: &str, unchanged: Vec<String>) -> Outcome {
        match self.info(name) {
            Some(info) => Outcome::Applied { info, unchanged },
            // Unreachable: the set was found above.
            None => Outcome::Refused(Refusal {
                v: ENVELOPE_VERSION,
                set: name.to_string(),
                command: String::new(),
                code: "unknown_set".into(),
                message: format!("no concept set {name:?}"),
                field: None,
                active_bank_sha256: None,
                time_unix_ms: now_unix_ms(),
            }),
        }
    }
}

/// What identifies a configured set: the words' sha256, or a precomputed bank's file names.
fn config_identity(set: &ConceptSet) -> String {
    match set {
        ConceptSet::Text(t) => t.sha256(),
        ConceptSet::Precomputed(f) => format!(
            "precomputed:{}:{}",
            f.labels.display(),
            f.embeddings.display()
        ),
    }
}

fn model_info(m: &TextModel) -> TextModelInfo {
    TextModelInfo {
        file: m
            .onnx
            .file_name()
            .map_or_else(String::new, |f| f.to_string_lossy().into_owned()),
        sha256: m.onnx_sha256.clone(),
        vocabulary_sha256: m.vocab_sha256.clone(),
    }
}

/// The concepts each sensor's windows are matched against: its set's, or the default bank.
#[derive(Debug, Clone)]
pub struct SensorConcepts {
    default: SharedConcepts,
    by_sensor: HashMap<String, SharedConcepts>,
}

impl SensorConcepts {
    /// Every sensor matched against `default`.
    #[must_use]
    pub fn single(default: SharedConcepts) -> Self {
        Self {
            default,
            by_sensor: HashMap::new(),
        }
    }

    /// The concepts of `sensor`.
    #[must_use]
    pub fn of(&self, sensor: &str) -> &SharedConcepts {
        self.by_sensor.get(sensor).unwrap_or(&self.default)
    }
}
