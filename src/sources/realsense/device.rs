//! Intel RealSense cameras through librealsense2 (realsense-rust), live or from a recording
//! (`.bag`/`.db3`) played back in real time.
//!
//! One named thread owns the librealsense pipeline, which streams depth (Z16) and/or colour
//! (RGB8) from the one camera: start → wait for framesets (with a timeout, so cancellation is
//! checked) → copy each frame → stamp it by the camera's one clock → send it to its stream
//! (depth with the camera's depth calibration attached). A camera that is missing or fails is
//! logged once, every stream's state says `connected: false`, and it is reopened with
//! exponential backoff. A recording that does not loop ends the source when it has played.
//!
//! The pure pieces ([`DeviceClock`], [`check_layout`], [`Calibration`]) are unit-tested here;
//! the librealsense path is tested end to end in `tests/realsense.rs` with recordings made at
//! test time.

use std::ffi::CString;
use std::path::PathBuf;
use std::time::Duration;

use realsense_rust::config::Config as RsConfig;
use realsense_rust::context::Context;
use realsense_rust::kind::{Rs2CameraInfo, Rs2Format, Rs2StreamKind};
use realsense_rust::pipeline::{ActivePipeline, InactivePipeline};

pub use super::calibration::Calibration;
use super::config::StreamMode;
use super::RealsenseSettings;
use crate::config::DepthPreprocessConfig;
use crate::sources::device_loop::{run_device, Ended, Hardware};
use crate::sources::{Source, SourceContext};

/// Longest one wait for frames blocks; also how often cancellation is checked.
pub(super) const WAIT: Duration = Duration::from_millis(200);
/// A live camera that sends nothing for this long is treated as lost and reopened.
pub(super) const LIVE_SILENCE: Duration = Duration::from_secs(5);
/// A non-looping recording that sends nothing for this long after a frame has ended.
pub(super) const RECORDING_END_SILENCE: Duration = Duration::from_secs(2);

/// Problems building a RealSense source.
#[derive(Debug, thiserror::Error)]
pub enum RealsenseError {
    /// The recording cannot be played.
    #[error("source {name}: recording {path}: {reason}")]
    Recording {
        /// The source.
        name: String,
        /// The file.
        path: PathBuf,
        /// librealsense's reason.
        reason: String,
    },
    /// The serial number cannot be passed to librealsense.
    #[error("source {name}: serial {serial:?} contains a NUL byte")]
    Serial {
        /// The source.
        name: String,
        /// The serial number.
        serial: String,
    },
}

/// What the thread opens.
#[derive(Debug, Clone)]
pub(super) struct Spec {
    serial: Option<CString>,
    pub(super) recording: Option<PathBuf>,
    pub(super) looping: bool,
    pub(super) depth: Option<StreamMode>,
    pub(super) colour: Option<StreamMode>,
    /// The colour stream's `interval_ms`: the frames its stream would pass over are not copied.
    pub(super) colour_interval_ms: u64,
}

impl Spec {
    fn describe(&self) -> String {
        match (&self.recording, &self.serial) {
            (Some(p), _) => format!("recording {}", p.display()),
            (None, Some(s)) => format!("camera {}", s.to_string_lossy()),
            (None, None) => "first camera".to_string(),
        }
    }

    /// The streams asked for, as messages name them.
    fn streams(&self) -> String {
        let mode = |m: &StreamMode| format!("{}x{} at {} fps", m.width_px, m.height_px, m.fps);
        let depth = self
            .depth
            .as_ref()
            .map(|m| format!("Z16 depth stream {}", mode(m)));
        let colour = self
            .colour
            .as_ref()
            .map(|m| format!("RGB8 colour stream {}", mode(m)));
        depth
            .into_iter()
            .chain(colour)
            .collect::<Vec<_>>()
            .join(" and ")
    }

    /// Which of the source's streams (its `SourceContext` index) gets depth and colour frames.
    pub(super) fn ports(&self) -> (Option<usize>, Option<usize>) {
        let depth = self.depth.map(|_| 0);
        let colour = self.colour.map(|_| usize::from(self.depth.is_some()));
        (depth, colour)
    }
}

/// A started pipeline. The pipeline is declared first so that it is dropped before its context.
struct Open {
    pipeline: ActivePipeline,
    _context: Context,
}

fn open(spec: &Spec) -> Result<Open, String> {
    let context = Context::new().map_err(|e| e.to_string())?;
    let pipeline = InactivePipeline::try_from(&context).map_err(|e| e.to_string())?;
    let mut config = RsConfig::new();
    if let Some(path) = &spec.recording {
        config
            .enable_device_from_file(path, spec.looping)
            .map_err(|e| e.to_string())?;
    } else if let Some(serial) = &spec.serial {
        config
            .enable_device_from_serial(serial)
            .map_err(|e| e.to_string())?;
    }
    let streams = [
        (Rs2StreamKind::Depth, Rs2Format::Z16, spec.depth),
        (Rs2StreamKind::Color, Rs2Format::Rgb8, spec.colour),
    ];
    for (kind, format, mode) in streams {
        if let Some(m) = mode {
            config
                .enable_stream(kind, None, m.width_px, m.height_px, format, m.fps)
                .map_err(|e| e.to_string())?;
        }
    }
    if !pipeline.can_resolve(&config) {
        return Err(unresolvable(&context, spec));
    }
    let pipeline = pipeline.start(Some(config)).map_err(|e| e.to_string())?;
    Ok(Open {
        pipeline,
        _context: context,
    })
}

/// Why no device matches: which cameras there are, or what the recording lacks.
fn unresolvable(context: &Context, spec: &Spec) -> String {
    let streams = spec.streams();
    if spec.recording.is_some() {
        return format!("has no {streams}");
    }
    let serials: Vec<String> = context
        .query_devices(Default::default())
        .iter()
        .filter_map(|d| d.info(Rs2CameraInfo::SerialNumber))
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    let which = match &spec.serial {
        Some(s) => format!("no camera with serial {}", s.to_string_lossy()),
        None => "no camera".to_string(),
    };
    format!(
        "{which} offering a {streams} is connected (cameras found: {})",
        serials.join(", ")
    )
}

/// The RealSense source.
#[derive(Debug)]
pub struct Realsense {
    pub(super) spec: Spec,
    max_backoff: Duration,
    pub(super) preprocess: DepthPreprocessConfig,
}

impl Realsense {
    /// Checks the settings `c` of source `name` (its `recording` resolved); a recording is
    /// opened once to check that it plays with the configured streams. A live camera is not
    /// looked for: it may be plugged in later.
    ///
    /// # Errors
    /// [`RealsenseError`] naming the source and the file.
    pub fn new(
        name: &str,
        c: &RealsenseSettings,
        recording: Option<PathBuf>,
    ) -> Result<Self, RealsenseError> {
        let serial = c
            .serial
            .as_ref()
            .map(|s| {
                CString::new(s.as_str()).map_err(|_| RealsenseError::Serial {
                    name: name.to_string(),
                    serial: s.clone(),
                })
            })
            .transpose()?;
        let spec = Spec {
            serial,
            recording,
            looping: c.looping,
            depth: c.depth_mode(),
            colour: c.colour_mode(),
            colour_interval_ms: c.colour.as_ref().map_or(0, |c| c.cut.interval_ms.get()),
        };
        if let Some(path) = &spec.recording {
            check_recording(&spec).map_err(|reason| RealsenseError::Recording {
                name: name.to_string(),
                path: path.clone(),
                reason,
            })?;
        }
        Ok(Self {
            spec,
            max_backoff: c.reconnect_max_backoff_ms.duration(),
            preprocess: c.preprocess.clone(),
        })
    }
}

/// Opens the recording as a device (librealsense's own reason for a corrupt file), then checks
/// that it has the configured streams.
fn check_recording(spec: &Spec) -> Result<(), String> {
    let path = spec.recording.as_ref().ok_or("no recording")?;
    if !path.is_file() {
        return Err("does not exist".to_string());
    }
    let mut context = Context::new().map_err(|e| e.to_string())?;
    context.add_device(path).map_err(|e| e.to_string())?;
    let _ = context.remove_device(path);
    drop(context);
    drop(open(spec)?);
    Ok(())
}

impl Source for Realsense {
    /// The rate of its first stream (depth, else colour).
    fn sample_rate_hz(&self) -> f64 {
        self.spec
            .depth
            .or(self.spec.colour)
            .map_or(0.0, |m| m.fps as f64)
    }

    fn run(self: Box<Self>, ctx: SourceContext) {
        let _span = tracing::info_span!("source", sensor = %ctx.name).entered();
        run_device(&mut Camera(&self), self.max_backoff, &ctx);
    }
}

/// The camera (or its recording) as the device loop drives it.
struct Camera<'a>(&'a Realsense);

impl Hardware for Camera<'_> {
    type Device = Open;
    type OpenError = String;
    type Error = String;
    const KIND: &'static str = "RealSense";

    fn nominal_rate_hz(&self) -> f64 {
        self.0.sample_rate_hz()
    }

    fn other_rates_hz(&self) -> Vec<f64> {
        match (self.0.spec.depth, self.0.spec.colour) {
            (Some(_), Some(colour)) => vec![colour.fps as f64],
            _ => Vec::new(),
        }
    }

    fn open(&mut self) -> Result<Open, String> {
        open(&self.0.spec).map_err(|error| format!("{}: {error}", self.0.spec.describe()))
    }

    fn describe(&self, _open: &Open) -> String {
        self.0.spec.describe()
    }

    fn rate_hz(&self, _open: &Open) -> f64 {
        self.0.sample_rate_hz()
    }

    fn announce(&self, _open: &Open) {
        let spec = &self.0.spec;
        tracing::info!(
            device = %spec.describe(),
            streams = %spec.streams(),
            "RealSense streaming"
        );
    }

    // The loop drops `open` after this returns, which stops the pipeline and frees its device.
    // (realsense-rust's `stop()` forgets the pipeline's profile, leaking the device and, for a
    // recording, its reader thread, which then races the process exit.)
    fn capture(&mut self, open: &mut Open, ctx: &SourceContext) -> Ended<String> {
        super::capture::Session::new(self.0).run(&mut open.pipeline, ctx)
    }
}

/// Maps the camera's frame timestamps (ms on its own clock) to the daemon's monotonic clock
/// with an offset fixed at the first frame, shared by the camera's streams (depth and colour
/// frames stamped alike by the camera get the same capture time). The offset is taken again when
/// the device clock jumps backwards within a stream, or far ahead (a reconnected camera, a
/// looping recording). Each stream ("lane") keeps its own order: a colour frame exposed a little
/// before the depth frame just handled is not a jump.
#[derive(Debug, Default, Clone)]
pub struct DeviceClock {
    offset_ns: Option<i128>,
    last_mono_ns: [u64; DeviceClock::LANES],
}

impl DeviceClock {
    /// Largest lead over the arrival time accepted before the offset is taken again.
    const MAX_LEAD_NS: i128 = 1_000_000_000;
    /// Streams one clock serves.
    pub const LANES: usize = 2;

    /// The daemon monotonic time of a frame of lane 0 stamped `device_ms`, arriving at
    /// `now_mono_ns`.
    pub fn map(&mut self, device_ms: f64, now_mono_ns: u64) -> u64 {
        self.map_lane(0, device_ms, now_mono_ns)
    }

    /// The daemon monotonic time of a frame of stream `lane` (below [`LANES`](Self::LANES);
    /// others count as the last) stamped `device_ms`, arriving at `now_mono_ns`.
    pub fn map_lane(&mut self, lane: usize, device_ms: f64, now_mono_ns: u64) -> u64 {
        let lane = lane.min(Self::LANES - 1);
        let device_ns = if device_ms.is_finite() {
            (device_ms * 1e6) as i128
        } else {
            0
        };
        let last = self.last_mono_ns[lane];
        if let Some(offset) = self.offset_ns {
            let mono = device_ns + offset;
            if mono >= i128::from(last) && mono <= i128::from(now_mono_ns) + Self::MAX_LEAD_NS {
                self.last_mono_ns[lane] = u64::try_from(mono).unwrap_or(u64::MAX);
                return self.last_mono_ns[lane];
            }
        }
        let mono = now_mono_ns.max(last);
        self.offset_ns = Some(i128::from(mono) - device_ns);
        self.last_mono_ns[lane] = mono;
        mono
    }
}

/// How a stream's pixels are laid out: bits per pixel and the format's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelLayout {
    /// Bits per pixel.
    pub bits: usize,
    /// The format, as messages name it.
    pub format: &'static str,
}

/// Depth: 16-bit units.
pub const Z16: PixelLayout = PixelLayout {
    bits: 16,
    format: "Z16",
};
/// Colour: 8-bit red, green, blue.
pub const RGB8: PixelLayout = PixelLayout {
    bits: 24,
    format: "RGB8",
};

/// Checks that a Z16 frame has the configured size and that its buffer holds every row at its
/// stride; a message saying what is wrong otherwise.
pub fn check_layout(
    size_px: (usize, usize),
    want_px: (usize, usize),
    stride_bytes: usize,
    bits_per_pixel: usize,
    data_bytes: usize,
) -> Result<(), String> {
    check_layout_of(
        Z16,
        size_px,
        want_px,
        stride_bytes,
        bits_per_pixel,
        data_bytes,
    )
}

/// Checks that a frame of `layout` has the configured size and that its buffer holds every row
/// at its stride; a message saying what is wrong otherwise.
pub fn check_layout_of(
    layout: PixelLayout,
    size_px: (usize, usize),
    want_px: (usize, usize),
    stride_bytes: usize,
    bits_per_pixel: usize,
    data_bytes: usize,
) -> Result<(), String> {
    let (w, h) = size_px;
    let PixelLayout { bits, format } = layout;
    if size_px != want_px {
        return Err(format!(
            "frame is {w}x{h}, the stream is {}x{}",
            want_px.0, want_px.1
        ));
    }
    if w == 0 || h == 0 {
        return Err("frame has no pixels".to_string());
    }
    if bits_per_pixel != bits {
        return Err(format!(
            "{bits_per_pixel} bits per pixel, not {bits} ({format})"
        ));
    }
    let row_bytes = w * bits / 8;
    let needed = stride_bytes
        .checked_mul(h - 1)
        .and_then(|n| n.checked_add(row_bytes));
    match needed {
        Some(n) if stride_bytes >= row_bytes && data_bytes >= n => Ok(()),
        _ => Err(format!(
            "buffer of {data_bytes} bytes with stride {stride_bytes} cannot hold {w}x{h} {format} pixels"
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn device_time_keeps_its_spacing_from_the_first_frame() {
        let mut c = DeviceClock::default();
        assert_eq!(c.map(1_000.0, 50 * MS), 50 * MS);
        // Arrival jitter does not matter: the device clock gives the spacing.
        assert_eq!(c.map(1_033.0, 95 * MS), 83 * MS);
        assert_eq!(c.map(1_066.0, 99 * MS), 116 * MS);
    }

    #[test]
    fn a_device_clock_that_jumps_back_or_far_ahead_is_anchored_again() {
        let mut c = DeviceClock::default();
        c.map(5_000.0, 10 * MS);
        // A looping recording starts over: never earlier than the last frame.
        assert_eq!(c.map(1_000.0, 20 * MS), 20 * MS);
        assert_eq!(c.map(1_010.0, 31 * MS), 30 * MS);
        assert_eq!(c.map(9_000_000.0, 40 * MS), 40 * MS);
        assert_eq!(c.map(f64::NAN, 50 * MS), 50 * MS);
    }

    #[test]
    fn layouts_are_checked_against_the_stream_and_the_buffer() {
        assert!(check_layout((640, 480), (640, 480), 1280, 16, 640 * 480 * 2).is_ok());
        // Padded rows: the last row needs only its pixels.
        assert!(check_layout((4, 2), (4, 2), 16, 16, 16 + 8).is_ok());
        let wrong_size = check_layout((848, 480), (640, 480), 1696, 16, 848 * 480 * 2);
        assert_eq!(
            wrong_size.unwrap_err(),
            "frame is 848x480, the stream is 640x480"
        );
        assert!(check_layout((640, 480), (640, 480), 1280, 16, 1000)
            .unwrap_err()
            .contains("cannot hold"));
        assert!(check_layout((640, 480), (640, 480), 100, 16, 640 * 480 * 2).is_err());
        assert!(check_layout((640, 480), (640, 480), 1280, 8, 640 * 480 * 2).is_err());
        assert!(check_layout((0, 0), (0, 0), 0, 16, 0).is_err());
    }

    #[test]
    fn depth_and_colour_share_one_offset_and_each_keeps_its_own_order() {
        let mut c = DeviceClock::default();
        // Depth at device 1000 ms arrives at 50 ms; colour of the same instant, handled after.
        assert_eq!(c.map_lane(0, 1_000.0, 50 * MS), 50 * MS);
        assert_eq!(c.map_lane(1, 1_000.0, 52 * MS), 50 * MS);
        // The next depth frame, then a colour frame exposed 5 ms before it: not a jump.
        assert_eq!(c.map_lane(0, 1_033.0, 85 * MS), 83 * MS);
        assert_eq!(c.map_lane(1, 1_028.0, 86 * MS), 78 * MS);
        // A jump back within colour is one: re-anchored, never before colour's last frame.
        assert_eq!(c.map_lane(1, 500.0, 90 * MS), 90 * MS);
        // … and the shared offset moved with it.
        assert_eq!(c.map_lane(0, 533.0, 125 * MS), 123 * MS);
    }

    #[test]
    fn rgb8_layouts_are_checked_at_three_bytes_a_pixel() {
        assert!(check_layout_of(RGB8, (640, 480), (640, 480), 1920, 24, 640 * 480 * 3).is_ok());
        assert_eq!(
            check_layout_of(RGB8, (640, 480), (640, 480), 1920, 16, 640 * 480 * 3).unwrap_err(),
            "16 bits per pixel, not 24 (RGB8)"
        );
        // A Z16-sized buffer cannot hold RGB8.
        assert!(
            check_layout_of(RGB8, (640, 480), (640, 480), 1920, 24, 640 * 480 * 2)
                .unwrap_err()
                .contains("cannot hold 640x480 RGB8 pixels")
        );
        assert!(check_layout_of(RGB8, (640, 480), (640, 480), 1280, 24, 640 * 480 * 3).is_err());
    }
}
