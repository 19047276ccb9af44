//! Each engine's saved state: `<triggers.state_dir>/<sensor>.state`, written whole to a
//! temporary file, fsynced and renamed over the old one (then the directory is fsynced), so
//! that a crash at any point leaves either the old or the new state, never a mix.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::triggers::persist::MAX_STATE_BYTES;

/// Saving or reading a state file failed.
#[derive(Debug, thiserror::Error)]
#[error("trigger state {}: {what}: {source}", path.display())]
pub struct StoreError {
    /// The file.
    pub path: PathBuf,
    /// The step that failed.
    pub what: &'static str,
    /// Why.
    pub source: std::io::Error,
}

/// The state file of `sensor` in `dir`.
#[must_use]
pub fn state_file(dir: &Path, sensor: &str) -> PathBuf {
    dir.join(format!("{sensor}.state"))
}

/// Writes `bytes` as the file at `path`, atomically and durably.
///
/// # Errors
/// [`StoreError`] naming the step; the previous file is then unchanged.
pub fn save(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let err = |what: &'static str| {
        let path = path.to_path_buf();
        move |source| StoreError { path, what, source }
    };
    let tmp = path.with_extension("state.tmp");
    let mut file = std::fs::File::create(&tmp).map_err(err("cannot create"))?;
    file.write_all(bytes).map_err(err("cannot write"))?;
    file.sync_data().map_err(err("cannot fsync"))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(err("cannot rename into place"))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(err("cannot fsync its directory"))?;
    }
    Ok(())
}

/// The saved bytes at `path`; `None` when there is no file (a first start).
///
/// # Errors
/// [`StoreError`] when the file exists but cannot be read.
pub fn load(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    match crate::files::read_bytes(path, MAX_STATE_BYTES as u64, "trigger state") {
        Ok(bytes) => Ok(Some(bytes)),
        Err(_) if !path.exists() => Ok(None),
        Err(e) => Err(StoreError {
            path: path.to_path_buf(),
            what: "cannot read",
            source: std::io::Error::other(e.to_string()),
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_state_reads_back_and_a_second_save_replaces_it_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = state_file(dir.path(), "imu0");
        assert_eq!(load(&path).unwrap(), None);
        save(&path, b"first state").unwrap();
        save(&path, b"second").unwrap();
        assert_eq!(load(&path).unwrap().as_deref(), Some(&b"second"[..]));
        assert!(!path.with_extension("state.tmp").exists());
    }

    #[test]
    fn a_state_directory_that_is_not_writable_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("not-a-dir");
        std::fs::write(&blocker, b"x").unwrap();
        let e = save(&state_file(&blocker, "imu0"), b"s").unwrap_err();
        assert!(
            e.to_string()
                .contains("not-a-dir/imu0.state: cannot create"),
            "{e}"
        );
    }
}
