//! [`AaBicubicPlan`]: the planned resize + crop and its two passes.

use std::ops::Range;

use super::kernels::{horizontal_group, vertical_row, GROUP, ROW_GROUP};
use super::weights::AxisPlan;
use super::{nonzero, short_side_center_crop, CropRect, ResizeError};

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

    /// torchvision `Resize(size_px, BICUBIC, antialias=True)` + `CenterCrop(size_px)`
    /// ([`short_side_center_crop`]).
    ///
    /// # Errors
    /// [`ResizeError::ZeroSize`] for a zero size, [`ResizeError::TooLarge`] for absurd aspect
    /// ratios.
    pub fn short_side_center_crop(
        src_h_px: usize,
        src_w_px: usize,
        size_px: usize,
    ) -> Result<Self, ResizeError> {
        let geometry = short_side_center_crop(src_h_px, src_w_px, size_px)?;
        Self::new(
            src_h_px,
            src_w_px,
            geometry.resized_h_px,
            geometry.resized_w_px,
            geometry.crop,
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

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
