//! Preprocessing options of thermal and depth sources (SPEC.md §3, §4): the keys, their checks,
//! and the preprocessing parameters they give.

use serde::Deserialize;

use super::limits;
use super::validate::Scope;
use crate::preprocess::depth::{DepthCalibration, DepthNormalize, DepthParams, HoleFill};
use crate::preprocess::thermal::{Agc, RadiometricEncoding, ThermalParams};

/// How 16-bit thermal frames become 8-bit images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThermalAgc {
    /// Per-frame min/max stretch (the reference convention; any scene gets full contrast).
    MinMax,
    /// A fixed temperature window `agc_min_c..agc_max_c` (radiometric cameras: a cold scene
    /// stays dark).
    FixedCelsius,
}

/// How a radiometric camera encodes temperature in 16-bit pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Radiometric {
    /// Kelvin × 100 (FLIR Lepton TLinear).
    CentiKelvin,
    /// Kelvin × 64 (InfiRay P2 Pro / Topdon TC001 temperature plane).
    Infiray64,
}

/// Thermal preprocessing options (SPEC.md §4; UNVERIFIED parameters are configurable).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ThermalPreprocessConfig {
    /// 16-bit → 8-bit mapping.
    #[serde(default = "default_agc")]
    pub agc: ThermalAgc,
    /// Temperature mapped to black with `fixed_celsius`.
    #[serde(default)]
    pub agc_min_c: Option<f64>,
    /// Temperature mapped to white with `fixed_celsius`.
    #[serde(default)]
    pub agc_max_c: Option<f64>,
    /// Pixel encoding for `fixed_celsius`.
    #[serde(default = "default_radiometric")]
    pub radiometric: Radiometric,
    /// Optional `Normalize` mean after `/255` (none by default, as ImageBind PR #73).
    #[serde(default)]
    pub normalize_mean: Option<f32>,
    /// Optional `Normalize` std.
    #[serde(default)]
    pub normalize_std: Option<f32>,
}

impl Default for ThermalPreprocessConfig {
    fn default() -> Self {
        Self {
            agc: default_agc(),
            agc_min_c: None,
            agc_max_c: None,
            radiometric: default_radiometric(),
            normalize_mean: None,
            normalize_std: None,
        }
    }
}

pub(super) fn default_agc() -> ThermalAgc {
    ThermalAgc::MinMax
}
pub(super) fn default_radiometric() -> Radiometric {
    Radiometric::CentiKelvin
}

/// Depth standardisation after resizing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DepthNormalizeKind {
    /// `(x - normalize_mean) / normalize_std` (Omnivore's inference transform; the default).
    Standardize,
    /// No standardisation (Omnivore's training config; the reference `prenorm` tensor).
    None,
}

/// What happens to invalid (0) depth pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DepthHoles {
    /// As the spec: 0 → nearest possible depth → maximal disparity.
    Spec,
    /// Each hole takes the nearest valid pixel of its row.
    NearestInRow,
}

/// Depth preprocessing options (SPEC.md §3; the parameters are UNVERIFIED upstream, so all are
/// settable). Calibration left unset comes from the camera, or (for recordings) the reference
/// values: focal 518.857901 px, baseline 0.075 m, 1 mm depth units.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DepthPreprocessConfig {
    /// Horizontal focal length of the depth stream, in pixels.
    #[serde(default)]
    pub focal_px: Option<f64>,
    /// Stereo baseline, in metres.
    #[serde(default)]
    pub baseline_m: Option<f64>,
    /// Metres per raw depth unit.
    #[serde(default)]
    pub depth_units_m: Option<f64>,
    /// Depths are clipped to at least this before the disparity conversion.
    #[serde(default = "default_min_depth_m")]
    pub min_depth_m: f64,
    /// Depths are clipped to at most this before the disparity conversion.
    #[serde(default = "default_max_depth_m")]
    pub max_depth_m: f64,
    /// DepthNorm: disparities are clamped to this and divided by it.
    #[serde(default = "default_norm_max")]
    pub norm_max: f64,
    /// DepthNorm: disparities are clamped to at least this.
    #[serde(default = "default_norm_min")]
    pub norm_min: f64,
    /// Final standardisation.
    #[serde(default = "default_depth_normalize")]
    pub normalize: DepthNormalizeKind,
    /// Mean of `standardize`.
    #[serde(default = "default_depth_mean")]
    pub normalize_mean: f64,
    /// Std of `standardize`.
    #[serde(default = "default_depth_std")]
    pub normalize_std: f64,
    /// Treatment of invalid (0) pixels.
    #[serde(default = "default_holes")]
    pub holes: DepthHoles,
}

impl Default for DepthPreprocessConfig {
    fn default() -> Self {
        Self {
            focal_px: None,
            baseline_m: None,
            depth_units_m: None,
            min_depth_m: default_min_depth_m(),
            max_depth_m: default_max_depth_m(),
            norm_max: default_norm_max(),
            norm_min: default_norm_min(),
            normalize: default_depth_normalize(),
            normalize_mean: default_depth_mean(),
            normalize_std: default_depth_std(),
            holes: default_holes(),
        }
    }
}

pub(super) fn default_min_depth_m() -> f64 {
    0.01
}
pub(super) fn default_max_depth_m() -> f64 {
    50.0
}
pub(super) fn default_norm_max() -> f64 {
    75.0
}
pub(super) fn default_norm_min() -> f64 {
    0.01
}
pub(super) fn default_depth_normalize() -> DepthNormalizeKind {
    DepthNormalizeKind::Standardize
}
pub(super) fn default_depth_mean() -> f64 {
    0.0418
}
pub(super) fn default_depth_std() -> f64 {
    0.0295
}
pub(super) fn default_holes() -> DepthHoles {
    DepthHoles::Spec
}

impl ThermalPreprocessConfig {
    /// The thermal preprocessing parameters these options give.
    #[must_use]
    pub fn params(&self) -> ThermalParams {
        let agc = match (self.agc, self.agc_min_c, self.agc_max_c) {
            (ThermalAgc::FixedCelsius, Some(min_c), Some(max_c)) => Agc::FixedCelsius {
                min_c,
                max_c,
                encoding: match self.radiometric {
                    Radiometric::CentiKelvin => RadiometricEncoding::CentiKelvin,
                    Radiometric::Infiray64 => RadiometricEncoding::InfiRay64,
                },
            },
            _ => Agc::MinMax,
        };
        ThermalParams {
            agc,
            normalize: self.normalize_mean.zip(self.normalize_std),
            ..ThermalParams::default()
        }
    }

    /// The checks of the options (keys under `preprocess.`).
    pub fn validate(&self, s: &mut Scope<'_>) {
        let lo_ok = s.optional("preprocess.agc_min_c", self.agc_min_c, &limits::CELSIUS);
        let hi_ok = s.optional("preprocess.agc_max_c", self.agc_max_c, &limits::CELSIUS);
        match (self.agc, self.agc_min_c, self.agc_max_c) {
            (ThermalAgc::FixedCelsius, Some(lo), Some(hi)) if lo_ok && hi_ok => {
                s.ordered(("preprocess.agc_min_c", lo), ("preprocess.agc_max_c", hi));
            }
            (ThermalAgc::FixedCelsius, None, _) | (ThermalAgc::FixedCelsius, _, None) => {
                s.related(
                    "preprocess.agc",
                    &["preprocess.agc_min_c", "preprocess.agc_max_c"],
                    "fixed_celsius needs agc_min_c and agc_max_c",
                );
            }
            _ => {}
        }
        normalize(
            s,
            self.normalize_mean.map(f64::from),
            self.normalize_std.map(f64::from),
        );
    }
}

fn normalize(s: &mut Scope<'_>, mean: Option<f64>, std: Option<f64>) {
    s.optional("preprocess.normalize_mean", mean, &limits::NORMALIZE_MEAN);
    s.optional("preprocess.normalize_std", std, &limits::NORMALIZE_STD);
    if mean.is_some() != std.is_some() {
        s.related(
            "preprocess.normalize_mean",
            &["preprocess.normalize_std"],
            "normalize_mean and normalize_std go together",
        );
    }
}

impl DepthPreprocessConfig {
    /// The depth preprocessing parameters these options give; unset calibration takes `camera`
    /// (from the device) or else the reference values.
    #[must_use]
    pub fn params(&self, camera: Option<DepthCalibration>) -> DepthParams {
        let reference = DepthParams::default();
        DepthParams {
            focal_px: self
                .focal_px
                .or(camera.map(|k| k.focal_px))
                .unwrap_or(reference.focal_px),
            baseline_m: self
                .baseline_m
                .or(camera.map(|k| k.baseline_m))
                .unwrap_or(reference.baseline_m),
            depth_units_m: self
                .depth_units_m
                .or(camera.map(|k| k.depth_units_m))
                .unwrap_or(reference.depth_units_m),
            min_depth_m: self.min_depth_m,
            max_depth_m: self.max_depth_m,
            norm_max: self.norm_max,
            norm_min: self.norm_min,
            normalize: match self.normalize {
                DepthNormalizeKind::Standardize => DepthNormalize::Standardize {
                    mean: self.normalize_mean,
                    std: self.normalize_std,
                },
                DepthNormalizeKind::None => DepthNormalize::None,
            },
            holes: match self.holes {
                DepthHoles::Spec => HoleFill::Spec,
                DepthHoles::NearestInRow => HoleFill::NearestInRow,
            },
        }
    }

    /// The checks of the options (keys under `preprocess.`).
    pub fn validate(&self, s: &mut Scope<'_>) {
        s.optional("preprocess.focal_px", self.focal_px, &limits::FOCAL_PX);
        s.optional(
            "preprocess.baseline_m",
            self.baseline_m,
            &limits::BASELINE_M,
        );
        s.optional(
            "preprocess.depth_units_m",
            self.depth_units_m,
            &limits::DEPTH_UNITS_M,
        );
        for (lo, hi, limit) in [
            (
                ("preprocess.min_depth_m", self.min_depth_m),
                ("preprocess.max_depth_m", self.max_depth_m),
                &limits::DEPTH_M,
            ),
            (
                ("preprocess.norm_min", self.norm_min),
                ("preprocess.norm_max", self.norm_max),
                &limits::DISPARITY_NORM,
            ),
        ] {
            if s.check(lo.0, lo.1, limit) & s.check(hi.0, hi.1, limit) {
                s.ordered(lo, hi);
            }
        }
        normalize(s, Some(self.normalize_mean), Some(self.normalize_std));
    }
}
