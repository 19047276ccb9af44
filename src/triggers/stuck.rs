//! The health detector of a `stuck` trigger: a sensor is stuck when its model output is not
//! finite, when its input is flat or saturated, or when its embeddings or inputs repeat for
//! `stuck_windows` windows in a row. Instant checks (NaN, flat, saturated) trip on the window
//! itself; the trigger's `min_windows` debounces them like any other score.

use serde::{Deserialize, Serialize};

use super::config::StuckParams;
use super::vector::{all_finite, dot, InputStats};

/// Why a window counts as stuck (the first that applies, in this order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StuckReason {
    /// The embedding has NaN or infinite values (or is zero, or of the wrong width).
    NonFiniteEmbedding,
    /// The model input has NaN or infinite values.
    NonFiniteInput,
    /// The model input's variance is at or below `min_variance`.
    FlatInput,
    /// Too many input values sit at the window's extremes.
    SaturatedInput,
    /// The embedding repeated for `stuck_windows` windows.
    RepeatedEmbedding,
    /// The input statistics repeated for `stuck_windows` windows.
    RepeatedInput,
}

impl StuckReason {
    /// The name used in payloads.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NonFiniteEmbedding => "non_finite_embedding",
            Self::NonFiniteInput => "non_finite_input",
            Self::FlatInput => "flat_input",
            Self::SaturatedInput => "saturated_input",
            Self::RepeatedEmbedding => "repeated_embedding",
            Self::RepeatedInput => "repeated_input",
        }
    }

    /// The persisted code.
    pub(crate) fn code(self) -> u8 {
        match self {
            Self::NonFiniteEmbedding => 1,
            Self::NonFiniteInput => 2,
            Self::FlatInput => 3,
            Self::SaturatedInput => 4,
            Self::RepeatedEmbedding => 5,
            Self::RepeatedInput => 6,
        }
    }

    /// The reason of a persisted code.
    pub(crate) fn from_code(code: u8) -> Option<Self> {
        [
            Self::NonFiniteEmbedding,
            Self::NonFiniteInput,
            Self::FlatInput,
            Self::SaturatedInput,
            Self::RepeatedEmbedding,
            Self::RepeatedInput,
        ]
        .into_iter()
        .find(|r| r.code() == code)
    }
}

/// Per-trigger memory of the previous window.
#[derive(Debug, Clone)]
pub struct StuckDetector {
    params: StuckParams,
    previous_unit: Option<Vec<f32>>,
    previous_input: Option<InputStats>,
    /// Windows in the current run of near-identical embeddings (1 = no repeat yet).
    embedding_run: u32,
    /// Windows in the current run of identical input statistics.
    input_run: u32,
}

impl StuckDetector {
    /// A detector that has seen nothing.
    #[must_use]
    pub fn new(params: StuckParams) -> Self {
        Self {
            params,
            previous_unit: None,
            previous_input: None,
            embedding_run: 0,
            input_run: 0,
        }
    }

    /// Looks at one window: `unit` is its unit embedding when finite and of the right width.
    pub fn observe(
        &mut self,
        unit: Option<&[f32]>,
        input: Option<&InputStats>,
    ) -> Option<StuckReason> {
        self.embedding_run = match (unit, &self.previous_unit) {
            (Some(u), Some(prev)) if dot(u, prev) >= self.params.identical_cosine => {
                self.embedding_run.saturating_add(1)
            }
            (Some(_), _) => 1,
            (None, _) => 0,
        };
        match (unit, &mut self.previous_unit) {
            (Some(u), Some(prev)) if prev.len() == u.len() => prev.copy_from_slice(u),
            (Some(u), prev) => *prev = Some(u.to_vec()),
            (None, prev) => *prev = None,
        }
        self.input_run = match (input, &self.previous_input) {
            (Some(i), Some(prev)) if i.same_as(prev) => self.input_run.saturating_add(1),
            (Some(_), _) => 1,
            (None, _) => 0,
        };
        self.previous_input = input.copied();
        self.reason(unit.is_none(), input)
    }

    fn reason(&self, bad_embedding: bool, input: Option<&InputStats>) -> Option<StuckReason> {
        let p = &self.params;
        let finite = input.map(|i| i.count > i.non_finite);
        if bad_embedding {
            Some(StuckReason::NonFiniteEmbedding)
        } else if input.is_some_and(|i| i.non_finite > 0) {
            Some(StuckReason::NonFiniteInput)
        } else if finite == Some(true) && input.is_some_and(|i| i.variance <= p.min_variance) {
            Some(StuckReason::FlatInput)
        } else if finite == Some(true)
            && input.is_some_and(|i| i.saturated_fraction >= p.max_saturated_fraction)
        {
            Some(StuckReason::SaturatedInput)
        } else if self.embedding_run >= p.stuck_windows {
            Some(StuckReason::RepeatedEmbedding)
        } else if self.input_run >= p.stuck_windows {
            Some(StuckReason::RepeatedInput)
        } else {
            None
        }
    }
}

/// Whether an embedding is usable: finite, of width `dim`.
#[must_use]
pub fn usable(embedding: &[f32], dim: usize) -> bool {
    embedding.len() == dim && all_finite(embedding)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> StuckParams {
        StuckParams {
            stuck_windows: 3,
            identical_cosine: 0.9999,
            min_variance: 1e-12,
            max_saturated_fraction: 0.5,
        }
    }

    fn noisy(seed: u32) -> InputStats {
        let v: Vec<f32> = (0..100)
            .map(|i| (i as f32 * 0.37 + seed as f32).sin())
            .collect();
        InputStats::from_values(&v)
    }

    #[test]
    fn repeats_trip_only_after_stuck_windows() {
        let mut d = StuckDetector::new(params());
        let e = [0.6f32, 0.8];
        let got: Vec<_> = (0..4)
            .map(|i| d.observe(Some(&e), Some(&noisy(i))))
            .collect();
        assert_eq!(
            got,
            [
                None,
                None,
                Some(StuckReason::RepeatedEmbedding),
                Some(StuckReason::RepeatedEmbedding)
            ]
        );
        assert_eq!(d.observe(Some(&[0.8, 0.6]), Some(&noisy(9))), None);
    }

    #[test]
    fn repeated_inputs_trip_even_when_embeddings_move() {
        let mut d = StuckDetector::new(params());
        let got: Vec<_> = (0..3)
            .map(|i| d.observe(Some(&[(i as f32).cos(), (i as f32).sin()]), Some(&noisy(1))))
            .collect();
        assert_eq!(got, [None, None, Some(StuckReason::RepeatedInput)]);
    }

    #[test]
    fn instant_checks_trip_on_the_window_itself() {
        let mut d = StuckDetector::new(params());
        let e = Some(&[1.0f32, 0.0][..]);
        assert_eq!(
            d.observe(None, Some(&noisy(1))),
            Some(StuckReason::NonFiniteEmbedding)
        );
        let flat = InputStats::from_values(&[2.0f32; 50]);
        assert_eq!(d.observe(e, Some(&flat)), Some(StuckReason::FlatInput));
        let clipped: Vec<f32> = (0..100)
            .map(|i| if i % 3 == 0 { 0.5 } else { 1.0 })
            .collect();
        let clipped = InputStats::from_values(&clipped);
        assert_eq!(
            d.observe(Some(&[0.0, 1.0]), Some(&clipped)),
            Some(StuckReason::SaturatedInput)
        );
        let nan = InputStats::from_values(&[1.0f32, f32::NAN, 3.0]);
        assert_eq!(
            d.observe(Some(&[0.6, 0.8]), Some(&nan)),
            Some(StuckReason::NonFiniteInput)
        );
    }

    #[test]
    fn codes_round_trip() {
        for code in 0..=7 {
            assert!(StuckReason::from_code(code).is_none_or(|r| r.code() == code));
        }
        assert_eq!(
            StuckReason::from_code(5),
            Some(StuckReason::RepeatedEmbedding)
        );
    }
}
