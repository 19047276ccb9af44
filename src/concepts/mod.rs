//! The concept bank (labels + text embeddings) and nearest-concept matching: cosine similarity
//! between the L2-normalised window embedding and each L2-normalised concept, top-k above a
//! threshold. The per-modality scales of ImageBind's outputs are temperatures, not information.
//!
//! The bank in use is a [`SharedConcepts`] handle: the inference workers read it per window, and
//! SIGHUP swaps in a bank reloaded from the model set ([`reload`]) without stopping anything.
//!
//! Concepts as words: [`set`] (named sets of labels with a prompt template and aliases, or a
//! precomputed bank), [`embed`] (the model set's text encoder, loaded per embedding or kept),
//! [`cache`] (embedded banks on disk, keyed by encoder, vocabulary and words), [`control`]
//! (the `set`/`add`/`remove` commands, pure) and [`state`] (the active set persisted).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use ndarray::Array2;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::files::{self, npy, FileError};

pub mod cache;
pub mod control;
pub mod embed;
pub mod live;
pub mod reload;
pub mod set;
pub mod state;

/// Errors loading a concept bank.
#[derive(Debug, thiserror::Error)]
pub enum ConceptError {
    /// A file cannot be opened or read, is too large, or is not a float32 `.npy`.
    #[error(transparent)]
    File(#[from] FileError),
    /// The files do not form a valid bank.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// One matched concept.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Match {
    /// The concept's label.
    pub label: String,
    /// Cosine similarity in [-1, 1].
    pub score: f32,
}

/// Labels with unit-norm embeddings.
#[derive(Debug, Clone)]
pub struct ConceptBank {
    labels: Vec<String>,
    unit: Array2<f32>,
    sha256: String,
}

/// sha256 of a bank's content: each label and a newline, then the embeddings as given (shape as
/// two little-endian u64, then the f32 values little-endian, row-major). Names the bank in logs
/// and metrics, whatever the files' names or `.npy` header layout.
fn content_sha256(labels: &[String], embeddings: &Array2<f32>) -> String {
    let mut h = Sha256::new();
    for l in labels {
        h.update(l.as_bytes());
        h.update(b"\n");
    }
    h.update((embeddings.nrows() as u64).to_le_bytes());
    h.update((embeddings.ncols() as u64).to_le_bytes());
    for v in embeddings.iter() {
        h.update(v.to_le_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl ConceptBank {
    /// A bank from labels and (not necessarily normalised) embeddings `[K, dim]`.
    ///
    /// # Errors
    /// A message when there is no concept, counts differ, a row is zero or not finite, or a
    /// label is empty.
    pub fn new(labels: Vec<String>, embeddings: Array2<f32>) -> Result<Self, String> {
        if labels.is_empty() && embeddings.nrows() == 0 {
            // Every window would publish no label at all.
            return Err("the bank holds no concepts".into());
        }
        if labels.len() != embeddings.nrows() {
            return Err(format!(
                "{} labels but {} embeddings",
                labels.len(),
                embeddings.nrows()
            ));
        }
        if let Some(i) = labels.iter().position(|l| l.trim().is_empty()) {
            return Err(format!("label {i} is empty"));
        }
        let sha256 = content_sha256(&labels, &embeddings);
        let mut unit = embeddings;
        for (i, mut row) in unit.rows_mut().into_iter().enumerate() {
            if row.iter().any(|v| !v.is_finite()) {
                return Err(format!("embedding of {:?} is not finite", labels[i]));
            }
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            if norm <= f32::MIN_POSITIVE {
                return Err(format!("embedding of {:?} is zero", labels[i]));
            }
            row.mapv_inplace(|v| v / norm);
        }
        Ok(Self {
            labels,
            unit,
            sha256,
        })
    }

    /// Loads `labels` (UTF-8, one per line; blank trailing lines ignored) and `embeddings`
    /// (float32 `[K, dim]` `.npy`) and checks that `dim` matches.
    ///
    /// # Errors
    /// [`ConceptError`] naming the file.
    pub fn load(labels: &Path, embeddings: &Path, dim: usize) -> Result<Self, ConceptError> {
        let text = files::read_to_string(labels, files::MAX_TEXT_BYTES, "concept labels")?;
        let (mut file, len) = files::open(embeddings)?;
        Self::parse(&text, &mut file, len, embeddings, dim)
    }

    /// [`ConceptBank::load`] from the labels' text and a reader over the embeddings file of
    /// `embeddings_len` bytes (`embeddings` names it in messages).
    ///
    /// # Errors
    /// As [`ConceptBank::load`].
    pub fn parse(
        labels: &str,
        embeddings_file: &mut impl std::io::Read,
        embeddings_len: u64,
        embeddings: &Path,
        dim: usize,
    ) -> Result<Self, ConceptError> {
        let mut labels_vec: Vec<String> = labels
            .lines()
            .map(|l| l.trim_end_matches('\r').to_string())
            .collect();
        while labels_vec.last().is_some_and(|l| l.trim().is_empty()) {
            labels_vec.pop();
        }
        let array: Array2<f32> = npy::read_from(
            embeddings_file,
            embeddings_len,
            embeddings,
            files::MAX_CONCEPT_EMBEDDINGS_BYTES,
            "a concept bank",
        )?;
        if array.ncols() != dim && array.nrows() > 0 {
            return Err(ConceptError::Invalid {
                path: embeddings.to_path_buf(),
                message: format!(
                    "embeddings have width {}, the models produce {dim}",
                    array.ncols()
                ),
            });
        }
        Self::new(labels_vec, array).map_err(|message| ConceptError::Invalid {
            path: embeddings.to_path_buf(),
            message,
        })
    }

    /// Number of concepts.
    #[must_use]
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the bank is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Embedding width.
    #[must_use]
    pub fn dim(&self) -> usize {
        self.unit.ncols()
    }

    /// sha256 of the bank's labels and embeddings (lower-case hex).
    #[must_use]
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The labels, in bank order.
    #[must_use]
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The unit text embedding of `label` (for `concept` triggers), if the bank has it.
    #[must_use]
    pub fn unit_embedding(&self, label: &str) -> Option<Vec<f32>> {
        let i = self.labels.iter().position(|l| l == label)?;
        Some(self.unit.row(i).to_vec())
    }

    /// The `k` concepts most similar to `embedding` with a cosine of at least `min_score`, best
    /// first. An embedding of the wrong width, zero or not finite matches nothing.
    #[must_use]
    pub fn top_k(&self, embedding: &[f32], k: usize, min_score: f32) -> Vec<Match> {
        if embedding.len() != self.dim() || k == 0 {
            return Vec::new();
        }
        let norm = embedding.iter().map(|v| v * v).sum::<f32>().sqrt();
        if !(norm.is_finite() && norm > f32::MIN_POSITIVE) {
            return Vec::new();
        }
        let mut best: Vec<(f32, usize)> = Vec::with_capacity(k + 1);
        for (i, row) in self.unit.rows().into_iter().enumerate() {
            let dot: f32 = match row.as_slice() {
                Some(r) => r.iter().zip(embedding).map(|(a, b)| a * b).sum(),
                None => row.iter().zip(embedding).map(|(a, b)| a * b).sum(),
            };
            // Rounding can push the cosine of nearly parallel vectors just past 1.
            let score = (dot / norm).clamp(-1.0, 1.0);
            if score < min_score {
                continue;
            }
            if best.len() == k && best.last().is_some_and(|(s, _)| score <= *s) {
                continue;
            }
            let at = best.partition_point(|(s, _)| *s >= score);
            best.insert(at, (score, i));
            best.truncate(k);
        }
        best.into_iter()
            .map(|(score, i)| Match {
                label: self.labels[i].clone(),
                score,
            })
            .collect()
    }
}

/// The concept bank in use, shared by every inference worker and replaced as a whole on reload.
/// A worker takes the current bank once per window (a cheap `Arc` clone under a read lock held
/// for nanoseconds), so a window is always matched against one complete bank.
#[derive(Debug, Clone)]
pub struct SharedConcepts {
    current: Arc<RwLock<Arc<ConceptBank>>>,
}

impl SharedConcepts {
    /// A handle holding `bank`.
    #[must_use]
    pub fn new(bank: ConceptBank) -> Self {
        Self {
            current: Arc::new(RwLock::new(Arc::new(bank))),
        }
    }

    /// The bank in use now.
    #[must_use]
    pub fn current(&self) -> Arc<ConceptBank> {
        // A poisoned lock only means a writer panicked mid-swap of an `Arc`: the value is whole.
        match self.current.read() {
            Ok(g) => Arc::clone(&g),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }

    /// Puts `bank` in use for every window matched from now on; returns the one it replaces.
    pub fn replace(&self, bank: ConceptBank) -> Arc<ConceptBank> {
        let new = Arc::new(bank);
        let mut g = match self.current.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        std::mem::replace(&mut *g, new)
    }

    /// [`ConceptBank::top_k`] against the bank in use.
    #[must_use]
    pub fn top_k(&self, embedding: &[f32], k: usize, min_score: f32) -> Vec<Match> {
        self.current().top_k(embedding, k, min_score)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bank() -> ConceptBank {
        let e = ndarray::arr2(&[[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [1.0, 1.0, 0.0]]);
        ConceptBank::new(vec!["x".into(), "y".into(), "xy".into()], e).unwrap()
    }

    #[test]
    fn nearest_concepts_are_ranked_by_cosine() {
        let m = bank().top_k(&[3.0, 0.1, 0.0], 2, -1.0);
        assert_eq!(m[0].label, "x");
        assert_eq!(m[1].label, "xy");
        assert!(m[0].score > m[1].score);
    }

    #[test]
    fn threshold_filters_weak_matches() {
        let m = bank().top_k(&[0.0, 0.0, 1.0], 3, 0.1);
        assert!(m.is_empty());
    }

    #[test]
    fn bad_embeddings_match_nothing() {
        assert!(bank().top_k(&[0.0, 0.0], 3, -1.0).is_empty());
        assert!(bank().top_k(&[0.0, 0.0, 0.0], 3, -1.0).is_empty());
        assert!(bank().top_k(&[f32::NAN, 0.0, 0.0], 3, -1.0).is_empty());
    }

    #[test]
    fn mismatched_zero_or_empty_banks_are_rejected() {
        let e = ndarray::arr2(&[[1.0, 0.0]]);
        assert!(ConceptBank::new(vec![], e.clone()).is_err());
        assert_eq!(
            ConceptBank::new(vec![], Array2::zeros((0, 2))).unwrap_err(),
            "the bank holds no concepts"
        );
        let z = ndarray::arr2(&[[0.0, 0.0]]);
        assert!(ConceptBank::new(vec!["z".into()], z).is_err());
    }

    #[test]
    fn a_replaced_bank_answers_the_next_match_and_the_old_one_is_handed_back() {
        let shared = SharedConcepts::new(bank());
        let old_sha = shared.current().sha256().to_string();
        assert_eq!(shared.top_k(&[1.0, 0.0, 0.0], 1, -1.0)[0].label, "x");
        let e = ndarray::arr2(&[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]);
        let new = ConceptBank::new(vec!["east".into(), "up".into()], e).unwrap();
        let new_sha = new.sha256().to_string();
        let worker_view = shared.clone();
        let old = shared.replace(new);
        assert_eq!(old.sha256(), old_sha);
        assert_ne!(old_sha, new_sha);
        assert_eq!(
            worker_view.top_k(&[1.0, 0.0, 0.0], 1, -1.0)[0].label,
            "east"
        );
        assert_eq!(worker_view.current().len(), 2);
    }

    #[test]
    fn the_bank_sha_changes_with_a_label_or_a_value() {
        let e = ndarray::arr2(&[[1.0, 0.0], [0.0, 1.0]]);
        let a = ConceptBank::new(vec!["a".into(), "b".into()], e.clone()).unwrap();
        let same = ConceptBank::new(vec!["a".into(), "b".into()], e.clone()).unwrap();
        let relabelled = ConceptBank::new(vec!["a".into(), "c".into()], e.clone()).unwrap();
        let mut e2 = e;
        e2[[1, 1]] = 2.0;
        let rescaled = ConceptBank::new(vec!["a".into(), "b".into()], e2).unwrap();
        assert_eq!(a.sha256(), same.sha256());
        assert_eq!(a.sha256().len(), 64);
        assert_ne!(a.sha256(), relabelled.sha256());
        assert_ne!(a.sha256(), rescaled.sha256());
    }

    proptest! {
        #[test]
        fn top_k_equals_a_full_sort(
            rows in proptest::collection::vec(proptest::collection::vec(-1.0f32..1.0, 4), 1..30),
            q in proptest::collection::vec(-1.0f32..1.0, 4),
            k in 1usize..8,
        ) {
            let rows: Vec<Vec<f32>> = rows.into_iter().filter(|r| r.iter().map(|v| v*v).sum::<f32>() > 1e-3).collect();
            prop_assume!(!rows.is_empty());
            prop_assume!(q.iter().map(|v| v*v).sum::<f32>() > 1e-3);
            let labels: Vec<String> = (0..rows.len()).map(|i| i.to_string()).collect();
            let flat: Vec<f32> = rows.iter().flatten().copied().collect();
            let bank = ConceptBank::new(labels, Array2::from_shape_vec((rows.len(), 4), flat).unwrap()).unwrap();
            let got = bank.top_k(&q, k, -2.0);
            let qn = q.iter().map(|v| v*v).sum::<f32>().sqrt();
            let mut all: Vec<f32> = rows.iter().map(|r| {
                let rn = r.iter().map(|v| v*v).sum::<f32>().sqrt();
                r.iter().zip(&q).map(|(a,b)| a/rn*b).sum::<f32>() / qn
            }).collect();
            all.sort_by(|a, b| b.total_cmp(a));
            prop_assert_eq!(got.len(), k.min(rows.len()));
            for (g, want) in got.iter().zip(&all) {
                prop_assert!((g.score - want).abs() < 1e-4);
            }
        }
    }
}
