//! Inference: ONNX Runtime loaded at run time, the model set (manifest, checksums, concept
//! bank), one contract-checked encoder session per modality, and the worker thread owning it.

pub mod manifest;
pub mod runtime;
pub mod session;
pub mod text;
pub mod worker;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use ndarray::{ArrayD, IxDyn};

pub use manifest::{Manifest, ManifestError};
pub use runtime::{OrtRuntime, RuntimeError};
pub use session::{Encoder, SessionError};
pub use text::{TextEncoder, TextEncoderError};

use crate::concepts::{ConceptBank, ConceptError};
use crate::config::ExecutionProviderKind;
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

/// Input shape used to warm an encoder up (batch of one).
#[must_use]
pub fn example_input_shape(modality: Modality) -> Vec<usize> {
    match modality {
        Modality::Imu => vec![6, 2000],
        Modality::Audio => vec![1, 1, 128, 204],
        Modality::Depth | Modality::Thermal => vec![1, 224, 224],
    }
}

/// Loads the model set in `dir` for `modalities`: verifies checksums, creates each session with
/// the configured providers, checks the contracts and runs each model once to warm it up.
///
/// # Errors
/// [`ModelSetError`] naming the file and what is wrong.
pub fn load_model_set(
    runtime: &OrtRuntime,
    dir: &Path,
    modalities: &[Modality],
    providers: &[ExecutionProviderKind],
    require_gpu: bool,
    intra_threads: usize,
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
    for &modality in modalities {
        let (path, entry) =
            manifest
                .model(modality)
                .ok_or_else(|| ModelSetError::MissingModel {
                    dir: dir.display().to_string(),
                    modality,
                })?;
        let sha256 = manifest::verify_sha256(&path, &entry.sha256)?;
        let mut encoder = Encoder::load(
            runtime,
            modality,
            &path,
            providers,
            require_gpu,
            intra_threads,
        )?;
        if encoder.embedding_dim() != manifest.embedding_dim {
            return Err(ModelSetError::Width {
                path: path.display().to_string(),
                expected: manifest.embedding_dim,
                actual: encoder.embedding_dim(),
            });
        }
        let warm = ArrayD::<f32>::zeros(IxDyn(&example_input_shape(modality)));
        encoder.run_one(&warm)?;
        tracing::info!(
            %modality,
            model = %path.display(),
            provider = encoder.provider.as_str(),
            ort_version = %runtime.version,
            "encoder loaded and warm"
        );
        encoders.insert(modality, LoadedEncoder { encoder, sha256 });
    }
    Ok(ModelSet {
        manifest,
        concepts,
        encoders,
    })
}
