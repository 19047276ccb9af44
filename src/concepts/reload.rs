//! Reloading the concept bank of a running model set (SIGHUP): the manifest is read again for the
//! concept files and their checksums, the files are loaded and checked exactly as at start, and
//! only a bank that passes every check replaces the one in use. The encoders are not reloaded,
//! so the bank must keep the width the running models produce.

use std::path::{Path, PathBuf};

use super::{ConceptBank, ConceptError, SharedConcepts};
use crate::inference::manifest::{self, Manifest, ManifestError};

/// Why a new bank was not taken into use (the previous one stays).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The manifest cannot be read, or a concept file does not match its listed sha256.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The concept files do not form a valid bank for the running models.
    #[error(transparent)]
    Concepts(#[from] ConceptError),
    /// The reload task itself failed.
    #[error("{dir}: concept reload task failed: {message}")]
    Task {
        /// The model-set directory.
        dir: PathBuf,
        /// What happened.
        message: String,
    },
}

/// Loads the concept bank the manifest in `dir` names, for models producing `dim`-wide
/// embeddings (blocking file I/O and hashing).
///
/// # Errors
/// [`ReloadError`] naming the file and what is wrong.
pub fn load_bank(dir: &Path, dim: usize) -> Result<ConceptBank, ReloadError> {
    let manifest = Manifest::load(dir)?;
    let c = &manifest.concepts;
    for (file, sha) in &c.sha256 {
        manifest::verify_sha256(&dir.join(file), sha)?;
    }
    Ok(ConceptBank::load(
        &dir.join(&c.labels),
        &dir.join(&c.embeddings),
        dim,
    )?)
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The new bank is in use.
    Replaced {
        /// Concepts in the new bank.
        count: usize,
        /// Its sha256.
        sha256: String,
        /// sha256 of the bank it replaced.
        previous_sha256: String,
    },
    /// The files hold the bank already in use; nothing changed.
    Unchanged {
        /// Its sha256.
        sha256: String,
    },
}

/// Loads the bank of the model set in `dir` and, if it is valid and differs from the one in use,
/// puts it in `shared`.
///
/// # Errors
/// [`ReloadError`]; `shared` is untouched then.
pub fn reload(
    shared: &SharedConcepts,
    dir: &Path,
    dim: usize,
) -> Result<ReloadOutcome, ReloadError> {
    let bank = load_bank(dir, dim)?;
    let current = shared.current();
    if bank.sha256() == current.sha256() {
        return Ok(ReloadOutcome::Unchanged {
            sha256: bank.sha256().to_string(),
        });
    }
    let (count, sha256) = (bank.len(), bank.sha256().to_string());
    let previous = shared.replace(bank);
    Ok(ReloadOutcome::Replaced {
        count,
        sha256,
        previous_sha256: previous.sha256().to_string(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A copy of the tiny model set's manifest and concept files (no encoders needed here).
    fn model_set(dir: &Path) {
        let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tiny");
        for f in ["manifest.json", "concepts.txt", "concepts.npy"] {
            std::fs::copy(tiny.join(f), dir.join(f)).unwrap();
        }
    }

    fn write_bank(dir: &Path, labels: &[&str], dim: usize) {
        std::fs::write(dir.join("concepts.txt"), labels.join("\n")).unwrap();
        let e = ndarray::Array2::from_shape_fn((labels.len(), dim), |(i, j)| {
            if i == j % labels.len() {
                1.0f32
            } else {
                0.0
            }
        });
        ndarray_npy::write_npy(dir.join("concepts.npy"), &e).unwrap();
        // The user updates the manifest's checksums with the files (here: drops them).
        let text = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
        let mut m: serde_json::Value = serde_json::from_str(&text).unwrap();
        m["concepts"]["sha256"] = serde_json::json!({});
        std::fs::write(dir.join("manifest.json"), m.to_string()).unwrap();
    }

    fn start(dir: &Path) -> SharedConcepts {
        SharedConcepts::new(load_bank(dir, 1024).unwrap())
    }

    #[test]
    fn a_valid_new_bank_replaces_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        model_set(dir.path());
        let shared = start(dir.path());
        let before = shared.current();
        write_bank(dir.path(), &["north", "south", "east"], 1024);
        let outcome = reload(&shared, dir.path(), 1024).unwrap();
        let ReloadOutcome::Replaced {
            count,
            sha256,
            previous_sha256,
        } = outcome
        else {
            panic!("not replaced: {outcome:?}");
        };
        assert_eq!(count, 3);
        assert_eq!(previous_sha256, before.sha256());
        assert_eq!(shared.current().sha256(), sha256);
        assert_eq!(shared.current().labels(), ["north", "south", "east"]);
        // Loading the same files again changes nothing.
        assert!(matches!(
            reload(&shared, dir.path(), 1024).unwrap(),
            ReloadOutcome::Unchanged { .. }
        ));
    }

    #[test]
    fn a_bad_new_bank_is_rejected_with_its_file_named_and_the_old_one_kept() {
        let dir = tempfile::tempdir().unwrap();
        model_set(dir.path());
        let shared = start(dir.path());
        let before = shared.current().sha256().to_string();

        // Wrong width for the running models.
        write_bank(dir.path(), &["a", "b"], 512);
        let e = reload(&shared, dir.path(), 1024).unwrap_err().to_string();
        assert!(e.contains("concepts.npy") && e.contains("512"), "{e}");
        assert_eq!(shared.current().sha256(), before);

        // Labels and rows disagree.
        write_bank(dir.path(), &["a", "b"], 1024);
        std::fs::write(dir.path().join("concepts.txt"), "a\nb\nc\n").unwrap();
        let e = reload(&shared, dir.path(), 1024).unwrap_err().to_string();
        assert!(e.contains("3 labels but 2 embeddings"), "{e}");
        assert_eq!(shared.current().sha256(), before);

        // Files changed but the manifest still lists the old checksums.
        model_set(dir.path());
        std::fs::write(dir.path().join("concepts.txt"), "x\n").unwrap();
        let e = reload(&shared, dir.path(), 1024).unwrap_err().to_string();
        assert!(e.contains("concepts.txt"), "{e}");
        assert_eq!(shared.current().sha256(), before);
    }
}
