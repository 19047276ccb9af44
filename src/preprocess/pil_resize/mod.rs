//! Reproduces **Pillow** (not torch): exact emulation of Pillow's fixed-point bicubic resize of
//! an 8-bit image (`Image.resize(size, BICUBIC)`, Pillow 13 `libImaging/Resample.c`), which
//! torchvision's `Resize` calls on a PIL image. Used by thermal (mode "L") and vision (mode
//! "RGB": three independent channels with exactly the "L" arithmetic, read from an interleaved
//! source by [`PilResizePlan::run_interleaved`]). The float-tensor resize of torch, used by
//! depth, is [`crate::preprocess::resize`].
//!
//! Pillow (`libImaging/Resample.c`) does not resize 8-bit images in floating point: it computes
//! bicubic (a = -0.5) weights per output pixel in f64, normalises them, converts them to 22-bit
//! fixed point (round half away from zero), runs a horizontal pass into a **u8** intermediate
//! (`(acc + 2^21) >> 22`, clipped to 0..=255) and then a vertical pass the same way. The clipping
//! between the passes is why a float resize differs by up to 8/255 (SPEC.md §4); this module
//! reproduces every step bit for bit.
//!
//! Every output pixel depends only on its own window of input pixels, so a [`PilResizePlan`] can
//! be restricted to a crop window of the resized image (the ImageBind centre crop) and only
//! compute the pixels that survive the crop, with results identical to resizing the whole image
//! and cropping afterwards.

use std::fmt;
use std::ops::Range;

use thiserror::Error;
use wide::{i16x8, i32x4, i32x8, u8x16};

mod interleaved;

/// Fixed-point precision of Pillow's 8-bit resampling (`PRECISION_BITS` in `Resample.c`).
const PRECISION_BITS: u32 = 22;
/// Rounding offset added to every accumulator before the shift.
const HALF: i32 = 1 << (PRECISION_BITS - 1);
/// `1 << PRECISION_BITS` as f64, the scale of the fixed-point coefficients.
const ONE_FIXED: f64 = (1u32 << PRECISION_BITS) as f64;
/// Support of Pillow's bicubic filter at scale 1 (`bicubic_filter` support).
const BICUBIC_SUPPORT: f64 = 2.0;
/// Coefficients are split as `k = hi * 2^SPLIT_BITS + lo` with `lo` in `0..2^SPLIT_BITS`: both
/// halves fit in i16, so every product is i16 x u8, which compilers lower to cheap 16-bit vector
/// multiplies (x86 `pmaddwd`, NEON `smlal`) instead of emulated 32-bit ones; the sum
/// `(sum hi*p << SPLIT_BITS) + sum lo*p` is the same integer as Pillow's `sum k*p`.
const SPLIT_BITS: u32 = 11;
/// Columns processed together in the vertical pass; the accumulators of one block stay in
/// registers across all taps.
const COLUMN_BLOCK: usize = 16;

/// Which axis of the image a size or coefficient set belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Axis {
    /// Along a row (width).
    Horizontal,
    /// Along a column (height).
    Vertical,
}

impl fmt::Display for Axis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Axis::Horizontal => "width",
            Axis::Vertical => "height",
        })
    }
}

/// Errors of the Pillow resize emulation.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PilResizeError {
    /// An input, output or crop size is zero.
    #[error(
        "{axis} must be non-zero (input {input_px} px, output {output_px} px, crop {crop_px} px)"
    )]
    ZeroSize {
        /// Axis with the zero size.
        axis: Axis,
        /// Input size along the axis.
        input_px: usize,
        /// Resized size along the axis.
        output_px: usize,
        /// Crop size along the axis.
        crop_px: usize,
    },
    /// The crop window does not lie inside the resized image.
    #[error("crop {axis} {start_px}..{start_px}+{len_px} px exceeds the resized {axis} of {output_px} px")]
    CropOutOfRange {
        /// Axis of the offending crop range.
        axis: Axis,
        /// First output pixel of the crop.
        start_px: usize,
        /// Crop length.
        len_px: usize,
        /// Resized size along the axis.
        output_px: usize,
    },
    /// The source buffer length does not match the plan's input size.
    #[error("source holds {actual} bytes, expected {expected} for {width_px}x{height_px} px")]
    SourceSize {
        /// Expected number of bytes (`width * height`).
        expected: usize,
        /// Actual buffer length.
        actual: usize,
        /// Input width.
        width_px: usize,
        /// Input height.
        height_px: usize,
    },
    /// The destination buffer length does not match the crop size.
    #[error("destination holds {actual} bytes, expected {expected} for the {width_px}x{height_px} px crop")]
    DestinationSize {
        /// Expected number of bytes.
        expected: usize,
        /// Actual buffer length.
        actual: usize,
        /// Crop width.
        width_px: usize,
        /// Crop height.
        height_px: usize,
    },
    /// An interleaved source does not fit its layout, or the channels do not fit the pixel.
    #[error("interleaved source of {width_px}x{height_px} px, {pixel_bytes} bytes per pixel, stride {row_stride_bytes}, {channels} channels: {actual} bytes do not fit")]
    SourceLayout {
        /// Input width.
        width_px: usize,
        /// Input height.
        height_px: usize,
        /// Bytes per pixel.
        pixel_bytes: usize,
        /// Bytes per row.
        row_stride_bytes: usize,
        /// Channels asked for.
        channels: usize,
        /// Source length.
        actual: usize,
    },
    /// A size is so large that the plan's arithmetic would overflow.
    #[error("{axis} resize {input_px} -> {output_px} px is too large to plan")]
    TooLarge {
        /// Axis of the offending size.
        axis: Axis,
        /// Input size along the axis.
        input_px: usize,
        /// Resized size along the axis.
        output_px: usize,
    },
}

/// Pillow's bicubic kernel with a = -0.5 (`bicubic_filter` in `Resample.c`); the operation order
/// is kept so the f64 weights are identical.
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Pillow's `normalize_coeffs_8bpc`: f64 weight to 22-bit fixed point, round half away from zero
/// (C's truncating `(int)` cast after adding ±0.5).
fn to_fixed(w: f64) -> i32 {
    if w < 0.0 {
        (-0.5 + w * ONE_FIXED) as i32
    } else {
        (0.5 + w * ONE_FIXED) as i32
    }
}

/// Fixed-point bicubic coefficients of one axis, for a contiguous range of output pixels.
///
/// Every output pixel reads exactly `window` consecutive input pixels starting at its own
/// `start`; taps outside Pillow's own `[xmin, xmin + xmax)` window have coefficient 0, so the
/// fixed-length loops stay exact while having no data-dependent lengths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AxisCoeffs {
    input_px: usize,
    output_px: usize,
    outputs: Range<usize>,
    window: usize,
    starts: Vec<usize>,
    coeffs: Vec<i32>,
    /// `coeffs >> SPLIT_BITS`.
    hi: Vec<i16>,
    /// `coeffs & (2^SPLIT_BITS - 1)`.
    lo: Vec<i16>,
    /// Horizontal-pass layout: per output pixel `lanes` vectors of high halves then `lanes` of
    /// low halves, 8 consecutive taps each, zero past the window (empty if the window is > 16).
    taps8: Vec<i16x8>,
    /// 8-tap vectors per output pixel in `taps8` (1 or 2; 0 when the window is > 16).
    lanes: usize,
    /// Vertical-pass layout: per output pixel and pair of taps `(t, t + 1)` the vectors
    /// `[hi_t, hi_t+1] x 4` and `[lo_t, lo_t+1] x 4`, the multipliers of two interleaved source
    /// rows; the missing partner of an odd last tap is 0.
    pairs: Vec<i16x8>,
}

impl AxisCoeffs {
    /// Computes the coefficients of the output pixels `outputs` of a `input_px -> output_px`
    /// resize along `axis` (the axis only labels errors).
    ///
    /// # Errors
    /// [`PilResizeError::ZeroSize`] for a zero size, [`PilResizeError::CropOutOfRange`] if
    /// `outputs` is empty or not inside `0..output_px`, [`PilResizeError::TooLarge`] if the
    /// weights of one output pixel could overflow Pillow's 32-bit accumulator.
    pub fn new(
        axis: Axis,
        input_px: usize,
        output_px: usize,
        outputs: Range<usize>,
    ) -> Result<Self, PilResizeError> {
        let crop_px = outputs.end.saturating_sub(outputs.start);
        if input_px == 0 || output_px == 0 || crop_px == 0 {
            return Err(PilResizeError::ZeroSize {
                axis,
                input_px,
                output_px,
                crop_px,
            });
        }
        if outputs.end > output_px {
            return Err(PilResizeError::CropOutOfRange {
                axis,
                start_px: outputs.start,
                len_px: crop_px,
                output_px,
            });
        }
        // Pillow's precompute_coeffs with box = (0, input): every step in the same f64 order.
        let scale = input_px as f64 / output_px as f64;
        let filterscale = scale.max(1.0);
        let support = BICUBIC_SUPPORT * filterscale;
        let ss = 1.0 / filterscale;
        let mut firsts = Vec::with_capacity(crop_px);
        let mut weights: Vec<Vec<f64>> = Vec::with_capacity(crop_px);
        for xx in outputs.clone() {
            let center = (xx as f64 + 0.5) * scale;
            // `as` truncates toward zero like C's (int) cast; negative values clamp to 0 below.
            let xmin = ((center - support + 0.5) as i64).max(0);
            let xmax = ((center + support + 0.5) as i64).min(input_px as i64);
            let count = (xmax - xmin).max(0);
            let mut w: Vec<f64> = (0..count)
                .map(|x| bicubic(((x + xmin) as f64 - center + 0.5) * ss))
                .collect();
            let ww: f64 = w.iter().sum();
            if ww != 0.0 {
                w.iter_mut().for_each(|v| *v /= ww);
            }
            firsts.push(xmin as usize);
            weights.push(w);
        }
        // Longest Pillow window; never longer than the input because every window lies in it.
        // (Padding it to a multiple of 4 was measured slower in both passes.)
        let window = weights.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let mut starts = Vec::with_capacity(crop_px);
        let mut coeffs = vec![0i32; crop_px * window];
        for ((first, w), row) in firsts
            .iter()
            .zip(&weights)
            .zip(coeffs.chunks_exact_mut(window))
        {
            let start = (*first).min(input_px.saturating_sub(window));
            let offset = first - start;
            let mut sum_abs: i64 = 0;
            for (dst, &v) in row.iter_mut().skip(offset).zip(w) {
                *dst = to_fixed(v);
                sum_abs += i64::from(dst.unsigned_abs());
            }
            // Pillow accumulates in a C int; make sure 255 * sum|k| + 2^21 cannot overflow it.
            if sum_abs * 255 + i64::from(HALF) > i64::from(i32::MAX) {
                return Err(PilResizeError::TooLarge {
                    axis,
                    input_px,
                    output_px,
                });
            }
            starts.push(start);
        }
        let too_large = || PilResizeError::TooLarge {
            axis,
            input_px,
            output_px,
        };
        // |k| <= 2^23 after the overflow check above, so both halves fit in i16.
        let hi = coeffs
            .iter()
            .map(|&k| i16::try_from(k >> SPLIT_BITS).map_err(|_| too_large()))
            .collect::<Result<Vec<_>, _>>()?;
        let lo = coeffs
            .iter()
            .map(|&k| i16::try_from(k & ((1 << SPLIT_BITS) - 1)).map_err(|_| too_large()))
            .collect::<Result<Vec<_>, _>>()?;
        let lanes = if window <= 8 {
            1
        } else if window <= 16 {
            2
        } else {
            0
        };
        let mut taps8 = Vec::with_capacity(crop_px * 2 * lanes);
        let mut pairs = Vec::with_capacity(crop_px * window.div_ceil(2) * 2);
        for (kh, kl) in hi.chunks_exact(window).zip(lo.chunks_exact(window)) {
            for half in [kh, kl] {
                for lane in 0..lanes {
                    let mut v = [0i16; 8];
                    for (d, &k) in v.iter_mut().zip(half.iter().skip(lane * 8)) {
                        *d = k;
                    }
                    taps8.push(i16x8::new(v));
                }
            }
            for t in (0..window).step_by(2) {
                for half in [kh, kl] {
                    let a = half.get(t).copied().unwrap_or(0);
                    let b = half.get(t + 1).copied().unwrap_or(0);
                    pairs.push(i16x8::new([a, b, a, b, a, b, a, b]));
                }
            }
        }
        Ok(Self {
            input_px,
            output_px,
            outputs,
            window,
            starts,
            coeffs,
            hi,
            lo,
            taps8,
            lanes,
            pairs,
        })
    }

    /// Input size along the axis.
    pub fn input_px(&self) -> usize {
        self.input_px
    }

    /// Resized size along the axis.
    pub fn output_px(&self) -> usize {
        self.output_px
    }

    /// Output pixels covered by these coefficients.
    pub fn outputs(&self) -> Range<usize> {
        self.outputs.clone()
    }

    /// Number of input pixels every output pixel reads.
    pub fn window(&self) -> usize {
        self.window
    }

    /// Input pixels read by any of the covered output pixels.
    pub fn input_span(&self) -> Range<usize> {
        let lo = self.starts.iter().copied().min().unwrap_or(0);
        let hi = self.starts.iter().copied().max().unwrap_or(0) + self.window;
        lo..hi
    }

    /// `(first input pixel, high halves, low halves, tap-pair vectors)` of the split
    /// coefficients, in order.
    fn split_taps(&self) -> impl Iterator<Item = (usize, &[i16], &[i16], &[i16x8])> {
        self.starts
            .iter()
            .copied()
            .zip(self.hi.chunks_exact(self.window))
            .zip(self.lo.chunks_exact(self.window))
            .zip(self.pairs.chunks_exact(self.window.div_ceil(2) * 2))
            .map(|(((s, h), l), p)| (s, h, l, p))
    }

    /// `(first input pixel, fixed-point coefficients)` of every covered output pixel, in order.
    pub fn taps(&self) -> impl Iterator<Item = (usize, &[i32])> {
        self.starts
            .iter()
            .copied()
            .zip(self.coeffs.chunks_exact(self.window))
    }
}

/// A crop window of the resized image, in resized-image pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropRect {
    /// First column of the crop.
    pub left_px: usize,
    /// First row of the crop.
    pub top_px: usize,
    /// Crop width.
    pub width_px: usize,
    /// Crop height.
    pub height_px: usize,
}

/// Byte layout of an interleaved source (several channels per pixel, rows with a stride).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interleaved {
    /// Bytes from one row to the next.
    pub row_stride_bytes: usize,
    /// Bytes per pixel (channels, including any ignored ones such as alpha).
    pub pixel_bytes: usize,
}

/// Reusable buffers of [`PilResizePlan::run`], kept by the caller so a run does not allocate.
#[derive(Debug, Default, Clone)]
pub struct PilResizeScratch {
    intermediate: Vec<u8>,
    /// Source columns read by the horizontal pass, transposed, in 16-byte blocks (rows padded
    /// to 16, columns to 16).
    source_t: Vec<u8x16>,
    /// Horizontal pass output, transposed, in 16-byte blocks (rows padded to 16).
    intermediate_t: Vec<u8x16>,
    /// Horizontal pass output in 16-byte blocks (rows and columns padded to 16).
    intermediate_b: Vec<u8x16>,
    /// One channel of an interleaved source, for the paths that read planes.
    plane: Vec<u8>,
}

/// A precomputed Pillow bicubic resize `in -> out` of an 8-bit image, restricted to a crop window
/// of the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PilResizePlan {
    input_width_px: usize,
    input_height_px: usize,
    output_width_px: usize,
    output_height_px: usize,
    crop: CropRect,
    /// `None` when the width does not change: Pillow then skips the horizontal pass.
    horizontal: Option<AxisCoeffs>,
    /// `None` when the height does not change: Pillow then skips the vertical pass.
    vertical: Option<AxisCoeffs>,
    /// Input rows the horizontal pass has to produce (Pillow's `ybox_first..ybox_last`, limited
    /// further to what the cropped rows read).
    rows: Range<usize>,
    /// Pillow >= 13 (python-pillow/Pillow#9549) runs the vertical pass first when the height
    /// shrinks by more than twice as many pixels as the width; the u8 clipping between the
    /// passes makes the order visible in the result.
    vertical_first: bool,
}

impl PilResizePlan {
    /// Plans a resize of an `input_width_px x input_height_px` image to
    /// `output_width_px x output_height_px`, computing only the pixels inside `crop`.
    ///
    /// # Errors
    /// [`PilResizeError::ZeroSize`] for any zero size, [`PilResizeError::CropOutOfRange`] if
    /// `crop` is not inside the output, [`PilResizeError::TooLarge`] for sizes whose arithmetic
    /// would overflow.
    pub fn new(
        input_width_px: usize,
        input_height_px: usize,
        output_width_px: usize,
        output_height_px: usize,
        crop: CropRect,
    ) -> Result<Self, PilResizeError> {
        let col_range = checked_range(
            Axis::Horizontal,
            input_width_px,
            output_width_px,
            crop.left_px,
            crop.width_px,
        )?;
        let row_range = checked_range(
            Axis::Vertical,
            input_height_px,
            output_height_px,
            crop.top_px,
            crop.height_px,
        )?;
        let horizontal = if output_width_px == input_width_px {
            None
        } else {
            Some(AxisCoeffs::new(
                Axis::Horizontal,
                input_width_px,
                output_width_px,
                col_range,
            )?)
        };
        let (vertical, rows) = if output_height_px == input_height_px {
            (None, row_range)
        } else {
            let v = AxisCoeffs::new(Axis::Vertical, input_height_px, output_height_px, row_range)?;
            let span = v.input_span();
            (Some(v), span)
        };
        Ok(Self {
            input_width_px,
            input_height_px,
            output_width_px,
            output_height_px,
            crop,
            horizontal,
            vertical,
            rows,
            vertical_first: vertical_first(
                input_width_px,
                input_height_px,
                output_width_px,
                output_height_px,
            ),
        })
    }

    /// Plans a full (uncropped) resize.
    ///
    /// # Errors
    /// As [`PilResizePlan::new`].
    pub fn full(
        input_width_px: usize,
        input_height_px: usize,
        output_width_px: usize,
        output_height_px: usize,
    ) -> Result<Self, PilResizeError> {
        Self::new(
            input_width_px,
            input_height_px,
            output_width_px,
            output_height_px,
            CropRect {
                left_px: 0,
                top_px: 0,
                width_px: output_width_px,
                height_px: output_height_px,
            },
        )
    }

    /// Input size `(width, height)` this plan was made for.
    pub fn input_size_px(&self) -> (usize, usize) {
        (self.input_width_px, self.input_height_px)
    }

    /// Resized size `(width, height)` before cropping.
    pub fn output_size_px(&self) -> (usize, usize) {
        (self.output_width_px, self.output_height_px)
    }

    /// The crop window this plan computes.
    pub fn crop(&self) -> CropRect {
        self.crop
    }

    /// Resizes `src` (row-major, `input_height x input_width`) and writes the crop window
    /// (row-major, `crop.height x crop.width`) into `dst`, exactly as Pillow would.
    ///
    /// # Errors
    /// [`PilResizeError::SourceSize`] / [`PilResizeError::DestinationSize`] if a buffer length
    /// does not match the plan.
    pub fn run(
        &self,
        src: &[u8],
        scratch: &mut PilResizeScratch,
        dst: &mut [u8],
    ) -> Result<(), PilResizeError> {
        let expected = self.input_width_px * self.input_height_px;
        if src.len() != expected {
            return Err(PilResizeError::SourceSize {
                expected,
                actual: src.len(),
                width_px: self.input_width_px,
                height_px: self.input_height_px,
            });
        }
        let crop_w = self.crop.width_px;
        let crop_h = self.crop.height_px;
        if dst.len() != crop_w * crop_h {
            return Err(PilResizeError::DestinationSize {
                expected: crop_w * crop_h,
                actual: dst.len(),
                width_px: crop_w,
                height_px: crop_h,
            });
        }
        if let (true, Some(h), Some(v)) = (self.vertical_first, &self.horizontal, &self.vertical) {
            self.run_vertical_first(h, v, src, scratch, dst);
            return Ok(());
        }
        if let Some(h) = &self.horizontal {
            self.run_horizontal_first(h, src, scratch, dst);
            return Ok(());
        }
        // Width unchanged: the vertical pass reads the source itself.
        let (inter, inter_stride, inter_col0, inter_row0) =
            (src, self.input_width_px, self.crop.left_px, 0);
        match &self.vertical {
            Some(v) => {
                for ((start, kh, kl, kp), out_row) in
                    v.split_taps().zip(dst.chunks_exact_mut(crop_w))
                {
                    let first = (start - inter_row0) * inter_stride + inter_col0;
                    vertical_row(kh, kl, kp, inter, first, inter_stride, out_row);
                }
            }
            None => {
                for (i, out_row) in dst.chunks_exact_mut(crop_w).enumerate() {
                    let first = (self.crop.top_px + i - inter_row0) * inter_stride + inter_col0;
                    if let Some(row) = inter.get(first..first + crop_w) {
                        out_row.copy_from_slice(row);
                    }
                }
            }
        }
        Ok(())
    }
}

impl PilResizePlan {
    /// Horizontal pass, then the vertical one (or the row crop when the height is unchanged).
    ///
    /// Both passes run with the same kernel, 16 independent outputs of one tap set at a time
    /// (per-pixel dot products over short windows vectorise poorly): the source rows the
    /// horizontal pass needs are transposed into 16-byte blocks so its taps run down columns,
    /// and its output is transposed back, also into 16-byte blocks, for the vertical pass.
    fn run_horizontal_first(
        &self,
        h: &AxisCoeffs,
        src: &[u8],
        scratch: &mut PilResizeScratch,
        dst: &mut [u8],
    ) {
        let source = Interleaved {
            row_stride_bytes: self.input_width_px,
            pixel_bytes: 1,
        };
        self.transpose_source(h, src, source, scratch);
        self.horizontal_first_channel(h, source.pixel_bytes, 0, scratch, dst);
    }

    /// Transposes the source region the horizontal pass reads (the plan's rows, the columns of
    /// `h`'s input span, every byte of each pixel) into `scratch.source_t`.
    fn transpose_source(
        &self,
        h: &AxisCoeffs,
        src: &[u8],
        source: Interleaved,
        scratch: &mut PilResizeScratch,
    ) {
        let n_rows = self.rows.len();
        let row_blocks = n_rows.div_ceil(TILE);
        let cols = h.input_span();
        let col_bytes = cols.len() * source.pixel_bytes;
        scratch
            .source_t
            .resize(col_bytes.next_multiple_of(TILE) * row_blocks, u8x16::ZERO);
        let first = self.rows.start * source.row_stride_bytes + cols.start * source.pixel_bytes;
        transpose_to_blocks(
            src.get(first..).unwrap_or(&[]),
            source.row_stride_bytes,
            n_rows,
            col_bytes,
            &mut scratch.source_t,
            row_blocks,
        );
    }

    /// The horizontal pass of byte `channel` of every pixel in the transposed source, then the
    /// vertical pass (or the row crop) into `dst`.
    fn horizontal_first_channel(
        &self,
        h: &AxisCoeffs,
        pixel_bytes: usize,
        channel: usize,
        scratch: &mut PilResizeScratch,
        dst: &mut [u8],
    ) {
        let crop_w = self.crop.width_px;
        let n_rows = self.rows.len();
        let row_blocks = n_rows.div_ceil(TILE);
        let cols = h.input_span();
        scratch
            .intermediate_t
            .resize(crop_w * row_blocks, u8x16::ZERO);
        // Consecutive pixels of one channel are `pixel_bytes` transposed rows apart.
        let tap_stride = pixel_bytes * row_blocks;
        for ((start, _, _, kp), out) in h
            .split_taps()
            .zip(scratch.intermediate_t.chunks_exact_mut(row_blocks))
        {
            let first = ((start - cols.start) * pixel_bytes + channel) * row_blocks;
            for (b, o) in out.iter_mut().enumerate() {
                *o = block_taps(kp, &scratch.source_t, first + b, tap_stride);
            }
        }
        let crop_blocks = crop_w.div_ceil(TILE);
        scratch
            .intermediate_b
            .resize(n_rows.next_multiple_of(TILE) * crop_blocks, u8x16::ZERO);
        transpose_from_blocks(
            &scratch.intermediate_t,
            row_blocks,
            crop_w,
            &mut scratch.intermediate_b,
            crop_blocks,
        );
        let inter = &scratch.intermediate_b;
        match &self.vertical {
            Some(v) => {
                for ((start, _, _, kp), out_row) in v.split_taps().zip(dst.chunks_exact_mut(crop_w))
                {
                    let first = (start - self.rows.start) * crop_blocks;
                    for (b, out) in out_row.chunks_mut(TILE).enumerate() {
                        let bytes = block_taps(kp, inter, first + b, crop_blocks);
                        out.copy_from_slice(&bytes.as_array_ref()[..out.len()]);
                    }
                }
            }
            None => {
                for (i, out_row) in dst.chunks_exact_mut(crop_w).enumerate() {
                    let first = (self.crop.top_px + i - self.rows.start) * crop_blocks;
                    for (b, out) in out_row.chunks_mut(TILE).enumerate() {
                        if let Some(v) = inter.get(first + b) {
                            out.copy_from_slice(&v.as_array_ref()[..out.len()]);
                        }
                    }
                }
            }
        }
    }

    /// Vertical pass (cropped rows, only the source columns the cropped horizontal outputs
    /// read) into the u8 intermediate, then the horizontal pass.
    fn run_vertical_first(
        &self,
        h: &AxisCoeffs,
        v: &AxisCoeffs,
        src: &[u8],
        scratch: &mut PilResizeScratch,
        dst: &mut [u8],
    ) {
        let crop_w = self.crop.width_px;
        let cols = h.input_span();
        // Intermediate rows keep source column indices (0..cols.end) so the horizontal taps
        // apply unchanged; columns before `cols.start` are never read.
        let inter_w = cols.end;
        scratch
            .intermediate
            .resize(self.crop.height_px * inter_w, 0);
        for ((start, kh, kl, kp), inter_row) in v
            .split_taps()
            .zip(scratch.intermediate.chunks_exact_mut(inter_w))
        {
            let first = start * self.input_width_px + cols.start;
            if let Some(out) = inter_row.get_mut(cols.clone()) {
                vertical_row(kh, kl, kp, src, first, self.input_width_px, out);
            }
        }
        for (i, out_row) in dst.chunks_exact_mut(crop_w).enumerate() {
            horizontal_row(h, &scratch.intermediate, i * inter_w, out_row);
        }
    }
}

/// Pillow 13's pass order (`Resample.c`, python-pillow/Pillow#9549), matched against Pillow
/// 13.0.0 on 1500 random size pairs: vertical first iff the height shrinks and it loses more
/// than twice as many pixels as the width.
fn vertical_first(in_w: usize, in_h: usize, out_w: usize, out_h: usize) -> bool {
    let (in_w, in_h, out_w, out_h) = (in_w as i64, in_h as i64, out_w as i64, out_h as i64);
    out_h < in_h && in_h - out_h > 2 * (in_w - out_w)
}

/// Validates one axis of a plan and returns the crop's output range.
fn checked_range(
    axis: Axis,
    input_px: usize,
    output_px: usize,
    start_px: usize,
    len_px: usize,
) -> Result<Range<usize>, PilResizeError> {
    if input_px == 0 || output_px == 0 || len_px == 0 {
        return Err(PilResizeError::ZeroSize {
            axis,
            input_px,
            output_px,
            crop_px: len_px,
        });
    }
    // Keep every product of the plan (window * count, rows * stride) far from usize overflow.
    const LIMIT: usize = 1 << 28;
    if input_px > LIMIT || output_px > LIMIT {
        return Err(PilResizeError::TooLarge {
            axis,
            input_px,
            output_px,
        });
    }
    match start_px.checked_add(len_px) {
        Some(end) if end <= output_px => Ok(start_px..end),
        _ => Err(PilResizeError::CropOutOfRange {
            axis,
            start_px,
            len_px,
            output_px,
        }),
    }
}

/// Side of the square blocks the byte transpose moves through vector registers.
const TILE: usize = 16;

/// Transposes the `rows x cols` bytes at `src` (row stride `src_stride`) into `dst`, whose
/// row `c` (source column `c`) is `dst_blocks` 16-byte blocks of source rows. Whole 16 x 16
/// tiles go through registers: four rounds of interleaving the bytes of row `i` with row
/// `i + 8` (`punpck{l,h}bw`, NEON `zip1`/`zip2`) transpose a tile. Tiles at the right and
/// bottom edges read past the region (or zeros past `src`) into padding nobody reads.
#[inline(never)]
fn transpose_to_blocks(
    src: &[u8],
    src_stride: usize,
    rows: usize,
    cols: usize,
    dst: &mut [u8x16],
    dst_blocks: usize,
) {
    // Four row blocks (64 bytes of every destination row) per sweep: each destination cache
    // line is written whole and the source rows of a sweep stay in L1.
    let row_blocks = rows.div_ceil(TILE);
    for group in (0..row_blocks).step_by(4) {
        for c in (0..cols).step_by(TILE) {
            for rb in group..(group + 4).min(row_blocks) {
                transpose_tile_to_blocks(src, src_stride, rb, c, dst, dst_blocks);
            }
        }
    }
}

/// One tile of [`transpose_to_blocks`]: source rows `16 rb..`, columns `c..c + 16`.
#[inline(always)]
fn transpose_tile_to_blocks(
    src: &[u8],
    src_stride: usize,
    rb: usize,
    c: usize,
    dst: &mut [u8x16],
    dst_blocks: usize,
) {
    {
        {
            let base = rb * TILE * src_stride + c;
            let mut t = [u8x16::ZERO; TILE];
            for (i, v) in t.iter_mut().enumerate() {
                *v = load16(src, base + i * src_stride);
            }
            let t = interleave_round(interleave_round(interleave_round(interleave_round(t))));
            for (i, &v) in t.iter().enumerate() {
                if let Some(d) = dst.get_mut((c + i) * dst_blocks + rb) {
                    *d = v;
                }
            }
        }
    }
}

/// The inverse layout change: `src` has `src_rows` rows of `src_blocks` 16-byte blocks; writes
/// its transpose into `dst`, rows of `dst_blocks` blocks (`16 src_blocks` rows; the lanes past
/// `src_rows` in the last block of a row are padding).
#[inline(never)]
fn transpose_from_blocks(
    src: &[u8x16],
    src_blocks: usize,
    src_rows: usize,
    dst: &mut [u8x16],
    dst_blocks: usize,
) {
    // Row block outer: the 16 destination rows of a block are written left to right while the
    // source blocks read stay in L1 for the next row block.
    for rb in 0..src_blocks {
        for (jb, j) in (0..src_rows).step_by(TILE).enumerate() {
            let mut t = [u8x16::ZERO; TILE];
            for (i, v) in t.iter_mut().enumerate() {
                *v = src
                    .get((j + i) * src_blocks + rb)
                    .copied()
                    .unwrap_or(u8x16::ZERO);
            }
            let t = interleave_round(interleave_round(interleave_round(interleave_round(t))));
            for (i, &v) in t.iter().enumerate() {
                if let Some(d) = dst.get_mut((rb * TILE + i) * dst_blocks + jb) {
                    *d = v;
                }
            }
        }
    }
}

/// `clip8(sum_t k[t] * row_t)` for the 16 columns of block `first + t * stride` of `blocks`
/// (rows past the end read as zeros; only an odd last tap's partner, coefficient 0, does).
#[inline(always)]
fn block_taps(pairs: &[i16x8], blocks: &[u8x16], first: usize, stride: usize) -> u8x16 {
    let rows = (0..).map(|t| {
        let block = blocks.get(first + t * stride);
        block.copied().unwrap_or(u8x16::ZERO)
    });
    pack_clip8(column_block(pairs, rows))
}

/// One round of the tile transpose: rows `i` and `i + 8` interleaved into rows `2i`, `2i + 1`.
#[inline(always)]
fn interleave_round(t: [u8x16; TILE]) -> [u8x16; TILE] {
    let mut out = [u8x16::ZERO; TILE];
    for i in 0..TILE / 2 {
        out[2 * i] = u8x16::unpack_low(t[i], t[i + TILE / 2]);
        out[2 * i + 1] = u8x16::unpack_high(t[i], t[i + TILE / 2]);
    }
    out
}

/// Output pixels computed together: four 4-lane reductions packed into one 16-byte store.
const PIXEL_GROUP: usize = 16;

/// 16 bytes of `buf` from `offset`; bytes past the end read as 0. Every caller multiplies the
/// lanes past its window by a zero coefficient, so only the in-range bytes matter.
#[inline(always)]
fn load16(buf: &[u8], offset: usize) -> u8x16 {
    match buf.get(offset..offset + 16).map(<[u8; 16]>::try_from) {
        Some(Ok(bytes)) => u8x16::new(bytes),
        _ => load16_tail(buf, offset),
    }
}

/// The first 16 bytes of `row` (zeros if it is shorter; callers checked the range).
#[inline(always)]
fn first16(row: &[u8]) -> u8x16 {
    row.first_chunk::<16>()
        .map_or(u8x16::ZERO, |bytes| u8x16::new(*bytes))
}

/// The rare end-of-buffer case of [`load16`], kept out of line so the hot loops stay small.
#[cold]
#[inline(never)]
fn load16_tail(buf: &[u8], offset: usize) -> u8x16 {
    let mut bytes = [0u8; 16];
    let tail = buf.get(offset..).unwrap_or(&[]);
    for (d, &s) in bytes.iter_mut().zip(tail) {
        *d = s;
    }
    u8x16::new(bytes)
}

/// Four `(sum_hi << SPLIT_BITS) + sum_lo` accumulators of 4 pixels each to 16 clipped bytes
/// (`clip8` lane-wise; the saturating packs clamp exactly like `clamp(0, 255)`).
#[inline(always)]
fn pack_clip8(acc: [i32x4; 4]) -> u8x16 {
    let [a, b, c, d] = acc.map(|v| (v + i32x4::splat(HALF)) >> PRECISION_BITS as i32);
    let ab = i16x8::from_i32x8_saturate(bytemuck::cast::<[i32x4; 2], i32x8>([a, b]));
    let cd = i16x8::from_i32x8_saturate(bytemuck::cast::<[i32x4; 2], i32x8>([c, d]));
    u8x16::narrow_i16x8(ab, cd)
}

/// Horizontal pass of the row of `src` starting at `row_start`: every covered output pixel is
/// a dot product of its window.
fn horizontal_row(h: &AxisCoeffs, src: &[u8], row_start: usize, out_row: &mut [u8]) {
    let done = match h.lanes {
        1 => horizontal_row_simd::<1>(h, src, row_start, out_row),
        2 => horizontal_row_simd::<2>(h, src, row_start, out_row),
        _ => 0,
    };
    // Pixels after the last full group (and every pixel of windows longer than 16 taps).
    let src_row = src.get(row_start..).unwrap_or(&[]);
    for ((start, k), out) in h.taps().zip(out_row.iter_mut()).skip(done) {
        let win = src_row.get(start..start + k.len()).unwrap_or(&[]);
        let acc = win
            .iter()
            .zip(k)
            .fold(HALF, |acc, (&p, &c)| acc + i32::from(p) * c);
        *out = clip8(acc);
    }
}

/// Horizontal pass in groups of 16 output pixels with `pmaddwd`-shaped i16 x i16 -> i32
/// pair products (NEON `smull` + `addp`): each pixel loads 16 source bytes from its window
/// start (the lanes past the window have coefficient 0, so reading into the next row is
/// harmless), multiplies them with its `L` high and `L` low 8-tap vectors, and four pixels'
/// partial sums are reduced together by a transpose. Returns the number of pixels written.
fn horizontal_row_simd<const L: usize>(
    h: &AxisCoeffs,
    src: &[u8],
    row_start: usize,
    out_row: &mut [u8],
) -> usize {
    let mut done = 0;
    for ((starts, taps), out) in h
        .starts
        .chunks_exact(PIXEL_GROUP)
        .zip(h.taps8.chunks_exact(PIXEL_GROUP * 2 * L))
        .zip(out_row.chunks_exact_mut(PIXEL_GROUP))
    {
        let mut acc = [i32x4::ZERO; 4];
        for ((acc, starts), taps) in acc
            .iter_mut()
            .zip(starts.chunks_exact(4))
            .zip(taps.chunks_exact(4 * 2 * L))
        {
            let mut sums = [i32x4::ZERO; 4];
            for ((sum, &start), k) in sums.iter_mut().zip(starts).zip(taps.chunks_exact(2 * L)) {
                let w = load16(src, row_start + start);
                let p = [i16x8::from_u8x16_low(w), i16x8::from_u8x16_high(w)];
                let mut hi = i32x4::ZERO;
                let mut lo = i32x4::ZERO;
                for lane in 0..L {
                    hi += p[lane].dot(k[lane]);
                    lo += p[lane].dot(k[L + lane]);
                }
                *sum = (hi << SPLIT_BITS as i32) + lo;
            }
            let [a, b, c, d] = i32x4::transpose(sums);
            *acc = a + b + c + d;
        }
        out.copy_from_slice(pack_clip8(acc).as_array_ref());
        done += PIXEL_GROUP;
    }
    done
}

/// `(acc + 2^21) >> 22` clipped to 0..=255, Pillow's `clip8`.
#[inline(always)]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// `sum_t k[t] * row_t` for 16 columns (as `(sum_hi << SPLIT_BITS) + sum_lo`), the 16 bytes
/// of the rows `t = 0, 1, ...` given by `rows`.
#[inline(always)]
fn column_block(pairs: &[i16x8], mut rows: impl Iterator<Item = u8x16>) -> [i32x4; 4] {
    let mut hi = [i32x4::ZERO; 4];
    let mut lo = [i32x4::ZERO; 4];
    for k in pairs.chunks_exact(2) {
        let a = rows.next().unwrap_or(u8x16::ZERO);
        let b = rows.next().unwrap_or(u8x16::ZERO);
        let ab_lo = u8x16::unpack_low(a, b);
        let ab_hi = u8x16::unpack_high(a, b);
        let p = [
            i16x8::from_u8x16_low(ab_lo),
            i16x8::from_u8x16_high(ab_lo),
            i16x8::from_u8x16_low(ab_hi),
            i16x8::from_u8x16_high(ab_hi),
        ];
        for i in 0..4 {
            hi[i] += p[i].dot(k[0]);
            lo[i] += p[i].dot(k[1]);
        }
    }
    [0, 1, 2, 3].map(|i| (hi[i] << SPLIT_BITS as i32) + lo[i])
}

/// Vertical pass of one output row: `out[c] = clip8(sum_t k[t] * inter[first + t*stride + c])`,
/// 16 columns at a time: the bytes of rows `t` and `t + 1` are interleaved and widened to i16
/// so one pair multiply-add (`pmaddwd`, NEON `smull` + `addp`) applies two taps to 4 columns.
fn vertical_row(
    kh: &[i16],
    kl: &[i16],
    pairs: &[i16x8],
    inter: &[u8],
    first: usize,
    stride: usize,
    out_row: &mut [u8],
) {
    let mut col = 0;
    let mut blocks = out_row.chunks_exact_mut(COLUMN_BLOCK);
    // Rows read by one block, including the partner row of an odd last tap (coefficient 0;
    // it may lie past the input, then the checked loads below read zeros).
    let span = (pairs.len().max(1) - 1) * stride + COLUMN_BLOCK;
    for out_block in &mut blocks {
        let base = first + col;
        let acc = match inter.get(base..base + span) {
            Some(rows) => column_block(pairs, rows.chunks(stride.max(1)).map(first16)),
            None => column_block(pairs, (0..).map(|t| load16(inter, base + t * stride))),
        };
        out_block.copy_from_slice(pack_clip8(acc).as_array_ref());
        col += COLUMN_BLOCK;
    }
    for (i, o) in blocks.into_remainder().iter_mut().enumerate() {
        let c = col + i;
        let acc = kh
            .iter()
            .zip(kl)
            .enumerate()
            .fold(0i32, |acc, (t, (&h, &l))| {
                let p = i32::from(inter.get(first + t * stride + c).copied().unwrap_or(0));
                acc + ((i32::from(h) * p) << SPLIT_BITS) + i32::from(l) * p
            });
        *o = clip8(acc + HALF);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn pattern(w: usize, h: usize) -> Vec<u8> {
        (0..w * h)
            .map(|i| match (i % w / 3 + i / w / 2) % 4 {
                0 => 255,
                1 => 0,
                _ => (i * 37 % 251) as u8,
            })
            .collect()
    }

    /// Pillow's algorithm written out plainly with the i32 coefficients: one pass, every output
    /// pixel a `HALF + sum k*p` clipped to u8.
    fn naive_pass(
        c: &AxisCoeffs,
        src: &[u8],
        w: usize,
        h: usize,
        horizontal: bool,
    ) -> (Vec<u8>, usize, usize) {
        let (ow, oh) = if horizontal {
            (c.output_px(), h)
        } else {
            (w, c.output_px())
        };
        let mut out = vec![0u8; ow * oh];
        let taps: Vec<(usize, &[i32])> = c.taps().collect();
        for y in 0..oh {
            for x in 0..ow {
                let (start, k) = taps[if horizontal { x } else { y }];
                let acc = k.iter().enumerate().fold(HALF, |acc, (t, &k)| {
                    let p = if horizontal {
                        src[y * w + start + t]
                    } else {
                        src[(start + t) * w + x]
                    };
                    acc + k * i32::from(p)
                });
                out[y * ow + x] = clip8(acc);
            }
        }
        (out, ow, oh)
    }

    /// Full resize with the naive passes in Pillow 13's order.
    fn naive_resize(src: &[u8], w: usize, h: usize, ow: usize, oh: usize) -> Vec<u8> {
        let hc = (ow != w).then(|| AxisCoeffs::new(Axis::Horizontal, w, ow, 0..ow).unwrap());
        let vc = (oh != h).then(|| AxisCoeffs::new(Axis::Vertical, h, oh, 0..oh).unwrap());
        let (mut img, mut cw, mut ch) = (src.to_vec(), w, h);
        let mut apply = |c: &Option<AxisCoeffs>, horizontal: bool| {
            if let Some(c) = c {
                (img, cw, ch) = naive_pass(c, &img, cw, ch, horizontal);
            }
        };
        if vertical_first(w, h, ow, oh) {
            apply(&vc, false);
            apply(&hc, true);
        } else {
            apply(&hc, true);
            apply(&vc, false);
        }
        assert_eq!((cw, ch), (ow, oh));
        img
    }

    #[test]
    fn fast_passes_equal_the_plain_pillow_algorithm_for_many_sizes() {
        let mut seed = 0x9e37_79b9_u32;
        let mut next = |m: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed as usize % m
        };
        let mut sizes = vec![
            (160, 120, 298, 224),
            (640, 512, 280, 224),
            (300, 700, 224, 522),
            (37, 53, 18, 12),
            (5, 5, 3, 3),
            (56, 56, 224, 224),
            (75, 75, 224, 224), // odd integer factor: a weight of exactly 1.0
            (2000, 9, 40, 9),   // very long windows
            (9, 700, 9, 11),
        ];
        for _ in 0..40 {
            sizes.push((1 + next(90), 1 + next(90), 1 + next(120), 1 + next(120)));
        }
        for (w, h, ow, oh) in sizes {
            let src: Vec<u8> = (0..w * h)
                .map(|i| match next(5) {
                    0 => 0,
                    1 => 255,
                    _ => (i * 37 % 251) as u8 ^ next(256) as u8,
                })
                .collect();
            let expected = naive_resize(&src, w, h, ow, oh);
            let plan = PilResizePlan::full(w, h, ow, oh).unwrap();
            let mut out = vec![0u8; ow * oh];
            plan.run(&src, &mut PilResizeScratch::default(), &mut out)
                .unwrap();
            assert_eq!(out, expected, "{w}x{h} -> {ow}x{oh}");
        }
    }

    #[test]
    fn pass_order_follows_pillow_13_rule() {
        // 60x60 -> 40xN: vertical first while 60 - N > 2 * 20.
        assert!(vertical_first(60, 60, 40, 19));
        assert!(!vertical_first(60, 60, 40, 20));
        // Growing height never goes vertical first; ImageBind's landscape frames never do.
        assert!(!vertical_first(18, 25, 97, 66));
        assert!(!vertical_first(640, 512, 280, 224));
        assert!(!vertical_first(160, 120, 298, 224));
        // Very tall frame resized to short side 224.
        assert!(vertical_first(300, 700, 224, 522));
    }

    #[test]
    fn cropped_plan_equals_full_resize_then_crop_in_both_pass_orders() {
        for (w, h, ow, oh) in [(300, 700, 224, 522), (640, 512, 280, 224), (37, 53, 18, 12)] {
            let src = pattern(w, h);
            let full = PilResizePlan::full(w, h, ow, oh).unwrap();
            let mut scratch = PilResizeScratch::default();
            let mut full_out = vec![0u8; ow * oh];
            full.run(&src, &mut scratch, &mut full_out).unwrap();
            let crop = CropRect {
                left_px: ow / 5,
                top_px: oh / 3,
                width_px: ow / 2,
                height_px: oh / 2,
            };
            let plan = PilResizePlan::new(w, h, ow, oh, crop).unwrap();
            let mut out = vec![0u8; crop.width_px * crop.height_px];
            plan.run(&src, &mut scratch, &mut out).unwrap();
            for y in 0..crop.height_px {
                for x in 0..crop.width_px {
                    assert_eq!(
                        out[y * crop.width_px + x],
                        full_out[(y + crop.top_px) * ow + x + crop.left_px],
                        "{w}x{h}->{ow}x{oh} at ({x},{y})"
                    );
                }
            }
        }
    }

    #[test]
    fn pass_order_changes_the_result_for_clipped_edges() {
        // Guards the reason the order matters: the two orders really differ here.
        let (w, h, ow, oh) = (37, 53, 18, 12);
        let src = pattern(w, h);
        let mut scratch = PilResizeScratch::default();
        let mut a = vec![0u8; ow * oh];
        PilResizePlan::full(w, h, ow, oh)
            .unwrap()
            .run(&src, &mut scratch, &mut a)
            .unwrap();
        // Horizontal first by hand: width pass at full height, then height pass.
        let mut tmp = vec![0u8; ow * h];
        PilResizePlan::full(w, h, ow, h)
            .unwrap()
            .run(&src, &mut scratch, &mut tmp)
            .unwrap();
        let mut b = vec![0u8; ow * oh];
        PilResizePlan::full(ow, h, ow, oh)
            .unwrap()
            .run(&tmp, &mut scratch, &mut b)
            .unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn bad_sizes_and_buffers_are_errors() {
        assert!(PilResizePlan::full(0, 5, 3, 3).is_err());
        assert!(PilResizePlan::full(5, 5, 0, 3).is_err());
        let crop = CropRect {
            left_px: 2,
            top_px: 0,
            width_px: 3,
            height_px: 3,
        };
        assert!(matches!(
            PilResizePlan::new(5, 5, 4, 3, crop),
            Err(PilResizeError::CropOutOfRange { .. })
        ));
        let plan = PilResizePlan::full(5, 5, 3, 3).unwrap();
        let mut s = PilResizeScratch::default();
        assert!(plan.run(&[0u8; 24], &mut s, &mut [0u8; 9]).is_err());
        assert!(plan.run(&[0u8; 25], &mut s, &mut [0u8; 8]).is_err());
    }
}
