//! ImageBind thermal preprocessing (SPEC.md §4, UNVERIFIED community convention of PR #73).
//!
//! 8-bit frame -> `Resize(224, BICUBIC)` on a Pillow "L" image (fixed-point, emulated exactly by
//! [`crate::preprocess::pil_resize`]) -> `CenterCrop(224)` -> `ToTensor()` (`k / 255` in f32) ->
//! optional `Normalize` -> `[1, 224, 224]` f32. 16-bit radiometric frames are first mapped to
//! 8 bit by an automatic gain control ([`Agc`]).
//!
//! Only the pixels that survive the centre crop are computed; the result is identical to
//! resizing the whole frame and cropping afterwards.

use ndarray::{Array2, Array3, ArrayView2, ArrayViewMut3};
use thiserror::Error;

use crate::preprocess::pil_resize::{PilResizeError, PilResizePlan, PilResizeScratch};

/// Offset between degrees Celsius and kelvin.
const ZERO_CELSIUS_K: f64 = 273.15;

/// How a 16-bit radiometric pixel encodes temperature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RadiometricEncoding {
    /// Centi-kelvin (FLIR Lepton TLinear): `K = raw / 100`.
    CentiKelvin,
    /// InfiRay P2 Pro / Topdon TC001: `K = raw / 64`.
    InfiRay64,
}

impl RadiometricEncoding {
    /// Temperature in °C of a raw pixel value.
    pub fn celsius(self, raw: u16) -> f64 {
        let kelvin = match self {
            RadiometricEncoding::CentiKelvin => f64::from(raw) / 100.0,
            RadiometricEncoding::InfiRay64 => f64::from(raw) / 64.0,
        };
        kelvin - ZERO_CELSIUS_K
    }
}

/// Automatic gain control mapping a 16-bit frame to 8 bit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Agc {
    /// Per-frame linear min/max stretch, the project convention of the reference data:
    /// `u8 = ((v - min) * 510 + (max - min)) // (2 * (max - min))`, all zeros if `max == min`.
    /// Stretches any scene to full contrast, so a cold scene looks like a hot one.
    MinMax,
    /// Fixed temperature window: `min_c..=max_c` maps linearly to `0..=255` (rounded half away
    /// from zero), colder pixels clamp to 0 and hotter ones to 255, so absolute temperature is
    /// preserved across frames.
    FixedCelsius {
        /// Temperature mapped to 0, °C.
        min_c: f64,
        /// Temperature mapped to 255, °C.
        max_c: f64,
        /// How raw pixel values encode temperature.
        encoding: RadiometricEncoding,
    },
}

/// Parameters of [`ThermalPreprocessor`]; the defaults reproduce the reference data.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThermalParams {
    /// 16-bit to 8-bit mapping used by [`ThermalPreprocessor::tensor_u16`].
    pub agc: Agc,
    /// Optional `Normalize(mean, std)` after `/255`; `None` per PR #73 (better LLVIP accuracy).
    pub normalize: Option<(f32, f32)>,
    /// Output side length in pixels (short side resize target and centre crop size).
    pub size_px: usize,
}

impl Default for ThermalParams {
    fn default() -> Self {
        Self {
            agc: Agc::MinMax,
            normalize: None,
            size_px: 224,
        }
    }
}

/// Errors of thermal preprocessing.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ThermalError {
    /// The input frame has no pixels.
    #[error("thermal frame is empty ({width_px}x{height_px} px)")]
    EmptyFrame {
        /// Frame width.
        width_px: usize,
        /// Frame height.
        height_px: usize,
    },
    /// `size_px` is zero.
    #[error("thermal.size_px must be > 0")]
    ZeroSize,
    /// The normalisation constants are unusable.
    #[error("thermal.normalize: mean {mean} and std {std} must be finite and std non-zero")]
    InvalidNormalize {
        /// Configured mean.
        mean: f32,
        /// Configured standard deviation.
        std: f32,
    },
    /// The fixed AGC temperature window is unusable.
    #[error("thermal.agc: min_c {min_c} and max_c {max_c} must be finite with min_c < max_c")]
    InvalidAgcRange {
        /// Configured lower temperature, °C.
        min_c: f64,
        /// Configured upper temperature, °C.
        max_c: f64,
    },
    /// The output view has the wrong shape.
    #[error("output tensor has shape {actual:?}, expected {expected:?}")]
    OutputShape {
        /// Required shape `[1, size, size]`.
        expected: [usize; 3],
        /// Shape of the given view.
        actual: Vec<usize>,
    },
    /// The resize could not be planned or run (sizes out of range).
    #[error("resizing a {width_px}x{height_px} px thermal frame: {source}")]
    Resize {
        /// Frame width.
        width_px: usize,
        /// Frame height.
        height_px: usize,
        /// Underlying resize error.
        source: PilResizeError,
    },
}

/// ImageBind thermal preprocessor; keeps the resize plan of the last frame size and all scratch
/// buffers, so steady-state frames allocate only the returned tensor.
#[derive(Debug, Clone)]
pub struct ThermalPreprocessor {
    params: ThermalParams,
    /// `u8 -> f32` output value (`k / 255`, then optional Normalize), exactly as torch computes it.
    value_lut: [f32; 256],
    /// Raw u16 -> u8 table for [`Agc::FixedCelsius`].
    fixed_agc_lut: Option<Vec<u8>>,
    plan: Option<PilResizePlan>,
    scratch: PilResizeScratch,
    /// Contiguous 8-bit copy of the input (AGC output or a non-contiguous view).
    frame_u8: Vec<u8>,
    /// Cropped 8-bit resize output.
    cropped_u8: Vec<u8>,
}

impl ThermalPreprocessor {
    /// Builds the preprocessor and its lookup tables.
    ///
    /// # Errors
    /// [`ThermalError::ZeroSize`], [`ThermalError::InvalidNormalize`] or
    /// [`ThermalError::InvalidAgcRange`] for unusable parameters.
    pub fn new(params: ThermalParams) -> Result<Self, ThermalError> {
        if params.size_px == 0 {
            return Err(ThermalError::ZeroSize);
        }
        let mut value_lut = [0f32; 256];
        for (k, v) in value_lut.iter_mut().enumerate() {
            // ToTensor: uint8 -> float32, then div(255) in float32.
            *v = k as f32 / 255.0;
        }
        if let Some((mean, std)) = params.normalize {
            if !mean.is_finite() || !std.is_finite() || std == 0.0 {
                return Err(ThermalError::InvalidNormalize { mean, std });
            }
            // torchvision Normalize: sub_(mean).div_(std) in float32.
            value_lut.iter_mut().for_each(|v| *v = (*v - mean) / std);
        }
        let fixed_agc_lut = match params.agc {
            Agc::MinMax => None,
            Agc::FixedCelsius {
                min_c,
                max_c,
                encoding,
            } => {
                if !min_c.is_finite() || !max_c.is_finite() || min_c >= max_c {
                    return Err(ThermalError::InvalidAgcRange { min_c, max_c });
                }
                let scale = 255.0 / (max_c - min_c);
                let lut = (0..=u16::MAX)
                    .map(|raw| {
                        let v = ((encoding.celsius(raw) - min_c) * scale).round();
                        v.clamp(0.0, 255.0) as u8
                    })
                    .collect();
                Some(lut)
            }
        };
        Ok(Self {
            params,
            value_lut,
            fixed_agc_lut,
            plan: None,
            scratch: PilResizeScratch::default(),
            frame_u8: Vec::new(),
            cropped_u8: Vec::new(),
        })
    }

    /// The parameters this preprocessor was built with.
    pub fn params(&self) -> &ThermalParams {
        &self.params
    }

    /// Preprocesses an 8-bit frame (`[height, width]`) into a `[1, size, size]` tensor.
    ///
    /// # Errors
    /// [`ThermalError::EmptyFrame`] for a frame without pixels, [`ThermalError::Resize`] for a
    /// frame too large to plan.
    pub fn tensor_u8(&mut self, img: ArrayView2<u8>) -> Result<Array3<f32>, ThermalError> {
        self.new_tensor(|pre, out| pre.tensor_u8_into(img, out))
    }

    /// Like [`ThermalPreprocessor::tensor_u8`], writing into a caller-owned `[1, size, size]`
    /// view so no allocation happens.
    ///
    /// # Errors
    /// As [`ThermalPreprocessor::tensor_u8`], plus [`ThermalError::OutputShape`].
    pub fn tensor_u8_into(
        &mut self,
        img: ArrayView2<u8>,
        out: ArrayViewMut3<f32>,
    ) -> Result<(), ThermalError> {
        let (width_px, height_px) = self.checked_dims(&img, &out)?;
        match img.as_slice() {
            Some(src) => self.resize_to_tensor(src, width_px, height_px, out),
            None => self.resize_via_frame(width_px, height_px, out, |_, frame| {
                frame.clear();
                frame.extend(img.iter().copied());
            }),
        }
    }

    /// Preprocesses a 16-bit radiometric frame: [`Agc`] to 8 bit, then the 8-bit path.
    ///
    /// # Errors
    /// As [`ThermalPreprocessor::tensor_u8`].
    pub fn tensor_u16(&mut self, img: ArrayView2<u16>) -> Result<Array3<f32>, ThermalError> {
        self.new_tensor(|pre, out| pre.tensor_u16_into(img, out))
    }

    /// Like [`ThermalPreprocessor::tensor_u16`], writing into a caller-owned view.
    ///
    /// # Errors
    /// As [`ThermalPreprocessor::tensor_u8_into`].
    pub fn tensor_u16_into(
        &mut self,
        img: ArrayView2<u16>,
        out: ArrayViewMut3<f32>,
    ) -> Result<(), ThermalError> {
        let (width_px, height_px) = self.checked_dims(&img, &out)?;
        self.resize_via_frame(width_px, height_px, out, |pre, frame| {
            // The AGC writes every byte: only a size change touches the buffer here.
            frame.resize(width_px * height_px, 0);
            pre.agc_into(img, frame);
        })
    }

    /// A new `[1, size, size]` tensor filled by `into`.
    fn new_tensor(
        &mut self,
        into: impl FnOnce(&mut Self, ArrayViewMut3<f32>) -> Result<(), ThermalError>,
    ) -> Result<Array3<f32>, ThermalError> {
        let size = self.params.size_px;
        let mut out = Array3::zeros((1, size, size));
        into(self, out.view_mut())?;
        Ok(out)
    }

    /// `(width, height)` of a frame with pixels, for an output of the right shape.
    fn checked_dims<T>(
        &self,
        img: &ArrayView2<T>,
        out: &ArrayViewMut3<f32>,
    ) -> Result<(usize, usize), ThermalError> {
        self.check_output(out)?;
        let (height_px, width_px) = img.dim();
        check_frame(width_px, height_px)?;
        Ok((width_px, height_px))
    }

    /// Writes the 8-bit frame into the reused contiguous buffer with `fill`, then resizes it.
    fn resize_via_frame(
        &mut self,
        width_px: usize,
        height_px: usize,
        out: ArrayViewMut3<f32>,
        fill: impl FnOnce(&Self, &mut Vec<u8>),
    ) -> Result<(), ThermalError> {
        let mut frame = std::mem::take(&mut self.frame_u8);
        fill(self, &mut frame);
        let result = self.resize_to_tensor(&frame, width_px, height_px, out);
        self.frame_u8 = frame;
        result
    }

    /// Applies the configured [`Agc`] to a 16-bit frame (exposed for tests and previews).
    ///
    /// # Errors
    /// [`ThermalError::EmptyFrame`] for a frame without pixels.
    pub fn agc(&self, img: ArrayView2<u16>) -> Result<Array2<u8>, ThermalError> {
        let (height_px, width_px) = img.dim();
        check_frame(width_px, height_px)?;
        let mut out = vec![0u8; width_px * height_px];
        self.agc_into(img, &mut out);
        Array2::from_shape_vec((height_px, width_px), out).map_err(|_| ThermalError::EmptyFrame {
            width_px,
            height_px,
        })
    }

    /// AGC of `img` into `dst` (row-major, same number of pixels).
    fn agc_into(&self, img: ArrayView2<u16>, dst: &mut [u8]) {
        if let Some(lut) = &self.fixed_agc_lut {
            for (d, &v) in dst.iter_mut().zip(img.iter()) {
                *d = lut.get(usize::from(v)).copied().unwrap_or(0);
            }
            return;
        }
        let (lo, hi) = img
            .iter()
            .fold((u16::MAX, u16::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        if hi <= lo {
            dst.fill(0);
            return;
        }
        // The convention is floor(n / (2r)) with n = 510 d + r, d = v - lo, r = hi - lo, i.e.
        // floor(x + 1/2) with x = 255 d / r: round half up of x. In f64, `d * (255 / r)` is
        // within 2^-43 of x, while x is a multiple of 1/r away from every rounding boundary
        // (x = m + 1/2 exactly when n / (2r) = m + 1); adding 2^-30 moves the exact halves up
        // and nothing across a boundary. Adding 2^52 then rounds to the nearest integer, which
        // lands in the low mantissa bits: no division and no float-to-int conversion, so it
        // vectorises. Checked exhaustively against the integer formula for every r (tests).
        let scale = 255.0 / f64::from(hi - lo);
        let agc_one = |v: u16| -> u8 { agc_round(f64::from(v.wrapping_sub(lo)) * scale) };
        match img.as_slice() {
            Some(src) => {
                for (d, &v) in dst.iter_mut().zip(src) {
                    *d = agc_one(v);
                }
            }
            None => {
                for (d, &v) in dst.iter_mut().zip(img.iter()) {
                    *d = agc_one(v);
                }
            }
        }
    }

    fn check_output(&self, out: &ArrayViewMut3<f32>) -> Result<(), ThermalError> {
        let size = self.params.size_px;
        if out.shape() != [1, size, size] {
            return Err(ThermalError::OutputShape {
                expected: [1, size, size],
                actual: out.shape().to_vec(),
            });
        }
        Ok(())
    }

    /// Resize + crop of a contiguous 8-bit frame, then the value mapping into `out`.
    fn resize_to_tensor(
        &mut self,
        src: &[u8],
        width_px: usize,
        height_px: usize,
        mut out: ArrayViewMut3<f32>,
    ) -> Result<(), ThermalError> {
        let size = self.params.size_px;
        let resize_err = |source| ThermalError::Resize {
            width_px,
            height_px,
            source,
        };
        let plan_matches = self
            .plan
            .as_ref()
            .is_some_and(|p| p.input_size_px() == (width_px, height_px));
        if !plan_matches {
            let plan = PilResizePlan::short_side_center_crop(width_px, height_px, size)
                .map_err(resize_err)?;
            self.plan = Some(plan);
        }
        let Some(plan) = &self.plan else {
            return Ok(());
        };
        self.cropped_u8.resize(size * size, 0);
        plan.run(src, &mut self.scratch, &mut self.cropped_u8)
            .map_err(resize_err)?;
        // The same f32 operations as torch (`div(255)`, then `sub(mean).div(std)`), computed
        // rather than looked up: a vectorised divide beats one table load per pixel.
        let (mean, std) = self.params.normalize.unwrap_or((0.0, 1.0));
        let normalize = self.params.normalize.is_some();
        match (out.as_slice_mut(), normalize) {
            (Some(dst), false) => {
                for (d, &k) in dst.iter_mut().zip(&self.cropped_u8) {
                    *d = f32::from(k) / 255.0;
                }
            }
            (Some(dst), true) => {
                for (d, &k) in dst.iter_mut().zip(&self.cropped_u8) {
                    *d = (f32::from(k) / 255.0 - mean) / std;
                }
            }
            (None, _) => {
                for (d, &k) in out.iter_mut().zip(&self.cropped_u8) {
                    *d = self.value_lut[usize::from(k)];
                }
            }
        }
        Ok(())
    }
}

/// `round_half_up(x)` for an `x = 255 d / r` computed as `d * (255 / r)` (see `agc_into`),
/// as the low byte of `x + 2^-30 + 2^52`.
#[inline(always)]
fn agc_round(x: f64) -> u8 {
    /// Below the distance 1/(2r) >= 2^-17 of x from a rounding boundary, above the error 2^-43.
    const NUDGE: f64 = 1.0 / (1u64 << 30) as f64;
    /// 2^52: adding it leaves an integer in the mantissa's low bits.
    const ROUND: f64 = (1u64 << 52) as f64;
    ((x + NUDGE) + ROUND).to_bits() as u8
}

fn check_frame(width_px: usize, height_px: usize) -> Result<(), ThermalError> {
    if width_px == 0 || height_px == 0 {
        return Err(ThermalError::EmptyFrame {
            width_px,
            height_px,
        });
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn fixed_celsius_agc_clamps_and_is_linear() {
        let p = ThermalPreprocessor::new(ThermalParams {
            agc: Agc::FixedCelsius {
                min_c: 0.0,
                max_c: 51.0,
                encoding: RadiometricEncoding::CentiKelvin,
            },
            ..ThermalParams::default()
        })
        .unwrap();
        // 0 C, 10 C (5 steps per degree), 51 C, -10 C (clamped), 100 C (clamped).
        let raw = ndarray::arr2(&[[27315u16, 28315, 32415, 26315, 37315]]);
        let u8s = p.agc(raw.view()).unwrap();
        assert_eq!(u8s.as_slice().unwrap(), &[0, 50, 255, 0, 255]);
    }

    #[test]
    fn min_max_agc_rounding_equals_the_integer_formula_at_every_boundary() {
        // The float shortcut can only go wrong next to a rounding boundary: for every range r
        // check both sides of each boundary (and the ends) against the integer convention.
        // (Once run over every d in 0..=r for every r as well: identical.)
        for r in 1u32..=u32::from(u16::MAX) {
            let scale = 255.0 / f64::from(r);
            let check = |d: u32| {
                let expected = (d * 510 + r) / (2 * r);
                assert_eq!(
                    u32::from(agc_round(f64::from(d) * scale)),
                    expected,
                    "d {d} r {r}"
                );
            };
            check(0);
            check(r);
            for m in 0..255u32 {
                // Smallest d with 255 d / r >= m + 1/2.
                let d = ((2 * m + 1) * r).div_ceil(510);
                for d in d.saturating_sub(1)..=(d + 1).min(r) {
                    check(d);
                }
            }
        }
    }

    #[test]
    fn infiray_encoding_is_raw_over_64_kelvin() {
        let c = RadiometricEncoding::InfiRay64.celsius(64 * 300);
        assert!((c - 26.85).abs() < 1e-9);
    }
}
