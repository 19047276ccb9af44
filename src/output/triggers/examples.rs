//! Example sets on disk: `<triggers.examples_dir>/<sensor>/<set>.npy`, a float32 `.npy` of
//! shape `[N, dim]` (1 ≤ N ≤ 256, one embedding per row, normalised when loaded). The set is
//! named after the file. Loaded at start, after the saved state, so a file replaces a saved set
//! of the same name (docs/triggers.md, Example sets).

use std::path::{Path, PathBuf};

use ndarray::Array2;

use crate::config::Config;
use crate::triggers::TriggerEngine;

/// Largest example file read (256 rows of 4096 f32, with room for the header).
const MAX_EXAMPLE_BYTES: u64 = 256 * 4096 * 4 + 4096;

/// An example file that cannot be used, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum ExampleFileError {
    /// It cannot be listed, opened or read as a float32 `.npy` of two dimensions.
    #[error(transparent)]
    File(#[from] crate::files::FileError),
    /// Its rows do not make an example set.
    #[error("{}: {message}", path.display())]
    Set {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Every problem of loading `sensor`'s sets, joined for one log line or error.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct ExampleFileErrors(pub Vec<ExampleFileError>);

/// The `.npy` files of `sensor`'s example sets, by set name, sorted (none when the directory
/// does not exist).
fn files_of(dir: &Path, sensor: &str) -> Result<Vec<(String, PathBuf)>, ExampleFileError> {
    let sensor_dir = dir.join(sensor);
    let entries = match std::fs::read_dir(&sensor_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(ExampleFileError::Set {
                path: sensor_dir,
                message: format!("cannot list the directory: {e}"),
            })
        }
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("npy") {
            continue;
        }
        if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
            out.push((stem.to_string(), path));
        }
    }
    out.sort();
    Ok(out)
}

/// Loads every example set of `engine`'s sensor from `dir` into it; the sets that load are
/// kept.
///
/// # Errors
/// Every file that cannot be read or used as a set, each naming its file.
pub fn load_into(dir: &Path, engine: &mut TriggerEngine) -> Result<usize, ExampleFileErrors> {
    let files = files_of(dir, engine.sensor()).map_err(|e| ExampleFileErrors(vec![e]))?;
    let mut problems = Vec::new();
    for (name, path) in &files {
        let rows: Array2<f32> =
            match crate::files::npy::read(path, MAX_EXAMPLE_BYTES, "example set") {
                Ok(r) => r,
                Err(e) => {
                    problems.push(e.into());
                    continue;
                }
            };
        let rows: Vec<Vec<f32>> = rows.outer_iter().map(|r| r.to_vec()).collect();
        if let Err(e) = engine.set_example_set(name, &rows) {
            problems.push(ExampleFileError::Set {
                path: path.clone(),
                message: e.to_string(),
            });
        }
    }
    if problems.is_empty() {
        Ok(files.len())
    } else {
        Err(ExampleFileErrors(problems))
    }
}

/// Writes `rows` as example set `set` of `sensor`: `<dir>/<sensor>/<set>.npy`, float32
/// `[N, dim]`, through a temporary file renamed over the old one (the format [`load_into`]
/// reads and `edgebind triggers remember` writes). Returns the file.
///
/// # Errors
/// [`ExampleFileError::Set`] naming the file: empty or ragged rows, or the disk refused it.
pub fn write(
    dir: &Path,
    sensor: &str,
    set: &str,
    rows: &[Vec<f32>],
) -> Result<PathBuf, ExampleFileError> {
    use ndarray_npy::WriteNpyExt;
    let path = dir.join(sensor).join(format!("{set}.npy"));
    let err = |message: String| ExampleFileError::Set {
        path: path.clone(),
        message,
    };
    let dim = rows.first().map_or(0, Vec::len);
    let array = Array2::from_shape_vec((rows.len(), dim), rows.concat())
        .map_err(|e| err(format!("rows of different widths: {e}")))?;
    let mut bytes = Vec::new();
    array
        .write_npy(&mut bytes)
        .map_err(|e| err(e.to_string()))?;
    crate::concepts::state::atomic_write(&path, &bytes)
        .map_err(|e| err(format!("cannot write: {e}")))?;
    Ok(path)
}

/// What `check` reports about the example files: each as (`triggers.examples_dir`, message).
pub fn problems(config: &Config) -> Vec<(String, String)> {
    let Some(dir) = &config.triggers.examples_dir else {
        return Vec::new();
    };
    let dir = config.resolve(dir);
    let models = config.resolve(&config.models.dir);
    let Ok(manifest) = crate::inference::Manifest::load(&models) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for sensor in config.triggers.sensors.keys() {
        let no_lookup = |_: &str| None;
        let Ok(mut engine) = TriggerEngine::new(
            sensor,
            manifest.embedding_dim,
            Vec::new(),
            &no_lookup,
            crate::triggers::EngineOptions::default(),
        ) else {
            continue;
        };
        if let Err(errors) = load_into(&dir, &mut engine) {
            out.extend(
                errors
                    .0
                    .into_iter()
                    .map(|e| ("triggers.examples_dir".to_string(), e.to_string())),
            );
        }
    }
    out
}
