//! The TensorRT engine and timing caches: one directory per cache key, so that a changed model,
//! ONNX Runtime, TensorRT/CUDA/cuDNN version, module, precision, excluded op types, DLA core or
//! batch profile never loads a stale engine; a key file in each directory that is checked before
//! use (a directory whose key file disagrees, or has none, is emptied and rebuilt); and the
//! optimisation profile that covers every batch the worker will run.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::gpu_stack::GpuStack;
use super::steps::Precision;
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

/// The file in each key directory that spells the key out.
pub const KEY_FILE: &str = "edgebind-key.txt";

/// Everything an engine was built for.
#[derive(Debug, Clone)]
pub struct EngineSpec<'a> {
    /// The modality the model encodes.
    pub modality: Modality,
    /// sha256 of the model file.
    pub sha256: &'a str,
    /// ONNX Runtime's version.
    pub ort_version: &'a str,
    /// TensorRT, CUDA, cuDNN and the module.
    pub gpu: &'a GpuStack,
    /// Kernel precision.
    pub precision: Precision,
    /// Op types left out of TensorRT.
    pub excluded_op_types: &'a [String],
    /// DLA core (only with FP16 or INT8; ONNX Runtime ignores it otherwise).
    pub dla_core: Option<u32>,
    /// The explicit optimisation profile (`None`: derived by ONNX Runtime from the shapes run).
    pub profile: Option<&'a Profile>,
}

impl EngineSpec<'_> {
    fn dla(&self) -> Option<u32> {
        self.dla_core.filter(|_| self.precision != Precision::Fp32)
    }

    /// One `name = value` line per part of the key (the key file's content).
    #[must_use]
    pub fn describe(&self) -> String {
        let none = || "none".to_string();
        let profile = self.profile.map_or_else(
            || "derived from the shapes run".to_string(),
            |p| {
                let (min, opt, max) = p.shapes();
                format!("min {min}, opt {opt}, max {max}")
            },
        );
        [
            ("modality", self.modality.to_string()),
            ("model_sha256", self.sha256.to_string()),
            ("onnx_runtime", self.ort_version.to_string()),
            ("tensorrt", self.gpu.tensorrt.clone().unwrap_or_else(none)),
            ("cuda", self.gpu.cuda.clone().unwrap_or_else(none)),
            ("cudnn", self.gpu.cudnn.clone().unwrap_or_else(none)),
            ("module", self.gpu.module.clone().unwrap_or_else(none)),
            ("precision", self.precision.as_str().to_string()),
            ("excluded_op_types", self.excluded_op_types.join(",")),
            ("dla_core", self.dla().map_or_else(none, |c| c.to_string())),
            ("profile", profile),
        ]
        .iter()
        .map(|(k, v)| format!("{k} = {v}\n"))
        .collect()
    }
}

/// A key directory's name:
/// `<modality>-<sha256 prefix>-ort<version>-trt<version>-<precision>[-x<ops hash>][-dla<n>]`
/// `-b<max batch>[-<min item>-<max item>]` (or `-implicit`) `-<CUDA/cuDNN/module hash>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey(pub String);

impl CacheKey {
    /// The key of `spec`.
    #[must_use]
    pub fn new(spec: &EngineSpec<'_>) -> Self {
        let sha: String = spec.sha256.chars().take(16).collect();
        let mut key = format!(
            "{}-{sha}-ort{}-trt{}-{}",
            spec.modality,
            clean(spec.ort_version),
            spec.gpu.tensorrt_key(),
            spec.precision.as_str()
        );
        if !spec.excluded_op_types.is_empty() {
            key.push_str(&format!(
                "-x{}",
                short_hash(&spec.excluded_op_types.join(","))
            ));
        }
        if let Some(core) = spec.dla() {
            key.push_str(&format!("-dla{core}"));
        }
        match spec.profile {
            Some(p) => {
                key.push_str(&format!("-b{}", p.max_batch));
                if p.min_item != p.max_item {
                    key.push_str(&format!(
                        "-{}-{}",
                        dims_text(&p.min_item),
                        dims_text(&p.max_item)
                    ));
                }
            }
            None => key.push_str("-implicit"),
        }
        key.push('-');
        key.push_str(&spec.gpu.fingerprint());
        Self(key)
    }
}

fn clean(v: &str) -> String {
    v.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
        .collect()
}

fn short_hash(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .take(2)
        .map(|b| format!("{b:02x}"))
        .collect()
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

/// Where one step's engines and the shared timing cache live.
#[derive(Debug, Clone)]
pub struct CacheDirs {
    /// Engines of this key.
    pub engine_dir: PathBuf,
    /// Layer timings (shared by every model of the same ONNX Runtime, TensorRT and module).
    pub timing_dir: PathBuf,
    /// The key.
    pub key: CacheKey,
    /// Why engines found in the directory were removed (`None`: nothing was removed).
    pub cleared: Option<String>,
}

impl CacheDirs {
    /// Creates (if needed) and checks the directories of `spec` under `cache_dir`. A directory
    /// whose key file disagrees with `spec`, or that holds files without a key file, is emptied
    /// first: its engines were built for something else and would fail to deserialize (or,
    /// worse, load).
    ///
    /// # Errors
    /// [`CacheError`] naming the directory that cannot be created, written or emptied.
    pub fn prepare(cache_dir: &Path, spec: &EngineSpec<'_>) -> Result<Self, CacheError> {
        let key = CacheKey::new(spec);
        let engine_dir = cache_dir.join(&key.0);
        let timing_dir = cache_dir.join(format!(
            "timing-ort{}-trt{}-{}",
            clean(spec.ort_version),
            spec.gpu.tensorrt_key(),
            spec.gpu.fingerprint()
        ));
        for dir in [&engine_dir, &timing_dir] {
            ensure_writable_dir(dir)?;
        }
        let mut dirs = Self {
            engine_dir,
            timing_dir,
            key,
            cleared: None,
        };
        let wanted = spec.describe();
        let key_file = dirs.engine_dir.join(KEY_FILE);
        let found = std::fs::read_to_string(&key_file).ok();
        let why = match found {
            Some(text) if text == wanted => None,
            Some(_) => Some("its key file describes another model, library or module".to_string()),
            None if dirs.has_files() => {
                Some("it has no key file (made by an older edgebind, or copied)".to_string())
            }
            None => None,
        };
        if let Some(why) = why {
            dirs.clear(&why)?;
        }
        std::fs::write(&key_file, wanted).map_err(|e| CacheError {
            dir: dirs.engine_dir.clone(),
            message: format!("cannot write {KEY_FILE} ({e})"),
        })?;
        Ok(dirs)
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

    fn has_files(&self) -> bool {
        std::fs::read_dir(&self.engine_dir).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| !e.file_name().to_string_lossy().starts_with(".edgebind-"))
        })
    }

    /// Removes every file of the engine directory (engines, profiles, the key file) so that the
    /// engines are rebuilt, and records `why`.
    ///
    /// # Errors
    /// [`CacheError`] when a file cannot be removed.
    pub fn clear(&mut self, why: &str) -> Result<(), CacheError> {
        let entries = std::fs::read_dir(&self.engine_dir).map_err(|e| CacheError {
            dir: self.engine_dir.clone(),
            message: format!("cannot list it ({e})"),
        })?;
        let mut removed = 0usize;
        for entry in entries.flatten() {
            let path = entry.path();
            let gone = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            gone.map_err(|e| CacheError {
                dir: self.engine_dir.clone(),
                message: format!("cannot remove {} ({e})", path.display()),
            })?;
            removed += 1;
        }
        self.cleared = Some(format!("{why}; {removed} file(s) removed"));
        Ok(())
    }
}

/// What a TensorRT session error means for the load ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorrtFailure {
    /// The explicit profile names the model input only, but the graph was split.
    ProfileRejected,
    /// A cached engine was built by another TensorRT (or is damaged).
    StaleEngine,
}

/// Recognises the two TensorRT errors edgebind recovers from, by ONNX Runtime's messages
/// (`tensorrt_execution_provider.cc`).
#[must_use]
pub fn classify_failure(message: &str) -> Option<TensorrtFailure> {
    if message.contains("no associated shape profiles") {
        Some(TensorrtFailure::ProfileRejected)
    } else if message.contains("could not deserialize engine")
        || message.contains("Version tag does not match")
    {
        Some(TensorrtFailure::StaleEngine)
    } else {
        None
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

    fn jetson() -> GpuStack {
        GpuStack {
            tensorrt: Some("10.3.0".into()),
            cuda: Some("12.6.68".into()),
            cudnn: Some("9.3.0".into()),
            module: Some("NVIDIA Jetson AGX Orin Developer Kit".into()),
        }
    }

    fn spec<'a>(gpu: &'a GpuStack, profile: Option<&'a Profile>) -> EngineSpec<'a> {
        EngineSpec {
            modality: Modality::Imu,
            sha256: "abababababababababababababababababababababababababababababababab",
            ort_version: "1.23.0",
            gpu,
            precision: Precision::Fp16,
            excluded_op_types: &[],
            dla_core: None,
            profile,
        }
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
    fn every_part_of_what_an_engine_depends_on_changes_the_key() {
        let gpu = jetson();
        let p4 = imu_profile(4);
        let p8 = imu_profile(8);
        let base = CacheKey::new(&spec(&gpu, Some(&p4)));
        let fp = gpu.fingerprint();
        assert_eq!(
            base.0,
            format!("imu-abababababababab-ort1.23.0-trt10.3.0-fp16-b4-{fp}")
        );
        let trt_10_7 = GpuStack {
            tensorrt: Some("10.7.0".into()),
            ..jetson()
        };
        let nano = GpuStack {
            module: Some("NVIDIA Jetson Orin Nano Developer Kit".into()),
            ..jetson()
        };
        let cudnn = GpuStack {
            cudnn: Some("9.4.0".into()),
            ..jetson()
        };
        let excluded = ["Softmax".to_string()];
        let variants = [
            EngineSpec {
                sha256: "cd",
                ..spec(&gpu, Some(&p4))
            },
            EngineSpec {
                ort_version: "1.22.0",
                ..spec(&gpu, Some(&p4))
            },
            spec(&trt_10_7, Some(&p4)),
            spec(&nano, Some(&p4)),
            spec(&cudnn, Some(&p4)),
            EngineSpec {
                precision: Precision::Fp32,
                ..spec(&gpu, Some(&p4))
            },
            EngineSpec {
                excluded_op_types: &excluded,
                ..spec(&gpu, None)
            },
            EngineSpec {
                dla_core: Some(1),
                ..spec(&gpu, Some(&p4))
            },
            spec(&gpu, Some(&p8)),
            spec(&gpu, None),
        ];
        let mut keys = vec![base];
        keys.extend(variants.iter().map(CacheKey::new));
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert!(keys[3].0.contains("-trt10.7.0-"), "{:?}", keys[3]);
        assert!(keys[7].0.contains("-x") && keys[7].0.contains("-implicit-"));
        // DLA does not apply to FP32 (ONNX Runtime ignores it there): the same key.
        let fp32 = EngineSpec {
            precision: Precision::Fp32,
            ..spec(&gpu, Some(&p4))
        };
        let fp32_dla = EngineSpec {
            dla_core: Some(0),
            ..fp32.clone()
        };
        assert_eq!(CacheKey::new(&fp32), CacheKey::new(&fp32_dla));
    }

    #[test]
    fn cache_directories_are_created_with_their_key_file_and_engines_found() {
        let tmp = tempfile::tempdir().unwrap();
        let gpu = jetson();
        let p = imu_profile(1);
        let s = spec(&gpu, Some(&p));
        let dirs = CacheDirs::prepare(&tmp.path().join("cache"), &s).unwrap();
        assert!(dirs.engine_dir.is_dir() && dirs.timing_dir.is_dir());
        assert!(!dirs.has_engine());
        assert_eq!(dirs.cleared, None);
        let key = std::fs::read_to_string(dirs.engine_dir.join(KEY_FILE)).unwrap();
        assert!(key.contains("tensorrt = 10.3.0\n"), "{key}");
        assert!(
            key.contains("module = NVIDIA Jetson AGX Orin Developer Kit\n"),
            "{key}"
        );
        std::fs::write(
            dirs.engine_dir.join("TensorrtExecutionProvider_x.engine"),
            b"x",
        )
        .unwrap();
        assert!(dirs.has_engine());
        // Prepared again for the same spec: the engine is kept.
        let again = CacheDirs::prepare(&tmp.path().join("cache"), &s).unwrap();
        assert!(again.has_engine() && again.cleared.is_none());
    }

    #[test]
    fn a_cached_engine_whose_key_file_disagrees_is_removed_so_it_is_rebuilt() {
        let tmp = tempfile::tempdir().unwrap();
        let gpu = jetson();
        let p = imu_profile(4);
        let s = spec(&gpu, Some(&p));
        let dirs = CacheDirs::prepare(tmp.path(), &s).unwrap();
        let engine = dirs
            .engine_dir
            .join("TensorrtExecutionProvider_TRTKernel_x_sm87.engine");
        std::fs::write(&engine, b"built by TensorRT 10.3.0").unwrap();
        // The key file says the engine came from another TensorRT (as after a JetPack upgrade
        // when the library versions could not be read, so that the directory name is the same).
        let key_file = dirs.engine_dir.join(KEY_FILE);
        let old = std::fs::read_to_string(&key_file)
            .unwrap()
            .replace("tensorrt = 10.3.0", "tensorrt = 8.6.2");
        std::fs::write(&key_file, old).unwrap();
        let again = CacheDirs::prepare(tmp.path(), &s).unwrap();
        assert!(!engine.exists());
        assert!(!again.has_engine());
        let why = again.cleared.unwrap();
        assert!(why.contains("key file describes another"), "{why}");
        assert!(why.contains("2 file(s) removed"), "{why}");
        // The key file is rewritten for this spec: the next start keeps the rebuilt engine.
        std::fs::write(&engine, b"rebuilt").unwrap();
        assert!(CacheDirs::prepare(tmp.path(), &s).unwrap().has_engine());
    }

    #[test]
    fn engines_without_a_key_file_are_removed_and_a_stale_engine_can_be_cleared() {
        let tmp = tempfile::tempdir().unwrap();
        let gpu = jetson();
        let p = imu_profile(4);
        let s = spec(&gpu, Some(&p));
        let key = CacheKey::new(&s);
        let dir = tmp.path().join(&key.0);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("copied.engine"), b"from another device").unwrap();
        std::fs::write(dir.join("copied.profile"), b"x").unwrap();
        let mut dirs = CacheDirs::prepare(tmp.path(), &s).unwrap();
        assert!(!dirs.has_engine());
        assert!(dirs.cleared.as_deref().unwrap().contains("no key file"));
        // ONNX Runtime could not deserialize an engine: the step clears and rebuilds.
        std::fs::write(dirs.engine_dir.join("a.engine"), b"damaged").unwrap();
        dirs.clear("TensorRT could not deserialize the cached engine")
            .unwrap();
        assert!(!dirs.has_engine());
    }

    #[test]
    fn the_two_recoverable_tensorrt_errors_are_recognised() {
        assert_eq!(
            classify_failure("[ONNXRuntimeError] : 1 : FAIL : User needs to provide all the dynamic shape inputs with associated profiles if they want to explicitly set profiles through provider options.\nPlease note that main graph could be partitioned into TRT/CUDA/CPU subgraphs, in this case, user also needs to provide shape profiles for the TRT subgraph's input if it's dynamic shape input.\nFollowing input(s) has no associated shape profiles provided: /blocks.3/Add_output_0"),
            Some(TensorrtFailure::ProfileRejected)
        );
        assert_eq!(
            classify_failure("[ONNXRuntimeError] : 11 : EP_FAIL : TensorRT EP could not deserialize engine from cache: /var/cache/edgebind/tensorrt/x/TensorrtExecutionProvider_TRTKernel_graph_main_1_0_sm87.engine"),
            Some(TensorrtFailure::StaleEngine)
        );
        assert_eq!(classify_failure("out of memory"), None);
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
