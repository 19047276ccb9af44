//! The TensorRT engine and timing caches: one directory per cache key, so that a changed model,
//! ONNX Runtime version, precision, DLA core or batch profile never loads a stale engine, and
//! the optimisation profile that covers every batch the worker will run.

use std::path::{Path, PathBuf};

use crate::config::TensorrtConfig;
use crate::Modality;

/// Errors preparing the cache.
#[derive(Debug, thiserror::Error)]
#[error("TensorRT cache directory {dir}: {message} (set runtime.tensorrt.cache_dir to a writable directory)")]
pub struct CacheError {
    /// The directory.
    pub dir: PathBuf,
    /// What failed.
    pub message: String,
}

/// Everything that makes an engine reusable, as a directory name:
/// `<modality>-<sha256 prefix>-ort<version>-<precision>[-dla<n>]-b<max batch>[-s<clips>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey(pub String);

impl CacheKey {
    /// The key of `modality`'s model with checksum `sha256`, built by ONNX Runtime
    /// `ort_version` with `cfg`, for the shapes of `profile`.
    #[must_use]
    pub fn new(
        modality: Modality,
        sha256: &str,
        ort_version: &str,
        cfg: &TensorrtConfig,
        profile: &Profile,
    ) -> Self {
        let sha: String = sha256.chars().take(16).collect();
        let ort: String = ort_version
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
            .collect();
        let mut key = format!("{modality}-{sha}-ort{ort}-{}", cfg.precision());
        if let Some(core) = cfg.dla_core {
            key.push_str(&format!("-dla{core}"));
        }
        key.push_str(&format!("-b{}", profile.max_batch));
        if profile.min_item != profile.max_item {
            key.push_str(&format!(
                "-{}-{}",
                dims_text(&profile.min_item),
                dims_text(&profile.max_item)
            ));
        }
        Self(key)
    }
}

/// The optimisation profile of one model: batch 1 to `max_batch`, each item dimension between
/// its smallest and largest configured size (audio clips differ between sources).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The model's input name.
    pub input: String,
    /// Largest batch a worker runs.
    pub max_batch: usize,
    /// Smallest size of each item dimension.
    pub min_item: Vec<usize>,
    /// Largest size of each item dimension.
    pub max_item: Vec<usize>,
}

impl Profile {
    /// The profile covering `items` (input shapes without the batch dimension; at least one).
    #[must_use]
    pub fn covering(input: &str, items: &[Vec<usize>], max_batch: usize) -> Self {
        let rank = items.first().map_or(0, Vec::len);
        let fold = |pick: fn(usize, usize) -> usize| -> Vec<usize> {
            (0..rank)
                .map(|d| {
                    items
                        .iter()
                        .filter_map(|s| s.get(d).copied())
                        .reduce(pick)
                        .unwrap_or(1)
                })
                .collect()
        };
        Self {
            input: input.to_string(),
            max_batch: max_batch.max(1),
            min_item: fold(usize::min),
            max_item: fold(usize::max),
        }
    }

    /// `trt_profile_min_shapes`, `trt_profile_opt_shapes`, `trt_profile_max_shapes`. The
    /// optimum is one window of the largest item: a worker that keeps up runs batches of one.
    #[must_use]
    pub fn shapes(&self) -> (String, String, String) {
        let with_batch = |b: usize, item: &[usize]| {
            let mut dims = vec![b];
            dims.extend_from_slice(item);
            format!("{}:{}", self.input, dims_text(&dims))
        };
        (
            with_batch(1, &self.min_item),
            with_batch(1, &self.max_item),
            with_batch(self.max_batch, &self.max_item),
        )
    }
}

fn dims_text(dims: &[usize]) -> String {
    dims.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("x")
}

/// Where one model's engines and the shared timing cache live.
#[derive(Debug, Clone)]
pub struct CacheDirs {
    /// Engines of this key.
    pub engine_dir: PathBuf,
    /// Layer timings (shared by every model of the same ONNX Runtime version and precision).
    pub timing_dir: PathBuf,
    /// The key.
    pub key: CacheKey,
}

impl CacheDirs {
    /// Creates (if needed) and checks the directories of `key` under `cache_dir`.
    ///
    /// # Errors
    /// [`CacheError`] naming the directory that cannot be created or written.
    pub fn prepare(
        cache_dir: &Path,
        key: CacheKey,
        ort_version: &str,
        cfg: &TensorrtConfig,
    ) -> Result<Self, CacheError> {
        let engine_dir = cache_dir.join(&key.0);
        let ort: String = ort_version
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
            .collect();
        let timing_dir = cache_dir.join(format!("timing-ort{ort}-{}", cfg.precision()));
        for dir in [&engine_dir, &timing_dir] {
            ensure_writable_dir(dir)?;
        }
        Ok(Self {
            engine_dir,
            timing_dir,
            key,
        })
    }

    /// Whether an engine was built for this key before (ONNX Runtime names them `*.engine`).
    #[must_use]
    pub fn has_engine(&self) -> bool {
        std::fs::read_dir(&self.engine_dir).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "engine"))
        })
    }
}

/// Creates `dir` (and its parents) and checks that a file can be written in it.
///
/// # Errors
/// [`CacheError`] naming the directory.
pub fn ensure_writable_dir(dir: &Path) -> Result<(), CacheError> {
    let err = |message: String| CacheError {
        dir: dir.to_path_buf(),
        message,
    };
    std::fs::create_dir_all(dir).map_err(|e| err(format!("cannot create it ({e})")))?;
    let probe = dir.join(format!(".edgebind-write-test-{}", std::process::id()));
    std::fs::File::create(&probe).map_err(|e| err(format!("not writable ({e})")))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn imu_profile(max_batch: usize) -> Profile {
        Profile::covering("imu", &[vec![6, 2000]], max_batch)
    }

    #[test]
    fn profile_shapes_cover_batch_one_to_max_batch() {
        let (min, opt, max) = imu_profile(4).shapes();
        assert_eq!(min, "imu:1x6x2000");
        assert_eq!(opt, "imu:1x6x2000");
        assert_eq!(max, "imu:4x6x2000");
        let audio = Profile::covering("audio", &[vec![3, 1, 128, 204], vec![1, 1, 128, 204]], 2);
        let (min, _, max) = audio.shapes();
        assert_eq!(min, "audio:1x1x1x128x204");
        assert_eq!(max, "audio:2x3x1x128x204");
    }

    #[test]
    fn a_changed_model_version_precision_or_profile_changes_the_key() {
        let cfg = TensorrtConfig::default();
        let p = imu_profile(4);
        let base = CacheKey::new(Modality::Imu, "ab".repeat(32).as_str(), "1.31.1", &cfg, &p);
        assert_eq!(base.0, "imu-abababababababab-ort1.31.1-fp16-b4");
        let other_model = CacheKey::new(Modality::Imu, &"cd".repeat(32), "1.31.1", &cfg, &p);
        let other_ort = CacheKey::new(Modality::Imu, &"ab".repeat(32), "1.32.0", &cfg, &p);
        let fp32 = TensorrtConfig {
            fp16: false,
            ..TensorrtConfig::default()
        };
        let other_precision = CacheKey::new(Modality::Imu, &"ab".repeat(32), "1.31.1", &fp32, &p);
        let dla = TensorrtConfig {
            dla_core: Some(1),
            ..TensorrtConfig::default()
        };
        let on_dla = CacheKey::new(Modality::Imu, &"ab".repeat(32), "1.31.1", &dla, &p);
        let bigger = CacheKey::new(
            Modality::Imu,
            &"ab".repeat(32),
            "1.31.1",
            &cfg,
            &imu_profile(8),
        );
        let keys = [
            base,
            other_model,
            other_ort,
            other_precision,
            on_dla,
            bigger,
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn cache_directories_are_created_and_engines_found() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = TensorrtConfig::default();
        let key = CacheKey::new(
            Modality::Imu,
            &"ab".repeat(32),
            "1.31.1",
            &cfg,
            &imu_profile(1),
        );
        let dirs = CacheDirs::prepare(&tmp.path().join("cache"), key, "1.31.1", &cfg).unwrap();
        assert!(dirs.engine_dir.is_dir() && dirs.timing_dir.is_dir());
        assert!(!dirs.has_engine());
        std::fs::write(
            dirs.engine_dir.join("TensorrtExecutionProvider_x.engine"),
            b"x",
        )
        .unwrap();
        assert!(dirs.has_engine());
    }

    #[test]
    fn an_unwritable_cache_directory_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("a-file");
        std::fs::write(&file, b"").unwrap();
        let err = ensure_writable_dir(&file.join("tensorrt"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("a-file/tensorrt"), "{err}");
        assert!(err.contains("cannot create"), "{err}");
    }
}
