//! Pillow's fixed-point bicubic coefficients of one axis (`precompute_coeffs` and
//! `normalize_coeffs_8bpc` in `Resample.c`), laid out for the vector kernels.

use std::ops::Range;

use wide::i16x8;

use super::{Axis, PilResizeError, BICUBIC_SUPPORT, HALF, ONE_FIXED, SPLIT_BITS};

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
    pub(super) starts: Vec<usize>,
    coeffs: Vec<i32>,
    /// `coeffs >> SPLIT_BITS`.
    hi: Vec<i16>,
    /// `coeffs & (2^SPLIT_BITS - 1)`.
    lo: Vec<i16>,
    /// Horizontal-pass layout: per output pixel `lanes` vectors of high halves then `lanes` of
    /// low halves, 8 consecutive taps each, zero past the window (empty if the window is > 16).
    pub(super) taps8: Vec<i16x8>,
    /// 8-tap vectors per output pixel in `taps8` (1 or 2; 0 when the window is > 16).
    pub(super) lanes: usize,
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
        let too_large = || PilResizeError::TooLarge {
            axis,
            input_px,
            output_px,
        };
        let (firsts, weights) = pillow_weights(input_px, output_px, outputs.clone());
        let (window, starts, coeffs) =
            fixed_point_windows(input_px, &firsts, &weights).ok_or_else(too_large)?;
        let (hi, lo) = split_coeffs(&coeffs).ok_or_else(too_large)?;
        let (taps8, lanes) = horizontal_layout(&hi, &lo, window);
        let pairs = vertical_layout(&hi, &lo, window);
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
    pub(super) fn split_taps(&self) -> impl Iterator<Item = (usize, &[i16], &[i16], &[i16x8])> {
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

/// Pillow's `precompute_coeffs` with box = (0, input), every step in the same f64 order: for
/// each output pixel of `outputs`, its first input pixel and its normalised weights.
fn pillow_weights(
    input_px: usize,
    output_px: usize,
    outputs: Range<usize>,
) -> (Vec<usize>, Vec<Vec<f64>>) {
    let scale = input_px as f64 / output_px as f64;
    let filterscale = scale.max(1.0);
    let support = BICUBIC_SUPPORT * filterscale;
    let ss = 1.0 / filterscale;
    let mut firsts = Vec::with_capacity(outputs.len());
    let mut weights: Vec<Vec<f64>> = Vec::with_capacity(outputs.len());
    for xx in outputs {
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
    (firsts, weights)
}

/// The weights in 22-bit fixed point, in windows of one common length (the longest Pillow
/// window) that start early enough to stay inside the input: `(window, starts, coeffs)`.
/// `None` if the weights of an output pixel could overflow Pillow's 32-bit accumulator.
fn fixed_point_windows(
    input_px: usize,
    firsts: &[usize],
    weights: &[Vec<f64>],
) -> Option<(usize, Vec<usize>, Vec<i32>)> {
    // Longest Pillow window; never longer than the input because every window lies in it.
    // (Padding it to a multiple of 4 was measured slower in both passes.)
    let window = weights.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let mut starts = Vec::with_capacity(firsts.len());
    let mut coeffs = vec![0i32; firsts.len() * window];
    for ((first, w), row) in firsts
        .iter()
        .zip(weights)
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
            return None;
        }
        starts.push(start);
    }
    Some((window, starts, coeffs))
}

/// Each coefficient as `k = hi * 2^SPLIT_BITS + lo`, `(hi, lo)`; `None` if a half does not fit
/// in i16 (never after the overflow check of [`fixed_point_windows`]: |k| <= 2^23).
fn split_coeffs(coeffs: &[i32]) -> Option<(Vec<i16>, Vec<i16>)> {
    let hi = coeffs
        .iter()
        .map(|&k| i16::try_from(k >> SPLIT_BITS).ok())
        .collect::<Option<Vec<_>>>()?;
    let lo = coeffs
        .iter()
        .map(|&k| i16::try_from(k & ((1 << SPLIT_BITS) - 1)).ok())
        .collect::<Option<Vec<_>>>()?;
    Some((hi, lo))
}

/// The horizontal pass's `taps8` layout and its `lanes` (see [`AxisCoeffs`]).
fn horizontal_layout(hi: &[i16], lo: &[i16], window: usize) -> (Vec<i16x8>, usize) {
    let lanes = if window <= 8 {
        1
    } else if window <= 16 {
        2
    } else {
        0
    };
    let mut taps8 = Vec::with_capacity(hi.len() / window * 2 * lanes);
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
    }
    (taps8, lanes)
}

/// The vertical pass's tap-pair layout (`pairs`, see [`AxisCoeffs`]).
fn vertical_layout(hi: &[i16], lo: &[i16], window: usize) -> Vec<i16x8> {
    let mut pairs = Vec::with_capacity(hi.len() / window * window.div_ceil(2) * 2);
    for (kh, kl) in hi.chunks_exact(window).zip(lo.chunks_exact(window)) {
        for t in (0..window).step_by(2) {
            for half in [kh, kl] {
                let a = half.get(t).copied().unwrap_or(0);
                let b = half.get(t + 1).copied().unwrap_or(0);
                pairs.push(i16x8::new([a, b, a, b, a, b, a, b]));
            }
        }
    }
    pairs
}
