//! Embedding a set of words with the model set's text encoder (`text.onnx` + CLIP vocabulary,
//! the manifest's `text` entry). ImageBind's text encoder is large (1.4 GB fp32), so by default
//! ([`Residency::Transient`]) it is loaded for one embedding and released afterwards;
//! [`Residency::Resident`] keeps it (and the tokenizer) loaded for the next change.
//!
//! Both files are checked against the manifest's sha256 when they are loaded, so a bank cached
//! under those hashes ([`super::cache`]) always comes from the files the manifest names.

use std::path::PathBuf;
use std::time::Instant;

use ndarray::{Array2, Axis};

use super::set::TextSet;
use super::ConceptBank;
use crate::config::ExecutionProviderKind;
use crate::inference::manifest::{self, Manifest, ManifestError};
use crate::inference::{OrtRuntime, TextEncoder, TextEncoderError};
use crate::preprocess::text::{ClipTokenizer, TextError};

/// Largest batch of prompts handed to the encoder at once.
pub const MAX_BATCH: usize = 1024;

/// The text encoder of a model set and its vocabulary, with their sha256 from the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextModel {
    /// `text.onnx`.
    pub onnx: PathBuf,
    /// Its sha256 (lower-case hex).
    pub onnx_sha256: String,
    /// `bpe_simple_vocab_16e6.txt.gz`.
    pub vocab: PathBuf,
    /// Its sha256 (lower-case hex).
    pub vocab_sha256: String,
}

impl TextModel {
    /// The manifest's text encoder, or `None` when the set has none (precomputed banks only).
    #[must_use]
    pub fn from_manifest(m: &Manifest) -> Option<Self> {
        m.text.as_ref().map(|t| Self {
            onnx: m.dir.join(&t.file),
            onnx_sha256: t.sha256.trim().to_ascii_lowercase(),
            vocab: m.dir.join(&t.tokenizer),
            vocab_sha256: t.tokenizer_sha256.trim().to_ascii_lowercase(),
        })
    }
}

/// Whether the encoder stays loaded between embeddings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Residency {
    /// Loaded for each embedding and released afterwards (the memory is given back).
    #[default]
    Transient,
    /// Loaded once and kept (no load time on a change; the memory stays in use).
    Resident,
}

/// How to run the text encoder.
#[derive(Debug, Clone)]
pub struct EmbedOptions {
    /// Execution providers, in order.
    pub providers: Vec<ExecutionProviderKind>,
    /// ONNX Runtime intra-op threads.
    pub intra_threads: usize,
    /// Prompts per encoder run (1..=[`MAX_BATCH`]).
    pub batch_size: usize,
    /// Loaded per embedding or kept.
    pub residency: Residency,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        Self {
            providers: vec![ExecutionProviderKind::Cpu],
            intra_threads: 1,
            batch_size: 32,
            residency: Residency::Transient,
        }
    }
}

/// Errors embedding a set.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The encoder or vocabulary differs from the manifest, or cannot be read.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The vocabulary is not CLIP's.
    #[error(transparent)]
    Vocabulary(#[from] TextError),
    /// The encoder cannot be loaded or run.
    #[error(transparent)]
    Encoder(#[from] TextEncoderError),
    /// The encoder's rows do not form a bank.
    #[error("{path}: {message}")]
    Bank {
        /// The encoder.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Rows embedded for a set: `[labels, dim]`, row i for label i.
#[derive(Debug, Clone)]
pub struct EmbeddedRows {
    /// The labels, in row order.
    pub labels: Vec<String>,
    /// For a label without aliases, the encoder's output for its prompt as is (what
    /// `edgebind embed text` writes); with aliases, the unit mean of its prompts' directions
    /// scaled to their mean norm.
    pub rows: Array2<f32>,
}

impl EmbeddedRows {
    /// The bank matched against.
    ///
    /// # Errors
    /// A message when a row is zero or not finite.
    pub fn bank(&self) -> Result<ConceptBank, String> {
        ConceptBank::new(self.labels.clone(), self.rows.clone())
    }
}

struct Loaded {
    encoder: TextEncoder,
    tokenizer: ClipTokenizer,
}

/// Embeds sets with one text model.
pub struct TextEmbedder {
    runtime: OrtRuntime,
    model: TextModel,
    options: EmbedOptions,
    loaded: Option<Loaded>,
}

impl std::fmt::Debug for TextEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextEmbedder")
            .field("model", &self.model)
            .field("options", &self.options)
            .field("loaded", &self.loaded.is_some())
            .finish_non_exhaustive()
    }
}

impl TextEmbedder {
    /// An embedder; nothing is loaded until the first [`TextEmbedder::embed`].
    #[must_use]
    pub fn new(runtime: OrtRuntime, model: TextModel, mut options: EmbedOptions) -> Self {
        options.batch_size = options.batch_size.clamp(1, MAX_BATCH);
        Self {
            runtime,
            model,
            options,
            loaded: None,
        }
    }

    /// The text model.
    #[must_use]
    pub fn model(&self) -> &TextModel {
        &self.model
    }

    /// Whether the encoder is loaded now.
    #[must_use]
    pub fn is_loaded(&self) -> bool {
        self.loaded.is_some()
    }

    /// Releases the encoder (a resident one too).
    pub fn release(&mut self) {
        self.loaded = None;
    }

    fn load(&mut self) -> Result<&mut Loaded, EmbedError> {
        if self.loaded.is_none() {
            let t0 = Instant::now();
            manifest::verify_sha256(&self.model.vocab, &self.model.vocab_sha256)?;
            manifest::verify_sha256(&self.model.onnx, &self.model.onnx_sha256)?;
            let tokenizer = ClipTokenizer::load(&self.model.vocab)?;
            let encoder = TextEncoder::load(
                &self.runtime,
                &self.model.onnx,
                &self.options.providers,
                self.options.intra_threads,
            )?;
            tracing::info!(
                model = %self.model.onnx.display(),
                provider = encoder.provider.as_str(),
                load_s = format!("{:.1}", t0.elapsed().as_secs_f64()),
                "text encoder loaded"
            );
            self.loaded = Some(Loaded { encoder, tokenizer });
        }
        // Just set when it was empty.
        self.loaded.as_mut().ok_or_else(|| EmbedError::Bank {
            path: self.model.onnx.clone(),
            message: "text encoder not loaded".into(),
        })
    }

    /// Embeds every prompt of `set` in batches, calling `progress(done, total)` after each
    /// batch; the encoder is released afterwards unless it is resident (also on an error).
    ///
    /// # Errors
    /// [`EmbedError`] naming the file.
    pub fn embed(
        &mut self,
        set: &TextSet,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<EmbeddedRows, EmbedError> {
        let result = self.embed_loaded(set, progress);
        if self.options.residency == Residency::Transient {
            self.release();
        }
        result
    }

    fn embed_loaded(
        &mut self,
        set: &TextSet,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<EmbeddedRows, EmbedError> {
        let prompts = set.prompts();
        let batch = self.options.batch_size;
        let path = self.model.onnx.clone();
        let loaded = self.load()?;
        let mut outputs: Vec<Array2<f32>> = Vec::with_capacity(prompts.len().div_ceil(batch));
        let mut done = 0;
        for chunk in prompts.chunks(batch) {
            let texts: Vec<&str> = chunk.iter().map(|(_, p)| p.as_str()).collect();
            let ids = loaded.tokenizer.tokenize(&texts);
            outputs.push(loaded.encoder.run(&ids)?);
            done += chunk.len();
            progress(done, prompts.len());
        }
        let views: Vec<_> = outputs.iter().map(|a| a.view()).collect();
        let all = ndarray::concatenate(Axis(0), &views).map_err(|e| EmbedError::Bank {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let rows =
            combine(set.labels().len(), &prompts, &all).map_err(|message| EmbedError::Bank {
                path: path.clone(),
                message,
            })?;
        Ok(EmbeddedRows {
            labels: set.labels().to_vec(),
            rows,
        })
    }
}

/// One row per label from the prompts' rows (`prompts[i].0` = label of row i of `all`): the row
/// as is for a single prompt, else the unit mean direction scaled to the mean norm.
fn combine(
    labels: usize,
    prompts: &[(usize, String)],
    all: &Array2<f32>,
) -> Result<Array2<f32>, String> {
    let dim = all.ncols();
    let mut count = vec![0usize; labels];
    for (label, _) in prompts {
        count[*label] += 1;
    }
    let mut rows = Array2::<f32>::zeros((labels, dim));
    let mut norm_sum = vec![0f32; labels];
    for ((label, prompt), out) in prompts.iter().zip(all.rows()) {
        if count[*label] == 1 {
            rows.row_mut(*label).assign(&out);
            continue;
        }
        let norm = out.iter().map(|v| v * v).sum::<f32>().sqrt();
        if !(norm.is_finite() && norm > f32::MIN_POSITIVE) {
            return Err(format!("the embedding of {prompt:?} is zero or not finite"));
        }
        norm_sum[*label] += norm;
        rows.row_mut(*label).scaled_add(1.0 / norm, &out);
    }
    for (i, mut row) in rows.rows_mut().into_iter().enumerate() {
        if count[i] > 1 {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            if norm <= f32::MIN_POSITIVE {
                return Err(format!("the aliases of label {i} cancel out"));
            }
            let mean_norm = norm_sum[i] / count[i] as f32;
            row.mapv_inplace(|v| v / norm * mean_norm);
        }
    }
    Ok(rows)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_label_alone_keeps_its_row_and_aliases_average_directions() {
        let prompts = vec![(0, "a".to_string()), (1, "b".into()), (1, "b2".into())];
        let all = ndarray::arr2(&[[3.0, 4.0], [2.0, 0.0], [0.0, 4.0]]);
        let rows = combine(2, &prompts, &all).unwrap();
        assert_eq!(rows.row(0).to_vec(), vec![3.0, 4.0]);
        let r = rows.row(1);
        // Directions (1,0) and (0,1) average to 45°, scaled to the mean norm 3.
        let want = 3.0 / 2f32.sqrt();
        assert!(
            (r[0] - want).abs() < 1e-6 && (r[1] - want).abs() < 1e-6,
            "{r}"
        );
        let zero = ndarray::arr2(&[[3.0, 4.0], [0.0, 0.0], [0.0, 4.0]]);
        assert!(combine(2, &prompts, &zero).unwrap_err().contains("\"b\""));
    }
}
