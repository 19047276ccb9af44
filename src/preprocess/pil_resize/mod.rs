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
use wide::u8x16;

use crate::preprocess::resize::{short_side_center_crop, ResizeError};

mod coeffs;
mod interleaved;
mod kernels;
mod passes;
mod transpose;

/// The crop window of the resized image, in resized-image pixels (the same type as torch's
/// resize uses).
pub use crate::preprocess::resize::CropRect;
pub use coeffs::AxisCoeffs;

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
    /// torchvision's resize and crop geometry cannot be computed (a zero or absurd size).
    #[error(transparent)]
    Geometry(#[from] ResizeError),
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

    /// Plans torchvision `Resize(size_px)` + `CenterCrop(size_px)` of an
    /// `input_width_px x input_height_px` image: the short side becomes `size_px` and only the
    /// centre `size_px x size_px` is computed ([`short_side_center_crop`]).
    ///
    /// # Errors
    /// [`PilResizeError::Geometry`] for a zero size or an absurd aspect ratio, otherwise as
    /// [`PilResizePlan::new`].
    pub fn short_side_center_crop(
        input_width_px: usize,
        input_height_px: usize,
        size_px: usize,
    ) -> Result<Self, PilResizeError> {
        let geometry = short_side_center_crop(input_height_px, input_width_px, size_px)?;
        Self::new(
            input_width_px,
            input_height_px,
            geometry.resized_w_px,
            geometry.resized_h_px,
            geometry.crop,
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
        self.run_vertical_only(src, dst);
        Ok(())
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::kernels::clip8;
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
