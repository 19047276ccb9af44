//! `skip_unchanged` of a source: reuse the last embedding while the model input stays within a
//! distance of the input that was last embedded (a still thermal scene, an empty room's depth),
//! instead of running the encoder. Off unless the source's table has the key.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

use super::limits::{self, Limit, OutOfRange};

/// How two preprocessed model inputs of the same shape are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputDistance {
    /// The largest absolute difference of any one element: no element may move further.
    MaxAbs,
    /// The root mean square of the element differences: the average change, which lets a few
    /// noisy pixels through.
    Rms,
}

impl InputDistance {
    /// Its name in the configuration.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::MaxAbs => "max_abs",
            Self::Rms => "rms",
        }
    }
}

/// A distance threshold within [`limits::UNCHANGED_THRESHOLD`] (never NaN).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct UnchangedThreshold(f64);

impl UnchangedThreshold {
    /// The accepted range.
    pub const LIMIT: &'static Limit<f64> = &limits::UNCHANGED_THRESHOLD;

    /// `v` when within the range.
    ///
    /// # Errors
    /// [`OutOfRange`] saying which bound `v` passes and why it is there.
    pub fn new(v: f64) -> Result<Self, OutOfRange> {
        Self::LIMIT.check(v).map(Self)
    }

    /// The threshold.
    #[must_use]
    pub const fn get(self) -> f64 {
        self.0
    }
}

impl<'de> Deserialize<'de> for UnchangedThreshold {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::new(f64::deserialize(d)?).map_err(D::Error::custom)
    }
}

/// `skip_unchanged = { distance = "max_abs", threshold = 0.02 }`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkipUnchanged {
    /// How the window's model input is compared with the last embedded one.
    pub distance: InputDistance,
    /// A window whose distance is at most this reuses the last embedding (in the model input's
    /// own units: the preprocessed tensor, not the raw samples).
    pub threshold: UnchangedThreshold,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_threshold_outside_its_range_or_not_a_number_is_refused() {
        let ok: SkipUnchanged = toml::from_str("distance = \"rms\"\nthreshold = 0.01").unwrap();
        assert_eq!(ok.distance, InputDistance::Rms);
        assert_eq!(ok.threshold.get(), 0.01);
        for bad in ["-0.5", "1000.0", "nan"] {
            let e = toml::from_str::<SkipUnchanged>(&format!(
                "distance = \"max_abs\"\nthreshold = {bad}"
            ))
            .unwrap_err();
            assert!(
                e.message().contains("allowed") || e.message().contains("not a number"),
                "{bad}: {e}"
            );
        }
        let e = toml::from_str::<SkipUnchanged>("distance = \"l2\"\nthreshold = 0.1").unwrap_err();
        assert!(e.message().contains("max_abs"), "{e}");
        let e = toml::from_str::<SkipUnchanged>("threshold = 0.1").unwrap_err();
        assert!(e.message().contains("distance"), "{e}");
    }
}
