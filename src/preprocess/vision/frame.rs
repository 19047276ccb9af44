//! Uncompressed camera buffers to RGB: the packed layouts of V4L2 colour cameras (YUYV, UYVY)
//! and of RealSense colour streams (RGB8, BGR8, RGBA8, BGRA8, YUYV), with a row stride.
//!
//! ImageBind has no camera path, so YUV -> RGB is a **project convention** (refdata/README.md,
//! section `vision/`): full-range ("JPEG") BT.601, both pixels of a pair use the pair's U and V
//! (no chroma interpolation), and each channel is `floor((10^6 Y + c (V-128) + 500000) / 10^6)`
//! clamped to 0..=255 — the exact value of `Y + 1.402 (V-128)` (likewise G and B) rounded half up.
//! Because `10^6 Y` is a multiple of the divisor, every channel is `Y + offset(U, V)` with an
//! integer offset, so three precomputed offset tables give the exact result (checked against the
//! integer formula for all 2^24 (Y, U, V) triples in the tests).

use std::fmt;
use std::sync::OnceLock;

use thiserror::Error;

/// Largest frame accepted, in pixels (8192 x 8192): bounds every allocation made for a frame
/// whose size comes from a header or a caller.
pub const MAX_FRAME_PIXELS: usize = 1 << 26;

/// Byte layout of one uncompressed colour frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    /// `R G B` per pixel (RealSense `RGB8`).
    Rgb8,
    /// `B G R` per pixel (RealSense `BGR8`).
    Bgr8,
    /// `R G B A` per pixel; alpha is ignored like Pillow's `convert("RGB")` (RealSense `RGBA8`).
    Rgba8,
    /// `B G R A` per pixel; alpha is ignored (RealSense `BGRA8`).
    Bgra8,
    /// `Y0 U Y1 V` per pixel pair (V4L2 `YUYV`/YUY2, RealSense `YUYV`).
    Yuyv,
    /// `U Y0 V Y1` per pixel pair (V4L2 `UYVY`).
    Uyvy,
}

impl PixelFormat {
    /// Bytes per pixel (a YUV pair is 4 bytes for 2 pixels).
    #[must_use]
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            Self::Rgb8 | Self::Bgr8 => 3,
            Self::Rgba8 | Self::Bgra8 => 4,
            Self::Yuyv | Self::Uyvy => 2,
        }
    }

    /// Whether pixels come in pairs sharing chroma (the width must then be even).
    #[must_use]
    pub fn is_pairwise(self) -> bool {
        matches!(self, Self::Yuyv | Self::Uyvy)
    }
}

impl fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Rgb8 => "RGB8",
            Self::Bgr8 => "BGR8",
            Self::Rgba8 => "RGBA8",
            Self::Bgra8 => "BGRA8",
            Self::Yuyv => "YUYV",
            Self::Uyvy => "UYVY",
        })
    }
}

/// Errors of a frame's declared layout against its buffer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// Width or height is zero.
    #[error("{format} frame is {width_px}x{height_px} px: both sides must be at least 1 px")]
    ZeroSize {
        /// Pixel format.
        format: PixelFormat,
        /// Declared width.
        width_px: usize,
        /// Declared height.
        height_px: usize,
    },
    /// More pixels than [`MAX_FRAME_PIXELS`].
    #[error("{format} frame of {width_px}x{height_px} px exceeds the limit of {max_pixels} px")]
    TooLarge {
        /// Pixel format.
        format: PixelFormat,
        /// Declared width.
        width_px: usize,
        /// Declared height.
        height_px: usize,
        /// The limit.
        max_pixels: usize,
    },
    /// A pairwise YUV format with an odd width.
    #[error("{format} frame width {width_px} px is odd: {format} packs pixels in pairs")]
    OddWidth {
        /// Pixel format.
        format: PixelFormat,
        /// Declared width.
        width_px: usize,
    },
    /// The row stride is shorter than a row.
    #[error("{format} row stride {stride_bytes} bytes is shorter than a {width_px} px row ({row_bytes} bytes)")]
    StrideTooSmall {
        /// Pixel format.
        format: PixelFormat,
        /// Declared width.
        width_px: usize,
        /// Declared stride.
        stride_bytes: usize,
        /// Bytes of one row of pixels.
        row_bytes: usize,
    },
    /// The buffer cannot hold the declared frame, or is longer than `stride x height`.
    #[error("{format} buffer of {width_px}x{height_px} px, stride {stride_bytes}: {actual} bytes, expected {min_bytes}..={max_bytes}")]
    BufferLength {
        /// Pixel format.
        format: PixelFormat,
        /// Declared width.
        width_px: usize,
        /// Declared height.
        height_px: usize,
        /// Declared stride.
        stride_bytes: usize,
        /// `stride * (height - 1) + row bytes` (the last row needs no padding).
        min_bytes: usize,
        /// `stride * height`.
        max_bytes: usize,
        /// Length of the buffer.
        actual: usize,
    },
}

/// Declared size and layout of one frame buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLayout {
    /// Pixel format.
    pub format: PixelFormat,
    /// Width in pixels.
    pub width_px: usize,
    /// Height in pixels.
    pub height_px: usize,
    /// Bytes from the start of one row to the next (>= width x bytes per pixel).
    pub stride_bytes: usize,
}

impl FrameLayout {
    /// A layout without row padding.
    #[must_use]
    pub fn packed(format: PixelFormat, width_px: usize, height_px: usize) -> Self {
        Self {
            format,
            width_px,
            height_px,
            stride_bytes: width_px.saturating_mul(format.bytes_per_pixel()),
        }
    }

    /// Checks the layout itself and `len` bytes against it; returns the bytes of one row.
    ///
    /// # Errors
    /// A [`FrameError`] naming what does not fit.
    pub fn check(&self, len: usize) -> Result<usize, FrameError> {
        let Self {
            format,
            width_px,
            height_px,
            stride_bytes,
        } = *self;
        if width_px == 0 || height_px == 0 {
            return Err(FrameError::ZeroSize {
                format,
                width_px,
                height_px,
            });
        }
        if width_px.saturating_mul(height_px) > MAX_FRAME_PIXELS {
            return Err(FrameError::TooLarge {
                format,
                width_px,
                height_px,
                max_pixels: MAX_FRAME_PIXELS,
            });
        }
        if format.is_pairwise() && width_px % 2 == 1 {
            return Err(FrameError::OddWidth { format, width_px });
        }
        // No overflow: width <= 2^26 and at most 4 bytes per pixel.
        let row_bytes = width_px * format.bytes_per_pixel();
        if stride_bytes < row_bytes {
            return Err(FrameError::StrideTooSmall {
                format,
                width_px,
                stride_bytes,
                row_bytes,
            });
        }
        // Saturating: a stride so large that the frame's size overflows asks for more bytes
        // than any buffer holds. Once `len >= min_bytes`, every row offset fits in usize.
        let max_bytes = stride_bytes.saturating_mul(height_px);
        let min_bytes = stride_bytes
            .saturating_mul(height_px - 1)
            .saturating_add(row_bytes);
        if len < min_bytes || len > max_bytes {
            return Err(FrameError::BufferLength {
                format,
                width_px,
                height_px,
                stride_bytes,
                min_bytes,
                max_bytes,
                actual: len,
            });
        }
        Ok(row_bytes)
    }
}

/// `round_half_up(c * (x - 128) / 10^6)` as an integer offset for every byte `x`.
fn offset_table(c: i64) -> [i16; 256] {
    let mut t = [0i16; 256];
    for (x, v) in t.iter_mut().enumerate() {
        let d = x as i64 - 128;
        // |c d| < 3 * 10^8: the quotient is within +-230.
        *v = (c * d + 500_000).div_euclid(1_000_000) as i16;
    }
    t
}

/// Exact full-range BT.601 offsets: `R = Y + r[V]`, `G = Y + g[U][V]`, `B = Y + b[U]`.
struct YuvTables {
    r_v: [i16; 256],
    b_u: [i16; 256],
    /// Index `U * 256 + V`; G is not separable because the two terms share one rounding.
    g_uv: Vec<i16>,
}

fn yuv_tables() -> &'static YuvTables {
    static TABLES: OnceLock<YuvTables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let mut g_uv = vec![0i16; 1 << 16];
        for (i, g) in g_uv.iter_mut().enumerate() {
            let du = (i >> 8) as i64 - 128;
            let dv = (i & 0xff) as i64 - 128;
            *g = (-344_136 * du - 714_136 * dv + 500_000).div_euclid(1_000_000) as i16;
        }
        YuvTables {
            r_v: offset_table(1_402_000),
            b_u: offset_table(1_772_000),
            g_uv,
        }
    })
}

impl YuvTables {
    /// The two RGB pixels of one `Y0 Y1 U V` pair.
    #[inline(always)]
    fn pair(&self, y0: u8, y1: u8, u: u8, v: u8) -> [[u8; 3]; 2] {
        let r = self.r_v[usize::from(v)];
        let b = self.b_u[usize::from(u)];
        let g = self
            .g_uv
            .get(usize::from(u) << 8 | usize::from(v))
            .copied()
            .unwrap_or(0);
        let px = |y: u8| {
            let y = i16::from(y);
            [clamp8(y + r), clamp8(y + g), clamp8(y + b)]
        };
        [px(y0), px(y1)]
    }
}

#[inline(always)]
fn clamp8(v: i16) -> u8 {
    v.clamp(0, 255) as u8
}

/// Converts one YUV pixel to RGB with the project convention (exact; for tests and tools).
#[must_use]
pub fn yuv_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    yuv_tables().pair(y, y, u, v)[0]
}

/// Converts one row of `format` pixels into interleaved RGB (`out` holds exactly the row).
#[inline(always)]
fn convert_row(format: PixelFormat, row: &[u8], out: &mut [u8]) {
    let rgb = out.chunks_exact_mut(3);
    match format {
        PixelFormat::Rgb8 => {
            for (d, &s) in out.iter_mut().zip(row) {
                *d = s;
            }
        }
        PixelFormat::Bgr8 => rgb.zip(row.chunks_exact(3)).for_each(|(d, p)| {
            d.copy_from_slice(&[p[2], p[1], p[0]]);
        }),
        PixelFormat::Rgba8 => rgb.zip(row.chunks_exact(4)).for_each(|(d, p)| {
            d.copy_from_slice(&p[..3]);
        }),
        PixelFormat::Bgra8 => rgb.zip(row.chunks_exact(4)).for_each(|(d, p)| {
            d.copy_from_slice(&[p[2], p[1], p[0]]);
        }),
        PixelFormat::Yuyv => yuv_row(row, out, [0, 2, 1, 3]),
        PixelFormat::Uyvy => yuv_row(row, out, [1, 3, 0, 2]),
    }
}

/// One row of YUV pairs; `order` gives the byte positions of `Y0 Y1 U V` in a pair.
#[inline(always)]
fn yuv_row(row: &[u8], out: &mut [u8], order: [usize; 4]) {
    let t = yuv_tables();
    for (q, d) in row.chunks_exact(4).zip(out.chunks_exact_mut(6)) {
        let [a, b] = t.pair(q[order[0]], q[order[1]], q[order[2]], q[order[3]]);
        d.copy_from_slice(&[a[0], a[1], a[2], b[0], b[1], b[2]]);
    }
}

/// Converts a frame to interleaved RGB (`[height, width, 3]` row-major) into `out`, which is
/// resized to fit.
///
/// # Errors
/// A [`FrameError`] if the buffer does not match `layout`.
pub fn frame_to_rgb(buf: &[u8], layout: &FrameLayout, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let row_bytes = layout.check(buf.len())?;
    let rgb_row = layout.width_px * 3;
    out.resize(rgb_row * layout.height_px, 0);
    for (y, dst) in out.chunks_exact_mut(rgb_row).enumerate() {
        // In range: `check` proved `stride * (height - 1) + row_bytes <= len`.
        let start = y * layout.stride_bytes;
        if let Some(row) = buf.get(start..start + row_bytes) {
            convert_row(layout.format, row, dst);
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// The reference formula of refdata/README.md, evaluated exactly in integers.
    fn reference(y: u8, u: u8, v: u8) -> [u8; 3] {
        let (y, du, dv) = (i64::from(y), i64::from(u) - 128, i64::from(v) - 128);
        let ch = |num: i64| (num + 500_000).div_euclid(1_000_000).clamp(0, 255) as u8;
        [
            ch(1_000_000 * y + 1_402_000 * dv),
            ch(1_000_000 * y - 344_136 * du - 714_136 * dv),
            ch(1_000_000 * y + 1_772_000 * du),
        ]
    }

    #[test]
    fn yuv_tables_equal_the_integer_formula_for_all_2_pow_24_triples() {
        for y in 0..=255u8 {
            for u in 0..=255u8 {
                for v in 0..=255u8 {
                    assert_eq!(yuv_to_rgb(y, u, v), reference(y, u, v), "Y {y} U {u} V {v}");
                }
            }
        }
    }

    #[test]
    fn ties_round_up_like_the_convention() {
        // 1.772 * (253 - 128) = 221.5 exactly: B = Y + 222 (a naive f32 round may differ).
        assert_eq!(yuv_to_rgb(0, 253, 128)[2], 222);
        assert_eq!(yuv_to_rgb(255, 0, 255), reference(255, 0, 255));
    }

    #[test]
    fn yuyv_and_uyvy_carry_the_same_pixels() {
        let yuyv = [10u8, 90, 200, 160, 255, 0, 0, 255];
        let uyvy = [90u8, 10, 160, 200, 0, 255, 255, 0];
        let mut a = Vec::new();
        let mut b = Vec::new();
        frame_to_rgb(&yuyv, &FrameLayout::packed(PixelFormat::Yuyv, 4, 1), &mut a).unwrap();
        frame_to_rgb(&uyvy, &FrameLayout::packed(PixelFormat::Uyvy, 4, 1), &mut b).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            &a[..6],
            [reference(10, 90, 160), reference(200, 90, 160)].concat()
        );
        assert_eq!(
            &a[6..],
            [reference(255, 0, 255), reference(0, 0, 255)].concat()
        );
    }

    #[test]
    fn packed_rgb_layouts_and_stride_padding() {
        // 2x2 frame, stride with 3 padding bytes that must be ignored.
        let rgb = [1u8, 2, 3, 4, 5, 6, 99, 99, 99, 7, 8, 9, 10, 11, 12];
        let layout = FrameLayout {
            format: PixelFormat::Rgb8,
            width_px: 2,
            height_px: 2,
            stride_bytes: 9,
        };
        let mut out = Vec::new();
        frame_to_rgb(&rgb, &layout, &mut out).unwrap();
        let want: Vec<u8> = (1..=12).collect();
        assert_eq!(out, want);
        // The full last row's padding is allowed too.
        let mut padded = rgb.to_vec();
        padded.extend([0, 0, 0]);
        frame_to_rgb(&padded, &layout, &mut out).unwrap();
        assert_eq!(out, want);
        let bgra = [3u8, 2, 1, 0, 6, 5, 4, 255, 9, 8, 7, 1, 12, 11, 10, 2];
        frame_to_rgb(
            &bgra,
            &FrameLayout::packed(PixelFormat::Bgra8, 2, 2),
            &mut out,
        )
        .unwrap();
        assert_eq!(out, want);
        let rgba = [1u8, 2, 3, 0, 4, 5, 6, 0, 7, 8, 9, 0, 10, 11, 12, 0];
        frame_to_rgb(
            &rgba,
            &FrameLayout::packed(PixelFormat::Rgba8, 2, 2),
            &mut out,
        )
        .unwrap();
        assert_eq!(out, want);
        let bgr = [3u8, 2, 1, 6, 5, 4, 9, 8, 7, 12, 11, 10];
        frame_to_rgb(
            &bgr,
            &FrameLayout::packed(PixelFormat::Bgr8, 2, 2),
            &mut out,
        )
        .unwrap();
        assert_eq!(out, want);
    }

    #[test]
    fn hostile_layouts_are_errors_not_panics() {
        let mut out = Vec::new();
        let l = |format, w, h, s| FrameLayout {
            format,
            width_px: w,
            height_px: h,
            stride_bytes: s,
        };
        let err = |buf: &[u8], layout: FrameLayout| {
            let mut out = Vec::new();
            frame_to_rgb(buf, &layout, &mut out).unwrap_err()
        };
        assert!(matches!(
            err(&[], l(PixelFormat::Rgb8, 0, 5, 0)),
            FrameError::ZeroSize { .. }
        ));
        assert!(matches!(
            err(&[0; 6], l(PixelFormat::Yuyv, 3, 1, 6)),
            FrameError::OddWidth { .. }
        ));
        assert!(matches!(
            err(&[0; 8], l(PixelFormat::Rgb8, 3, 1, 8)),
            FrameError::StrideTooSmall { .. }
        ));
        // Short by one byte, and one byte past stride x height.
        assert!(matches!(
            err(&[0; 11], l(PixelFormat::Rgb8, 2, 2, 6)),
            FrameError::BufferLength { min_bytes: 12, .. }
        ));
        assert!(matches!(
            err(&[0; 13], l(PixelFormat::Rgb8, 2, 2, 6)),
            FrameError::BufferLength { max_bytes: 12, .. }
        ));
        // Absurd sizes: refused before anything is allocated or multiplied out.
        assert!(matches!(
            err(
                &[0; 4],
                l(PixelFormat::Rgba8, usize::MAX, usize::MAX, usize::MAX)
            ),
            FrameError::TooLarge { .. }
        ));
        assert!(matches!(
            err(&[0; 4], l(PixelFormat::Rgb8, 1, 3, usize::MAX)),
            FrameError::BufferLength { .. }
        ));
        let e = err(&[0; 11], l(PixelFormat::Yuyv, 4, 2, 8));
        assert_eq!(
            e.to_string(),
            "YUYV buffer of 4x2 px, stride 8: 11 bytes, expected 16..=16"
        );
        assert!(out.is_empty());
        frame_to_rgb(&[0; 2], &l(PixelFormat::Yuyv, 1, 1, 2), &mut out).unwrap_err();
    }
}
