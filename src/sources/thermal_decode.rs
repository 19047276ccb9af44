//! Pure decoders from raw V4L2 thermal-camera buffers to frames.
//!
//! Input is exactly what the v4l crate hands over for one dequeued buffer: the bytes plus the
//! negotiated width, height and `bytesperline`. Rows may be padded (`bytesperline` larger than
//! the row's pixel bytes); the last row's padding may be missing. Trailing bytes past the last
//! row (page-rounded mmap buffers) are ignored.
//!
//! Supported cameras and formats:
//! * FLIR Lepton on PureThermal: `Y16 ` (little-endian u16, raw 14-bit counts or centi-kelvin with
//!   radiometry on), optionally with telemetry rows appended (160x122 for 160x120), `GREY`,
//!   `UYVY` (colourised; the luma is taken).
//! * InfiRay P2 Pro / Topdon TC001: `YUYV`; in 256x384 mode the top half is the image and the
//!   bottom half little-endian u16 temperature (`°C = raw / 64 - 273.15`).

use std::fmt;

use ndarray::Array2;
use thiserror::Error;

/// V4L2 pixel formats a thermal source can deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    /// `Y16 `: 16-bit little-endian greyscale.
    Y16,
    /// `GREY`: 8-bit greyscale.
    Grey,
    /// `YUYV`: packed 4:2:2, bytes `Y0 U Y1 V`.
    Yuyv,
    /// `UYVY`: packed 4:2:2, bytes `U Y0 V Y1`.
    Uyvy,
}

impl PixelFormat {
    /// All supported formats.
    pub const ALL: [PixelFormat; 4] = [
        PixelFormat::Y16,
        PixelFormat::Grey,
        PixelFormat::Yuyv,
        PixelFormat::Uyvy,
    ];

    /// The V4L2 FourCC code as bytes (as in `v4l::FourCC::repr`).
    pub const fn fourcc(self) -> [u8; 4] {
        match self {
            PixelFormat::Y16 => *b"Y16 ",
            PixelFormat::Grey => *b"GREY",
            PixelFormat::Yuyv => *b"YUYV",
            PixelFormat::Uyvy => *b"UYVY",
        }
    }

    /// The format with FourCC `code`, if supported.
    pub fn from_fourcc(code: [u8; 4]) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.fourcc() == code)
    }

    /// Bytes per pixel in a row.
    pub const fn bytes_per_pixel(self) -> usize {
        match self {
            PixelFormat::Grey => 1,
            PixelFormat::Y16 | PixelFormat::Yuyv | PixelFormat::Uyvy => 2,
        }
    }
}

impl fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = self.fourcc();
        write!(f, "'{}'", String::from_utf8_lossy(&code))
    }
}

/// How the rows of a buffer are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameLayout {
    /// Every row is image.
    Plain,
    /// FLIR Lepton (PureThermal): the image is 4:3 (`height = width * 3 / 4`: 160x120, 80x60);
    /// with telemetry enabled the camera appends `telemetry_rows` rows (160x122 for Lepton 3.x),
    /// which are stripped. Which case applies is decided per buffer from its height.
    Lepton {
        /// Trailing telemetry rows when telemetry is on (2 for Lepton 3.x at 160x120).
        telemetry_rows: u32,
    },
    /// InfiRay P2 Pro / TC001 split frame (`YUYV` 256x384): top half image, bottom half
    /// little-endian u16 temperature; the temperature half is returned.
    InfiRaySplit,
}

/// Geometry of one V4L2 buffer as negotiated with the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferGeometry {
    /// Pixels per row.
    pub width_px: u32,
    /// Rows in the buffer (including telemetry rows or both halves of a split frame).
    pub height_px: u32,
    /// V4L2 `bytesperline`: distance between row starts in bytes (>= width * bytes per pixel).
    pub bytes_per_line: u32,
}

/// A decoded thermal frame, `[height, width]` row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThermalFrame {
    /// 8-bit intensity (the camera applied its own gain control).
    U8(Array2<u8>),
    /// 16-bit raw counts or centi-kelvin (Lepton `Y16`; which one depends on the camera's
    /// radiometry setting).
    U16(Array2<u16>),
    /// InfiRay temperature: `°C = raw / 64 - 273.15`.
    InfiRayTemperature(Array2<u16>),
}

impl ThermalFrame {
    /// `(width, height)` in pixels.
    pub fn size_px(&self) -> (usize, usize) {
        let (h, w) = match self {
            ThermalFrame::U8(a) => a.dim(),
            ThermalFrame::U16(a) | ThermalFrame::InfiRayTemperature(a) => a.dim(),
        };
        (w, h)
    }
}

/// Errors of thermal buffer decoding; each names the format and sizes involved.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// Width or height is zero.
    #[error("{format} {width_px}x{height_px}: frame has no pixels")]
    ZeroSize {
        /// Pixel format.
        format: PixelFormat,
        /// Buffer width.
        width_px: u32,
        /// Buffer height.
        height_px: u32,
    },
    /// `bytesperline` is shorter than one row of pixels.
    #[error(
        "{format} {width_px}x{height_px}: bytesperline {bytes_per_line} < {row_bytes} bytes of pixels per row"
    )]
    StrideTooSmall {
        /// Pixel format.
        format: PixelFormat,
        /// Buffer width.
        width_px: u32,
        /// Buffer height.
        height_px: u32,
        /// Given `bytesperline`.
        bytes_per_line: u32,
        /// Pixel bytes per row.
        row_bytes: usize,
    },
    /// The buffer is shorter than the geometry requires.
    #[error(
        "{format} {width_px}x{height_px} (bytesperline {bytes_per_line}): buffer has {actual} bytes, needs {needed}"
    )]
    Truncated {
        /// Pixel format.
        format: PixelFormat,
        /// Buffer width.
        width_px: u32,
        /// Buffer height.
        height_px: u32,
        /// Given `bytesperline`.
        bytes_per_line: u32,
        /// Bytes required.
        needed: usize,
        /// Bytes present.
        actual: usize,
    },
    /// The geometry's byte count does not fit in memory arithmetic.
    #[error(
        "{format} {width_px}x{height_px} (bytesperline {bytes_per_line}): frame size overflows"
    )]
    TooLarge {
        /// Pixel format.
        format: PixelFormat,
        /// Buffer width.
        width_px: u32,
        /// Buffer height.
        height_px: u32,
        /// Given `bytesperline`.
        bytes_per_line: u32,
    },
    /// The buffer height does not fit the configured layout.
    #[error("{format} {width_px}x{height_px}: does not fit layout {layout:?}: {reason}")]
    LayoutMismatch {
        /// Pixel format.
        format: PixelFormat,
        /// Configured layout.
        layout: FrameLayout,
        /// Buffer width.
        width_px: u32,
        /// Buffer height.
        height_px: u32,
        /// What is wrong.
        reason: &'static str,
    },
    /// The layout cannot be used with this pixel format.
    #[error("layout {layout:?} needs pixel format {expected}, got {format}")]
    UnsupportedLayout {
        /// Configured layout.
        layout: FrameLayout,
        /// Format the layout requires.
        expected: PixelFormat,
        /// Configured format.
        format: PixelFormat,
    },
}

/// Decoder for one negotiated pixel format and layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThermalDecoder {
    format: PixelFormat,
    layout: FrameLayout,
}

impl ThermalDecoder {
    /// Creates a decoder.
    ///
    /// # Errors
    /// [`DecodeError::UnsupportedLayout`] for [`FrameLayout::InfiRaySplit`] with a format other
    /// than [`PixelFormat::Yuyv`].
    pub fn new(format: PixelFormat, layout: FrameLayout) -> Result<Self, DecodeError> {
        if layout == FrameLayout::InfiRaySplit && format != PixelFormat::Yuyv {
            return Err(DecodeError::UnsupportedLayout {
                layout,
                expected: PixelFormat::Yuyv,
                format,
            });
        }
        Ok(Self { format, layout })
    }

    /// The pixel format.
    pub fn format(&self) -> PixelFormat {
        self.format
    }

    /// The layout.
    pub fn layout(&self) -> FrameLayout {
        self.layout
    }

    /// Decodes one buffer.
    ///
    /// # Errors
    /// [`DecodeError::ZeroSize`], [`DecodeError::StrideTooSmall`], [`DecodeError::Truncated`],
    /// [`DecodeError::TooLarge`] for a geometry the buffer cannot satisfy, and
    /// [`DecodeError::LayoutMismatch`] for a height the layout does not allow.
    pub fn decode(
        &self,
        buf: &[u8],
        geometry: BufferGeometry,
    ) -> Result<ThermalFrame, DecodeError> {
        let format = self.format;
        let too_large = || DecodeError::TooLarge {
            format,
            width_px: geometry.width_px,
            height_px: geometry.height_px,
            bytes_per_line: geometry.bytes_per_line,
        };
        let (width, height, stride, row_bytes) = self.checked_geometry(buf.len(), geometry)?;
        let (first_row, n_rows) = self.image_rows(width, height, geometry)?;
        let rows = (first_row..first_row + n_rows).map(|r| {
            let start = r * stride;
            buf.get(start..start + row_bytes).unwrap_or(&[])
        });
        let shape = (n_rows, width);
        let frame = match (format, self.layout) {
            (_, FrameLayout::InfiRaySplit) => {
                collect(shape, rows, le_u16).map(ThermalFrame::InfiRayTemperature)
            }
            (PixelFormat::Y16, _) => collect(shape, rows, le_u16).map(ThermalFrame::U16),
            (PixelFormat::Grey, _) => {
                collect(shape, rows, |row| row.iter().copied()).map(ThermalFrame::U8)
            }
            (PixelFormat::Yuyv, _) => {
                collect(shape, rows, |row| row.chunks_exact(2).map(|p| p[0])).map(ThermalFrame::U8)
            }
            (PixelFormat::Uyvy, _) => {
                collect(shape, rows, |row| row.chunks_exact(2).map(|p| p[1])).map(ThermalFrame::U8)
            }
        }
        .ok_or_else(too_large)?;
        Ok(frame)
    }

    /// Width, height, stride and the bytes of one row's pixels, checked against the buffer's
    /// length before any pixel is read.
    fn checked_geometry(
        &self,
        buf_len: usize,
        geometry: BufferGeometry,
    ) -> Result<(usize, usize, usize, usize), DecodeError> {
        let BufferGeometry {
            width_px,
            height_px,
            bytes_per_line,
        } = geometry;
        let format = self.format;
        if width_px == 0 || height_px == 0 {
            return Err(DecodeError::ZeroSize {
                format,
                width_px,
                height_px,
            });
        }
        let too_large = || DecodeError::TooLarge {
            format,
            width_px,
            height_px,
            bytes_per_line,
        };
        let width = usize::try_from(width_px).map_err(|_| too_large())?;
        let height = usize::try_from(height_px).map_err(|_| too_large())?;
        let stride = usize::try_from(bytes_per_line).map_err(|_| too_large())?;
        let row_bytes = width
            .checked_mul(format.bytes_per_pixel())
            .ok_or_else(too_large)?;
        if stride < row_bytes {
            return Err(DecodeError::StrideTooSmall {
                format,
                width_px,
                height_px,
                bytes_per_line,
                row_bytes,
            });
        }
        // The last row needs no padding after its pixels.
        let needed = (height - 1)
            .checked_mul(stride)
            .and_then(|n| n.checked_add(row_bytes))
            .ok_or_else(too_large)?;
        if buf_len < needed {
            return Err(DecodeError::Truncated {
                format,
                width_px,
                height_px,
                bytes_per_line,
                needed,
                actual: buf_len,
            });
        }
        Ok((width, height, stride, row_bytes))
    }

    /// The first buffer row of the image and how many rows it has, as the layout says.
    fn image_rows(
        &self,
        width: usize,
        height: usize,
        geometry: BufferGeometry,
    ) -> Result<(usize, usize), DecodeError> {
        let mismatch = |reason| DecodeError::LayoutMismatch {
            format: self.format,
            layout: self.layout,
            width_px: geometry.width_px,
            height_px: geometry.height_px,
            reason,
        };
        match self.layout {
            FrameLayout::Plain => Ok((0, height)),
            FrameLayout::Lepton { telemetry_rows } => {
                let image_rows = width / 4 * 3;
                if width % 4 != 0 || image_rows == 0 {
                    return Err(mismatch("Lepton width must be a multiple of 4"));
                }
                // Telemetry rows follow the image (PureThermal footer mode) and are skipped.
                let with_telemetry = usize::try_from(telemetry_rows)
                    .ok()
                    .and_then(|t| image_rows.checked_add(t));
                if height == image_rows || with_telemetry == Some(height) {
                    Ok((0, image_rows))
                } else {
                    Err(mismatch(
                        "height must be width*3/4, or width*3/4 + telemetry_rows",
                    ))
                }
            }
            FrameLayout::InfiRaySplit => {
                if height % 2 != 0 {
                    return Err(mismatch("split frame height must be even"));
                }
                Ok((height / 2, height / 2))
            }
        }
    }
}

/// Little-endian u16 pixels of one row.
fn le_u16(row: &[u8]) -> impl Iterator<Item = u16> + '_ {
    row.chunks_exact(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
}

/// Collects the pixels of `rows` (each decoded by `decode_row`) into a `[rows, width]` array;
/// `None` only if the pixel count does not match `shape` (rows were validated by the caller).
fn collect<'a, T, I>(
    shape: (usize, usize),
    rows: impl Iterator<Item = &'a [u8]>,
    decode_row: impl Fn(&'a [u8]) -> I,
) -> Option<Array2<T>>
where
    I: Iterator<Item = T>,
{
    let mut data = Vec::with_capacity(shape.0 * shape.1);
    for row in rows {
        data.extend(decode_row(row));
    }
    Array2::from_shape_vec(shape, data).ok()
}
