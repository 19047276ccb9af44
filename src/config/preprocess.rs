//! Preprocessing options of thermal and depth sources (SPEC.md §3, §4).

use serde::{Deserialize, Serialize};

/// How 16-bit thermal frames become 8-bit images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ThermalAgc {
    /// Per-frame min/max stretch (the reference convention; any scene gets full contrast).
    MinMax,
    /// A fixed temperature window `agc_min_c..agc_max_c` (radiometric cameras: a cold scene
    /// stays dark).
    FixedCelsius,
}

/// How a radiometric camera encodes temperature in 16-bit pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Radiometric {
    /// Kelvin × 100 (FLIR Lepton TLinear).
    CentiKelvin,
    /// Kelvin × 64 (InfiRay P2 Pro / Topdon TC001 temperature plane).
    Infiray64,
}

/// Thermal preprocessing options (SPEC.md §4; UNVERIFIED parameters are configurable).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DepthNormalizeKind {
    /// `(x - normalize_mean) / normalize_std` (Omnivore's inference transform; the default).
    Standardize,
    /// No standardisation (Omnivore's training config; the reference `prenorm` tensor).
    None,
}

/// What happens to invalid (0) depth pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
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
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
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
