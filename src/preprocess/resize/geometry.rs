//! torchvision's `Resize(size)` / `CenterCrop(size)` geometry (`functional.py`
//! `_compute_resized_output_size`, `center_crop`), shared by every image-like modality.

use super::ResizeError;

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

pub(super) fn nonzero(v: usize, what: &'static str) -> Result<(), ResizeError> {
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

/// torchvision `Resize(size)` followed by `CenterCrop(size)`: the resized image's shape and
/// the crop kept from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResizedCrop {
    /// Height of the resized image, in pixels.
    pub resized_h_px: usize,
    /// Width of the resized image, in pixels.
    pub resized_w_px: usize,
    /// The centre `size x size` crop, in resized-image pixels.
    pub crop: CropRect,
}

/// The geometry of torchvision `Resize(size_px)` + `CenterCrop(size_px)` on an `h_px x w_px`
/// image ([`short_side_size`], then [`center_crop_offsets`]).
///
/// # Errors
/// [`ResizeError::ZeroSize`] for a zero size, [`ResizeError::TooLarge`] for absurd aspect
/// ratios.
pub fn short_side_center_crop(
    h_px: usize,
    w_px: usize,
    size_px: usize,
) -> Result<ResizedCrop, ResizeError> {
    let (resized_w_px, resized_h_px) = short_side_size(h_px, w_px, size_px)?;
    let (top_px, left_px) = center_crop_offsets(resized_h_px, resized_w_px, size_px)?;
    Ok(ResizedCrop {
        resized_h_px,
        resized_w_px,
        crop: CropRect {
            top_px,
            left_px,
            height_px: size_px,
            width_px: size_px,
        },
    })
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
        assert_eq!(short_side_size(7, 7, 224).unwrap(), (224, 224));
        assert_eq!(short_side_size(3, 1000, 224).unwrap(), (74_666, 224));
        assert!(short_side_size(0, 5, 224).is_err());
    }

    #[test]
    fn center_crop_rounds_half_to_even() {
        assert_eq!(center_crop_offsets(224, 298, 224).unwrap(), (0, 37));
        assert_eq!(center_crop_offsets(224, 280, 224).unwrap(), (0, 28));
        // (225-224)/2 = 0.5 -> 0, (227-224)/2 = 1.5 -> 2, (229-224)/2 = 2.5 -> 2.
        assert_eq!(center_crop_offsets(225, 227, 224).unwrap(), (0, 2));
        assert_eq!(center_crop_offsets(229, 224, 224).unwrap(), (2, 0));
        assert_eq!(center_crop_offsets(224, 224, 224).unwrap(), (0, 0));
        assert!(center_crop_offsets(223, 300, 224).is_err());
    }

    #[test]
    fn short_side_center_crop_keeps_the_centre_of_the_resized_image() {
        let landscape = short_side_center_crop(120, 160, 224).unwrap();
        assert_eq!((landscape.resized_h_px, landscape.resized_w_px), (224, 298));
        assert_eq!(
            landscape.crop,
            CropRect {
                top_px: 0,
                left_px: 37,
                height_px: 224,
                width_px: 224,
            }
        );
        let portrait = short_side_center_crop(640, 512, 224).unwrap();
        assert_eq!((portrait.resized_h_px, portrait.resized_w_px), (280, 224));
        assert_eq!((portrait.crop.top_px, portrait.crop.left_px), (28, 0));
        assert!(short_side_center_crop(5, 0, 224).is_err());
    }
}
