//! The daemon's TOML configuration: strict types (unknown fields rejected), sources as a tagged
//! enum, units in field names. [`load`] parses a file; [`validate`] reports every problem at once.

mod preprocess;
mod sections;
mod serial;
mod sources;
mod validate;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use preprocess::*;
pub use sections::*;
pub use serial::*;
pub use sources::*;
pub use validate::{validate, Problem};

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
    /// The file is not valid TOML or does not match the schema.
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// The file parsed but failed validation.
    #[error("{path}: {} problem(s):\n{}", problems.len(), problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Serialize)]
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
    /// The sensors.
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    /// Directory that relative paths are resolved against (the config file's directory).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

impl Config {
    /// Parses TOML text; `path` is used for messages and as the base of relative paths.
    ///
    /// # Errors
    /// [`ConfigError::Parse`] with the line and column of the first syntax or schema error.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map(|s| line_column(text, s.start))
                .unwrap_or((1, 1));
            ConfigError::Parse {
                path: path.to_path_buf(),
                line,
                column,
                message: e.message().trim().to_string(),
            }
        })?;
        config.base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        if config.base_dir.as_os_str().is_empty() {
            config.base_dir = PathBuf::from(".");
        }
        Ok(config)
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

    /// The topic prefix in effect.
    #[must_use]
    pub fn topic_prefix(&self) -> String {
        self.mqtt
            .topic_prefix
            .clone()
            .unwrap_or_else(|| format!("edgebind/{}", self.device.id))
    }
}

/// Reads, parses and validates a configuration file.
///
/// # Errors
/// Any [`ConfigError`]; validation problems are all reported together.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let config = Config::parse(&text, path)?;
    let problems = validate(&config);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            problems,
        })
    }
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
    (line, column)
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
    fn line_column_counts_from_one() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
    }

    #[test]
    fn unknown_field_names_line_and_column() {
        let text = "[device]\nid = \"a\"\nidd = 3\n";
        let err = Config::parse(text, Path::new("x.toml")).unwrap_err();
        match err {
            ConfigError::Parse { line, message, .. } => {
                assert_eq!(line, 3);
                assert!(message.contains("unknown field"), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
