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

/// The numeric precision of an encoder's weights, as its exporter wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// Full precision (the default): the parity reference is the model's own output.
    #[default]
    Fp32,
    /// Half-precision weights.
    Fp16,
    /// 8-bit integer weights (`tools/quantize_int8.py`): compared with fp32 reference outputs
    /// under its own threshold, `reference.min_cosine`.
    Int8,
}

impl Precision {
    /// Its name in the manifest.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Fp32 => "fp32",
            Self::Fp16 => "fp16",
            Self::Int8 => "int8",
        }
    }
}

/// How a reduced-precision encoder was made from its fp32 original (recorded by
/// `tools/quantize_int8.py`; shown, not acted on).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quantization {
    /// The tool and its settings.
    pub method: String,
    /// Weight scales per output channel (else one per tensor).
    pub per_channel: bool,
    /// sha256 of the fp32 encoder it was made from.
    pub source_sha256: String,
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
    /// Precision of its weights (default fp32).
    #[serde(default)]
    pub precision: Precision,
    /// How it was quantized, for a reduced-precision encoder.
    #[serde(default)]
    pub quantization: Option<Quantization>,
    /// A reference input and the output the model must give for it (the parity check).
    #[serde(default)]
    pub reference: Option<ReferenceEntry>,
    /// Weight files the ONNX graph refers to (ONNX external data, for models over protobuf's
    /// 2 GB limit such as ImageBind's vision encoder), next to the model file.
    #[serde(default)]
    pub external_data: Vec<ExternalData>,
}

/// One ONNX external-data file. ONNX Runtime opens it by the name written in the graph,
/// relative to the model's folder, so it must be a plain file name there.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalData {
    /// File name, in the model's folder.
    pub file: PathBuf,
    /// Lower-case hex sha256 of the file.
    pub sha256: String,
}

impl ModelEntry {
    /// What is wrong with the entry's parity threshold: out of range, or missing for a
    /// reduced-precision model (whose reference outputs are fp32: checking it silently with the
    /// fp32 threshold would refuse it, or hide how much it differs).
    #[must_use]
    pub fn tolerance_problem(&self) -> Option<String> {
        let reference = self.reference.as_ref()?;
        for (key, v) in [
            ("min_cosine", reference.min_cosine),
            ("measured_min_cosine", reference.measured_min_cosine),
        ] {
            if let Some(v) = v.filter(|v| !(-1.0..=1.0).contains(v)) {
                return Some(format!(
                    "reference.{key} = {v} is not a cosine (between -1 and 1)"
                ));
            }
        }
        if self.precision != Precision::Fp32 && reference.min_cosine.is_none() {
            return Some(format!(
                "a {} encoder needs reference.min_cosine, its accepted cosine to the fp32 \
                 reference outputs (runtime.parity.min_cosine is for fp32 encoders)",
                self.precision.as_str()
            ));
        }
        None
    }

    /// Verifies the model file and its external data against the manifest and returns the
    /// model's identity: the graph's sha256 alone, or, with external data, the sha256 of the
    /// graph's and every data file's checksums (so the TensorRT engine cache and the published
    /// `model_sha256` change when the weights do, not only when the graph does).
    ///
    /// # Errors
    /// [`ManifestError`] naming the file that is missing, unreadable, misplaced or changed.
    pub fn verify(&self, dir: &Path) -> Result<String, ManifestError> {
        let graph = verify_sha256(&dir.join(&self.file), &self.sha256)?;
        if self.external_data.is_empty() {
            return Ok(graph);
        }
        let mut identity = Sha256::new();
        identity.update(format!("graph {graph}\n"));
        for data in &self.external_data {
            if !is_plain_file_name(&data.file) {
                return Err(ManifestError::Invalid {
                    path: dir.join("manifest.json"),
                    message: format!(
                        "external_data file '{}' of {} must be a file name in the model's folder",
                        data.file.display(),
                        self.file.display()
                    ),
                });
            }
            let sha = verify_sha256(&dir.join(&data.file), &data.sha256)?;
            identity.update(format!("data {} {sha}\n", data.file.display()));
        }
        Ok(hex(&identity.finalize()))
    }
}

/// A single normal path component: no folder, no `..`, not absolute.
fn is_plain_file_name(p: &Path) -> bool {
    let mut parts = p.components();
    matches!(
        (parts.next(), parts.next()),
        (Some(std::path::Component::Normal(_)), None)
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
    /// The lowest cosine accepted for this model against this output, instead of
    /// `runtime.parity.min_cosine`: required for a reduced-precision model, whose reference is
    /// the fp32 model's output.
    #[serde(default)]
    pub min_cosine: Option<f64>,
    /// The lowest cosine the exporter measured for this model against this output on the CPU
    /// (informational: how much fidelity the precision costs).
    #[serde(default)]
    pub measured_min_cosine: Option<f64>,
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
        for (modality, entry) in &m.models {
            if let Some(message) = entry.tolerance_problem() {
                return Err(ManifestError::Invalid {
                    path,
                    message: format!("models.{modality}: {message}"),
                });
            }
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
    Ok(hex(&hasher.finalize()))
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn entry(external: &[(&str, &str)]) -> ModelEntry {
        ModelEntry {
            file: "m.onnx".into(),
            sha256: hex(&Sha256::digest(b"graph")),
            input: "imu".into(),
            output: "embedding".into(),
            precision: Precision::Fp32,
            quantization: None,
            reference: None,
            external_data: external
                .iter()
                .map(|(f, s)| ExternalData {
                    file: (*f).into(),
                    sha256: (*s).into(),
                })
                .collect(),
        }
    }

    fn folder() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("m.onnx"), b"graph").unwrap();
        std::fs::write(dir.path().join("m.onnx.data"), b"weights").unwrap();
        dir
    }

    #[test]
    fn without_external_data_the_identity_is_the_graph_checksum() {
        let dir = folder();
        let e = entry(&[]);
        assert_eq!(e.verify(dir.path()).unwrap(), e.sha256);
    }

    #[test]
    fn external_data_is_verified_and_changes_the_identity() {
        let dir = folder();
        let data_sha = hex(&Sha256::digest(b"weights"));
        let e = entry(&[("m.onnx.data", &data_sha)]);
        let with_data = e.verify(dir.path()).unwrap();
        assert_ne!(with_data, e.sha256);
        assert_eq!(with_data.len(), 64);

        // Same graph, other weights: a checksum error naming the data file.
        std::fs::write(dir.path().join("m.onnx.data"), b"other weights").unwrap();
        let err = e.verify(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("m.onnx.data") && err.contains("sha256"),
            "{err}"
        );

        std::fs::remove_file(dir.path().join("m.onnx.data")).unwrap();
        let err = e.verify(dir.path()).unwrap_err().to_string();
        assert!(err.contains("m.onnx.data"), "{err}");
    }

    fn with_tolerance(precision: &str, min_cosine: Option<f64>) -> ModelEntry {
        let mut reference = serde_json::json!({
            "input": "i.npy", "input_sha256": "00", "output": "o.npy", "output_sha256": "00"
        });
        if let Some(c) = min_cosine {
            reference["min_cosine"] = c.into();
        }
        serde_json::from_value(serde_json::json!({
            "file": "m.onnx", "sha256": "00", "input": "imu", "output": "embedding",
            "precision": precision, "reference": reference,
            "quantization": {"method": "m", "per_channel": true, "source_sha256": "00"}
        }))
        .unwrap()
    }

    #[test]
    fn a_reduced_precision_entry_needs_its_own_threshold_and_a_cosine_is_a_cosine() {
        assert_eq!(with_tolerance("fp32", None).tolerance_problem(), None);
        assert_eq!(with_tolerance("int8", Some(0.98)).tolerance_problem(), None);
        let e = with_tolerance("int8", None).tolerance_problem().unwrap();
        assert!(
            e.contains("int8") && e.contains("reference.min_cosine"),
            "{e}"
        );
        let e = with_tolerance("fp32", Some(1.5))
            .tolerance_problem()
            .unwrap();
        assert!(e.contains("reference.min_cosine = 1.5"), "{e}");
        let bad: Result<ModelEntry, _> = serde_json::from_value(serde_json::json!({
            "file": "m.onnx", "sha256": "00", "input": "imu", "output": "embedding",
            "precision": "int4"
        }));
        assert!(bad.unwrap_err().to_string().contains("int4"));
    }

    #[test]
    fn external_data_outside_the_model_folder_is_refused() {
        let dir = folder();
        for name in ["../m.onnx.data", "/etc/passwd", "sub/m.onnx.data", ""] {
            let err = entry(&[(name, "00")])
                .verify(dir.path())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("manifest.json") && err.contains("file name in the model's folder"),
                "{name}: {err}"
            );
        }
    }
}
