//! The persisted active set: what control commands made of a set survives a restart. One JSON
//! file per set (`<dir>/<set>.json`), versioned, written atomically (a temporary file in the
//! same directory, fsync, rename, fsync of the directory), so a crash leaves the old file or the
//! new one, never a mix.
//!
//! ```json
//! {"format": 1, "set": "audio", "sha256": "<TextSet::sha256>", "updated_unix_ms": 1765000000000,
//!  "labels": ["a dog barking"], "template": "a sound of {}", "aliases": {}}
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::set::{validate_name, SetError, TextSet};
use crate::files::{self, FileError};

/// The file format written and read.
pub const STATE_FORMAT: u32 = 1;
/// Largest persisted set file read.
pub const MAX_STATE_BYTES: u64 = 8 << 20;

/// Errors reading or writing a persisted set.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file cannot be read or is too large.
    #[error(transparent)]
    File(#[from] FileError),
    /// The file is not a persisted set this version reads.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The set in the file is not valid.
    #[error("{path}: {source}")]
    Set {
        /// The file.
        path: PathBuf,
        /// The field and what is wrong.
        source: SetError,
    },
    /// Writing failed.
    #[error("{path}: cannot write: {message}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS's message.
        message: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    format: u32,
    set: String,
    sha256: String,
    updated_unix_ms: u64,
    labels: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    template: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    aliases: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct FormatProbe {
    format: u32,
}

/// A persisted set as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistedSet {
    /// The set.
    pub set: TextSet,
    /// When it was written (milliseconds since the Unix epoch).
    pub updated_unix_ms: u64,
}

/// The directory holding the persisted sets.
#[derive(Debug, Clone)]
pub struct SetStore {
    dir: PathBuf,
}

impl SetStore {
    /// Sets persisted in `dir` (created on the first save).
    #[must_use]
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The file of set `name`.
    ///
    /// # Errors
    /// [`SetError`] if `name` is not a set name.
    pub fn path(&self, name: &str) -> Result<PathBuf, SetError> {
        validate_name(name)?;
        Ok(self.dir.join(format!("{name}.json")))
    }

    /// The persisted state of set `name`, or `None` when none was saved.
    ///
    /// # Errors
    /// [`StateError`] naming the file: unreadable, too large, not JSON, another format, another
    /// set's file, an invalid set, or a checksum that does not match the content.
    pub fn load(&self, name: &str) -> Result<Option<PersistedSet>, StateError> {
        let path = self.path(name).map_err(|source| StateError::Set {
            path: self.dir.clone(),
            source,
        })?;
        if !path.exists() {
            return Ok(None);
        }
        let text = files::read_to_string(&path, MAX_STATE_BYTES, "a persisted concept set")?;
        let invalid = |message: String| StateError::Invalid {
            path: path.clone(),
            message,
        };
        let probe: FormatProbe =
            serde_json::from_str(&text).map_err(|e| invalid(format!("not a concept set: {e}")))?;
        if probe.format != STATE_FORMAT {
            return Err(invalid(format!(
                "format {} is not supported (this version reads {STATE_FORMAT})",
                probe.format
            )));
        }
        let file: StateFile =
            serde_json::from_str(&text).map_err(|e| invalid(format!("not a concept set: {e}")))?;
        if file.set != name {
            return Err(invalid(format!("holds set {:?}, not {name:?}", file.set)));
        }
        let set = TextSet::new(file.labels, file.template, file.aliases).map_err(|source| {
            StateError::Set {
                path: path.clone(),
                source,
            }
        })?;
        if set.sha256() != file.sha256 {
            return Err(invalid(format!(
                "sha256 is {}, the file says {} (edited or corrupt)",
                set.sha256(),
                file.sha256
            )));
        }
        Ok(Some(PersistedSet {
            set,
            updated_unix_ms: file.updated_unix_ms,
        }))
    }

    /// Saves `set` as the state of set `name`, atomically.
    ///
    /// # Errors
    /// [`StateError::Write`] naming the file (the previous state stays).
    pub fn save(&self, name: &str, set: &TextSet, updated_unix_ms: u64) -> Result<(), StateError> {
        let path = self.path(name).map_err(|source| StateError::Set {
            path: self.dir.clone(),
            source,
        })?;
        let def = set.to_def();
        let file = StateFile {
            format: STATE_FORMAT,
            set: name.to_string(),
            sha256: set.sha256(),
            updated_unix_ms,
            labels: def.labels,
            template: def.template,
            aliases: def.aliases,
        };
        let mut bytes = serde_json::to_vec_pretty(&file).map_err(|e| StateError::Write {
            path: path.clone(),
            message: e.to_string(),
        })?;
        bytes.push(b'\n');
        atomic_write(&path, &bytes).map_err(|e| StateError::Write {
            path,
            message: e.to_string(),
        })
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory (created if missing),
/// fsynced and renamed over `path`, then fsyncs the directory.
pub(crate) fn atomic_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".edgebind-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn set() -> TextSet {
        let mut aliases = BTreeMap::new();
        aliases.insert("dog".to_string(), vec!["puppy".to_string()]);
        TextSet::new(
            vec!["dog".into(), "smoke alarm".into()],
            Some("a sound of {}".into()),
            aliases,
        )
        .unwrap()
    }

    #[test]
    fn a_saved_set_reads_back_and_a_missing_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let store = SetStore::new(dir.path().join("state"));
        assert_eq!(store.load("audio").unwrap(), None);
        store.save("audio", &set(), 42).unwrap();
        let back = store.load("audio").unwrap().unwrap();
        assert_eq!(back.set, set());
        assert_eq!(back.updated_unix_ms, 42);
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("state"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["audio.json"]);
    }

    #[test]
    fn edited_foreign_future_and_garbage_files_are_refused_with_the_file_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = SetStore::new(dir.path());
        store.save("audio", &set(), 1).unwrap();
        let path = dir.path().join("audio.json");
        let good = std::fs::read_to_string(&path).unwrap();
        let cases = [
            (good.replace("smoke alarm", "smoke"), "(edited or corrupt)"),
            (
                good.replace("\"format\": 1", "\"format\": 2"),
                "format 2 is not supported",
            ),
            (
                good.replace("\"audio\"", "\"video\""),
                "holds set \"video\"",
            ),
            (
                good.replace("\"smoke alarm\"", "\"\""),
                "labels[1]: is empty",
            ),
            ("{\"format\": 1".to_string(), "not a concept set"),
            (
                good.replace("\"set\"", "\"colour\": 1, \"set\""),
                "unknown field",
            ),
        ];
        for (text, want) in cases {
            std::fs::write(&path, text).unwrap();
            let e = store.load("audio").unwrap_err().to_string();
            assert!(e.starts_with(&path.display().to_string()), "{e}");
            assert!(e.contains(want), "{want}: {e}");
        }
        assert!(store.load("../x").is_err());
    }
}
