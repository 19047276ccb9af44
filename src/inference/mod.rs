//! Inference: ONNX Runtime loaded at run time, the model set (manifest, checksums, concept
//! bank), one contract-checked encoder session per modality, and the worker thread owning it.

pub mod manifest;
pub mod parity;
pub mod runtime;
pub mod session;
pub mod tensorrt;
pub mod text;
pub mod worker;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ndarray::{Array2, ArrayD, Axis, IxDyn};

pub use manifest::{Manifest, ManifestError};
pub use parity::{ParityReport, Reference, ReferenceError};
pub use runtime::{OrtRuntime, RuntimeError};
pub use session::{Encoder, SessionError, SessionSettings, TensorrtSettings};
pub use tensorrt::{CacheDirs, CacheError, CacheKey, Profile};
pub use text::{TextEncoder, TextEncoderError};

use crate::concepts::{ConceptBank, ConceptError};
use crate::config::{
    Config, CudaConfig, ExecutionProviderKind, ParityConfig, ParityFailure, TensorrtConfig,
};
use crate::Modality;

/// Errors loading a model set.
#[derive(Debug, thiserror::Error)]
pub enum ModelSetError {
    /// Manifest or checksum problem.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// Concept bank problem.
    #[error(transparent)]
    Concepts(#[from] ConceptError),
    /// Encoder problem.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The TensorRT cache directory cannot be used.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// A parity reference cannot be used.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// A provider's output disagrees with the manifest reference and
    /// `runtime.parity.on_failure = "fail"`.
    #[error("{path}: refused: on provider {provider} the output disagrees with the manifest reference {reference} ({detail}); runtime.parity.on_failure = \"fail\"")]
    Parity {
        /// The model.
        path: PathBuf,
        /// The provider that produced it.
        provider: &'static str,
        /// The reference output file.
        reference: PathBuf,
        /// Cosine and difference.
        detail: String,
    },
    /// Every provider either failed or produced output that disagrees with the reference.
    #[error("{path}: refused: no execution provider reproduces the manifest reference: {}", reasons.join("; "))]
    NoParity {
        /// The model.
        path: PathBuf,
        /// Why each provider was refused.
        reasons: Vec<String>,
    },
    /// A modality in use has no encoder.
    #[error("{dir}/manifest.json: no {modality} model, but a {modality} source is configured")]
    MissingModel {
        /// The model-set directory.
        dir: String,
        /// The modality.
        modality: Modality,
    },
    /// An encoder's width differs from the manifest's.
    #[error("{path}: produces {actual}-d embeddings, manifest says {expected}")]
    Width {
        /// The model.
        path: String,
        /// From the manifest.
        expected: usize,
        /// From the model.
        actual: usize,
    },
}

/// A loaded encoder with what the payload says about it.
#[derive(Debug)]
pub struct LoadedEncoder {
    /// The session.
    pub encoder: Encoder,
    /// sha256 of the file (verified).
    pub sha256: String,
    /// How the parity check went (`None`: no reference, or the check is off).
    pub parity: Option<ParityReport>,
}

/// The models and concepts of one model set.
#[derive(Debug)]
pub struct ModelSet {
    /// The manifest.
    pub manifest: Manifest,
    /// The concept bank.
    pub concepts: Arc<ConceptBank>,
    /// Encoders for the modalities in use.
    pub encoders: BTreeMap<Modality, LoadedEncoder>,
}

/// Input shape used to warm an encoder up (batch of one), from the modality table.
#[must_use]
pub fn example_input_shape(modality: Modality) -> Vec<usize> {
    modality.example_shape()
}

/// Everything that decides how the models are loaded, from the configuration.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Providers in order of preference.
    pub providers: Vec<ExecutionProviderKind>,
    /// Refuse to fall back to the CPU.
    pub require_gpu: bool,
    /// Threads inside one operator.
    pub intra_threads: usize,
    /// TensorRT options.
    pub tensorrt: TensorrtConfig,
    /// The TensorRT cache directory in effect.
    pub tensorrt_cache_dir: PathBuf,
    /// CUDA options.
    pub cuda: CudaConfig,
    /// The parity check.
    pub parity: ParityConfig,
    /// The largest batch a worker runs (the TensorRT profile covers 1 to this).
    pub max_batch: usize,
    /// Input shapes (without the batch dimension) each modality will see; warm-up runs each.
    pub item_shapes: BTreeMap<Modality, Vec<Vec<usize>>>,
}

impl LoadOptions {
    /// The options of `config`.
    #[must_use]
    pub fn from_config(config: &Config) -> Self {
        let rt = &config.runtime;
        let mut item_shapes: BTreeMap<Modality, Vec<Vec<usize>>> = BTreeMap::new();
        for (_, stream) in config.streams() {
            let shapes = item_shapes.entry(stream.modality).or_default();
            if !shapes.contains(&stream.item_shape) {
                shapes.push(stream.item_shape);
            }
        }
        Self {
            providers: rt.execution_providers.clone(),
            require_gpu: rt.require_gpu,
            intra_threads: rt.intra_threads.n(),
            tensorrt: rt.tensorrt.clone(),
            tensorrt_cache_dir: rt.tensorrt.resolved_cache_dir(&config.base_dir),
            cuda: rt.cuda.clone(),
            parity: rt.parity.clone(),
            max_batch: config.models.max_batch.n(),
            item_shapes,
        }
    }

    fn shapes(&self, modality: Modality) -> Vec<Vec<usize>> {
        self.item_shapes
            .get(&modality)
            .filter(|s| !s.is_empty())
            .cloned()
            .unwrap_or_else(|| vec![example_input_shape(modality)])
    }
}

/// How often a long step (engine build, warm-up) reports that it is still working.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Runs `work`, logging and sending systemd `STATUS=` every [`PROGRESS_EVERY`] until it is done
/// (a first TensorRT engine build takes minutes and must not look like a hang).
fn with_progress<T>(what: &str, work: impl FnOnce() -> T) -> T {
    crate::service::status(&format!("starting: {what}"));
    let (done_tx, done_rx) = std::sync::mpsc::sync_channel::<()>(1);
    std::thread::scope(|scope| {
        let started = Instant::now();
        let ticker = std::thread::Builder::new()
            .name("progress".into())
            .spawn_scoped(scope, move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    done_rx.recv_timeout(PROGRESS_EVERY)
                {
                    let elapsed_s = started.elapsed().as_secs();
                    tracing::info!(elapsed_s, "{what}: still working");
                    crate::service::status(&format!("starting: {what} ({elapsed_s} s so far)"));
                }
            });
        if let Err(e) = &ticker {
            tracing::debug!(error = %e, "no progress reports for this step");
        }
        let out = work();
        let _ = done_tx.send(());
        out
    })
}

/// The TensorRT settings of one model, with its cache directories created. The profile covers
/// the windows' shapes and the parity reference's.
fn tensorrt_settings(
    opts: &LoadOptions,
    target: &LoadTarget<'_>,
    ort_version: &str,
) -> Result<Option<TensorrtSettings>, ModelSetError> {
    if !opts.providers.contains(&ExecutionProviderKind::Tensorrt) {
        return Ok(None);
    }
    let modality = target.modality;
    let sha256 = target.sha256.as_str();
    let mut shapes = opts.shapes(modality);
    if let Some(r) = target.reference {
        let item = r.input.shape().get(1..).unwrap_or_default().to_vec();
        if !shapes.contains(&item) {
            shapes.push(item);
        }
    }
    let profile = Profile::covering(modality.as_str(), &shapes, opts.max_batch);
    let key = CacheKey::new(modality, sha256, ort_version, &opts.tensorrt, &profile);
    let cache = CacheDirs::prepare(&opts.tensorrt_cache_dir, key, ort_version, &opts.tensorrt)?;
    Ok(Some(TensorrtSettings {
        config: opts.tensorrt.clone(),
        cache,
        profile,
    }))
}

/// Loads the model set in `dir` for `modalities`: verifies checksums, creates each session with
/// the configured providers, checks the contracts, runs each model once per input shape to warm
/// it up (TensorRT builds or loads its engine here) and, when the manifest carries a reference,
/// checks the output against it, refusing a provider that disagrees.
///
/// # Errors
/// [`ModelSetError`] naming the file and what is wrong.
pub fn load_model_set(
    runtime: &OrtRuntime,
    dir: &Path,
    modalities: &[Modality],
    opts: &LoadOptions,
) -> Result<ModelSet, ModelSetError> {
    let manifest = Manifest::load(dir)?;
    let c = &manifest.concepts;
    for (file, sha) in &c.sha256 {
        manifest::verify_sha256(&dir.join(file), sha)?;
    }
    let concepts = Arc::new(ConceptBank::load(
        &dir.join(&c.labels),
        &dir.join(&c.embeddings),
        manifest.embedding_dim,
    )?);
    let mut encoders = BTreeMap::new();
    for (i, &modality) in modalities.iter().enumerate() {
        let (path, entry) =
            manifest
                .model(modality)
                .ok_or_else(|| ModelSetError::MissingModel {
                    dir: dir.display().to_string(),
                    modality,
                })?;
        let sha256 = entry.verify(dir)?;
        let reference = match (&entry.reference, opts.parity.enabled) {
            (Some(r), true) => Some(Reference::load(dir, r, manifest.embedding_dim)?),
            _ => None,
        };
        let what = format!("model {}/{} ({modality})", i + 1, modalities.len());
        let loaded = load_one(
            runtime,
            &LoadTarget {
                modality,
                path: &path,
                sha256,
                embedding_dim: manifest.embedding_dim,
                reference: reference.as_ref(),
                what: &what,
            },
            opts,
        )?;
        encoders.insert(modality, loaded);
    }
    Ok(ModelSet {
        manifest,
        concepts,
        encoders,
    })
}

/// One model to load.
struct LoadTarget<'a> {
    modality: Modality,
    path: &'a Path,
    sha256: String,
    embedding_dim: usize,
    reference: Option<&'a Reference>,
    what: &'a str,
}

/// Loads one model: providers in order, warm-up, parity check; a provider refused by the
/// parity check hands over to the next one (or fails, by configuration).
fn load_one(
    runtime: &OrtRuntime,
    target: &LoadTarget<'_>,
    opts: &LoadOptions,
) -> Result<LoadedEncoder, ModelSetError> {
    let LoadTarget { modality, path, .. } = *target;
    let settings = SessionSettings {
        intra_threads: opts.intra_threads.max(1),
        tensorrt: tensorrt_settings(opts, target, &runtime.version)?,
        cuda: opts.cuda.clone(),
    };
    let mut refused: Vec<String> = Vec::new();
    let mut first = 0;
    loop {
        let remaining = opts.providers.get(first..).unwrap_or_default();
        let step = match &settings.tensorrt {
            Some(t)
                if remaining.first() == Some(&ExecutionProviderKind::Tensorrt)
                    && tensorrt_compiled_in() =>
            {
                if t.cache.has_engine() {
                    format!("{}: loading the cached TensorRT engine", target.what)
                } else {
                    format!(
                        "{}: building the TensorRT engine (first start with this model, ONNX Runtime and precision; minutes on a Jetson) in {}",
                        target.what,
                        t.cache.engine_dir.display()
                    )
                }
            }
            _ => format!("{}: loading", target.what),
        };
        tracing::info!(model = %path.display(), "{step}");
        let started = Instant::now();
        let created = with_progress(&step, || {
            Encoder::load_with(
                runtime,
                modality,
                path,
                remaining,
                opts.require_gpu,
                &settings,
            )
        });
        let mut encoder = created.map_err(|e| with_earlier_reasons(e, &refused))?;
        if encoder.embedding_dim() != target.embedding_dim {
            return Err(ModelSetError::Width {
                path: path.display().to_string(),
                expected: target.embedding_dim,
                actual: encoder.embedding_dim(),
            });
        }
        let provider = encoder.provider.as_str();
        with_progress(
            &format!("{}: warming up on {provider}", target.what),
            || warm_up(&mut encoder, &opts.shapes(modality)),
        )?;
        let load_ms = started.elapsed().as_secs_f64() * 1e3;
        let Some(reference) = target.reference else {
            tracing::info!(
                %modality,
                model = %path.display(),
                provider,
                ort_version = %runtime.version,
                load_ms,
                "encoder loaded and warm (no parity reference in the manifest)"
            );
            return Ok(LoadedEncoder {
                encoder,
                sha256: target.sha256.clone(),
                parity: None,
            });
        };
        let actual = run_in_batches(&mut encoder, &reference.input, opts.max_batch)?;
        let report = reference.compare(&actual);
        if report.min_cosine >= opts.parity.min_cosine {
            tracing::info!(
                %modality,
                model = %path.display(),
                provider,
                ort_version = %runtime.version,
                load_ms,
                parity_min_cosine = report.min_cosine,
                parity_max_abs_diff = report.max_abs_diff,
                "encoder loaded, warm and matching its reference"
            );
            return Ok(LoadedEncoder {
                encoder,
                sha256: target.sha256.clone(),
                parity: Some(report),
            });
        }
        let detail = format!(
            "cosine {:.4} < {} at row {}, max |difference| {:.3e}",
            report.min_cosine, opts.parity.min_cosine, report.worst_row, report.max_abs_diff
        );
        if opts.parity.on_failure == ParityFailure::Fail {
            return Err(ModelSetError::Parity {
                path: path.to_path_buf(),
                provider,
                reference: reference.output_path.clone(),
                detail,
            });
        }
        refused.extend(encoder.fallback_reasons.iter().cloned());
        refused.push(format!(
            "{provider}: output disagrees with the reference {} ({detail})",
            reference.output_path.display()
        ));
        first = opts
            .providers
            .iter()
            .position(|p| *p == encoder.provider)
            .map_or(opts.providers.len(), |i| i + 1);
        let left = opts
            .providers
            .get(first..)
            .unwrap_or_default()
            .iter()
            .any(|p| !(opts.require_gpu && *p == ExecutionProviderKind::Cpu));
        tracing::warn!(
            %modality,
            model = %path.display(),
            provider,
            reference = %reference.output_path.display(),
            %detail,
            "output disagrees with the manifest reference; provider refused{}",
            if left { ", trying the next" } else { "" }
        );
        if !left {
            return Err(ModelSetError::NoParity {
                path: path.to_path_buf(),
                reasons: refused,
            });
        }
    }
}

/// Whether the loaded library has the TensorRT provider at all (the CPU build does not; then
/// no engine will be built and saying so would mislead).
fn tensorrt_compiled_in() -> bool {
    use ort::ep::ExecutionProvider as _;
    ort::ep::TensorRT::is_available().unwrap_or(false)
}

/// One run per input shape, batch of one, so that the first window does not pay for
/// initialisation (and TensorRT has built or loaded its engine).
fn warm_up(encoder: &mut Encoder, shapes: &[Vec<usize>]) -> Result<(), SessionError> {
    for item in shapes {
        let mut shape = vec![1];
        shape.extend_from_slice(item);
        encoder.run(&ArrayD::<f32>::zeros(IxDyn(&shape)))?;
    }
    Ok(())
}

/// Runs `input` (`[B, …]`) in batches of at most `max_batch` (what the TensorRT profile
/// covers) and returns all rows.
fn run_in_batches(
    encoder: &mut Encoder,
    input: &ArrayD<f32>,
    max_batch: usize,
) -> Result<Array2<f32>, SessionError> {
    let mut parts = Vec::new();
    for chunk in input.axis_chunks_iter(Axis(0), max_batch.max(1)) {
        parts.push(encoder.run_unchecked(&chunk.to_owned())?);
    }
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    ndarray::concatenate(Axis(0), &views).map_err(|e| SessionError::Run {
        path: encoder.path.clone(),
        message: e.to_string(),
    })
}

/// Puts the providers refused by the parity check before a later provider error's reasons.
fn with_earlier_reasons(e: SessionError, earlier: &[String]) -> ModelSetError {
    let join = |reasons: Vec<String>| earlier.iter().cloned().chain(reasons).collect();
    ModelSetError::Session(match e {
        SessionError::NoProvider { path, reasons } => SessionError::NoProvider {
            path,
            reasons: join(reasons),
        },
        SessionError::GpuRequired { path, reasons } => SessionError::GpuRequired {
            path,
            reasons: join(reasons),
        },
        other => other,
    })
}
