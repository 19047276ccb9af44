//! ImageBind depth preprocessing: a raw `u16` depth frame -> the `[1, 224, 224]` float32 encoder
//! input (SPEC.md section 3; ImageBind ships no depth loader, so the parameters are UNVERIFIED
//! and all configurable).
//!
//! Pipeline, with the float32/float64 arithmetic of the reference (numpy 2 + torch):
//! 1. `depth_m = f32(raw) / f32(1 / depth_units_m)` in f32. For the reference 1 mm units the
//!    divisor is exactly 1000, i.e. the reference's `float32(raw) / 1000`; other units (e.g.
//!    RealSense 100 um, SUN RGB-D `mm << 3` = 0.125 mm) divide by the f32 of their reciprocal,
//!    which is exact whenever that reciprocal is an integer below 2^24.
//! 2. `depth_m = clip(depth_m, f32(min_depth_m), f32(max_depth_m))`: invalid 0 readings become
//!    `min_depth_m`, i.e. the largest disparity (unless [`HoleFill::NearestInRow`] fills them).
//! 3. `disparity = f32(baseline_m * focal_px) / depth_m` (product in f64, rounded once to f32).
//! 4. DepthNorm: `clamp(disparity, f32(norm_min), f32(norm_max)) / f32(norm_max)` in f32.
//! 5. torchvision `Resize(224, BICUBIC, antialias=True)` + `CenterCrop(224)` via
//!    [`AaBicubicPlan`] (only the cropped pixels are computed).
//! 6. `Normalize`: `(x - f32(mean)) / f32(std)` in f32, or nothing ([`DepthNormalize::None`], the
//!    Omnivore training-config alternative).
//!
//! Steps 1-4 depend only on the raw `u16` value, so they are tabulated once (65536 entries) in
//! [`DepthPreprocessor::new`]: bit-identical to computing them per pixel and much cheaper than
//! two divisions per pixel.

use std::ops::Range;

use ndarray::{Array2, Array3, ArrayView2};

use super::resize::{AaBicubicPlan, ResizeError, ResizeScratch, ROW_GROUP};

/// Side of the square depth encoder input, in pixels.
pub const DEPTH_INPUT_SIZE_PX: usize = 224;

/// Number of distinct raw `u16` depth values (size of the conversion table).
const RAW_VALUES: usize = 1 << 16;

/// Errors of depth preprocessing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DepthError {
    /// A parameter is out of range.
    #[error("depth parameter {field} = {value}: {reason}")]
    InvalidParam {
        /// Name of the offending [`DepthParams`] field (or combination).
        field: &'static str,
        /// Its value.
        value: f64,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The frame has no pixels.
    #[error("depth frame is {height_px}x{width_px}, need at least 1x1")]
    EmptyFrame {
        /// Frame height, in pixels.
        height_px: usize,
        /// Frame width, in pixels.
        width_px: usize,
    },
    /// The output buffer of [`DepthPreprocessor::tensor_into`] has the wrong length.
    #[error("depth output buffer has {actual} values, expected {expected} (1x224x224)")]
    OutputSize {
        /// Required number of values.
        expected: usize,
        /// Provided number of values.
        actual: usize,
    },
    /// The resize geometry could not be planned (absurd frame shapes).
    #[error("depth resize: {0}")]
    Resize(#[from] ResizeError),
    /// Building the output array failed.
    #[error("depth output array: {0}")]
    Shape(#[from] ndarray::ShapeError),
}

/// Final standardisation of the resized, cropped disparity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DepthNormalize {
    /// `(x - mean) / std` in f32, torchvision `Normalize` (Omnivore inference transform,
    /// `predict.py` L76-79: mean 0.0418, std 0.0295). This is the default.
    Standardize {
        /// Subtracted mean (normalised disparity units).
        mean: f64,
        /// Divisor; must be positive.
        std: f64,
    },
    /// No standardisation (Omnivore training config: mean 0, std 1); the "prenorm" reference.
    None,
}

impl Default for DepthNormalize {
    fn default() -> Self {
        DepthNormalize::Standardize {
            mean: 0.0418,
            std: 0.0295,
        }
    }
}

/// What happens to invalid (raw 0) depth pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HoleFill {
    /// The literal pipeline of the spec: 0 -> clipped to `min_depth_m` -> maximal disparity
    /// ("nearest possible object").
    #[default]
    Spec,
    /// Each 0 pixel takes the raw value of the nearest non-zero pixel in the same row (the left
    /// one on a tie). A row that is entirely 0 is left as is and behaves like [`HoleFill::Spec`].
    /// Cheap stand-in for the in-painting of SUN RGB-D (training data had no holes).
    NearestInRow,
}

/// The calibration a depth camera reports with its frames: what the disparity conversion needs
/// of the camera (a configuration's values override it, `DepthPreprocessConfig::params`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DepthCalibration {
    /// Focal length of the depth stream, pixels.
    pub focal_px: f64,
    /// Stereo baseline, metres.
    pub baseline_m: f64,
    /// Metres per depth unit.
    pub depth_units_m: f64,
}

/// Depth preprocessing parameters; `Default` gives the reference values of SPEC.md section 3.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DepthParams {
    /// Horizontal focal length of the depth camera, in pixels (reference: 518.857901, NYU/Kinect).
    pub focal_px: f64,
    /// Stereo baseline, in metres (reference: 0.075, Kinect).
    pub baseline_m: f64,
    /// Metres per raw depth unit (reference: 0.001, plain millimetres).
    pub depth_units_m: f64,
    /// Depths are clipped to at least this before the disparity conversion, in metres (0.01).
    pub min_depth_m: f64,
    /// Depths are clipped to at most this before the disparity conversion, in metres (50.0).
    pub max_depth_m: f64,
    /// DepthNorm `max_depth`: disparities are clamped to this and divided by it (75.0).
    pub norm_max: f64,
    /// DepthNorm `min_depth`: disparities are clamped to at least this (0.01).
    pub norm_min: f64,
    /// Final standardisation.
    pub normalize: DepthNormalize,
    /// Treatment of invalid (0) pixels.
    pub holes: HoleFill,
}

impl Default for DepthParams {
    fn default() -> Self {
        Self {
            focal_px: 518.857901,
            baseline_m: 0.075,
            depth_units_m: 0.001,
            min_depth_m: 0.01,
            max_depth_m: 50.0,
            norm_max: 75.0,
            norm_min: 0.01,
            normalize: DepthNormalize::default(),
            holes: HoleFill::default(),
        }
    }
}

/// The f32 constants the reference arithmetic actually uses.
#[derive(Debug, Clone, Copy)]
struct Consts {
    units_div: f32,
    min_depth: f32,
    max_depth: f32,
    baseline_focal: f32,
    norm_min: f32,
    norm_max: f32,
    /// `(mean, std)` of the final standardisation, if any.
    standardize: Option<(f32, f32)>,
}

impl Consts {
    fn new(p: &DepthParams) -> Result<Self, DepthError> {
        positive("focal_px", p.focal_px)?;
        positive("baseline_m", p.baseline_m)?;
        positive("depth_units_m", p.depth_units_m)?;
        let units_div = positive("1 / depth_units_m", 1.0 / p.depth_units_m)?;
        let min_depth = positive("min_depth_m", p.min_depth_m)?;
        let max_depth = positive("max_depth_m", p.max_depth_m)?;
        not_below(
            "max_depth_m",
            p.max_depth_m,
            min_depth,
            "must be >= min_depth_m",
        )?;
        let baseline_focal = positive("baseline_m * focal_px", p.baseline_m * p.focal_px)?;
        let largest = baseline_focal / min_depth;
        if !largest.is_finite() {
            return Err(DepthError::InvalidParam {
                field: "baseline_m * focal_px / min_depth_m",
                value: p.baseline_m * p.focal_px / p.min_depth_m,
                reason: "largest disparity overflows f32",
            });
        }
        let norm_min = positive("norm_min", p.norm_min)?;
        let norm_max = positive("norm_max", p.norm_max)?;
        not_below("norm_max", p.norm_max, norm_min, "must be >= norm_min")?;
        let standardize = match p.normalize {
            DepthNormalize::None => None,
            DepthNormalize::Standardize { mean, std } => {
                if !mean.is_finite() || !(mean as f32).is_finite() {
                    return Err(DepthError::InvalidParam {
                        field: "normalize.mean",
                        value: mean,
                        reason: "must be finite",
                    });
                }
                Some((mean as f32, positive("normalize.std", std)?))
            }
        };
        Ok(Self {
            units_div,
            min_depth,
            max_depth,
            baseline_focal,
            norm_min,
            norm_max,
            standardize,
        })
    }

    /// Steps 1-3: raw value -> disparity, in the reference's f32 arithmetic.
    fn disparity(&self, raw: u16) -> f32 {
        let depth_m = (f32::from(raw) / self.units_div)
            .max(self.min_depth)
            .min(self.max_depth);
        self.baseline_focal / depth_m
    }

    /// Step 4: DepthNorm (clamp before scaling).
    fn depth_norm(&self, disparity: f32) -> f32 {
        disparity.max(self.norm_min).min(self.norm_max) / self.norm_max
    }
}

/// `value` of `field` as a positive finite f32.
fn positive(field: &'static str, value: f64) -> Result<f32, DepthError> {
    if !value.is_finite() || value <= 0.0 {
        return Err(DepthError::InvalidParam {
            field,
            value,
            reason: "must be finite and > 0",
        });
    }
    let v = value as f32;
    if !v.is_finite() || v <= 0.0 {
        return Err(DepthError::InvalidParam {
            field,
            value,
            reason: "must be representable as a positive finite f32",
        });
    }
    Ok(v)
}

/// An error naming `field` unless its f32 value is at least `floor`.
fn not_below(
    field: &'static str,
    value: f64,
    floor: f32,
    reason: &'static str,
) -> Result<(), DepthError> {
    if (value as f32) < floor {
        return Err(DepthError::InvalidParam {
            field,
            value,
            reason,
        });
    }
    Ok(())
}

/// Converts raw depth frames into ImageBind depth encoder inputs. Holds the conversion table, the
/// resize plan of the last frame size and the scratch buffers, so steady-state calls for one
/// camera do not allocate (except the returned array of [`Self::tensor`]).
#[derive(Debug, Clone)]
pub struct DepthPreprocessor {
    params: DepthParams,
    consts: Consts,
    /// Raw value -> DepthNorm'd disparity (steps 1-4).
    table: Box<[f32; RAW_VALUES]>,
    plan: Option<AaBicubicPlan>,
    scratch: ResizeScratch,
    /// One hole-filled raw row (for `disparity`).
    filled_row: Vec<u16>,
    /// `ROW_GROUP` hole-filled raw rows (for `tensor`).
    filled_rows: Vec<Vec<u16>>,
}

impl DepthPreprocessor {
    /// Validate `params` and tabulate the per-pixel conversion.
    ///
    /// # Errors
    /// [`DepthError::InvalidParam`] naming the field when a parameter is non-finite, not
    /// positive, or inconsistent (`max_depth_m < min_depth_m`, `norm_max < norm_min`, a largest
    /// disparity that overflows f32).
    pub fn new(params: DepthParams) -> Result<Self, DepthError> {
        let consts = Consts::new(&params)?;
        let mut table = Box::new([0.0f32; RAW_VALUES]);
        for (raw, v) in (0..=u16::MAX).zip(table.iter_mut()) {
            *v = consts.depth_norm(consts.disparity(raw));
        }
        Ok(Self {
            params,
            consts,
            table,
            plan: None,
            scratch: ResizeScratch::default(),
            filled_row: Vec::new(),
            filled_rows: Vec::new(),
        })
    }

    /// The parameters this preprocessor was built with.
    pub fn params(&self) -> &DepthParams {
        &self.params
    }

    /// The resize plan of the most recent frame size, if a frame was processed (for inspection).
    pub fn resize_plan(&self) -> Option<&AaBicubicPlan> {
        self.plan.as_ref()
    }

    /// Disparity (steps 1-3, after hole filling, before DepthNorm) of a whole frame
    /// `[height, width]`; the intermediate exposed for tests and diagnostics.
    ///
    /// # Errors
    /// [`DepthError::EmptyFrame`] for a frame without pixels.
    pub fn disparity(&mut self, raw: ArrayView2<'_, u16>) -> Result<Array2<f32>, DepthError> {
        let (h, w) = check_frame(&raw)?;
        let mut out = Array2::<f32>::zeros((h, w));
        for (src, mut dst) in raw.rows().into_iter().zip(out.rows_mut()) {
            fill_holes(self.params.holes, src, &mut self.filled_row);
            for (d, &v) in dst.iter_mut().zip(&self.filled_row) {
                *d = self.consts.disparity(v);
            }
        }
        Ok(out)
    }

    /// The encoder input `[1, 224, 224]` for one raw depth frame `[height, width]` (any size
    /// >= 1x1, C or non-contiguous layout).
    ///
    /// # Errors
    /// [`DepthError::EmptyFrame`] for a frame without pixels; [`DepthError::Resize`] if the
    /// resize cannot be planned (aspect ratios beyond 2^53 / 224).
    pub fn tensor(&mut self, raw: ArrayView2<'_, u16>) -> Result<Array3<f32>, DepthError> {
        let mut out = vec![0.0f32; DEPTH_INPUT_SIZE_PX * DEPTH_INPUT_SIZE_PX];
        self.tensor_into(raw, &mut out)?;
        Ok(Array3::from_shape_vec(
            (1, DEPTH_INPUT_SIZE_PX, DEPTH_INPUT_SIZE_PX),
            out,
        )?)
    }

    /// Like [`Self::tensor`], writing the `1 x 224 x 224` values (row-major) into `out`, e.g. a
    /// slot of a batch buffer; does not allocate once the frame size is known.
    ///
    /// # Errors
    /// As [`Self::tensor`], plus [`DepthError::OutputSize`] if `out.len() != 224 * 224`.
    pub fn tensor_into(
        &mut self,
        raw: ArrayView2<'_, u16>,
        out: &mut [f32],
    ) -> Result<(), DepthError> {
        let expected = DEPTH_INPUT_SIZE_PX * DEPTH_INPUT_SIZE_PX;
        if out.len() != expected {
            return Err(DepthError::OutputSize {
                expected,
                actual: out.len(),
            });
        }
        let (h, w) = check_frame(&raw)?;
        let plan = match self.plan.take() {
            Some(plan) if plan.source_shape() == (h, w) => plan,
            _ => AaBicubicPlan::short_side_center_crop(h, w, DEPTH_INPUT_SIZE_PX)?,
        };
        let rows = RowGroups {
            raw,
            cols: plan.source_cols(),
            table: &self.table,
            holes: self.params.holes,
        };
        let filled = &mut self.filled_rows;
        let fill = |first: usize, n: usize, group: &mut [[f32; ROW_GROUP]]| {
            rows.fill(first, n, filled, group);
        };
        let standardize = self.consts.standardize;
        let finish = |row: &mut [f32]| {
            if let Some((mean, std)) = standardize {
                for v in row.iter_mut() {
                    *v = (*v - mean) / std;
                }
            }
        };
        let result = plan.run_row_groups(fill, finish, &mut self.scratch, out);
        self.plan = Some(plan);
        result?;
        Ok(())
    }
}

/// The source rows of one frame as the resize pulls them: hole-filled, restricted to the
/// needed columns and converted through the table (steps 1-4).
struct RowGroups<'a> {
    raw: ArrayView2<'a, u16>,
    cols: Range<usize>,
    table: &'a [f32; RAW_VALUES],
    holes: HoleFill,
}

impl RowGroups<'_> {
    /// Rows `first..first + n` into the lanes of `group`; `filled` holds the rows that needed
    /// hole filling or were not contiguous.
    #[inline]
    fn fill(
        &self,
        first: usize,
        n: usize,
        filled: &mut Vec<Vec<u16>>,
        group: &mut [[f32; ROW_GROUP]],
    ) {
        let (raw, holes) = (&self.raw, self.holes);
        // One slice per lane (the needed columns of each row); lanes past `n` repeat the last
        // row so that every lane holds real pixels.
        let row_of = |lane: usize| raw.row(first + lane.min(n.saturating_sub(1)));
        // Fast path: a contiguous row that needs no hole filling is read in place.
        let in_place = |lane: usize| {
            row_of(lane).to_slice().filter(|s| match holes {
                HoleFill::Spec => true,
                // Branch-free scan (vectorises); rows with holes take the slow path.
                HoleFill::NearestInRow => !s.iter().fold(false, |zero, &v| zero | (v == 0)),
            })
        };
        filled.resize_with(ROW_GROUP, Vec::new);
        let mut whole: [Option<&[u16]>; ROW_GROUP] = [None; ROW_GROUP];
        for (lane, (slot, buf)) in whole.iter_mut().zip(filled.iter_mut()).enumerate() {
            *slot = in_place(lane);
            if slot.is_none() {
                fill_holes(holes, row_of(lane), buf);
            }
        }
        let mut direct: [&[u16]; ROW_GROUP] = [&[]; ROW_GROUP];
        for ((slot, whole), buf) in direct.iter_mut().zip(whole).zip(filled.iter()) {
            let row = whole.unwrap_or(buf.as_slice());
            *slot = row.get(self.cols.clone()).unwrap_or(&[]);
        }
        interleave_through_table(direct, self.table, group);
    }
}

/// `group[c][l] = table[rows[l][c]]`.
#[inline]
fn interleave_through_table(
    rows: [&[u16]; ROW_GROUP],
    table: &[f32; RAW_VALUES],
    group: &mut [[f32; ROW_GROUP]],
) {
    // Eight lanes spelled out (a different ROW_GROUP fails to compile here).
    let [r0, r1, r2, r3, r4, r5, r6, r7] = rows;
    let columns = r0
        .iter()
        .zip(r1)
        .zip(r2)
        .zip(r3)
        .zip(r4)
        .zip(r5)
        .zip(r6)
        .zip(r7);
    for (g, (((((((&v0, &v1), &v2), &v3), &v4), &v5), &v6), &v7)) in group.iter_mut().zip(columns) {
        *g = [
            table[usize::from(v0)],
            table[usize::from(v1)],
            table[usize::from(v2)],
            table[usize::from(v3)],
            table[usize::from(v4)],
            table[usize::from(v5)],
            table[usize::from(v6)],
            table[usize::from(v7)],
        ];
    }
}

fn check_frame(raw: &ArrayView2<'_, u16>) -> Result<(usize, usize), DepthError> {
    let (h, w) = raw.dim();
    if h == 0 || w == 0 {
        return Err(DepthError::EmptyFrame {
            height_px: h,
            width_px: w,
        });
    }
    Ok((h, w))
}

/// Copy one raw row into `dst` (resized to the row length), applying the hole policy.
fn fill_holes(holes: HoleFill, src: ndarray::ArrayView1<'_, u16>, dst: &mut Vec<u16>) {
    dst.clear();
    match src.to_slice() {
        Some(s) => dst.extend_from_slice(s),
        None => dst.extend(src.iter().copied()),
    }
    if holes == HoleFill::NearestInRow {
        fill_nearest_in_row(dst);
    }
}

/// Replace each run of zeros by the nearest non-zero neighbour (left on ties); rows without any
/// non-zero value are left unchanged.
fn fill_nearest_in_row(row: &mut [u16]) {
    let w = row.len();
    let mut i = 0;
    while let Some(offset) = row
        .get(i..)
        .and_then(|rest| rest.iter().position(|&v| v == 0))
    {
        let run_start = i + offset;
        let run_len = row.get(run_start..).map_or(0, |rest| {
            rest.iter().position(|&v| v != 0).unwrap_or(rest.len())
        });
        let run_end = run_start + run_len; // exclusive; row[run_end] is non-zero if < w
        let left = run_start.checked_sub(1).and_then(|l| row.get(l).copied());
        let right = row.get(run_end).copied();
        // Pixel p is closer to (or as close to) the left neighbour at run_start - 1 than to the
        // right one at run_end iff 2p <= run_start - 1 + run_end.
        let split = match (left, right) {
            (Some(_), Some(_)) => (run_start + run_end).div_ceil(2),
            (Some(_), None) => run_end,
            (None, _) => run_start,
        };
        if let (Some(v), Some(part)) = (left, row.get_mut(run_start..split)) {
            part.fill(v);
        }
        if let (Some(v), Some(part)) = (right, row.get_mut(split..run_end)) {
            part.fill(v);
        }
        if run_len == 0 || run_end >= w {
            break;
        }
        i = run_end;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn nearest_in_row_prefers_left_on_ties_and_keeps_empty_rows() {
        let mut row = [0, 5, 0, 0, 7, 0, 0, 0, 9, 0];
        fill_nearest_in_row(&mut row);
        assert_eq!(row, [5, 5, 5, 7, 7, 7, 7, 9, 9, 9]);
        let mut row = [1, 0, 0, 0, 0, 2, 0, 3, 0, 0];
        fill_nearest_in_row(&mut row);
        assert_eq!(row, [1, 1, 1, 2, 2, 2, 2, 3, 3, 3]);
        let mut row = [0, 0, 4];
        fill_nearest_in_row(&mut row);
        assert_eq!(row, [4, 4, 4]);
        let mut single = [0u16];
        fill_nearest_in_row(&mut single);
        assert_eq!(single, [0]);
        let mut zeros = [0u16; 4];
        fill_nearest_in_row(&mut zeros);
        assert_eq!(zeros, [0; 4]);
    }

    #[test]
    fn table_equals_per_pixel_arithmetic() {
        let pre = DepthPreprocessor::new(DepthParams::default()).unwrap();
        for raw in [
            0u16,
            1,
            9,
            10,
            11,
            450,
            1000,
            49_999,
            50_000,
            60_000,
            u16::MAX,
        ] {
            let expect = pre.consts.depth_norm(pre.consts.disparity(raw));
            assert_eq!(pre.table[usize::from(raw)].to_bits(), expect.to_bits());
        }
        // 1 mm units divide by exactly 1000, as the reference's float32(raw) / 1000.
        assert_eq!(pre.consts.units_div, 1000.0);
    }
}
