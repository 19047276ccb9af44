//! Torch's antialiased bicubic weights of one axis (`_compute_weights_aa`), in torch's float32
//! arithmetic.

use std::ops::Range;

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
pub(super) struct AxisPlan {
    /// Source indices `[src_lo, src_hi)` that the selected outputs read.
    pub(super) src_lo: usize,
    pub(super) src_hi: usize,
    /// Weights per output: `stride` values each (the longest tap count), zero padded.
    pub(super) stride: usize,
    /// First source index per output, relative to `src_lo`.
    pub(super) starts: Vec<usize>,
    /// Number of taps read per output (`stride` for every output when `fixed`).
    pub(super) lens: Vec<usize>,
    /// Every output reads exactly `stride` taps.
    pub(super) fixed: bool,
    pub(super) weights: Vec<f32>,
    /// `weights` with every value repeated 4 times (a ready-made SIMD broadcast).
    pub(super) splat: Vec<[f32; 4]>,
}

impl AxisPlan {
    /// Torch `_compute_weights_aa` (bicubic, antialias) for outputs `out_range` of an
    /// `in_size -> out_size` resize. With `fixed_window`, every output gets the same number of
    /// taps (padded with zero weights), see [`AxisPlan::layout`].
    pub(super) fn new(
        in_size: usize,
        out_size: usize,
        out_range: Range<usize>,
        fixed_window: bool,
    ) -> AxisPlan {
        let (windows, raw_weights) = torch_weights(in_size, out_size, out_range);
        Self::layout(&windows, &raw_weights, fixed_window)
    }

    /// Lays torch's variable-length windows out as rows of `stride` weights (the longest
    /// window), relative to the first source index any output reads.
    fn layout(windows: &[Window], raw_weights: &[f32], fixed_window: bool) -> AxisPlan {
        let src_lo = windows.iter().map(|b| b.xmin).min().unwrap_or(0);
        let src_hi = windows.iter().map(|b| b.xmin + b.xsize).max().unwrap_or(0);
        let stride = windows.iter().map(|b| b.xsize).max().unwrap_or(0).max(1);
        let mut weights = vec![0.0f32; windows.len() * stride];
        let mut starts = Vec::with_capacity(windows.len());
        let mut lens = Vec::with_capacity(windows.len());
        let span = src_hi - src_lo;
        let fixed = fixed_window && span >= stride;
        for (row, window) in weights.chunks_exact_mut(stride).zip(windows) {
            let start = window.xmin - src_lo;
            // With a fixed window every output reads exactly `stride` inputs (zero weights on
            // the extra ones), so the tap loop has a constant trip count. Windows at the right
            // edge are shifted left instead of reading past the needed span.
            let (start, offset, len) = if fixed {
                let shifted = start.min(span - stride);
                (shifted, start - shifted, stride)
            } else {
                (start, 0, window.xsize)
            };
            for (dst, &w) in row
                .iter_mut()
                .skip(offset)
                .zip(raw_weights.iter().skip(window.first).take(window.xsize))
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

    pub(super) fn span(&self) -> usize {
        self.src_hi - self.src_lo
    }
}

/// Torch's window of one output pixel.
#[derive(Debug, Clone, Copy)]
struct Window {
    /// First source index read.
    xmin: usize,
    /// Number of taps.
    xsize: usize,
    /// Index of the first weight in the flat weight list.
    first: usize,
}

/// Torch `_compute_weights_aa` (scalar_t = float) for the outputs `out_range`: each output's
/// window and its normalised weights, concatenated.
fn torch_weights(
    in_size: usize,
    out_size: usize,
    out_range: Range<usize>,
) -> (Vec<Window>, Vec<f32>) {
    // Torch mixes f32 variables with f64 literals; each step below rounds where torch stores
    // into a float.
    let scale = in_size as f32 / out_size as f32;
    let (support, invscale) = if scale >= 1.0 {
        (2.0 * scale, (1.0 / f64::from(scale)) as f32)
    } else {
        (2.0, 1.0)
    };
    let max_taps = (support.ceil() as usize) * 2 + 1;
    let mut windows = Vec::with_capacity(out_range.len());
    let mut raw_weights: Vec<f32> = Vec::with_capacity(out_range.len() * max_taps);
    for i in out_range {
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
        windows.push(Window { xmin, xsize, first });
    }
    (windows, raw_weights)
}
