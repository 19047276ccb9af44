//! The model-set manifest (`manifest.json`): which ONNX file encodes which modality, its
//! checksum, and the concept bank (format documented in `models/README.md`).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::files::{self, FileError};
use crate::Modality;

/// Errors reading a model set.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// A file cannot be opened or read, or is too large.
    #[error(transparent)]
    File(#[from] FileError),
    /// The manifest is not valid.
    #[error("{path}: {message}")]
    Invalid {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A file's checksum differs from the manifest's.
    #[error("{path}: sha256 is {actual}, manifest says {expected} (file changed or corrupt)")]
    Checksum {
        /// The file.
        path: PathBuf,
        /// From the manifest.
        expected: String,
        /// Computed.
        actual: String,
    },
}

/// One encoder of a model set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// ONNX file, relative to the manifest.
    pub file: PathBuf,
    /// Lower-case hex sha256 of the file.
    pub sha256: String,
    /// Input name (ImageBind's modality name).
    pub input: String,
    /// Output name (`embedding`).
    pub output: String,
    /// A reference input and the output the model must give for it (the parity check).
    #[serde(default)]
    pub reference: Option<ReferenceEntry>,
}

/// A reference pair for the parity check: `.npy` float32 files next to the manifest, the input
/// with its batch dimension (`[B, …]`), the output `[B, dim]` as the exporter's runtime gave it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceEntry {
    /// Model input, relative to the manifest.
    pub input: PathBuf,
    /// sha256 of the input file.
    pub input_sha256: String,
    /// Expected model output, relative to the manifest.
    pub output: PathBuf,
    /// sha256 of the output file.
    pub output_sha256: String,
}

/// The concept bank files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConceptFiles {
    /// UTF-8 text, one label per line.
    pub labels: PathBuf,
    /// float32 `[K, dim]` `.npy`, row i = label i.
    pub embeddings: PathBuf,
    /// Optional checksums per file name.
    #[serde(default)]
    pub sha256: BTreeMap<String, String>,
}

/// The text encoder of an exported set (`edgebind embed text`; the daemon does not load it).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextEntry {
    /// ONNX file, relative to the manifest.
    pub file: PathBuf,
    /// Lower-case hex sha256 of the file.
    pub sha256: String,
    /// Input name (`text`).
    pub input: String,
    /// Output name (`embedding`).
    pub output: String,
    /// CLIP BPE vocabulary file, relative to the manifest.
    pub tokenizer: PathBuf,
    /// Lower-case hex sha256 of the vocabulary.
    pub tokenizer_sha256: String,
}

/// A model set's manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Manifest format version (1).
    pub format: u32,
    /// Name of the model set.
    pub name: String,
    /// Licence of the weights.
    pub licence: String,
    /// Embedding width (1024 for ImageBind huge).
    pub embedding_dim: usize,
    /// Encoders by modality.
    pub models: BTreeMap<Modality, ModelEntry>,
    /// The concept bank.
    pub concepts: ConceptFiles,
    /// The text encoder, when the set has one (sets made by `tools/export_imagebind.py`).
    #[serde(default)]
    pub text: Option<TextEntry>,
    /// Directory of the manifest.
    #[serde(skip)]
    pub dir: PathBuf,
}

impl Manifest {
    /// Reads `dir/manifest.json`.
    ///
    /// # Errors
    /// [`ManifestError`] naming the manifest.
    pub fn load(dir: &Path) -> Result<Self, ManifestError> {
        let path = dir.join("manifest.json");
        let text = files::read_to_string(&path, files::MAX_TEXT_BYTES, "a manifest")?;
        let mut m: Manifest = serde_json::from_str(&text).map_err(|e| ManifestError::Invalid {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if m.format != 1 {
            return Err(ManifestError::Invalid {
                path,
                message: format!("format {} is not supported (expected 1)", m.format),
            });
        }
        if m.embedding_dim == 0 {
            return Err(ManifestError::Invalid {
                path,
                message: "embedding_dim must be > 0".into(),
            });
        }
        m.dir = dir.to_path_buf();
        Ok(m)
    }

    /// The encoder for `modality`, with its path resolved.
    #[must_use]
    pub fn model(&self, modality: Modality) -> Option<(PathBuf, &ModelEntry)> {
        self.models
            .get(&modality)
            .map(|e| (self.dir.join(&e.file), e))
    }
}

/// Lower-case hex sha256 of a file, streamed (model files can be hundreds of MB).
///
/// # Errors
/// [`ManifestError::File`].
pub fn sha256_file(path: &Path) -> Result<String, ManifestError> {
    let read_err = |e: std::io::Error| ManifestError::File(FileError::io(path, &e));
    let (mut f, _) = files::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(read_err)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Checks `path` against `expected` (case-insensitive hex).
///
/// # Errors
/// [`ManifestError::Checksum`] on a mismatch, [`ManifestError::File`] if unreadable.
pub fn verify_sha256(path: &Path, expected: &str) -> Result<String, ManifestError> {
    let actual = sha256_file(path)?;
    if actual.eq_ignore_ascii_case(expected.trim()) {
        Ok(actual)
    } else {
        Err(ManifestError::Checksum {
            path: path.to_path_buf(),
            expected: expected.to_string(),
            actual,
        })
    }
}
