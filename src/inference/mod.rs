//! Inference: ONNX Runtime loaded at run time, the model set (manifest, checksums, concept
//! bank), one contract-checked encoder session per modality, and the worker thread owning it.

pub mod cpu_reference;
pub mod gpu_stack;
mod load;
pub mod manifest;
pub mod ort_log;
pub mod parity;
pub mod plan;
pub mod reuse;
pub mod runtime;
pub mod session;
pub mod steps;
pub mod tensorrt;
pub mod text;
pub mod worker;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use gpu_stack::GpuStack;
pub use manifest::{Manifest, ManifestError};
pub use ort_log::Placement;
pub use parity::{ParityReport, Reference, ReferenceError, ThresholdSource};
pub use runtime::{OrtRuntime, RuntimeError};
pub use session::{Encoder, SessionError, SessionSettings};
pub use steps::Step;
pub use tensorrt::{CacheDirs, CacheError, CacheKey, Profile};
pub use text::{TextEncoder, TextEncoderError};

use crate::concepts::{ConceptBank, ConceptError};
use crate::config::{Config, CudaConfig, ExecutionProviderKind, ParityConfig, TensorrtConfig};
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
    #[error("{path}: refused: on provider {provider} the output disagrees with the manifest reference {reference} ({detail}) at step {step}; runtime.parity.on_failure = \"fail\"")]
    Parity {
        /// The model.
        path: PathBuf,
        /// The provider that produced it.
        provider: &'static str,
        /// The load step.
        step: &'static str,
        /// The reference output file.
        reference: PathBuf,
        /// Cosine and difference.
        detail: String,
    },
    /// Every step either failed or produced output that disagrees with the reference.
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
    /// Refuse a GPU session in which any node would run on the CPU.
    pub disable_cpu_fallback: bool,
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
            disable_cpu_fallback: rt.disable_cpu_fallback,
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

/// Loads the model set in `dir` for `modalities`: verifies checksums, then walks each model's
/// load steps (`steps`): creates the session, checks the contract, runs the model once per
/// input shape to warm it up (TensorRT builds or loads its engine here) and, when the manifest
/// carries a reference, checks the output against it, refusing a step that disagrees.
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
    let gpu = GpuStack::detect(&runtime.library);
    if opts.providers.contains(&ExecutionProviderKind::Tensorrt) {
        tracing::info!(stack = %gpu.describe(), "TensorRT engines are keyed on this GPU stack");
    }
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
            (Some(r), true) => Some(Reference::load(
                dir,
                r,
                entry.precision,
                manifest.embedding_dim,
            )?),
            _ => None,
        };
        let what = format!("model {}/{} ({modality})", i + 1, modalities.len());
        let loaded = load::load_one(
            runtime,
            &load::LoadTarget {
                modality,
                path: &path,
                sha256,
                embedding_dim: manifest.embedding_dim,
                reference: reference.as_ref(),
                what: &what,
                gpu: &gpu,
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
