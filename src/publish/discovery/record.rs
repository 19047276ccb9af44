//! The record of what was announced (`<state_dir>/home_assistant.json`): the device topic and
//! every component key ever announced there with its platform. Home Assistant removes an
//! entity only when its component is sent as `{"p": …}`, so the daemon must remember what it
//! announced in earlier runs to remove the entities of a sensor taken out of the configuration.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::components::Platform;

/// Name of the record in the state directory.
pub const RECORD_FILE: &str = "home_assistant.json";
/// Format version written.
const RECORD_VERSION: u32 = 1;
/// Larger is not a record this daemon wrote (a few hundred sensors fit in 100 KB).
const MAX_RECORD_BYTES: u64 = 1 << 20;

/// What was announced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Format version.
    pub v: u32,
    /// The device config's topic.
    pub device_topic: String,
    /// Component key → platform, for every component announced on that topic.
    pub components: BTreeMap<String, Platform>,
}

impl Record {
    /// A record of `components` on `device_topic`.
    #[must_use]
    pub fn new(device_topic: String, components: BTreeMap<String, Platform>) -> Self {
        Self {
            v: RECORD_VERSION,
            device_topic,
            components,
        }
    }
}

/// The record cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Reading, writing or renaming failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a record (or too large to be one).
    #[error("{}: not a discovery record: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Reads the record at `path`; `None` when there is none yet.
///
/// # Errors
/// [`RecordError`] when it exists but cannot be read or is not a record.
pub fn read(path: &Path) -> Result<Option<Record>, RecordError> {
    let io = |source| RecordError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let mut text = String::new();
    file.take(MAX_RECORD_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    let invalid = |reason: String| RecordError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    if text.len() as u64 > MAX_RECORD_BYTES {
        return Err(invalid(format!("larger than {MAX_RECORD_BYTES} bytes")));
    }
    let record: Record = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    if record.v != RECORD_VERSION {
        return Err(invalid(format!(
            "format version {} (expected {RECORD_VERSION})",
            record.v
        )));
    }
    Ok(Some(record))
}

/// Writes `record` to `path` atomically (a temporary file renamed over it), creating the
/// directory.
///
/// # Errors
/// [`RecordError::Io`] naming the file that could not be written.
pub fn write(path: &Path, record: &Record) -> Result<(), RecordError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| RecordError::Io { path: p, source }
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_vec_pretty(record).map_err(|e| RecordError::Invalid {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    std::fs::write(&tmp, text).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}
