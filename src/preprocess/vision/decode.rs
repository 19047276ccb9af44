//! PNG and JPEG (also V4L2 MJPEG frames) to RGB, like ImageBind's
//! `Image.open(f).convert("RGB")`.
//!
//! * PNG (the `png` crate) is lossless, so the pixels equal Pillow's exactly: 8-bit RGB as is,
//!   RGBA without its alpha (Pillow's `convert("RGB")` drops it, no compositing), grey
//!   replicated to R = G = B, palettes expanded, 1/2/4-bit grey scaled to 8 bit, 16-bit colour
//!   reduced to its high byte (Pillow's `RGB;16B`). 16-bit grey is refused: Pillow opens it as
//!   `I;16` and clips it to 255 on `convert("RGB")`, which is no colour picture.
//! * JPEG (`zune-jpeg`) is lossy and decoders differ in their IDCT and chroma upsampling. Against
//!   Pillow 13.0.0 (libjpeg-turbo 3.2.0) on quality-90 JPEGs that Pillow wrote from the refdata
//!   scene (`tests/fixtures/vision`, checked by `tests/preprocess_vision.rs`): 4:2:0 chroma, max
//!   4 steps, mean 0.10, 7.2 % of samples differ; 4:2:2 (MJPEG webcams) max 3, mean 0.06, 4.2 %;
//!   greyscale max 1, 0.6 %. After preprocessing the tensors differ by at most 0.044 (about
//!   three 8-bit steps of the G channel). Exact parity is not required for JPEG input.
//!
//! Every size read from a header is checked against [`MAX_FRAME_PIXELS`] before the output is
//! allocated.

use std::borrow::Cow;
use std::io::Cursor;

use ndarray::Array3;
use thiserror::Error;
use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

use super::frame::MAX_FRAME_PIXELS;

/// Errors decoding an image file.
#[derive(Debug, Error)]
pub enum DecodeError {
    /// Neither the PNG nor the JPEG signature.
    #[error("not a PNG or JPEG file (starts with {magic})")]
    UnknownFormat {
        /// The first bytes, in hex.
        magic: String,
    },
    /// The declared size is zero or above [`MAX_FRAME_PIXELS`].
    #[error("{format} image of {width_px}x{height_px} px: must be 1..={max_pixels} px")]
    Size {
        /// "PNG" or "JPEG".
        format: &'static str,
        /// Declared width.
        width_px: usize,
        /// Declared height.
        height_px: usize,
        /// The limit.
        max_pixels: usize,
    },
    /// A PNG layout that has no RGB meaning here.
    #[error("PNG is {color} at {bits} bits per sample; expected 8-bit grey, or 8/16-bit RGB, RGBA or palette")]
    UnsupportedPng {
        /// Colour type.
        color: &'static str,
        /// Bits per sample.
        bits: u8,
    },
    /// The PNG decoder failed.
    #[error("PNG: {0}")]
    Png(#[from] png::DecodingError),
    /// The JPEG decoder failed.
    #[error("JPEG: {message}")]
    Jpeg {
        /// The decoder's message.
        message: String,
    },
}

/// A decoded image: interleaved RGB rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    /// Width in pixels.
    pub width_px: usize,
    /// Height in pixels.
    pub height_px: usize,
    /// `height x width x 3` bytes, row-major.
    pub data: Vec<u8>,
}

impl RgbImage {
    /// The pixels as an `[height, width, 3]` array.
    #[must_use]
    pub fn into_array(self) -> Array3<u8> {
        let shape = (self.height_px, self.width_px, 3);
        // The decoders fill exactly `height x width x 3` bytes.
        Array3::from_shape_vec(shape, self.data).unwrap_or_else(|_| Array3::zeros((0, 0, 3)))
    }
}

fn check_size(format: &'static str, width_px: usize, height_px: usize) -> Result<(), DecodeError> {
    let pixels = width_px.saturating_mul(height_px);
    if pixels == 0 || pixels > MAX_FRAME_PIXELS {
        return Err(DecodeError::Size {
            format,
            width_px,
            height_px,
            max_pixels: MAX_FRAME_PIXELS,
        });
    }
    Ok(())
}

/// Decodes a PNG or JPEG file's bytes (chosen by signature) to RGB.
///
/// # Errors
/// [`DecodeError`].
pub fn decode_image(bytes: &[u8]) -> Result<RgbImage, DecodeError> {
    const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";
    if bytes.starts_with(PNG_MAGIC) {
        decode_png(bytes)
    } else if bytes.starts_with(&[0xff, 0xd8]) {
        decode_jpeg(bytes)
    } else {
        let magic: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
        Err(DecodeError::UnknownFormat {
            magic: if magic.is_empty() {
                "nothing (empty)".into()
            } else {
                magic.join(" ")
            },
        })
    }
}

/// Decodes a PNG to RGB (see the module docs for how each layout maps).
///
/// # Errors
/// [`DecodeError::Png`], [`DecodeError::Size`] or [`DecodeError::UnsupportedPng`].
pub fn decode_png(bytes: &[u8]) -> Result<RgbImage, DecodeError> {
    use png::{BitDepth, ColorType, Transformations};
    // The decoder's own allocations (rows, the output) stay below one frame of RGBA.
    let limits = png::Limits {
        bytes: MAX_FRAME_PIXELS * 4 + (1 << 20),
    };
    let mut decoder = png::Decoder::new_with_limits(Cursor::new(bytes), limits);
    decoder.set_transformations(Transformations::EXPAND | Transformations::STRIP_16);
    let mut reader = decoder.read_info()?;
    let (width_px, height_px, color, depth) = {
        let info = reader.info();
        (
            info.width as usize,
            info.height as usize,
            info.color_type,
            info.bit_depth,
        )
    };
    check_size("PNG", width_px, height_px)?;
    if matches!(color, ColorType::Grayscale | ColorType::GrayscaleAlpha)
        && depth == BitDepth::Sixteen
    {
        return Err(DecodeError::UnsupportedPng {
            color: if color == ColorType::Grayscale {
                "grey"
            } else {
                "grey+alpha"
            },
            bits: 16,
        });
    }
    let (out_color, _) = reader.output_color_type();
    let mut buf = vec![0u8; reader.output_buffer_size().unwrap_or(0)];
    let frame = reader.next_frame(&mut buf)?;
    let samples = buf.get(..frame.buffer_size()).unwrap_or(&[]);
    let pixels = width_px * height_px;
    let data: Vec<u8> = match out_color {
        ColorType::Rgb => samples.to_vec(),
        ColorType::Rgba => samples
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect(),
        ColorType::Grayscale => samples.iter().flat_map(|&v| [v, v, v]).collect(),
        ColorType::GrayscaleAlpha => samples.chunks_exact(2).flat_map(|p| [p[0]; 3]).collect(),
        ColorType::Indexed => {
            return Err(DecodeError::UnsupportedPng {
                color: "palette",
                bits: depth as u8,
            })
        }
    };
    if data.len() != pixels * 3 {
        return Err(DecodeError::Size {
            format: "PNG",
            width_px,
            height_px,
            max_pixels: MAX_FRAME_PIXELS,
        });
    }
    Ok(RgbImage {
        width_px,
        height_px,
        data,
    })
}

/// Decodes a JPEG (baseline or progressive; MJPEG frames without Huffman tables use the
/// standard ones) to RGB with zune-jpeg.
///
/// # Errors
/// [`DecodeError::Jpeg`] or [`DecodeError::Size`].
pub fn decode_jpeg(bytes: &[u8]) -> Result<RgbImage, DecodeError> {
    let jpeg_err = |e: zune_jpeg::errors::DecodeErrors| DecodeError::Jpeg {
        message: e.to_string().trim().to_string(),
    };
    // JPEG sizes are 16-bit; the pixel limit below is the real bound. Strict mode: a truncated
    // or corrupt frame is an error (the tolerant default fills the rest with grey, and Pillow
    // refuses a truncated file too).
    let options = DecoderOptions::default()
        .set_strict_mode(true)
        .jpeg_set_out_colorspace(ColorSpace::RGB)
        .set_max_width(usize::from(u16::MAX))
        .set_max_height(usize::from(u16::MAX));
    let bytes = with_mjpeg_marker(bytes);
    let mut decoder = JpegDecoder::new_with_options(ZCursor::new(bytes.as_ref()), options);
    decoder.decode_headers().map_err(jpeg_err)?;
    let (width_px, height_px) = decoder
        .info()
        .map_or((0, 0), |i| (usize::from(i.width), usize::from(i.height)));
    check_size("JPEG", width_px, height_px)?;
    let mut data = vec![0u8; width_px * height_px * 3];
    decoder.decode_into(&mut data).map_err(jpeg_err)?;
    Ok(RgbImage {
        width_px,
        height_px,
        data,
    })
}

/// MJPEG frames (V4L2/UVC cameras) usually leave out the Huffman tables and rely on the standard
/// ones (ITU T.81 Annex K.3). zune-jpeg fills those in only for frames that carry the AVI1 APP0
/// marker, which not every camera sends; a frame that reaches its scan without a DHT segment gets
/// that marker inserted after SOI. Anything malformed is passed on unchanged for the decoder to
/// report.
fn with_mjpeg_marker(bytes: &[u8]) -> Cow<'_, [u8]> {
    const DHT: u8 = 0xc4;
    const SOS: u8 = 0xda;
    /// APP0, length 7, "AVI1\0".
    const AVI1_APP0: [u8; 9] = [0xff, 0xe0, 0x00, 0x07, b'A', b'V', b'I', b'1', 0x00];
    let mut i = 2;
    loop {
        let (Some(&0xff), Some(&marker)) = (bytes.get(i), bytes.get(i + 1)) else {
            return Cow::Borrowed(bytes);
        };
        match marker {
            DHT => return Cow::Borrowed(bytes),
            SOS => break,
            // Fill bytes before a marker.
            0xff => i += 1,
            _ => {
                let (Some(&hi), Some(&lo)) = (bytes.get(i + 2), bytes.get(i + 3)) else {
                    return Cow::Borrowed(bytes);
                };
                i += 2 + usize::from(u16::from_be_bytes([hi, lo]));
            }
        }
    }
    let mut patched = Vec::with_capacity(bytes.len() + AVI1_APP0.len());
    patched.extend_from_slice(bytes.get(..2).unwrap_or_default());
    patched.extend_from_slice(&AVI1_APP0);
    patched.extend_from_slice(bytes.get(2..).unwrap_or_default());
    Cow::Owned(patched)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use png::{BitDepth, ColorType};

    fn png_bytes(color: ColorType, depth: BitDepth, w: u32, h: u32, data: &[u8]) -> Vec<u8> {
        png_with_palette(color, depth, w, h, data, None)
    }

    fn png_with_palette(
        color: ColorType,
        depth: BitDepth,
        w: u32,
        h: u32,
        data: &[u8],
        palette: Option<Vec<u8>>,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(color);
        enc.set_depth(depth);
        if let Some(p) = palette {
            enc.set_palette(p);
        }
        let mut writer = enc.write_header().unwrap();
        writer.write_image_data(data).unwrap();
        writer.finish().unwrap();
        out
    }

    #[test]
    fn png_layouts_map_like_pillow_convert_rgb() {
        let grey = png_bytes(ColorType::Grayscale, BitDepth::Eight, 2, 1, &[7, 200]);
        assert_eq!(decode_png(&grey).unwrap().data, [7, 7, 7, 200, 200, 200]);
        let rgba = png_bytes(ColorType::Rgba, BitDepth::Eight, 1, 1, &[1, 2, 3, 0]);
        assert_eq!(decode_png(&rgba).unwrap().data, [1, 2, 3]);
        let rgb16 = png_bytes(
            ColorType::Rgb,
            BitDepth::Sixteen,
            1,
            1,
            &[1, 255, 2, 0, 3, 9],
        );
        assert_eq!(decode_png(&rgb16).unwrap().data, [1, 2, 3]);
        let pal = png_with_palette(
            ColorType::Indexed,
            BitDepth::Eight,
            2,
            1,
            &[1, 0],
            Some(vec![10, 20, 30, 40, 50, 60]),
        );
        assert_eq!(decode_png(&pal).unwrap().data, [40, 50, 60, 10, 20, 30]);
        let one_bit = png_bytes(ColorType::Grayscale, BitDepth::One, 2, 1, &[0b0100_0000]);
        assert_eq!(decode_png(&one_bit).unwrap().data, [0, 0, 0, 255, 255, 255]);
        let grey16 = png_bytes(ColorType::Grayscale, BitDepth::Sixteen, 1, 1, &[1, 0]);
        assert_eq!(
            decode_png(&grey16).unwrap_err().to_string(),
            "PNG is grey at 16 bits per sample; expected 8-bit grey, or 8/16-bit RGB, RGBA or palette"
        );
    }

    #[test]
    fn mjpeg_marker_is_inserted_only_without_huffman_tables() {
        // SOI, DQT (length 3), SOS: no DHT before the scan.
        let bare = [0xff, 0xd8, 0xff, 0xdb, 0x00, 0x03, 0x00, 0xff, 0xda, 0x00];
        let patched = with_mjpeg_marker(&bare);
        assert_eq!(&patched[..4], &[0xff, 0xd8, 0xff, 0xe0]);
        assert_eq!(&patched[11..], &bare[2..]);
        let with_dht = [0xff, 0xd8, 0xff, 0xc4, 0x00, 0x02, 0xff, 0xda];
        assert!(matches!(with_mjpeg_marker(&with_dht), Cow::Borrowed(_)));
        // Garbage and truncation are passed on untouched (the decoder reports them).
        for bytes in [
            &[0xff, 0xd8][..],
            &[0xff, 0xd8, 0x00],
            &[0xff, 0xd8, 0xff, 0xdb, 0xff],
        ] {
            assert!(matches!(with_mjpeg_marker(bytes), Cow::Borrowed(_)));
        }
    }
}
