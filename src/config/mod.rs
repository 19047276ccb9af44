//! The daemon's TOML configuration: strict types (unknown fields rejected, numbers within their
//! ranges as they are read), units in field names. The daemon-wide sections are here; each
//! source kind's keys are in its own module under `sources`, read through the common keys of
//! [`Stream`] and listed in `sources::registry`. [`load`] parses a file; [`validate`] reports
//! every problem at once.

mod concept_sets;
mod file_checks;
mod home_assistant;
pub mod limits;
mod parse;
mod preprocess;
mod ranged;
mod ranges;
mod sections;
mod skip;
mod stream;
pub mod triggers;
mod validate;
mod values;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use concept_sets::{
    set_of_sensor, ConceptControlConfig, ConceptSetConfig, TextEncoderConfig, TextResidency,
    RESERVED_SET_NAME,
};
pub(crate) use file_checks::unreadable;
pub use home_assistant::HomeAssistantConfig;
pub use parse::Locations;
pub use preprocess::*;
pub use ranged::*;
pub use ranges::rate_problems;
pub use sections::*;
pub use skip::{InputDistance, SkipUnchanged, UnchangedThreshold};
pub use stream::*;
pub use validate::{validate, warnings, Problem, Scope};
pub use values::{ByteSize, MqttProtocol, Qos};

pub use crate::sources::registry::{SourceConfig, SOURCE_TYPES};

/// Exit code for a configuration error (`EX_CONFIG` from sysexits.h).
pub const EX_CONFIG: i32 = 78;

/// Errors reading or parsing a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML, does not match the schema, or holds values that cannot be
    /// used; or (found when `run` opened the sources) a value that does not fit what a recording
    /// or device turned out to be.
    #[error("{}", invalid_text(path, problems))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found, in file order.
        problems: Vec<Problem>,
    },
}

/// `file: N problem(s):` and one line per problem, `file:line:column: key: what`.
fn invalid_text(path: &Path, problems: &[Problem]) -> String {
    let file = path.display();
    let mut out = format!("{file}: {} problem(s):", problems.len());
    for p in problems {
        match p.location {
            Some((line, column)) => out.push_str(&format!("\n  {file}:{line}:{column}: {p}")),
            None => out.push_str(&format!("\n  {file}: {p}")),
        }
    }
    out
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This device.
    pub device: DeviceConfig,
    /// ONNX Runtime: where the library is and which execution providers to try.
    #[serde(default)]
    pub runtime: RuntimeConfig,
    /// The model set (ImageBind encoders + concept bank) and the inference queue.
    pub models: ModelsConfig,
    /// Nearest-concept matching.
    #[serde(default)]
    pub concepts: ConceptsConfig,
    /// The MQTT broker and what is published.
    pub mqtt: MqttConfig,
    /// The on-disk outbox between the pipeline and the broker.
    #[serde(default)]
    pub outbox: OutboxConfig,
    /// The Prometheus metrics endpoint (off when absent).
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
    /// Home Assistant MQTT discovery (off unless `discovery = true`).
    #[serde(default)]
    pub home_assistant: HomeAssistantConfig,
    /// Semantic events per sensor: `[triggers]` (docs/triggers.md).
    #[serde(default)]
    pub triggers: triggers::TriggersConfig,
    /// The fused scene (off when absent).
    #[serde(default)]
    pub scene: Option<crate::triggers::SceneConfig>,
    /// The sensors (read one by one by their `type`: `config::parse`).
    #[serde(default, skip_deserializing)]
    pub sources: Vec<SourceConfig>,
    /// Directory that relative paths are resolved against (the config file's directory).
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// The file this configuration was read from (named in messages).
    #[serde(skip)]
    pub path: PathBuf,
    /// Where each key is in that file, for problems found after it was read.
    #[serde(skip)]
    pub locations: Locations,
}

impl Config {
    /// Parses TOML text and reads it into a configuration (without validating the values);
    /// `path` is used for messages and as the base of relative paths.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] with every syntax, type and unknown-key problem, each with its
    /// line and column.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let parsed = parse::parse(text);
        match parsed.config {
            Some(config) if parsed.problems.is_empty() => Ok(config.placed(path, parsed.locations)),
            _ => Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                problems: finish(parsed.problems, &parsed.locations, None),
            }),
        }
    }

    fn placed(mut self, path: &Path, locations: Locations) -> Self {
        self.base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        if self.base_dir.as_os_str().is_empty() {
            self.base_dir = PathBuf::from(".");
        }
        self.path = path.to_path_buf();
        self.locations = locations;
        self
    }

    /// A configuration error for problems found after the file was read (when `run` opened the
    /// sources): each placed at its key in the file and named with its sensor, as `check` does.
    #[must_use]
    pub fn invalid(&self, problems: Vec<Problem>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.clone(),
            problems: finish(problems, &self.locations, Some(self)),
        }
    }

    /// A path from the file, resolved against the config file's directory.
    #[must_use]
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// Every sensor stream of the configured sources, with the index of its source.
    #[must_use]
    pub fn streams(&self) -> Vec<(usize, crate::sources::kind::StreamDecl<'_>)> {
        self.sources
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.kind().streams().into_iter().map(move |d| (i, d)))
            .collect()
    }

    /// The modalities the sensors feed, each once, in order.
    #[must_use]
    pub fn modalities(&self) -> Vec<crate::Modality> {
        let mut modalities: Vec<crate::Modality> =
            self.streams().iter().map(|(_, s)| s.modality).collect();
        modalities.sort();
        modalities.dedup();
        modalities
    }

    /// The topic prefix in effect.
    #[must_use]
    pub fn topic_prefix(&self) -> String {
        self.mqtt
            .topic_prefix
            .clone()
            .unwrap_or_else(|| format!("edgebind/{}", self.device.id))
    }
}

/// Problems placed in the file (the key's line and column, else its table's), named with their
/// sensor when `config` has one at that index, in file order (those without a place last).
fn finish(
    mut problems: Vec<Problem>,
    locations: &Locations,
    config: Option<&Config>,
) -> Vec<Problem> {
    for p in &mut problems {
        if p.location.is_none() && !p.path.is_empty() {
            p.location = locations.find(&p.path);
        }
        if p.sensor.is_none() {
            p.sensor = source_index(&p.path)
                .and_then(|i| config?.sources.get(i))
                .map(|s| s.name().to_string())
                .filter(|n| n != parse::PLACEHOLDER_NAME);
        }
    }
    problems.sort_by_key(|p| p.location.unwrap_or((usize::MAX, 0)));
    problems
}

/// `2` for `sources[2].window_ms`.
fn source_index(path: &str) -> Option<usize> {
    path.strip_prefix("sources[")?
        .split(']')
        .next()?
        .parse()
        .ok()
}

/// Reads, parses and validates a configuration file: every problem of the file in one report.
///
/// # Errors
/// [`ConfigError::Read`], or [`ConfigError::Invalid`] with every syntax, type, unknown-key,
/// range and validation problem, each at its line and column.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    read(&text, path)
}

/// Parses and validates configuration `text` (read from `path`): what [`load`] does after
/// reading the file.
///
/// # Errors
/// [`ConfigError::Invalid`] with every problem, each at its line and column.
pub fn read(text: &str, path: &Path) -> Result<Config, ConfigError> {
    match checked(text, path) {
        (Some(config), problems, _) if problems.is_empty() => Ok(config),
        (Some(config), problems, _) => Err(config.invalid(problems)),
        (None, problems, locations) => Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            problems: finish(problems, &locations, None),
        }),
    }
}

/// Every problem of configuration `text` as [`read`] finds them, each placed at its key, in file
/// order, without the sensor names `check` adds.
#[must_use]
pub fn problems_in(text: &str) -> Vec<Problem> {
    let (_, problems, locations) = checked(text, Path::new("config.toml"));
    finish(problems, &locations, None)
}

/// The configuration (when it could be read), its problems (parse's and validation's) and where
/// each key is.
fn checked(text: &str, path: &Path) -> (Option<Config>, Vec<Problem>, Locations) {
    let parse::Parsed {
        config,
        mut problems,
        poisoned,
        locations,
    } = parse::parse(text);
    let Some(config) = config.map(|c| c.placed(path, locations.clone())) else {
        return (None, problems, locations);
    };
    // Validation sees placeholders where keys could not be read: nothing is said of them.
    problems.extend(
        validate(&config)
            .into_iter()
            .filter(|p| !parse::concerns(p, &poisoned)),
    );
    (Some(config), problems, locations)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_units() {
        assert_eq!(ByteSize::parse("1GiB"), Ok(ByteSize(1 << 30)));
        assert_eq!(ByteSize::parse("512 MiB"), Ok(ByteSize(512 << 20)));
        assert_eq!(ByteSize::parse("10MB"), Ok(ByteSize(10_000_000)));
        assert_eq!(ByteSize::parse("4096"), Ok(ByteSize(4096)));
        assert!(ByteSize::parse("1 gigabyte").is_err());
        assert!(ByteSize::parse("lots").is_err());
    }

    #[test]
    fn unknown_field_names_line_and_column() {
        let text = "[device]\nid = \"a\"\nidd = 3\n";
        let err = Config::parse(text, Path::new("x.toml")).unwrap_err();
        let ConfigError::Invalid { problems, .. } = &err else {
            panic!("unexpected {err:?}")
        };
        let unknown = problems.iter().find(|p| p.path == "device.idd").unwrap();
        assert_eq!(unknown.location, Some((3, 1)));
        assert_eq!(
            unknown.message,
            "unknown key \"idd\" (did you mean \"id\"?)"
        );
        assert!(
            err.to_string()
                .contains("x.toml:3:1: device.idd: unknown key"),
            "{err}"
        );
    }
}
