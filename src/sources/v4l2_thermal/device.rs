//! The real camera: a V4L2 capture node opened with the `v4l` crate, format negotiated by the
//! caller's choice from what it offers ([`super::negotiate`] for thermal cameras, `v4l2_camera`'s
//! own for colour ones), memory-mapped streaming. Only this file touches the device; everything
//! it hands over is a [`RawBuffer`] for the capture loop.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use v4l::buffer::{Flags as BufferFlags, Metadata, Type};
use v4l::capability::Flags as CapabilityFlags;
use v4l::device::Handle;
use v4l::framesize::FrameSizeEnum;
use v4l::io::mmap::Stream;
use v4l::io::traits::{CaptureStream, Stream as _};
use v4l::video::Capture;
use v4l::{Device, Format, FourCC};

use super::capture::{DeviceError, FrameDevice, RawBuffer, V4l2Format};
use super::negotiate::{FormatChoice, NegotiationError, OfferedFormat, SizeRange};
use super::{card_matches, DeviceSelector};
use crate::sources::thermal_decode::{BufferGeometry, PixelFormat};

/// Buffers requested from the driver: one with us, the others filling.
const BUFFER_COUNT: u32 = 4;
/// `EINVAL`: what `VIDIOC_QBUF` answers for an index past the buffers the driver allocated.
const EINVAL: i32 = 22;

/// An open camera, streaming in format `F`.
pub struct V4l2Camera<F = PixelFormat> {
    // Declared first so that it drops first: streaming stops and the buffers are unmapped while
    // the file descriptor is still open.
    stream: Option<Stream<'static>>,
    handle: Arc<Handle>,
    device: String,
    card: String,
    format: F,
    geometry: BufferGeometry,
    fps: Option<f64>,
}

impl<F: V4l2Format> std::fmt::Debug for V4l2Camera<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("V4l2Camera")
            .field("device", &self.device)
            .field("card", &self.card)
            .field("format", &self.format)
            .field("geometry", &self.geometry)
            .finish_non_exhaustive()
    }
}

impl<F: V4l2Format> V4l2Camera<F> {
    /// Opens the camera `selector` names, checks it captures video, sets the format `choose`
    /// picks from what it offers and starts memory-mapped streaming.
    ///
    /// # Errors
    /// [`DeviceError`] naming the device: not found, cannot open, not a V4L2 capture device, no
    /// suitable format (listing what it offers), or a failed ioctl.
    pub fn open(
        selector: &DeviceSelector,
        choose: impl FnOnce(&[OfferedFormat]) -> Result<FormatChoice<F>, NegotiationError>,
    ) -> Result<Self, DeviceError> {
        let (path, dev, card) = match selector {
            DeviceSelector::Path(path) => {
                let dev = open_node(path)?;
                let card = capture_card(path, &dev)?;
                (path.clone(), dev, card)
            }
            DeviceSelector::Card(name) => find_card(name)?,
        };
        let device = path.display().to_string();
        let offered = offered_formats(&dev).map_err(|source| DeviceError::Io {
            device: device.clone(),
            operation: "VIDIOC_ENUM_FMT",
            source,
        })?;
        let choice = choose(&offered).map_err(|source| DeviceError::Format {
            device: device.clone(),
            card: card.clone(),
            source,
        })?;
        let geometry = set_format(&dev, &device, &card, &choice)?;
        let fps = dev.params().ok().and_then(|p| {
            let i = p.interval;
            (i.numerator > 0 && i.denominator > 0)
                .then(|| f64::from(i.denominator) / f64::from(i.numerator))
        });
        let stream = start_stream(&dev, &device)?;
        Ok(Self {
            handle: stream.handle(),
            stream: Some(stream),
            device,
            card,
            format: choice.format,
            geometry,
            fps,
        })
    }

    fn io_error(&self, operation: &'static str, source: std::io::Error) -> DeviceError {
        DeviceError::Io {
            device: self.device.clone(),
            operation,
            source,
        }
    }
}

/// Sets the chosen format and size and checks the driver kept them; the buffer layout.
fn set_format<F: V4l2Format>(
    dev: &Device,
    device: &str,
    card: &str,
    choice: &FormatChoice<F>,
) -> Result<BufferGeometry, DeviceError> {
    let wanted = Format::new(
        choice.width_px,
        choice.height_px,
        FourCC::new(&choice.format.fourcc()),
    );
    let set = dev.set_format(&wanted).map_err(|source| DeviceError::Io {
        device: device.to_string(),
        operation: "VIDIOC_S_FMT",
        source,
    })?;
    if set.fourcc.repr != choice.format.fourcc()
        || set.width != choice.width_px
        || set.height != choice.height_px
    {
        return Err(DeviceError::FormatChanged {
            device: device.to_string(),
            card: card.to_string(),
            requested: format!("{} {}x{}", choice.format, choice.width_px, choice.height_px),
            set: format!(
                "'{}' {}x{}",
                String::from_utf8_lossy(&set.fourcc.repr),
                set.width,
                set.height
            ),
        });
    }
    // Some drivers leave bytesperline at 0 for packed formats: rows are then unpadded.
    let row_bytes = choice
        .width_px
        .saturating_mul(choice.format.bytes_per_pixel() as u32);
    Ok(BufferGeometry {
        width_px: choice.width_px,
        height_px: choice.height_px,
        bytes_per_line: set.stride.max(row_bytes),
    })
}

/// Maps the buffers and starts streaming.
fn start_stream(dev: &Device, device: &str) -> Result<Stream<'static>, DeviceError> {
    let io = |operation: &'static str| {
        move |source| DeviceError::Io {
            device: device.to_string(),
            operation,
            source,
        }
    };
    let mut stream = Stream::with_buffers(dev, Type::VideoCapture, BUFFER_COUNT)
        .map_err(io("VIDIOC_REQBUFS/mmap"))?;
    // Why not let `next()` start the stream: after a `next()` that timed out, the v4l crate
    // queues the same buffer again on the following call, which the driver refuses (EINVAL).
    // So the loop waits with its own poll and calls `next()` only when a frame is ready, and
    // the stream is started here with every buffer but 0 queued: the first `next()` queues
    // buffer 0 (it "re-queues" the buffer it believes it handed out) and dequeues.
    for index in 1..BUFFER_COUNT as usize {
        match CaptureStream::queue(&mut stream, index) {
            Ok(()) => {}
            // The driver allocated fewer buffers than asked for.
            Err(e) if e.raw_os_error() == Some(EINVAL) => break,
            Err(e) => return Err(io("VIDIOC_QBUF")(e)),
        }
    }
    stream.start().map_err(io("VIDIOC_STREAMON"))?;
    Ok(stream)
}

impl<F: V4l2Format> FrameDevice<F> for V4l2Camera<F> {
    fn next_frame(&mut self, timeout: Duration) -> Result<Option<RawBuffer<'_, F>>, DeviceError> {
        let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // POLLERR (an unplugged camera) also ends the wait; `next()` then reports the error.
        let ready = self
            .handle
            .poll(libc::POLLIN, timeout_ms)
            .map_err(|e| self.io_error("poll", e))?;
        if ready == 0 {
            return Ok(None);
        }
        let (format, geometry) = (self.format, self.geometry);
        let Some(stream) = self.stream.as_mut() else {
            return Err(DeviceError::Io {
                device: self.device.clone(),
                operation: "VIDIOC_DQBUF",
                source: std::io::Error::other("the stream is closed"),
            });
        };
        match CaptureStream::next(stream) {
            Ok((bytes, meta)) => Ok(Some(raw_buffer(bytes, meta, format, geometry))),
            Err(source) => Err(DeviceError::Io {
                device: self.device.clone(),
                operation: "VIDIOC_QBUF/DQBUF",
                source,
            }),
        }
    }

    fn frame_rate_hz(&self) -> Option<f64> {
        self.fps
    }

    fn describe(&self) -> String {
        format!(
            "{} {}x{} (bytesperline {}) on {} ({})",
            self.format,
            self.geometry.width_px,
            self.geometry.height_px,
            self.geometry.bytes_per_line,
            self.device,
            self.card
        )
    }
}

impl<F> Drop for V4l2Camera<F> {
    fn drop(&mut self) {
        let Some(mut stream) = self.stream.take() else {
            return;
        };
        // The v4l crate panics when dropping a stream whose STREAMOFF fails with anything but
        // ENODEV (unplugged). Stop it here first; should that fail otherwise, the stream is
        // leaked (its buffers stay mapped) rather than take the daemon down.
        match stream.stop() {
            Ok(()) => drop(stream),
            Err(e) if e.raw_os_error() == Some(19) => drop(stream),
            Err(e) => {
                tracing::error!(device = %self.device, error = %e, "VIDIOC_STREAMOFF failed; leaking the stream's buffers");
                std::mem::forget(stream);
            }
        }
    }
}

fn raw_buffer<'a, F>(
    bytes: &'a [u8],
    meta: &Metadata,
    format: F,
    geometry: BufferGeometry,
) -> RawBuffer<'a, F> {
    // bytesused 0: a driver that does not fill it in; the whole buffer then.
    let used = match meta.bytesused as usize {
        0 => bytes,
        n => bytes.get(..n).unwrap_or(bytes),
    };
    let monotonic = meta.flags & BufferFlags::TIMESTAMP_MASK == BufferFlags::TIMESTAMP_MONOTONIC;
    let timestamp = match (
        u64::try_from(meta.timestamp.sec),
        u32::try_from(meta.timestamp.usec),
    ) {
        (Ok(sec), Ok(usec)) if monotonic && (sec, usec) != (0, 0) => {
            Some(Duration::new(sec, usec.saturating_mul(1000)))
        }
        _ => None,
    };
    RawBuffer {
        bytes: used,
        format,
        geometry,
        timestamp,
        sequence: meta.sequence,
        corrupt: meta.flags.contains(BufferFlags::ERROR),
    }
}

/// Opens a device node.
fn open_node(path: &Path) -> Result<Device, DeviceError> {
    Device::with_path(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => DeviceError::NotFound {
            device: path.display().to_string(),
            detail: "no such device node (is the camera plugged in?)".into(),
        },
        _ => DeviceError::Open {
            device: path.display().to_string(),
            source,
        },
    })
}

/// The card name of a V4L2 video capture node with streaming I/O.
fn capture_card(path: &Path, dev: &Device) -> Result<String, DeviceError> {
    let caps = dev.query_caps().map_err(|source| DeviceError::NotV4l2 {
        device: path.display().to_string(),
        source,
    })?;
    if !caps
        .capabilities
        .contains(CapabilityFlags::VIDEO_CAPTURE | CapabilityFlags::STREAMING)
    {
        return Err(DeviceError::NotCapture {
            device: path.display().to_string(),
            card: caps.card,
            capabilities: caps.capabilities.to_string(),
        });
    }
    Ok(caps.card)
}

/// The first `/dev/video*` capture node (in number order) whose card name matches.
fn find_card(name: &str) -> Result<(PathBuf, Device, String), DeviceError> {
    let mut nodes: Vec<(u32, PathBuf)> = std::fs::read_dir("/dev")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let file_name = e.file_name();
                    let n = file_name.to_str()?.strip_prefix("video")?.parse().ok()?;
                    Some((n, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    nodes.sort();
    let mut seen = Vec::new();
    for (_, path) in nodes {
        let found = open_node(&path).and_then(|dev| {
            let card = capture_card(&path, &dev)?;
            Ok((dev, card))
        });
        match found {
            Ok((dev, card)) if card_matches(&card, name) => return Ok((path, dev, card)),
            Ok((_, card)) => seen.push(format!("{} {card:?}", path.display())),
            Err(e) => seen.push(format!("{} ({e})", path.display())),
        }
    }
    let detail = if seen.is_empty() {
        "no /dev/video* device exists".to_string()
    } else {
        format!(
            "no capture device whose card name contains {name:?}; found {}",
            seen.join(", ")
        )
    };
    Err(DeviceError::NotFound {
        device: format!("card:{name}"),
        detail,
    })
}

/// Every capture format of the device, with its frame sizes.
fn offered_formats(dev: &Device) -> std::io::Result<Vec<OfferedFormat>> {
    let mut offered = Vec::new();
    for description in dev.enum_formats()? {
        // A driver that cannot enumerate sizes still offers the format.
        let sizes = dev
            .enum_framesizes(description.fourcc)
            .unwrap_or_default()
            .into_iter()
            .map(|s| match s.size {
                FrameSizeEnum::Discrete(d) => SizeRange::discrete(d.width, d.height),
                FrameSizeEnum::Stepwise(s) => SizeRange {
                    min_width_px: s.min_width,
                    max_width_px: s.max_width,
                    step_width_px: s.step_width,
                    min_height_px: s.min_height,
                    max_height_px: s.max_height,
                    step_height_px: s.step_height,
                },
            })
            .collect();
        offered.push(OfferedFormat {
            fourcc: description.fourcc.repr,
            sizes,
        });
    }
    Ok(offered)
}
