//! Reproduces **torch / torchvision** (not Pillow): the `Resize` / `CenterCrop` geometry shared
//! by the image-like modalities (depth, thermal, vision), and torch's crop-aware antialiased
//! bicubic resize of a **float tensor**, used by depth. Thermal and vision resize 8-bit Pillow
//! images instead, which [`crate::preprocess::pil_resize`] reproduces.
//!
//! * [`short_side_size`] and [`center_crop_offsets`] reproduce torchvision's
//!   `Resize(size)` / `CenterCrop(size)` geometry exactly (torchvision `functional.py`
//!   `_compute_resized_output_size`, `center_crop`), including Python's truncation and
//!   round-half-to-even.
//! * [`AaBicubicPlan`] reproduces torchvision >= 0.17 `Resize(..., BICUBIC, antialias=True)` on a
//!   float tensor (torch `_upsample_bicubic2d_aa`): separable cubic convolution with `a = -0.5`,
//!   support scaled by the downscale factor, weights normalised per output pixel, no clamping of
//!   the result, width pass first and then height pass. Only the output pixels that survive a crop
//!   are computed, and only the source rows/columns those pixels depend on are read.
//!
//! The weights are computed with torch's own float32 arithmetic and the taps are summed in
//! torch's order, so the result matches torch to a few float32 ulps (measured 6.6e-7 max on the
//! depth reference, values in [0, 1]; the residue is most likely FMA contraction in torch's build).
//! One deliberate difference: the width pass reads a fixed-length window per output pixel (zero
//! weights on the extra taps, for a constant loop trip count), so an infinite or NaN source pixel
//! just outside a window can turn an output NaN where torch would not read it. Finite inputs give
//! identical sums (`0 * x` adds an exact zero).

use std::ops::Range;

/// Errors of the resize geometry and of [`AaBicubicPlan`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResizeError {
    /// A size that must be at least one pixel is zero.
    #[error("{what} must be at least 1 px, got 0")]
    ZeroSize {
        /// Which size (e.g. "source height").
        what: &'static str,
    },
    /// The resized long side `int(size * long / short)` is too large to represent.
    #[error("resized long side for a {short_px} px short side, {long_px} px long side and target {size_px} px does not fit in usize")]
    TooLarge {
        /// Short side of the source, in pixels.
        short_px: usize,
        /// Long side of the source, in pixels.
        long_px: usize,
        /// Requested short side after resizing, in pixels.
        size_px: usize,
    },
    /// The crop does not lie inside the image it is taken from.
    #[error("crop {crop_h_px}x{crop_w_px} at (top {top_px}, left {left_px}) does not fit in a {image_h_px}x{image_w_px} image")]
    CropOutOfBounds {
        /// Crop top offset, in pixels.
        top_px: usize,
        /// Crop left offset, in pixels.
        left_px: usize,
        /// Crop height, in pixels.
        crop_h_px: usize,
        /// Crop width, in pixels.
        crop_w_px: usize,
        /// Height of the image being cropped, in pixels.
        image_h_px: usize,
        /// Width of the image being cropped, in pixels.
        image_w_px: usize,
    },
    /// The flat output buffer does not hold exactly one crop.
    #[error("output buffer has {actual} values, the crop needs {expected}")]
    OutputLength {
        /// `crop.height_px * crop.width_px`.
        expected: usize,
        /// Length of the given buffer.
        actual: usize,
    },
    /// A source image or output buffer has a different shape than the plan was built for.
    #[error("{what} is {actual_h_px}x{actual_w_px}, expected {expected_h_px}x{expected_w_px}")]
    ShapeMismatch {
        /// Which buffer ("source" or "output").
        what: &'static str,
        /// Expected height, in pixels.
        expected_h_px: usize,
        /// Expected width, in pixels.
        expected_w_px: usize,
        /// Actual height, in pixels.
        actual_h_px: usize,
        /// Actual width, in pixels.
        actual_w_px: usize,
    },
}

/// Output size of torchvision `Resize(size)` with an integer `size`: the short side becomes
/// `size_px`, the long side `int(size_px * long / short)` (truncated), returned as
/// `(new_w_px, new_h_px)`. A square image stays square; ties (`w == h`) follow torchvision
/// (`w <= h` means width is the short side).
///
/// # Errors
/// [`ResizeError::ZeroSize`] if any argument is 0; [`ResizeError::TooLarge`] if the long side
/// cannot be represented exactly.
pub fn short_side_size(
    h_px: usize,
    w_px: usize,
    size_px: usize,
) -> Result<(usize, usize), ResizeError> {
    nonzero(h_px, "source height")?;
    nonzero(w_px, "source width")?;
    nonzero(size_px, "target short side")?;
    let (short_px, long_px) = if w_px <= h_px {
        (w_px, h_px)
    } else {
        (h_px, w_px)
    };
    // Python evaluates `int(size * long / short)`: the product is an exact integer and `/` is a
    // correctly rounded true division. Both operands are exact in f64 below 2^53, so one f64
    // division reproduces it; beyond that we refuse rather than silently differ.
    const EXACT_F64_LIMIT: u128 = 1 << 53;
    let product = (size_px as u128) * (long_px as u128);
    let too_large = ResizeError::TooLarge {
        short_px,
        long_px,
        size_px,
    };
    if product >= EXACT_F64_LIMIT || (short_px as u128) >= EXACT_F64_LIMIT {
        return Err(too_large);
    }
    let new_long_f = product as f64 / short_px as f64;
    // The quotient is finite, positive and below 2^53, so the truncating cast is exact.
    let new_long_px = new_long_f as usize;
    Ok(if w_px <= h_px {
        (size_px, new_long_px)
    } else {
        (new_long_px, size_px)
    })
}

/// Offsets `(top_px, left_px)` of torchvision `CenterCrop(size)` on an `h_px x w_px` image:
/// `int(round((h - size) / 2))` with Python's round-half-to-even, likewise for the width.
///
/// # Errors
/// [`ResizeError::ZeroSize`] for a zero size; [`ResizeError::CropOutOfBounds`] if the image is
/// smaller than the crop (torchvision would pad; no caller here needs that).
pub fn center_crop_offsets(
    h_px: usize,
    w_px: usize,
    size_px: usize,
) -> Result<(usize, usize), ResizeError> {
    nonzero(size_px, "crop size")?;
    if h_px < size_px || w_px < size_px {
        return Err(ResizeError::CropOutOfBounds {
            top_px: 0,
            left_px: 0,
            crop_h_px: size_px,
            crop_w_px: size_px,
            image_h_px: h_px,
            image_w_px: w_px,
        });
    }
    Ok((
        half_even_half(h_px - size_px),
        half_even_half(w_px - size_px),
    ))
}

/// `round(d / 2)` with round-half-to-even, for a non-negative integer `d`.
fn half_even_half(d: usize) -> usize {
    let k = d / 2;
    if d % 2 == 0 {
        k
    } else {
        // d / 2 = k + 0.5: round to the even one of k and k + 1.
        k + (k & 1)
    }
}

fn nonzero(v: usize, what: &'static str) -> Result<(), ResizeError> {
    if v == 0 {
        Err(ResizeError::ZeroSize { what })
    } else {
        Ok(())
    }
}

/// A crop rectangle in the resized image, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropRect {
    /// First row of the crop.
    pub top_px: usize,
    /// First column of the crop.
    pub left_px: usize,
    /// Number of rows.
    pub height_px: usize,
    /// Number of columns.
    pub width_px: usize,
}

/// Torch's `aa_filter` for bicubic (`a = -0.5`), evaluated in f32 like torch does for float
/// tensors (`cubic_convolution1/2` in `UpSample.h`).
fn cubic_a05_f32(x: f32) -> f32 {
    const A: f32 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A
    } else {
        0.0
    }
}

/// Weights of one axis, restricted to a range of output indices.
#[derive(Debug, Clone)]
struct AxisPlan {
    /// Source indices `[src_lo, src_hi)` that the selected outputs read.
    src_lo: usize,
    src_hi: usize,
    /// Weights per output: `stride` values each (the longest tap count), zero padded.
    stride: usize,
    /// First source index per output, relative to `src_lo`.
    starts: Vec<usize>,
    /// Number of taps read per output (`stride` for every output when `fixed`).
    lens: Vec<usize>,
    /// Every output reads exactly `stride` taps.
    fixed: bool,
    weights: Vec<f32>,
    /// `weights` with every value repeated 4 times (a ready-made SIMD broadcast).
    splat: Vec<[f32; 4]>,
}

impl AxisPlan {
    /// Torch `_compute_weights_aa` (bicubic, antialias) for outputs `out_range` of an
    /// `in_size -> out_size` resize. With `fixed_window`, every output gets the same number of
    /// taps (padded with zero weights), see below.
    fn new(
        in_size: usize,
        out_size: usize,
        out_range: Range<usize>,
        fixed_window: bool,
    ) -> AxisPlan {
        // Torch (`_compute_weights_aa`, scalar_t = float) mixes f32 variables with f64
        // literals; each step below rounds where torch stores into a float.
        let scale = in_size as f32 / out_size as f32;
        let (support, invscale) = if scale >= 1.0 {
            (2.0 * scale, (1.0 / f64::from(scale)) as f32)
        } else {
            (2.0, 1.0)
        };
        let max_taps = (support.ceil() as usize) * 2 + 1;
        let mut bounds = Vec::with_capacity(out_range.len());
        let mut raw_weights: Vec<f32> = Vec::with_capacity(out_range.len() * max_taps);
        for i in out_range.clone() {
            let center = (f64::from(scale) * (i as f64 + 0.5)) as f32;
            // `as i64` truncates toward zero exactly like torch's static_cast<int64_t>.
            let xmin = (f64::from(center - support) + 0.5) as i64;
            let xmin = xmin.max(0) as usize;
            let xend = (f64::from(center + support) + 0.5) as i64;
            let xend = xend.clamp(0, in_size as i64) as usize;
            let xsize = xend.saturating_sub(xmin).min(max_taps);
            let first = raw_weights.len();
            let mut total = 0.0f32;
            for j in 0..xsize {
                let d = (j + xmin) as f32 - center;
                let arg = ((f64::from(d) + 0.5) * f64::from(invscale)) as f32;
                let w = cubic_a05_f32(arg);
                raw_weights.push(w);
                total += w;
            }
            if total != 0.0 {
                for w in raw_weights.iter_mut().skip(first) {
                    *w /= total;
                }
            }
            bounds.push((xmin, xsize, first));
        }
        let src_lo = bounds.iter().map(|b| b.0).min().unwrap_or(0);
        let src_hi = bounds.iter().map(|b| b.0 + b.1).max().unwrap_or(0);
        let longest = bounds.iter().map(|b| b.1).max().unwrap_or(0).max(1);
        let stride = longest;
        let mut weights = vec![0.0f32; bounds.len() * stride];
        let mut starts = Vec::with_capacity(bounds.len());
        let mut lens = Vec::with_capacity(bounds.len());
        let span = src_hi - src_lo;
        let fixed = fixed_window && span >= stride;
        for (row, &(xmin, xsize, first)) in weights.chunks_exact_mut(stride).zip(&bounds) {
            let start = xmin - src_lo;
            // With a fixed window every output reads exactly `stride` inputs (zero weights on
            // the extra ones), so the tap loop has a constant trip count. Windows at the right
            // edge are shifted left instead of reading past the needed span.
            let (start, offset, len) = if fixed {
                let shifted = start.min(span - stride);
                (shifted, start - shifted, stride)
            } else {
                (start, 0, xsize)
            };
            for (dst, &w) in row
                .iter_mut()
                .skip(offset)
                .zip(raw_weights.iter().skip(first).take(xsize))
            {
                *dst = w;
            }
            starts.push(start);
            lens.push(len);
        }
        let splat = weights.iter().map(|&w| [w; 4]).collect();
        AxisPlan {
            src_lo,
            src_hi,
            stride,
            starts,
            lens,
            fixed,
            weights,
            splat,
        }
    }

    fn span(&self) -> usize {
        self.src_hi - self.src_lo
    }
}

/// Reusable buffers for [`AaBicubicPlan`]; one per thread, sized on first use.
#[derive(Debug, Default, Clone)]
pub struct ResizeScratch {
    /// `GROUP` source rows (needed columns only) interleaved column by column.
    group: Vec<[f32; GROUP]>,
    /// Width-pass results of one row group, interleaved like `group`.
    acc: Vec<[f32; GROUP]>,
    /// Width-resized rows: one per needed source row, `crop width` values each.
    tmp: Vec<f32>,
}

/// Where [`AaBicubicPlan::run_rows`] wants one source row.
#[derive(Debug)]
pub struct RowSink<'a> {
    group: &'a mut [[f32; GROUP]],
    lane: usize,
}

impl RowSink<'_> {
    /// Number of values the row needs (`AaBicubicPlan::source_cols().len()`).
    pub fn len(&self) -> usize {
        self.group.len()
    }

    /// Whether the row needs no values (never for a valid plan).
    pub fn is_empty(&self) -> bool {
        self.group.is_empty()
    }

    /// Store the row's needed columns, left to right. Values beyond [`Self::len`] are ignored;
    /// a shorter sequence leaves the remaining columns with stale values, so callers must
    /// supply exactly `len()` values.
    #[inline]
    pub fn write(self, values: impl IntoIterator<Item = f32>) {
        let lane = self.lane;
        for (g, v) in self.group.iter_mut().zip(values) {
            if let Some(slot) = g.get_mut(lane) {
                *slot = v;
            }
        }
    }
}

/// Precomputed antialiased bicubic resize `src_h x src_w -> out_h x out_w` followed by a crop,
/// equal (to float32 round-off) to torchvision `Resize([out_h, out_w], BICUBIC, antialias=True)`
/// on a float tensor followed by cropping. Build it once per source size and reuse it.
#[derive(Debug, Clone)]
pub struct AaBicubicPlan {
    src_h_px: usize,
    src_w_px: usize,
    out_h_px: usize,
    out_w_px: usize,
    crop: CropRect,
    rows: AxisPlan,
    cols: AxisPlan,
}

/// Source rows interleaved per width-pass sweep (one SIMD lane each); see
/// [`AaBicubicPlan::run_row_groups`].
pub const ROW_GROUP: usize = 8;
const GROUP: usize = ROW_GROUP;
/// Output columns accumulated in registers per height-pass sweep.
const VBLOCK: usize = 32;

impl AaBicubicPlan {
    /// Plan a resize of a `src_h_px x src_w_px` image to `out_h_px x out_w_px`, keeping only
    /// `crop` (coordinates in the resized image).
    ///
    /// # Errors
    /// [`ResizeError::ZeroSize`] for any zero size; [`ResizeError::CropOutOfBounds`] if the crop
    /// does not fit in the resized image.
    pub fn new(
        src_h_px: usize,
        src_w_px: usize,
        out_h_px: usize,
        out_w_px: usize,
        crop: CropRect,
    ) -> Result<Self, ResizeError> {
        nonzero(src_h_px, "source height")?;
        nonzero(src_w_px, "source width")?;
        nonzero(out_h_px, "resized height")?;
        nonzero(out_w_px, "resized width")?;
        nonzero(crop.height_px, "crop height")?;
        nonzero(crop.width_px, "crop width")?;
        let fits = |off: usize, len: usize, total: usize| {
            off.checked_add(len).is_some_and(|end| end <= total)
        };
        if !fits(crop.top_px, crop.height_px, out_h_px)
            || !fits(crop.left_px, crop.width_px, out_w_px)
        {
            return Err(ResizeError::CropOutOfBounds {
                top_px: crop.top_px,
                left_px: crop.left_px,
                crop_h_px: crop.height_px,
                crop_w_px: crop.width_px,
                image_h_px: out_h_px,
                image_w_px: out_w_px,
            });
        }
        let rows = AxisPlan::new(
            src_h_px,
            out_h_px,
            crop.top_px..crop.top_px + crop.height_px,
            false,
        );
        let cols = AxisPlan::new(
            src_w_px,
            out_w_px,
            crop.left_px..crop.left_px + crop.width_px,
            true,
        );
        Ok(Self {
            src_h_px,
            src_w_px,
            out_h_px,
            out_w_px,
            crop,
            rows,
            cols,
        })
    }

    /// torchvision `Resize(size_px, BICUBIC, antialias=True)` + `CenterCrop(size_px)`: the short
    /// side becomes `size_px` ([`short_side_size`]), then the centre `size_px x size_px` is kept
    /// ([`center_crop_offsets`]).
    ///
    /// # Errors
    /// [`ResizeError::ZeroSize`] for a zero size, [`ResizeError::TooLarge`] for absurd aspect
    /// ratios.
    pub fn short_side_center_crop(
        src_h_px: usize,
        src_w_px: usize,
        size_px: usize,
    ) -> Result<Self, ResizeError> {
        let (out_w_px, out_h_px) = short_side_size(src_h_px, src_w_px, size_px)?;
        let (top_px, left_px) = center_crop_offsets(out_h_px, out_w_px, size_px)?;
        Self::new(
            src_h_px,
            src_w_px,
            out_h_px,
            out_w_px,
            CropRect {
                top_px,
                left_px,
                height_px: size_px,
                width_px: size_px,
            },
        )
    }

    /// Source shape `(height_px, width_px)` the plan was built for.
    pub fn source_shape(&self) -> (usize, usize) {
        (self.src_h_px, self.src_w_px)
    }

    /// Shape `(height_px, width_px)` of the full resized image (before the crop).
    pub fn resized_shape(&self) -> (usize, usize) {
        (self.out_h_px, self.out_w_px)
    }

    /// The crop (in resized-image coordinates) this plan produces.
    pub fn crop(&self) -> CropRect {
        self.crop
    }

    /// Source rows that influence the cropped output.
    pub fn source_rows(&self) -> Range<usize> {
        self.rows.src_lo..self.rows.src_hi
    }

    /// Source columns that influence the cropped output.
    pub fn source_cols(&self) -> Range<usize> {
        self.cols.src_lo..self.cols.src_hi
    }

    /// Resize and crop, pulling source rows on demand: `fill_row(r, sink)` must write columns
    /// [`Self::source_cols`] of source row `r` into `sink` (see [`RowSink::write`]); it is called
    /// once for each `r` in [`Self::source_rows`], in increasing order. This lets a caller convert
    /// its raw pixels on the fly without materialising a float image. `finish_row` is called on
    /// every finished output row while it is still in cache (for an element-wise post-step such
    /// as a normalisation; pass `|_| {}` for none). `out` receives the crop, row-major,
    /// `crop.height_px * crop.width_px` values.
    ///
    /// # Errors
    /// [`ResizeError::OutputLength`] if `out` has the wrong length.
    pub fn run_rows<F, G>(
        &self,
        mut fill_row: F,
        finish_row: G,
        scratch: &mut ResizeScratch,
        out: &mut [f32],
    ) -> Result<(), ResizeError>
    where
        F: FnMut(usize, RowSink<'_>),
        G: FnMut(&mut [f32]),
    {
        let fill_group = |first: usize, n: usize, group: &mut [[f32; ROW_GROUP]]| {
            for lane in 0..n {
                fill_row(
                    first + lane,
                    RowSink {
                        group: &mut *group,
                        lane,
                    },
                );
            }
        };
        self.run_row_groups(fill_group, finish_row, scratch, out)
    }

    /// Like [`Self::run_rows`], but the source is pulled [`ROW_GROUP`] rows at a time, already
    /// interleaved: `fill_group(first, n, group)` must set `group[c][l]` to column
    /// `source_cols().start + c` of source row `first + l`, for `l < n` (`n < ROW_GROUP` only
    /// for the last group; lanes `>= n` are ignored). Writing a whole `[f32; ROW_GROUP]` per column
    /// is cheaper than `ROW_GROUP` strided single-value stores.
    ///
    /// # Errors
    /// [`ResizeError::OutputLength`] if `out` has the wrong length.
    pub fn run_row_groups<F, G>(
        &self,
        mut fill_group: F,
        mut finish_row: G,
        scratch: &mut ResizeScratch,
        out: &mut [f32],
    ) -> Result<(), ResizeError>
    where
        F: FnMut(usize, usize, &mut [[f32; ROW_GROUP]]),
        G: FnMut(&mut [f32]),
    {
        let crop_w = self.crop.width_px;
        let crop_h = self.crop.height_px;
        if out.len() != crop_h * crop_w {
            return Err(ResizeError::OutputLength {
                expected: crop_h * crop_w,
                actual: out.len(),
            });
        }
        let span_cols = self.cols.span();
        let span_rows = self.rows.span();
        scratch.group.resize(span_cols, [0.0; GROUP]);
        scratch.acc.resize(crop_w, [0.0; GROUP]);
        scratch.tmp.resize(span_rows * crop_w, 0.0);

        // Width pass (torch's order: width first), only on the source rows the kept output rows
        // read and only for the kept output columns. GROUP source rows are interleaved so that
        // each weight multiplies GROUP pixels at once: packed arithmetic, taps summed in order.
        // The height pass of an output row runs as soon as the width pass has produced all the
        // rows it reads, while they are still in cache.
        let rows_plan = &self.rows;
        let mut pending = out
            .chunks_exact_mut(crop_w)
            .zip(rows_plan.starts.iter().zip(&rows_plan.lens))
            .zip(rows_plan.weights.chunks_exact(rows_plan.stride))
            .peekable();
        let first_row = self.rows.src_lo;
        let mut done = 0;
        while done < span_rows {
            let n = GROUP.min(span_rows - done);
            fill_group(first_row + done, n, &mut scratch.group);
            horizontal_group(&self.cols, &scratch.group, &mut scratch.acc);
            // De-interleave: lane l of every column is row `done + l`.
            let group_rows = scratch
                .tmp
                .get_mut(done * crop_w..(done + n) * crop_w)
                .unwrap_or(&mut []);
            for (lane, tmp_row) in group_rows.chunks_exact_mut(crop_w).enumerate() {
                for (d, a) in tmp_row.iter_mut().zip(&scratch.acc) {
                    *d = a.get(lane).copied().unwrap_or(0.0);
                }
            }
            done += n;
            // Height pass: each ready output row is a weighted sum of width-resized rows.
            while let Some(((out_row, (&start, &len)), weights)) =
                pending.next_if(|((_, (&start, &len)), _)| start + len <= done)
            {
                let tmp = scratch.tmp.get(start * crop_w..).unwrap_or(&[]);
                vertical_row(tmp, crop_w, weights.get(..len).unwrap_or(&[]), out_row);
                finish_row(out_row);
            }
        }
        Ok(())
    }

    /// Resize and crop a whole float image. `out` must be `crop.height_px x crop.width_px`.
    ///
    /// # Errors
    /// [`ResizeError::ShapeMismatch`] if `src` or `out` has the wrong shape.
    pub fn resize_crop(
        &self,
        src: ndarray::ArrayView2<'_, f32>,
        scratch: &mut ResizeScratch,
        mut out: ndarray::ArrayViewMut2<'_, f32>,
    ) -> Result<(), ResizeError> {
        let (h, w) = src.dim();
        if (h, w) != (self.src_h_px, self.src_w_px) {
            return Err(ResizeError::ShapeMismatch {
                what: "source",
                expected_h_px: self.src_h_px,
                expected_w_px: self.src_w_px,
                actual_h_px: h,
                actual_w_px: w,
            });
        }
        let (oh, ow) = out.dim();
        if (oh, ow) != (self.crop.height_px, self.crop.width_px) {
            return Err(ResizeError::ShapeMismatch {
                what: "output",
                expected_h_px: self.crop.height_px,
                expected_w_px: self.crop.width_px,
                actual_h_px: oh,
                actual_w_px: ow,
            });
        }
        let cols = self.source_cols();
        let fill = |r: usize, sink: RowSink<'_>| {
            sink.write(src.row(r).iter().skip(cols.start).copied());
        };
        match out.as_slice_mut() {
            Some(slice) => self.run_rows(fill, |_| {}, scratch, slice),
            None => {
                let mut packed = vec![0.0f32; oh * ow];
                self.run_rows(fill, |_| {}, scratch, &mut packed)?;
                for (dst, &v) in out.iter_mut().zip(&packed) {
                    *dst = v;
                }
                Ok(())
            }
        }
    }
}

/// Width pass for `GROUP` interleaved source rows: for each kept output column `j`,
/// `acc[j] = sum_k w[j][k] * group[start_j + k]` (every lane is one source row), taps in order.
/// The common window lengths get a fully unrolled loop.
fn horizontal_group(plan: &AxisPlan, group: &[[f32; GROUP]], acc: &mut [[f32; GROUP]]) {
    if !plan.fixed {
        return horizontal_group_any(plan, group, acc);
    }
    match plan.stride {
        4 => horizontal_group_fixed::<4>(plan, group, acc),
        5 => horizontal_group_fixed::<5>(plan, group, acc),
        6 => horizontal_group_fixed::<6>(plan, group, acc),
        7 => horizontal_group_fixed::<7>(plan, group, acc),
        8 => horizontal_group_fixed::<8>(plan, group, acc),
        9 => horizontal_group_fixed::<9>(plan, group, acc),
        10 => horizontal_group_fixed::<10>(plan, group, acc),
        11 => horizontal_group_fixed::<11>(plan, group, acc),
        12 => horizontal_group_fixed::<12>(plan, group, acc),
        13 => horizontal_group_fixed::<13>(plan, group, acc),
        14 => horizontal_group_fixed::<14>(plan, group, acc),
        15 => horizontal_group_fixed::<15>(plan, group, acc),
        16 => horizontal_group_fixed::<16>(plan, group, acc),
        _ => horizontal_group_any(plan, group, acc),
    }
}

fn horizontal_group_fixed<const K: usize>(
    plan: &AxisPlan,
    group: &[[f32; GROUP]],
    acc: &mut [[f32; GROUP]],
) {
    /// Weights (pre-broadcast) and interleaved source pixels of one output column.
    type Taps<'w, 'g, const K: usize> = (&'w [[f32; 4]; K], &'g [[f32; GROUP]; K]);
    /// The `K` taps of output `j`, or `None` if the plan were inconsistent (never).
    #[inline(always)]
    fn taps<'g, 'w, const K: usize>(
        plan: &'w AxisPlan,
        group: &'g [[f32; GROUP]],
        j: usize,
    ) -> Option<Taps<'w, 'g, K>> {
        let start = *plan.starts.get(j)?;
        let weights = plan.splat.get(j * K..(j + 1) * K)?.try_into().ok()?;
        let src = group.get(start..start + K)?.try_into().ok()?;
        Some((weights, src))
    }
    // Two output columns per iteration: their sums are independent dependency chains, which
    // hides the add latency while each chain keeps torch's tap order.
    let mut j = 0;
    let mut pairs = acc.chunks_exact_mut(2);
    for pair in pairs.by_ref() {
        match (
            taps::<K>(plan, group, j),
            taps::<K>(plan, group, j + 1),
            pair,
        ) {
            (Some((wa, xa)), Some((wb, xb)), [a, b]) => {
                let mut sa = [0.0f32; GROUP];
                let mut sb = [0.0f32; GROUP];
                for k in 0..K {
                    for l in 0..GROUP {
                        sa[l] += wa[k][l % 4] * xa[k][l];
                        sb[l] += wb[k][l % 4] * xb[k][l];
                    }
                }
                *a = sa;
                *b = sb;
            }
            (_, _, pair) => pair.fill([0.0; GROUP]),
        }
        j += 2;
    }
    for a in pairs.into_remainder() {
        let mut sum = [0.0f32; GROUP];
        if let Some((w, x)) = taps::<K>(plan, group, j) {
            for k in 0..K {
                for l in 0..GROUP {
                    sum[l] += w[k][l % 4] * x[k][l];
                }
            }
        }
        *a = sum;
    }
}

fn horizontal_group_any(plan: &AxisPlan, group: &[[f32; GROUP]], acc: &mut [[f32; GROUP]]) {
    for (a, ((&start, &len), weights)) in acc.iter_mut().zip(
        plan.starts
            .iter()
            .zip(&plan.lens)
            .zip(plan.weights.chunks_exact(plan.stride)),
    ) {
        let src = group.get(start..start + len).unwrap_or(&[]);
        let mut sum = [0.0f32; GROUP];
        for (&w, x) in weights.iter().zip(src) {
            for l in 0..GROUP {
                sum[l] += w * x[l];
            }
        }
        *a = sum;
    }
}

/// One output row of the height pass: `out[c] = sum_k w[k] * tmp[k][c]` over consecutive rows of
/// `tmp` (`width` values each), taps summed in order. Columns are processed in blocks of
/// `VBLOCK` kept in registers across all taps.
#[inline(never)]
fn vertical_row(tmp: &[f32], width: usize, weights: &[f32], out_row: &mut [f32]) {
    let mut c0 = 0;
    let mut blocks = out_row.chunks_exact_mut(VBLOCK);
    for out_block in blocks.by_ref() {
        let mut acc = [0.0f32; VBLOCK];
        for (k, &w) in weights.iter().enumerate() {
            let at = k * width + c0;
            let Some(src) = tmp.get(at..at + VBLOCK) else {
                break;
            };
            for (a, &x) in acc.iter_mut().zip(src) {
                *a += w * x;
            }
        }
        out_block.copy_from_slice(&acc);
        c0 += VBLOCK;
    }
    for (i, o) in blocks.into_remainder().iter_mut().enumerate() {
        let mut acc = 0.0f32;
        for (k, &w) in weights.iter().enumerate() {
            acc += w * tmp.get(k * width + c0 + i).copied().unwrap_or(0.0);
        }
        *o = acc;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn short_side_size_matches_torchvision_examples() {
        assert_eq!(short_side_size(480, 640, 224).unwrap(), (298, 224));
        assert_eq!(short_side_size(512, 640, 224).unwrap(), (280, 224));
        assert_eq!(short_side_size(120, 160, 224).unwrap(), (298, 224));
        assert_eq!(short_side_size(640, 480, 224).unwrap(), (224, 298));
        assert_eq!(short_side_size(100, 100, 224).unwrap(), (224, 224));
        assert_eq!(short_side_size(1, 1500, 224).unwrap(), (336_000, 224));
        assert!(short_side_size(0, 5, 224).is_err());
    }

    #[test]
    fn center_crop_rounds_half_to_even() {
        assert_eq!(center_crop_offsets(224, 298, 224).unwrap(), (0, 37));
        assert_eq!(center_crop_offsets(224, 280, 224).unwrap(), (0, 28));
        // (225-224)/2 = 0.5 -> 0, (227-224)/2 = 1.5 -> 2, (229-224)/2 = 2.5 -> 2.
        assert_eq!(center_crop_offsets(225, 227, 224).unwrap(), (0, 2));
        assert_eq!(center_crop_offsets(229, 224, 224).unwrap(), (2, 0));
        assert!(center_crop_offsets(223, 300, 224).is_err());
    }

    #[test]
    fn identity_resize_copies_the_image() {
        let src = ndarray::Array2::from_shape_fn((7, 9), |(r, c)| (r * 10 + c) as f32 * 0.37 - 3.0);
        let plan = AaBicubicPlan::new(
            7,
            9,
            7,
            9,
            CropRect {
                top_px: 0,
                left_px: 0,
                height_px: 7,
                width_px: 9,
            },
        )
        .unwrap();
        let mut out = ndarray::Array2::zeros((7, 9));
        plan.resize_crop(src.view(), &mut ResizeScratch::default(), out.view_mut())
            .unwrap();
        assert_eq!(out, src);
    }

    #[test]
    fn constant_image_stays_constant_after_down_and_upscaling() {
        for &(h, w, oh, ow) in &[(480, 640, 224, 298), (3, 2, 224, 336), (1, 1, 224, 224)] {
            let src = ndarray::Array2::from_elem((h, w), 0.75f32);
            let plan = AaBicubicPlan::new(
                h,
                w,
                oh,
                ow,
                CropRect {
                    top_px: 0,
                    left_px: 0,
                    height_px: oh,
                    width_px: ow,
                },
            )
            .unwrap();
            let mut out = ndarray::Array2::zeros((oh, ow));
            plan.resize_crop(src.view(), &mut ResizeScratch::default(), out.view_mut())
                .unwrap();
            let worst = out.iter().map(|v| (v - 0.75).abs()).fold(0.0f32, f32::max);
            assert!(worst < 1e-6, "{h}x{w} -> {oh}x{ow}: {worst}");
        }
    }

    /// Pillow-formula f64 resize of the whole image, written without any of the optimisations.
    fn naive_resize(src: &ndarray::Array2<f32>, oh: usize, ow: usize) -> ndarray::Array2<f64> {
        fn cubic(x: f64) -> f64 {
            let x = x.abs();
            if x < 1.0 {
                (1.5 * x - 2.5) * x * x + 1.0
            } else if x < 2.0 {
                (((x - 5.0) * x + 8.0) * x - 4.0) * -0.5
            } else {
                0.0
            }
        }
        fn axis(n_in: usize, n_out: usize) -> Vec<Vec<f64>> {
            let scale = n_in as f64 / n_out as f64;
            let fs = scale.max(1.0);
            (0..n_out)
                .map(|i| {
                    let c = (i as f64 + 0.5) * scale;
                    let w: Vec<f64> = (0..n_in)
                        .map(|x| {
                            let inside =
                                x as f64 + 0.5 >= c - 2.0 * fs && x as f64 + 0.5 <= c + 2.0 * fs;
                            if inside {
                                cubic((x as f64 + 0.5 - c) / fs)
                            } else {
                                0.0
                            }
                        })
                        .collect();
                    let t: f64 = w.iter().sum();
                    w.into_iter().map(|v| v / t).collect()
                })
                .collect()
        }
        let (h, w) = src.dim();
        let (wr, wc) = (axis(h, oh), axis(w, ow));
        ndarray::Array2::from_shape_fn((oh, ow), |(i, j)| {
            let mut acc = 0.0;
            for (r, a) in wr[i].iter().enumerate() {
                for (c, b) in wc[j].iter().enumerate() {
                    acc += a * b * f64::from(src[[r, c]]);
                }
            }
            acc
        })
    }

    #[test]
    fn plan_matches_a_naive_resize_for_light_and_heavy_downscaling_and_upscaling() {
        // (src_h, src_w, out_h, out_w, crop): strides from 4 (upscale) to > 16 (22x shrink,
        // generic tap loop), crops touching both edges.
        let cases = [
            (
                37,
                600,
                20,
                27,
                CropRect {
                    top_px: 0,
                    left_px: 3,
                    height_px: 20,
                    width_px: 24,
                },
            ),
            (
                90,
                120,
                40,
                53,
                CropRect {
                    top_px: 5,
                    left_px: 0,
                    height_px: 35,
                    width_px: 53,
                },
            ),
            (
                9,
                7,
                30,
                23,
                CropRect {
                    top_px: 1,
                    left_px: 2,
                    height_px: 29,
                    width_px: 21,
                },
            ),
            (
                64,
                64,
                64,
                17,
                CropRect {
                    top_px: 0,
                    left_px: 0,
                    height_px: 64,
                    width_px: 17,
                },
            ),
        ];
        for (h, w, oh, ow, crop) in cases {
            let src = ndarray::Array2::from_shape_fn((h, w), |(r, c)| {
                (((r * 131 + c * 71) % 97) as f32 / 97.0)
                    + if (r + c) % 11 == 0 { 3.0 } else { 0.0 }
            });
            let plan = AaBicubicPlan::new(h, w, oh, ow, crop).unwrap();
            let mut out = ndarray::Array2::zeros((crop.height_px, crop.width_px));
            plan.resize_crop(src.view(), &mut ResizeScratch::default(), out.view_mut())
                .unwrap();
            let full = naive_resize(&src, oh, ow);
            let expected = full.slice(ndarray::s![
                crop.top_px..crop.top_px + crop.height_px,
                crop.left_px..crop.left_px + crop.width_px
            ]);
            let worst = out
                .iter()
                .zip(expected.iter())
                .map(|(&a, &b)| (f64::from(a) - b).abs())
                .fold(0.0, f64::max);
            assert!(worst < 2e-5, "{h}x{w} -> {oh}x{ow}: {worst}");
        }
    }

    #[test]
    fn cropped_plan_equals_crop_of_full_resize() {
        let src =
            ndarray::Array2::from_shape_fn((37, 53), |(r, c)| ((r * 31 + c * 17) % 23) as f32);
        let full = AaBicubicPlan::new(
            37,
            53,
            20,
            29,
            CropRect {
                top_px: 0,
                left_px: 0,
                height_px: 20,
                width_px: 29,
            },
        )
        .unwrap();
        let crop = CropRect {
            top_px: 3,
            left_px: 5,
            height_px: 11,
            width_px: 17,
        };
        let part = AaBicubicPlan::new(37, 53, 20, 29, crop).unwrap();
        let mut a = ndarray::Array2::zeros((20, 29));
        let mut b = ndarray::Array2::zeros((11, 17));
        let mut s = ResizeScratch::default();
        full.resize_crop(src.view(), &mut s, a.view_mut()).unwrap();
        part.resize_crop(src.view(), &mut s, b.view_mut()).unwrap();
        let a_crop = a.slice(ndarray::s![3..14, 5..22]);
        assert_eq!(a_crop, b);
    }
}
