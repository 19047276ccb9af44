//! Intel RealSense depth cameras through librealsense2 (realsense-rust), live or from a recording
//! (`.bag`/`.db3`) played back in real time.
//!
//! One named thread owns the librealsense pipeline: start → wait for frames (with a timeout, so
//! cancellation is checked) → copy the Z16 frame → stamp it → send it, with the camera's depth
//! calibration attached. A camera that is missing or fails is logged once, the sensor's state
//! says `connected: false`, and it is reopened with exponential backoff. A recording that does
//! not loop ends the source when it has played.
//!
//! The pure pieces ([`DeviceClock`], [`check_layout`], [`Calibration`]) are unit-tested here;
//! the librealsense path is tested end to end in `tests/realsense.rs` with recordings made at
//! test time.

use std::ffi::CString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ndarray::Array2;
use realsense_rust::config::Config as RsConfig;
use realsense_rust::context::Context;
use realsense_rust::frame::{DepthFrame, FrameEx, PixelKind};
use realsense_rust::kind::{Rs2CameraInfo, Rs2Format, Rs2Option, Rs2StreamKind};
use realsense_rust::pipeline::{ActivePipeline, FrameWaitError, InactivePipeline};

use super::RealsenseSettings;
use crate::config::DepthPreprocessConfig;
use crate::log_limited;
use crate::preprocess::depth::{DepthCalibration, DepthParams};
use crate::sources::device_loop::{run_device, Ended, Hardware};
use crate::sources::{Frame, FrameImage, Source, SourceContext, SourceMessage};
use crate::telemetry::{DropReason, LogLimiter};

/// Longest one wait for frames blocks; also how often cancellation is checked.
const WAIT: Duration = Duration::from_millis(200);
/// A live camera that sends nothing for this long is treated as lost and reopened.
const LIVE_SILENCE: Duration = Duration::from_secs(5);
/// A non-looping recording that sends nothing for this long after a frame has ended.
const RECORDING_END_SILENCE: Duration = Duration::from_secs(2);

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
struct Spec {
    serial: Option<CString>,
    recording: Option<PathBuf>,
    looping: bool,
    width_px: usize,
    height_px: usize,
    fps: usize,
}

impl Spec {
    fn describe(&self) -> String {
        match (&self.recording, &self.serial) {
            (Some(p), _) => format!("recording {}", p.display()),
            (None, Some(s)) => format!("camera {}", s.to_string_lossy()),
            (None, None) => "first camera".to_string(),
        }
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
    config
        .enable_stream(
            Rs2StreamKind::Depth,
            None,
            spec.width_px,
            spec.height_px,
            Rs2Format::Z16,
            spec.fps,
        )
        .map_err(|e| e.to_string())?;
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
    let stream = format!(
        "Z16 depth stream {}x{} at {} fps",
        spec.width_px, spec.height_px, spec.fps
    );
    if spec.recording.is_some() {
        return format!("has no {stream}");
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
    format!("{which} offering a {stream} is connected (cameras found: {serials:?})")
}

/// The RealSense source.
#[derive(Debug)]
pub struct Realsense {
    spec: Spec,
    max_backoff: Duration,
    preprocess: DepthPreprocessConfig,
}

impl Realsense {
    /// Checks the settings `c` of source `name` (its `recording` resolved); a recording is
    /// opened once to check that it plays. A live camera is not looked for: it may be plugged
    /// in later.
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
            width_px: c.width_px.px() as usize,
            height_px: c.height_px.px() as usize,
            fps: c.fps.fps() as usize,
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
/// that it has the configured depth stream.
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
    fn sample_rate_hz(&self) -> f64 {
        self.spec.fps as f64
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
            width_px = spec.width_px,
            height_px = spec.height_px,
            fps = spec.fps,
            "RealSense streaming"
        );
    }

    // The loop drops `open` after this returns, which stops the pipeline and frees its device.
    // (realsense-rust's `stop()` forgets the pipeline's profile, leaking the device and, for a
    // recording, its reader thread, which then races the process exit.)
    fn capture(&mut self, open: &mut Open, ctx: &SourceContext) -> Ended<String> {
        Stream::new(self.0).run(&mut open.pipeline, ctx)
    }
}

/// One streaming session (one open pipeline).
struct Stream<'a> {
    source: &'a Realsense,
    clock: DeviceClock,
    calibration: Option<DepthCalibration>,
    /// Frames that cannot be used: logged once, then summarised every few seconds.
    bad_frame_log: LogLimiter,
    /// A frame has arrived (usable or not).
    received: bool,
    /// A frame has been sent on.
    delivered: bool,
}

impl<'a> Stream<'a> {
    fn new(source: &'a Realsense) -> Self {
        Self {
            source,
            clock: DeviceClock::default(),
            calibration: None,
            bad_frame_log: LogLimiter::default(),
            received: false,
            delivered: false,
        }
    }

    fn run(&mut self, pipeline: &mut ActivePipeline, ctx: &SourceContext) -> Ended<String> {
        let recording = self.source.spec.recording.is_some();
        let mut last_frame = Instant::now();
        loop {
            if ctx.cancel.is_cancelled() {
                return Ended::Stop;
            }
            match pipeline.wait(Some(WAIT)) {
                Ok(frames) => {
                    last_frame = Instant::now();
                    self.received = true;
                    for frame in frames.frames_of_type::<DepthFrame>() {
                        if !self.handle(&frame, ctx) {
                            return Ended::Stop;
                        }
                    }
                }
                Err(FrameWaitError::DidTimeoutBeforeFrameArrival) => {
                    let quiet = last_frame.elapsed();
                    if recording && !self.source.spec.looping && self.received {
                        if quiet >= RECORDING_END_SILENCE {
                            return Ended::Finished;
                        }
                    } else if quiet >= LIVE_SILENCE {
                        return Ended::Lost {
                            error: format!("no frame for {} s", quiet.as_secs()),
                            delivered: self.delivered,
                        };
                    }
                }
                Err(e) => {
                    return Ended::Lost {
                        error: e.to_string(),
                        delivered: self.delivered,
                    }
                }
            }
        }
    }

    /// Copies, checks, stamps and sends one frame; false when the pipeline has stopped.
    fn handle(&mut self, frame: &DepthFrame, ctx: &SourceContext) -> bool {
        let now = ctx.clock.now();
        let t = ctx
            .clock
            .at_mono_ns(self.clock.map(frame.timestamp(), now.mono_ns));
        if self.calibration.is_none() {
            let cal = Calibration::read(frame);
            let in_use = cal.complete();
            cal.log(&self.source.preprocess);
            self.calibration = Some(in_use);
        }
        let layout = check_layout(
            (frame.width(), frame.height()),
            (self.source.spec.width_px, self.source.spec.height_px),
            frame.stride(),
            frame.bits_per_pixel(),
            frame.get_data_size(),
        );
        let image = match layout {
            Ok(()) => Array2::from_shape_fn((frame.height(), frame.width()), |(y, x)| match frame
                .get_unchecked(x, y)
            {
                PixelKind::Z16 { depth } => *depth,
                _ => 0,
            }),
            Err(e) => {
                self.bad_frame(ctx, &e);
                return true;
            }
        };
        if image.iter().all(|&d| d == 0) {
            self.bad_frame(ctx, "no valid depth (every pixel is 0)");
            return true;
        }
        if !ctx.send(SourceMessage::Frame(Frame {
            seq: frame.frame_number(),
            t,
            image: FrameImage::U16(image),
            calibration: self.calibration,
        })) {
            return false;
        }
        ctx.stats.add_samples(1, t.utc_ns);
        self.delivered = true;
        true
    }

    /// Counts a frame that cannot be used; logs it, rate-limited.
    fn bad_frame(&mut self, ctx: &SourceContext, why: &str) {
        ctx.stats.add_drops(DropReason::BadInput, 1);
        log_limited!(
            self.bad_frame_log,
            tracing::Level::WARN,
            "depth frame dropped (counted as bad_input)",
            reason = why
        );
    }
}

/// Maps the camera's frame timestamps (ms on its own clock) to the daemon's monotonic clock
/// with an offset fixed at the first frame. The offset is taken again when the device clock
/// jumps backwards or far ahead (a reconnected camera, a looping recording).
#[derive(Debug, Default, Clone)]
pub struct DeviceClock {
    offset_ns: Option<i128>,
    last_mono_ns: u64,
}

impl DeviceClock {
    /// Largest lead over the arrival time accepted before the offset is taken again.
    const MAX_LEAD_NS: i128 = 1_000_000_000;

    /// The daemon monotonic time of a frame stamped `device_ms`, arriving at `now_mono_ns`.
    pub fn map(&mut self, device_ms: f64, now_mono_ns: u64) -> u64 {
        let device_ns = if device_ms.is_finite() {
            (device_ms * 1e6) as i128
        } else {
            0
        };
        if let Some(offset) = self.offset_ns {
            let mono = device_ns + offset;
            if mono >= i128::from(self.last_mono_ns)
                && mono <= i128::from(now_mono_ns) + Self::MAX_LEAD_NS
            {
                self.last_mono_ns = u64::try_from(mono).unwrap_or(u64::MAX);
                return self.last_mono_ns;
            }
        }
        let mono = now_mono_ns.max(self.last_mono_ns);
        self.offset_ns = Some(i128::from(mono) - device_ns);
        self.last_mono_ns = mono;
        mono
    }
}

/// Checks that a frame has the configured size and that its buffer holds every row at its
/// stride (2 bytes per Z16 pixel); a message saying what is wrong otherwise.
pub fn check_layout(
    size_px: (usize, usize),
    want_px: (usize, usize),
    stride_bytes: usize,
    bits_per_pixel: usize,
    data_bytes: usize,
) -> Result<(), String> {
    let (w, h) = size_px;
    if size_px != want_px {
        return Err(format!(
            "frame is {w}x{h}, the stream is {}x{}",
            want_px.0, want_px.1
        ));
    }
    if w == 0 || h == 0 {
        return Err("frame has no pixels".to_string());
    }
    if bits_per_pixel != 16 {
        return Err(format!("{bits_per_pixel} bits per pixel, not 16 (Z16)"));
    }
    let needed = stride_bytes
        .checked_mul(h - 1)
        .and_then(|n| n.checked_add(w * 2));
    match needed {
        Some(n) if stride_bytes >= w * 2 && data_bytes >= n => Ok(()),
        _ => Err(format!(
            "buffer of {data_bytes} bytes with stride {stride_bytes} cannot hold {w}x{h} Z16 pixels"
        )),
    }
}

/// Depth calibration as the camera reports it; `None` where it reports nothing usable.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Calibration {
    /// Focal length of the depth stream's intrinsics, pixels.
    pub focal_px: Option<f64>,
    /// Stereo baseline, metres.
    pub baseline_m: Option<f64>,
    /// Where the baseline came from: `stereo_baseline` option or extrinsics.
    pub baseline_from: &'static str,
    /// Depth units option, metres.
    pub depth_units_m: Option<f64>,
}

fn usable(v: f64) -> Option<f64> {
    (v.is_finite() && v > 0.0).then_some(v)
}

impl Calibration {
    fn read(frame: &DepthFrame) -> Self {
        let profile = frame.stream_profile();
        let focal_px = profile
            .intrinsics()
            .ok()
            .and_then(|k| usable(f64::from(k.fx())));
        let sensor = frame.sensor().ok();
        let depth_units_m = sensor
            .as_ref()
            .and_then(|s| s.get_option(Rs2Option::DepthUnits))
            .and_then(|u| usable(f64::from(u)));
        let option = sensor
            .as_ref()
            .and_then(|s| s.get_option(Rs2Option::StereoBaseline))
            .and_then(|mm| usable(f64::from(mm) / 1000.0));
        // Depth is in the first infrared camera's frame on a D400: the translation to the
        // other infrared camera is the baseline.
        let extrinsic = || {
            sensor
                .as_ref()?
                .stream_profiles()
                .iter()
                .filter(|p| p.kind() == Rs2StreamKind::Infrared)
                .filter_map(|ir| profile.extrinsics(ir).ok())
                .map(|e| {
                    let t = e.translation();
                    f64::from(t[0] * t[0] + t[1] * t[1] + t[2] * t[2]).sqrt()
                })
                .reduce(f64::max)
                .and_then(usable)
        };
        let (baseline_m, baseline_from) = match option {
            Some(b) => (Some(b), "stereo_baseline option"),
            None => match extrinsic() {
                Some(b) => (Some(b), "depth-to-infrared extrinsics"),
                None => (None, "not reported"),
            },
        };
        Self {
            focal_px,
            baseline_m,
            baseline_from,
            depth_units_m,
        }
    }

    /// What the camera reported, with the reference values where it reported nothing.
    #[must_use]
    pub fn complete(&self) -> DepthCalibration {
        let reference = DepthParams::default();
        DepthCalibration {
            focal_px: self.focal_px.unwrap_or(reference.focal_px),
            baseline_m: self.baseline_m.unwrap_or(reference.baseline_m),
            depth_units_m: self.depth_units_m.unwrap_or(reference.depth_units_m),
        }
    }

    fn log(&self, preprocess: &DepthPreprocessConfig) {
        let used = preprocess.params(Some(self.complete()));
        tracing::info!(
            camera_focal_px = ?self.focal_px,
            camera_baseline_m = ?self.baseline_m,
            baseline_from = self.baseline_from,
            camera_depth_units_m = ?self.depth_units_m,
            focal_px = used.focal_px,
            baseline_m = used.baseline_m,
            depth_units_m = used.depth_units_m,
            "depth calibration (config values override the camera's)"
        );
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
    fn missing_camera_values_fall_back_to_the_reference() {
        let reference = DepthParams::default();
        let c = Calibration {
            focal_px: Some(383.5),
            baseline_m: None,
            baseline_from: "not reported",
            depth_units_m: Some(0.0001),
        };
        assert_eq!(
            c.complete(),
            DepthCalibration {
                focal_px: 383.5,
                baseline_m: reference.baseline_m,
                depth_units_m: 0.0001,
            }
        );
        assert_eq!(usable(f64::NAN), None);
        assert_eq!(usable(-1.0), None);
    }
}
