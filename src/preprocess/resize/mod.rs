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

mod geometry;
mod kernels;
mod plan;
mod weights;

use geometry::nonzero;
pub use geometry::{
    center_crop_offsets, short_side_center_crop, short_side_size, CropRect, ResizedCrop,
};
pub use kernels::ROW_GROUP;
pub use plan::{AaBicubicPlan, ResizeScratch, RowSink};

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
