//! One score per window per trigger, and the example sets `example` triggers score against.

use std::collections::BTreeMap;

use super::config::{ExampleMatch, KindSpec, NoveltyParams, TriggerSpec};
use super::event::Unscored;
use super::novelty::novelty_score;
use super::stuck::{StuckDetector, StuckReason};
use super::vector::{dot, unit};

/// Most embeddings in one example set.
pub const MAX_EXAMPLES: usize = 256;
/// Most example sets per engine.
pub const MAX_EXAMPLE_SETS: usize = 32;

/// Reference embeddings captured from live windows, with their normalised mean.
#[derive(Debug, Clone, PartialEq)]
pub struct ExampleSet {
    dim: usize,
    /// Unit rows, row-major.
    rows: Vec<f32>,
    centroid: Vec<f32>,
}

impl ExampleSet {
    /// A set from embeddings of width `dim` (each normalised). `None` when there are none, more
    /// than [`MAX_EXAMPLES`], one is of another width, zero or not finite, or they cancel out.
    #[must_use]
    pub fn new<'a>(dim: usize, embeddings: impl IntoIterator<Item = &'a [f32]>) -> Option<Self> {
        let mut rows = Vec::new();
        let mut sum = vec![0.0f32; dim];
        let mut count = 0usize;
        for e in embeddings {
            count += 1;
            if e.len() != dim || count > MAX_EXAMPLES {
                return None;
            }
            let u = unit(e)?;
            sum.iter_mut().zip(&u).for_each(|(s, v)| *s += v);
            rows.extend_from_slice(&u);
        }
        let centroid = unit(&sum)?;
        Some(Self {
            dim,
            rows,
            centroid,
        })
    }

    /// Embeddings in the set.
    #[must_use]
    pub fn len(&self) -> usize {
        self.rows.len() / self.dim.max(1)
    }

    /// Whether the set is empty (never, for a constructed set).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Width of each embedding.
    #[must_use]
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The unit embeddings.
    pub fn rows(&self) -> impl Iterator<Item = &[f32]> {
        self.rows.chunks_exact(self.dim.max(1))
    }

    /// The normalised mean.
    #[must_use]
    pub fn centroid(&self) -> &[f32] {
        &self.centroid
    }

    fn score(&self, unit: &[f32], matching: ExampleMatch) -> f32 {
        let best = match matching {
            ExampleMatch::Centroid => dot(unit, &self.centroid),
            ExampleMatch::Nearest => self
                .rows()
                .map(|r| dot(unit, r))
                .fold(f32::NEG_INFINITY, f32::max),
        };
        best.clamp(-1.0, 1.0)
    }
}

/// What one window offers the scorers.
#[derive(Debug)]
pub struct ScoreInput<'a> {
    /// The unit embedding, when usable.
    pub unit: Option<&'a [f32]>,
    /// The input statistics, when known.
    pub input: Option<&'a super::vector::InputStats>,
    /// Cosines to the novelty memory, newest first (computed before this window joins it).
    pub novelty_similarities: &'a [f32],
    /// The engine's example sets.
    pub examples: &'a BTreeMap<String, ExampleSet>,
}

/// A score, or why there is none, plus a `stuck` trigger's reason.
pub type Scored = (Result<f32, Unscored>, Option<StuckReason>);

/// A trigger's scorer.
#[derive(Debug, Clone)]
pub enum Scorer {
    /// Unit label embeddings, row-major.
    Concept {
        /// Label embeddings.
        labels: Vec<f32>,
        /// Their width.
        dim: usize,
    },
    /// An example set by name.
    Example {
        /// Set name.
        set: String,
        /// Centroid or nearest.
        matching: ExampleMatch,
    },
    /// Novelty against the shared memory.
    Novelty(NoveltyParams),
    /// Health.
    Stuck(StuckDetector),
}

impl Scorer {
    /// The scorer of `spec`; `labels` are the unit embeddings of a concept trigger's labels.
    #[must_use]
    pub fn new(spec: &TriggerSpec, labels: Vec<f32>, dim: usize) -> Self {
        match &spec.kind {
            KindSpec::Concept { .. } => Self::Concept { labels, dim },
            KindSpec::Example { set, matching } => Self::Example {
                set: set.clone(),
                matching: *matching,
            },
            KindSpec::Novelty(p) => Self::Novelty(*p),
            KindSpec::Stuck(p) => Self::Stuck(StuckDetector::new(*p)),
        }
    }

    /// Scores one window.
    pub fn score(&mut self, w: &ScoreInput<'_>) -> Scored {
        if let Self::Stuck(detector) = self {
            let reason = detector.observe(w.unit, w.input);
            return (Ok(if reason.is_some() { 1.0 } else { 0.0 }), reason);
        }
        let Some(unit) = w.unit else {
            return (Err(Unscored::BadEmbedding), None);
        };
        let score = match self {
            Self::Concept { labels, dim } => Ok(labels
                .chunks_exact((*dim).max(1))
                .map(|l| dot(unit, l).clamp(-1.0, 1.0))
                .fold(f32::NEG_INFINITY, f32::max)),
            Self::Example { set, matching } => w
                .examples
                .get(set.as_str())
                .map(|s| s.score(unit, *matching))
                .ok_or(Unscored::NoExamples),
            Self::Novelty(p) => novelty_score(p, w.novelty_similarities).ok_or(Unscored::WarmingUp),
            Self::Stuck(_) => Err(Unscored::BadEmbedding),
        };
        (score, None)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn centroid_and_nearest_differ_on_a_spread_set() {
        let set = ExampleSet::new(2, [&[1.0f32, 0.0][..], &[0.0, 1.0][..]]).unwrap();
        let x = [1.0f32, 0.0];
        assert!((set.score(&x, ExampleMatch::Nearest) - 1.0).abs() < 1e-6);
        assert!(
            (set.score(&x, ExampleMatch::Centroid) - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6
        );
    }

    #[test]
    fn bad_example_sets_are_refused() {
        assert!(ExampleSet::new(2, std::iter::empty()).is_none());
        assert!(ExampleSet::new(2, [&[1.0f32, f32::NAN][..]]).is_none());
        assert!(ExampleSet::new(2, [&[1.0f32, 0.0, 0.0][..]]).is_none());
        let many = vec![[1.0f32, 0.0]; MAX_EXAMPLES + 1];
        assert!(ExampleSet::new(2, many.iter().map(|r| &r[..])).is_none());
        assert!(ExampleSet::new(2, many[..MAX_EXAMPLES].iter().map(|r| &r[..])).is_some());
    }
}
