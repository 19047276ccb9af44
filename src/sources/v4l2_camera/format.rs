//! The colour formats a V4L2 camera is driven in, which one and which size to set from what it
//! offers (pure), and how its buffers become RGB frames: `YUYV`/`UYVY` by the project's YUV
//! convention (`preprocess::vision::frame`), `MJPG` by the JPEG decoder
//! (`preprocess::vision::decode`, which checks the declared size before allocating).

use std::fmt;

use ndarray::Array3;
use serde::Deserialize;

use crate::preprocess::vision::decode::{decode_jpeg, DecodeError};
use crate::preprocess::vision::frame::{self, frame_to_rgb, FrameError, FrameLayout};
use crate::sources::v4l2_thermal::capture::{DecodeBuffer, RawBuffer, V4l2Format};
use crate::sources::v4l2_thermal::negotiate::{FormatChoice, NegotiationError, OfferedFormat};
use crate::sources::FrameImage;

/// A colour format of a V4L2 camera (the FourCC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ColourFormat {
    /// `"YUYV"`: packed 4:2:2, bytes `Y0 U Y1 V` (every UVC webcam).
    #[serde(rename = "YUYV")]
    Yuyv,
    /// `"UYVY"`: packed 4:2:2, bytes `U Y0 V Y1`.
    #[serde(rename = "UYVY")]
    Uyvy,
    /// `"MJPG"`: one JPEG per frame (webcams at sizes USB 2 cannot carry uncompressed).
    #[serde(rename = "MJPG", alias = "MJPEG")]
    Mjpeg,
}

impl V4l2Format for ColourFormat {
    fn fourcc(self) -> [u8; 4] {
        match self {
            Self::Yuyv => *b"YUYV",
            Self::Uyvy => *b"UYVY",
            Self::Mjpeg => *b"MJPG",
        }
    }

    fn bytes_per_pixel(self) -> usize {
        match self {
            Self::Yuyv | Self::Uyvy => 2,
            Self::Mjpeg => 0,
        }
    }
}

impl fmt::Display for ColourFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}'", String::from_utf8_lossy(&self.fourcc()))
    }
}

/// Formats tried when none is configured, best first: uncompressed YUV (exact, and cheaper to
/// convert than a JPEG is to decode), then MJPEG.
const PREFERENCE: [ColourFormat; 3] = [ColourFormat::Yuyv, ColourFormat::Uyvy, ColourFormat::Mjpeg];

/// Shorter side of the input ImageBind sees: a camera mode with a shorter side at least this is
/// enough, more pixels only cost bandwidth and CPU.
const MODEL_SIDE_PX: u32 = 224;

/// What the config asks of a colour camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColourRequest {
    /// A format, or `None` for the best one offered.
    pub pixel_format: Option<ColourFormat>,
    /// `(width, height)`, or `None` for the smallest size whose shorter side is at least 224 px
    /// (the largest when none is).
    pub size_px: Option<(u32, u32)>,
}

/// The size to set for `offer` under `request`, if it has one.
fn size_for(offer: &OfferedFormat, request: &ColourRequest) -> Option<(u32, u32)> {
    if let Some((w, h)) = request.size_px {
        // A driver that does not enumerate sizes gets the request as it is; set_format then
        // says what it made of it.
        return (offer.sizes.is_empty() || offer.sizes.iter().any(|s| s.contains(w, h)))
            .then_some((w, h));
    }
    let sizes = offer.sizes.iter().flat_map(|s| {
        [
            (s.min_width_px, s.min_height_px),
            (s.max_width_px, s.max_height_px),
        ]
    });
    let sizes = sizes.filter(|&(w, h)| w > 0 && h > 0 && w % 2 == 0);
    let area = |&(w, h): &(u32, u32)| u64::from(w) * u64::from(h);
    let (enough, small): (Vec<_>, Vec<_>) = sizes.partition(|&(w, h)| w.min(h) >= MODEL_SIDE_PX);
    enough
        .into_iter()
        .min_by_key(area)
        .or_else(|| small.into_iter().max_by_key(area))
}

/// Picks the format and size to set.
///
/// # Errors
/// [`NegotiationError`] listing what the camera offers when nothing fits.
pub fn choose(
    offered: &[OfferedFormat],
    request: &ColourRequest,
) -> Result<FormatChoice<ColourFormat>, NegotiationError> {
    let candidates: Vec<ColourFormat> = match request.pixel_format {
        Some(f) => vec![f],
        None => PREFERENCE.to_vec(),
    };
    for &format in &candidates {
        let Some(offer) = offered.iter().find(|o| o.fourcc == format.fourcc()) else {
            continue;
        };
        if let Some((width_px, height_px)) = size_for(offer, request) {
            return Ok(FormatChoice {
                format,
                width_px,
                height_px,
            });
        }
    }
    let formats: Vec<String> = candidates.iter().map(ToString::to_string).collect();
    let mut wanted = if candidates.len() == 1 {
        formats.join("")
    } else {
        format!("any of {}", formats.join(", "))
    };
    if let Some((w, h)) = request.size_px {
        wanted.push_str(&format!(" at {w}x{h}"));
    }
    Err(NegotiationError {
        wanted,
        offered: offered.to_vec(),
    })
}

/// Why a colour buffer cannot be decoded.
#[derive(Debug, thiserror::Error)]
pub enum ColourDecodeError {
    /// A YUV buffer that does not hold the negotiated frame.
    #[error("{0}")]
    Frame(#[from] FrameError),
    /// An MJPEG frame that is not a whole JPEG.
    #[error("MJPEG frame: {0}")]
    Jpeg(#[from] DecodeError),
}

/// Colour buffers to RGB frames.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ColourBuffers;

impl DecodeBuffer for ColourBuffers {
    type Format = ColourFormat;
    type Error = ColourDecodeError;

    fn decode(
        &self,
        buffer: &RawBuffer<'_, ColourFormat>,
    ) -> Result<FrameImage, ColourDecodeError> {
        let yuv = match buffer.format {
            ColourFormat::Yuyv => frame::PixelFormat::Yuyv,
            ColourFormat::Uyvy => frame::PixelFormat::Uyvy,
            ColourFormat::Mjpeg => {
                return Ok(FrameImage::Rgb8(decode_jpeg(buffer.bytes)?.into_array()));
            }
        };
        let g = buffer.geometry;
        let layout = FrameLayout {
            format: yuv,
            width_px: g.width_px as usize,
            height_px: g.height_px as usize,
            stride_bytes: g.bytes_per_line as usize,
        };
        let mut rgb = Vec::new();
        frame_to_rgb(buffer.bytes, &layout, &mut rgb)?;
        let shape = (layout.height_px, layout.width_px, 3);
        // `frame_to_rgb` fills exactly height x width x 3 bytes.
        Ok(FrameImage::Rgb8(
            Array3::from_shape_vec(shape, rgb).unwrap_or_else(|_| Array3::zeros((0, 0, 3))),
        ))
    }
}
