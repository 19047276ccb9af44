//! `edgebind bench`: what a device and a model set sustain. Per modality, the time of
//! preprocessing a window, of inference at batch 1 and at the best batch size, and the
//! throughput of both running side by side ([`micro`]); end to end, the daemon itself on replays
//! of every sensor against a local broker ([`e2e`]). The report is one serialisable
//! [`BenchReport`] (documented field by field in `docs/performance.md`). The Python reference
//! daemon is compared by `benches/python_reference.rs`, outside the daemon.

pub mod e2e;
pub mod inputs;
pub mod micro;
pub mod procfs;
pub mod prom;
pub mod stats;
pub mod system;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

pub use e2e::{E2eOptions, E2eReport};
pub use micro::{MicroOptions, ModalityResult};
pub use system::SystemInfo;

use crate::inference::{Manifest, OrtRuntime, SessionError};
use crate::Modality;

/// Version of the JSON report's layout.
pub const REPORT_VERSION: u32 = 1;

/// Errors of a benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The model set cannot be used.
    #[error("--models {}: {message}", dir.display())]
    Models {
        /// The directory.
        dir: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An encoder failed to load or run.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// A recording cannot be read.
    #[error("recording {}: {message}", path.display())]
    Recordings {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A preprocessor rejected its input or parameters.
    #[error("{modality} preprocessing: {message}")]
    Preprocess {
        /// The modality.
        modality: Modality,
        /// The preprocessor's message.
        message: String,
    },
    /// A measurement produced nothing usable.
    #[error("{modality}: {message}")]
    Measure {
        /// The modality.
        modality: Modality,
        /// What happened.
        message: String,
    },
    /// A file could not be written or read.
    #[error("{}: {message}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS message.
        message: String,
    },
    /// The local broker could not be used.
    #[error("local broker: {0}")]
    Broker(String),
    /// The daemon under test failed.
    #[error("daemon under test: {0}")]
    Daemon(String),
}

/// ONNX Runtime as loaded.
#[derive(Debug, Clone, Serialize)]
pub struct OrtInfo {
    /// Version (`1.31.1`).
    pub version: String,
    /// The library file.
    pub library: String,
}

/// The model set measured.
#[derive(Debug, Clone, Serialize)]
pub struct ModelsInfo {
    /// Directory.
    pub dir: String,
    /// Name from the manifest.
    pub name: String,
}

/// Everything one `edgebind bench` run measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// [`REPORT_VERSION`].
    pub version: u32,
    /// `per_modality` or `end_to_end`.
    pub mode: &'static str,
    /// edgebind's version.
    pub edgebind_version: &'static str,
    /// `release` or `debug` (an unoptimised build is several times slower at preprocessing).
    pub build_profile: &'static str,
    /// When the run started, seconds since the Unix epoch.
    pub started_unix_s: u64,
    /// The machine.
    pub system: SystemInfo,
    /// ONNX Runtime.
    pub onnxruntime: OrtInfo,
    /// The model set.
    pub models: ModelsInfo,
    /// Providers asked for, in order (each modality says which one it got).
    pub providers_requested: Vec<&'static str>,
    /// ONNX Runtime intra-op threads per session.
    pub intra_threads: usize,
    /// The `--duration` asked for, seconds.
    pub duration_s: f64,
    /// Per modality (`per_modality` mode; empty otherwise).
    pub modalities: Vec<ModalityResult>,
    /// End to end (`end_to_end` mode; `null` otherwise).
    pub e2e: Option<E2eReport>,
}

/// `release` or `debug`.
#[must_use]
pub fn build_profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

/// Where the model set is: `explicit`, else `models/tiny` of the repository or package.
#[must_use]
pub fn find_models(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    let mut candidates = vec![PathBuf::from("models/tiny")];
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            candidates.push(dir.join("../../models/tiny"));
            candidates.push(dir.join("../share/edgebind/models/tiny"));
        }
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tiny"));
    candidates
        .iter()
        .find(|p| p.join("manifest.json").is_file())
        .map_or_else(
            || PathBuf::from("models/tiny"),
            |p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()),
        )
}

/// Loads the manifest of `dir`, with an error that says which flag to fix.
///
/// # Errors
/// [`BenchError::Models`] when the directory or its manifest is missing or invalid.
pub fn load_manifest(dir: &Path) -> Result<Manifest, BenchError> {
    if !dir.is_dir() {
        return Err(BenchError::Models {
            dir: dir.to_path_buf(),
            message: "no such directory (give a model set: a folder with manifest.json)".into(),
        });
    }
    Manifest::load(dir).map_err(|e| BenchError::Models {
        dir: dir.to_path_buf(),
        message: e.to_string(),
    })
}

/// Runs the per-modality measurements. `progress` is told each phase.
///
/// # Errors
/// [`BenchError`] for a missing model set, a model that fails, unreadable recordings.
pub fn run_micro(
    runtime: &OrtRuntime,
    options: &MicroOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<ModalityResult>, BenchError> {
    let manifest = load_manifest(&options.models_dir)?;
    let modalities: Vec<Modality> = if options.modalities.is_empty() {
        Modality::ALL
            .into_iter()
            .filter(|m| manifest.model(*m).is_some())
            .collect()
    } else {
        options.modalities.clone()
    };
    if modalities.is_empty() {
        return Err(BenchError::Models {
            dir: options.models_dir.clone(),
            message: "manifest.json lists no encoder".into(),
        });
    }
    let recordings = inputs::find_recordings(options.recordings.as_deref())?;
    let budget = options.duration.div_f64(modalities.len() as f64);
    let mut results = Vec::with_capacity(modalities.len());
    for m in modalities {
        let input = inputs::ModalityInput::new(m, recordings.as_deref())?;
        results.push(micro::measure_modality(
            runtime, options, &manifest, input, budget, progress,
        )?);
    }
    Ok(results)
}

/// Parses a duration: `30s`, `500ms`, `2m`, or a number of seconds, within
/// [`BENCH_DURATION_S`](crate::config::limits::BENCH_DURATION_S).
///
/// # Errors
/// A message saying what is accepted, or why the duration is out of range.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix("min") {
        (n, 60.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    let seconds = number
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0)
        .map(|v| v * scale)
        .ok_or_else(|| format!("{text:?} is not a duration (e.g. 30s, 500ms, 2m)"))?;
    // Checked before it becomes a Duration, which panics beyond ~5e11 years.
    crate::config::limits::BENCH_DURATION_S
        .check(seconds)
        .map(Duration::from_secs_f64)
        .map_err(|e| e.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("fast").is_err());
        // #14: 1e300 s made Duration::from_secs_f64 panic.
        let Err(e) = parse_duration("1e300") else {
            panic!("1e300 s accepted")
        };
        assert!(e.starts_with("1e300 s ("), "{e}");
        assert!(
            e.contains("is more than the 86400 s (1 days) allowed"),
            "{e}"
        );
    }
}
