//! Trigger lists changed over MQTT, kept across restarts:
//! `<triggers.state_dir>/<sensor>.triggers.json` holds the sensor's whole list after the last
//! edit and the sha256 of the configuration's list it replaced. At start it is used in place of
//! the configuration's list as long as that list is unchanged; once the configuration's triggers
//! of that sensor are edited, the configuration wins (logged). The same rule as concept sets
//! (docs/concepts.md).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::triggers::TriggerConfig;

/// Largest file read (64 triggers of a few hundred bytes each, with room).
const MAX_FILE_BYTES: u64 = 1 << 20;
/// Format of the file (`v`).
const VERSION: u32 = 1;

/// The file's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    /// [`VERSION`].
    pub v: u32,
    /// sha256 of the configuration's list it replaced ([`config_sha256`]).
    pub config_sha256: String,
    /// The sensor's triggers.
    pub triggers: Vec<TriggerConfig>,
    /// When it was written, ms since the epoch.
    pub updated_unix_ms: u64,
}

/// Reading or writing an override failed, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct OverrideError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub message: String,
}

/// The override file of `sensor` in `dir`.
#[must_use]
pub fn file(dir: &Path, sensor: &str) -> PathBuf {
    dir.join(format!("{sensor}.triggers.json"))
}

/// sha256 of a configuration's list, as JSON (key order fixed by the struct).
#[must_use]
pub fn config_sha256(list: &[TriggerConfig]) -> String {
    let json = serde_json::to_vec(list).unwrap_or_default();
    crate::concepts::set::hex(&Sha256::digest(json))
}

/// Writes `list` as `sensor`'s override (atomically, durably).
///
/// # Errors
/// [`OverrideError`] naming the file; the old file is then unchanged.
pub fn save(
    dir: &Path,
    sensor: &str,
    configured: &[TriggerConfig],
    list: &[TriggerConfig],
) -> Result<(), OverrideError> {
    let path = file(dir, sensor);
    let body = Override {
        v: VERSION,
        config_sha256: config_sha256(configured),
        triggers: list.to_vec(),
        updated_unix_ms: crate::concepts::live::now_unix_ms(),
    };
    let err = |message: String| OverrideError {
        path: path.clone(),
        message,
    };
    let bytes = serde_json::to_vec_pretty(&body).map_err(|e| err(e.to_string()))?;
    std::fs::create_dir_all(dir).map_err(|e| err(format!("cannot create its directory: {e}")))?;
    crate::concepts::state::atomic_write(&path, &bytes).map_err(|e| err(e.to_string()))
}

/// What start-up uses for `sensor`: the override when there is one made from the same
/// configured list, else `None` (the configuration's list). An override of an edited
/// configuration is logged and left on disk until the next edit replaces it.
///
/// # Errors
/// [`OverrideError`] when the file exists but cannot be read or parsed (the start stops, naming
/// it, rather than silently reverting to older triggers).
pub fn load(
    dir: &Path,
    sensor: &str,
    configured: &[TriggerConfig],
) -> Result<Option<Override>, OverrideError> {
    let path = file(dir, sensor);
    if !path.exists() {
        return Ok(None);
    }
    let err = |message: String| OverrideError {
        path: path.clone(),
        message,
    };
    let bytes = crate::files::read_bytes(&path, MAX_FILE_BYTES, "trigger list")
        .map_err(|e| err(e.to_string()))?;
    let o: Override =
        serde_json::from_slice(&bytes).map_err(|e| err(format!("not a trigger list: {e}")))?;
    if o.v != VERSION {
        return Err(err(format!("format {} is not {VERSION}", o.v)));
    }
    if o.config_sha256 != config_sha256(configured) {
        tracing::warn!(file = %path.display(), sensor,
            "the configuration's triggers of this sensor changed since they were edited over MQTT; the configuration's are used");
        return Ok(None);
    }
    Ok(Some(o))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn trigger(name: &str) -> TriggerConfig {
        serde_json::from_value(serde_json::json!({"name": name, "kind": "stuck"})).unwrap()
    }

    #[test]
    fn an_override_is_used_while_the_configuration_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let configured = vec![trigger("a")];
        assert_eq!(load(dir.path(), "imu0", &configured).unwrap(), None);
        save(
            dir.path(),
            "imu0",
            &configured,
            &[trigger("a"), trigger("b")],
        )
        .unwrap();
        let o = load(dir.path(), "imu0", &configured).unwrap().unwrap();
        assert_eq!(o.triggers.len(), 2);
        // The configuration edited since: it wins.
        assert_eq!(load(dir.path(), "imu0", &[trigger("c")]).unwrap(), None);
    }

    #[test]
    fn a_corrupt_override_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(file(dir.path(), "imu0"), b"{not json").unwrap();
        let e = load(dir.path(), "imu0", &[]).unwrap_err().to_string();
        assert!(e.contains("imu0.triggers.json: not a trigger list"), "{e}");
    }
}
