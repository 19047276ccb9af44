//! The capture loop, generic over a [`FrameDevice`] and how its buffers are decoded
//! ([`DecodeBuffer`]): open → dequeue → decode → stamp → send, and on failure log once, report
//! `connected: false` and reopen with exponential backoff. The real V4L2 camera is one
//! implementation (feature `v4l2`); tests drive the loop with scripted ones. Thermal cameras
//! decode with [`ThermalBuffers`]; the colour cameras of `v4l2_camera` use the same loop and
//! device with their own formats and decoder.

use std::fmt;
use std::time::{Duration, Instant};

use super::negotiate::NegotiationError;
use crate::log_limited;
pub use crate::sources::device_loop::INITIAL_BACKOFF;
use crate::sources::device_loop::{run_device, Ended, Hardware};
use crate::sources::thermal_decode::{
    BufferGeometry, DecodeError, FrameLayout, PixelFormat, ThermalDecoder, ThermalFrame,
};
use crate::sources::{Frame, FrameGate, FrameImage, SourceContext, SourceMessage};
use crate::telemetry::{DropReason, LogLimiter};

/// Longest one wait for a frame lasts: how often cancellation is checked while a camera is quiet.
pub const POLL_SLICE: Duration = Duration::from_millis(100);

/// A pixel format a V4L2 camera is driven in: thermal [`PixelFormat`]s, or the colour formats
/// of `v4l2_camera`.
pub trait V4l2Format: Copy + fmt::Display + fmt::Debug + Send + 'static {
    /// The V4L2 FourCC code.
    fn fourcc(self) -> [u8; 4];
    /// Bytes per pixel of a packed format; 0 for a compressed one (MJPEG).
    fn bytes_per_pixel(self) -> usize;
}

impl V4l2Format for PixelFormat {
    fn fourcc(self) -> [u8; 4] {
        PixelFormat::fourcc(self)
    }

    fn bytes_per_pixel(self) -> usize {
        PixelFormat::bytes_per_pixel(self)
    }
}

/// One filled buffer as the driver handed it over, borrowed until the next call.
#[derive(Debug, Clone, Copy)]
pub struct RawBuffer<'a, F = PixelFormat> {
    /// The bytes the driver filled (`bytesused`; rows may be padded to `bytes_per_line`).
    pub bytes: &'a [u8],
    /// The negotiated pixel format.
    pub format: F,
    /// The negotiated geometry.
    pub geometry: BufferGeometry,
    /// Capture time on `CLOCK_MONOTONIC` as the driver stamped it; `None` when the driver's
    /// timestamps are not monotonic (then the arrival time is used).
    pub timestamp: Option<Duration>,
    /// The driver's frame counter (restarts with each stream; a jump means lost frames).
    pub sequence: u32,
    /// The driver flagged the buffer as corrupt (`V4L2_BUF_FLAG_ERROR`).
    pub corrupt: bool,
}

/// A camera that delivers frames in formats `F`.
pub trait FrameDevice<F = PixelFormat> {
    /// Waits at most `timeout` for the next frame; `Ok(None)` when none came.
    ///
    /// # Errors
    /// [`DeviceError`] when the camera failed or disappeared; the loop then drops it and reopens.
    fn next_frame(&mut self, timeout: Duration) -> Result<Option<RawBuffer<'_, F>>, DeviceError>;

    /// Frame rate the driver reports for the negotiated mode, if any.
    fn frame_rate_hz(&self) -> Option<f64> {
        None
    }

    /// What was negotiated, for the log: `"'Y16 ' 160x122 on /dev/video0 (PureThermal)"`.
    fn describe(&self) -> String;
}

/// The device of a binary built without V4L2 support: there is none.
#[derive(Debug)]
pub enum NoCamera {}

impl<F> FrameDevice<F> for NoCamera {
    fn next_frame(&mut self, _timeout: Duration) -> Result<Option<RawBuffer<'_, F>>, DeviceError> {
        match *self {}
    }

    fn describe(&self) -> String {
        match *self {}
    }
}

/// Why a camera could not be opened or stopped delivering. Each names the device.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// No such device node, or no camera with that card name.
    #[error("{device}: {detail}")]
    NotFound {
        /// The configured device.
        device: String,
        /// What was looked at.
        detail: String,
    },
    /// The node exists but cannot be opened (permissions, busy, a directory).
    #[error("{device}: cannot open: {source}")]
    Open {
        /// The device node.
        device: String,
        /// Why.
        source: std::io::Error,
    },
    /// The node is not a V4L2 device (`VIDIOC_QUERYCAP` failed: `/dev/null`, a regular file).
    #[error("{device}: not a V4L2 device: {source}")]
    NotV4l2 {
        /// The device node.
        device: String,
        /// The `VIDIOC_QUERYCAP` error.
        source: std::io::Error,
    },
    /// A V4L2 device without single-planar video capture and streaming I/O (a UVC metadata
    /// node, an output device, a codec).
    #[error("{device} ({card}): not a video capture device with streaming I/O (capabilities: {capabilities})")]
    NotCapture {
        /// The device node.
        device: String,
        /// Its card name.
        card: String,
        /// What it can do.
        capabilities: String,
    },
    /// The camera offers no format the config allows.
    #[error("{device} ({card}): {source}")]
    Format {
        /// The device node.
        device: String,
        /// Its card name.
        card: String,
        /// What was wanted and what is offered.
        source: NegotiationError,
    },
    /// The driver set a different format than the one requested.
    #[error("{device} ({card}): asked for {requested}, the driver set {set}")]
    FormatChanged {
        /// The device node.
        device: String,
        /// Its card name.
        card: String,
        /// What was requested.
        requested: String,
        /// What the driver set.
        set: String,
    },
    /// An ioctl or mmap failed (`ENODEV` once the camera is unplugged).
    #[error("{device}: {operation}: {source}")]
    Io {
        /// The device node.
        device: String,
        /// What was being done.
        operation: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The camera stopped delivering frames without an error.
    #[error("{device}: no frame for {silent_ms} ms")]
    Stalled {
        /// The device.
        device: String,
        /// How long it has been silent.
        silent_ms: u64,
    },
    /// This binary cannot capture from V4L2.
    #[error("{device}: edgebind was built without the v4l2 feature")]
    Unsupported {
        /// The configured device.
        device: String,
    },
}

/// Maps driver timestamps (`CLOCK_MONOTONIC`) to the daemon clock.
///
/// The offset is fixed at the first frame as `arrival - capture`, which overestimates the true
/// offset by that frame's delivery latency; it is lowered whenever a frame arrives with less
/// latency, so it converges to the smallest latency seen. Times never exceed the arrival time
/// and never go backwards.
#[derive(Debug, Clone, Default)]
pub struct DeviceTime {
    offset_ns: Option<i128>,
    last_ns: Option<u64>,
}

impl DeviceTime {
    /// The capture time on the daemon clock of a frame stamped `device` by the driver that
    /// reached the loop at `arrival_ns` (daemon clock).
    pub fn map(&mut self, device: Option<Duration>, arrival_ns: u64) -> u64 {
        let t = match device {
            None => arrival_ns,
            Some(d) => {
                let d = i128::try_from(d.as_nanos()).unwrap_or(i128::MAX / 2);
                let seen = i128::from(arrival_ns) - d;
                let offset = self.offset_ns.map_or(seen, |o| o.min(seen));
                self.offset_ns = Some(offset);
                u64::try_from((d + offset).clamp(0, i128::from(arrival_ns))).unwrap_or(arrival_ns)
            }
        };
        let t = self.last_ns.map_or(t, |last| t.max(last));
        self.last_ns = Some(t);
        t
    }
}

/// Largest forward jump of the driver's frame counter taken as lost frames; a larger one (or a
/// backwards step) is a restarted counter.
const MAX_SEQUENCE_JUMP: u32 = 10_000;

/// Stream-wide frame numbers from the driver's per-stream counters: they continue across
/// reopens and jump when the driver lost frames.
#[derive(Debug, Clone, Default)]
pub struct FrameNumbers {
    last: Option<u64>,
    last_device: Option<u32>,
}

impl FrameNumbers {
    /// A new device stream starts: its counter is unrelated to the previous one's.
    pub fn reopened(&mut self) {
        self.last_device = None;
    }

    /// The number of the frame the driver counted `device_sequence`, and how many frames the
    /// driver lost just before it.
    pub fn number(&mut self, device_sequence: u32) -> (u64, u64) {
        let step = match self.last_device {
            Some(prev) => match device_sequence.wrapping_sub(prev) {
                d @ 1..=MAX_SEQUENCE_JUMP => d,
                _ => 1,
            },
            None => 1,
        };
        self.last_device = Some(device_sequence);
        let seq = self.last.map_or(0, |l| l + u64::from(step));
        self.last = Some(seq);
        (seq, u64::from(step) - 1)
    }
}

/// How a camera's buffers become frames.
pub trait DecodeBuffer: Copy + fmt::Debug {
    /// The pixel formats it decodes.
    type Format: V4l2Format;
    /// Why a buffer cannot be decoded.
    type Error: fmt::Display;

    /// The frame `buffer` holds.
    ///
    /// # Errors
    /// Why it cannot be decoded (the loop drops it, counted as `bad_input`).
    fn decode(&self, buffer: &RawBuffer<'_, Self::Format>) -> Result<FrameImage, Self::Error>;
}

/// Thermal buffers, their rows used as `layout` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThermalBuffers(pub FrameLayout);

impl DecodeBuffer for ThermalBuffers {
    type Format = PixelFormat;
    type Error = DecodeError;

    fn decode(&self, buffer: &RawBuffer<'_>) -> Result<FrameImage, DecodeError> {
        ThermalDecoder::new(buffer.format, self.0)
            .and_then(|d| d.decode(buffer.bytes, buffer.geometry))
            .map(frame_image)
    }
}

/// How the loop runs.
#[derive(Debug, Clone, Copy)]
pub struct CaptureSettings<X = ThermalBuffers> {
    /// How the buffers are decoded.
    pub decoder: X,
    /// Rate reported while connected when the driver does not say.
    pub nominal_fps: f64,
    /// Cap of the reopen backoff.
    pub max_backoff: Duration,
    /// A camera silent this long is reopened.
    pub stall_timeout: Duration,
    /// The stream's `interval_ms`: frames its sampler would pass over are not decoded nor
    /// handed over (counted as `frame_skipped` here).
    pub interval_ms: u64,
}

/// The frame a decoded buffer becomes; InfiRay temperature (kelvin × 64) stays 16-bit and the
/// preprocessing reads it with `radiometric = "infiray64"`.
#[must_use]
pub fn frame_image(frame: ThermalFrame) -> FrameImage {
    match frame {
        ThermalFrame::U8(a) => FrameImage::U8(a),
        ThermalFrame::U16(a) | ThermalFrame::InfiRayTemperature(a) => FrameImage::U16(a),
    }
}

/// Runs until cancelled: opens a device with `open`, captures from it, and reopens it with
/// backoff whenever it cannot be opened or fails (the shared [`run_device`] loop).
pub fn run_capture<X: DecodeBuffer, D: FrameDevice<X::Format>>(
    open: impl FnMut() -> Result<D, DeviceError>,
    settings: &CaptureSettings<X>,
    ctx: &SourceContext,
) {
    let mut camera = Camera {
        open,
        settings,
        state: StreamState {
            time: DeviceTime::default(),
            frames: FrameNumbers::default(),
            gate: FrameGate::new(settings.interval_ms),
        },
    };
    run_device(&mut camera, settings.max_backoff, ctx);
}

/// A camera as the device loop drives it.
struct Camera<'a, F, X> {
    open: F,
    settings: &'a CaptureSettings<X>,
    state: StreamState,
}

impl<X, D, F> Hardware for Camera<'_, F, X>
where
    X: DecodeBuffer,
    D: FrameDevice<X::Format>,
    F: FnMut() -> Result<D, DeviceError>,
{
    type Device = D;
    type OpenError = DeviceError;
    type Error = DeviceError;
    const KIND: &'static str = "camera";

    fn nominal_rate_hz(&self) -> f64 {
        self.settings.nominal_fps
    }

    fn open(&mut self) -> Result<D, DeviceError> {
        let device = (self.open)()?;
        self.state.frames.reopened();
        Ok(device)
    }

    fn describe(&self, device: &D) -> String {
        device.describe()
    }

    fn rate_hz(&self, device: &D) -> f64 {
        device.frame_rate_hz().unwrap_or(self.settings.nominal_fps)
    }

    fn announce(&self, device: &D) {
        tracing::info!(device = %device.describe(), fps = self.rate_hz(device), "camera open");
    }

    fn capture(&mut self, device: &mut D, ctx: &SourceContext) -> Ended<DeviceError> {
        capture(device, &mut self.state, self.settings, ctx)
    }
}

/// What lives across reopens.
#[derive(Debug)]
struct StreamState {
    time: DeviceTime,
    frames: FrameNumbers,
    gate: FrameGate,
}

fn capture<X: DecodeBuffer, D: FrameDevice<X::Format>>(
    device: &mut D,
    state: &mut StreamState,
    settings: &CaptureSettings<X>,
    ctx: &SourceContext,
) -> Ended<DeviceError> {
    let mut delivered = false;
    let mut last_frame = Instant::now();
    let mut bad_frame_log = LogLimiter::default();
    loop {
        if ctx.cancel.is_cancelled() {
            return Ended::Stop;
        }
        let buffer = match device.next_frame(POLL_SLICE) {
            Ok(Some(buffer)) => buffer,
            Ok(None) => {
                let silent = last_frame.elapsed();
                if silent >= settings.stall_timeout {
                    return Ended::Lost {
                        error: DeviceError::Stalled {
                            device: device.describe(),
                            silent_ms: silent.as_millis() as u64,
                        },
                        delivered,
                    };
                }
                continue;
            }
            Err(error) => return Ended::Lost { error, delivered },
        };
        let arrival_ns = ctx.clock.now().mono_ns;
        last_frame = Instant::now();
        delivered = true;
        let (seq, lost) = state.frames.number(buffer.sequence);
        if lost > 0 {
            tracing::debug!(seq, lost, "the driver lost frames");
        }
        let t = ctx
            .clock
            .at_mono_ns(state.time.map(buffer.timestamp, arrival_ns));
        if state.gate.skip(t) {
            state.gate.flush(&ctx.stats);
            continue;
        }
        let decoded = if buffer.corrupt {
            Err(None)
        } else {
            settings.decoder.decode(&buffer).map_err(Some)
        };
        let image = match decoded {
            Ok(image) => image,
            Err(error) => {
                ctx.stats.add_drops(DropReason::BadInput, 1);
                let error = error.map_or_else(
                    || "the driver flagged the buffer as corrupt".to_string(),
                    |e| e.to_string(),
                );
                log_limited!(bad_frame_log, tracing::Level::WARN,
                    "frame cannot be decoded; such frames are dropped and counted (drops_total.bad_input)",
                    seq, %error);
                continue;
            }
        };
        state.gate.take(t);
        if !ctx.send(SourceMessage::Frame(Frame {
            seq,
            t,
            image,
            calibration: None,
        })) {
            return Ended::Stop;
        }
        ctx.stats.add_samples(1, t.utc_ns);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use crossbeam_channel::Receiver;
    use ndarray::Array2;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::config::WhenFull;
    use crate::pipeline::bounded;
    use crate::telemetry::StreamStats;
    use crate::time::Clock;

    const MS: u64 = 1_000_000;

    /// One thing a scripted camera does when asked for a frame.
    enum Step {
        /// After `delay`, a buffer.
        Frame {
            bytes: Vec<u8>,
            format: PixelFormat,
            geometry: BufferGeometry,
            timestamp: Option<Duration>,
            sequence: u32,
            corrupt: bool,
            delay: Duration,
        },
        /// The camera fails as an unplugged UVC camera does (`ENODEV`).
        Unplugged,
    }

    /// A camera that plays a script, then stays silent (each wait lasts its whole timeout).
    struct FakeCamera {
        steps: VecDeque<Step>,
        held: Vec<u8>,
    }

    impl FakeCamera {
        fn new(steps: Vec<Step>) -> Self {
            Self {
                steps: steps.into(),
                held: Vec::new(),
            }
        }
    }

    impl FrameDevice for FakeCamera {
        fn next_frame(&mut self, timeout: Duration) -> Result<Option<RawBuffer<'_>>, DeviceError> {
            match self.steps.pop_front() {
                Some(Step::Frame {
                    bytes,
                    format,
                    geometry,
                    timestamp,
                    sequence,
                    corrupt,
                    delay,
                }) => {
                    std::thread::sleep(delay);
                    self.held = bytes;
                    Ok(Some(RawBuffer {
                        bytes: &self.held,
                        format,
                        geometry,
                        timestamp,
                        sequence,
                        corrupt,
                    }))
                }
                Some(Step::Unplugged) => Err(DeviceError::Io {
                    device: "/dev/video0".into(),
                    operation: "VIDIOC_DQBUF",
                    source: std::io::Error::from_raw_os_error(19),
                }),
                None => {
                    std::thread::sleep(timeout);
                    Ok(None)
                }
            }
        }

        fn describe(&self) -> String {
            "fake".into()
        }
    }

    /// Little-endian u16 rows of `width` pixels, each padded to `stride` bytes.
    fn y16_rows(rows: &[Vec<u16>], stride: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for row in rows {
            let start = out.len();
            out.extend(row.iter().flat_map(|v| v.to_le_bytes()));
            out.resize(start + stride, 0xEE);
        }
        out
    }

    /// A Lepton-style `Y16 ` buffer: 8x6 image + 2 telemetry rows, rows padded to 20 bytes.
    fn lepton_frame(base: u16, ms: u64, sequence: u32) -> Step {
        let mut rows: Vec<Vec<u16>> = (0..6u16)
            .map(|r| (0..8u16).map(|c| base + r * 8 + c).collect())
            .collect();
        rows.push(vec![0xA5A5; 8]);
        rows.push(vec![0x5A5A; 8]);
        Step::Frame {
            bytes: y16_rows(&rows, 20),
            format: PixelFormat::Y16,
            geometry: BufferGeometry {
                width_px: 8,
                height_px: 8,
                bytes_per_line: 20,
            },
            timestamp: Some(Duration::from_secs(1000) + Duration::from_millis(ms)),
            sequence,
            corrupt: false,
            delay: Duration::from_millis(5),
        }
    }

    fn lepton_image(base: u16) -> Array2<u16> {
        Array2::from_shape_fn((6, 8), |(r, c)| base + r as u16 * 8 + c as u16)
    }

    fn settings(layout: FrameLayout) -> CaptureSettings {
        CaptureSettings {
            decoder: ThermalBuffers(layout),
            nominal_fps: 9.0,
            max_backoff: Duration::from_millis(400),
            stall_timeout: Duration::from_secs(30),
            interval_ms: 0,
        }
    }

    struct Running {
        rx: Receiver<SourceMessage>,
        stats: Arc<StreamStats>,
        cancel: CancellationToken,
        thread: std::thread::JoinHandle<()>,
        attempts: Arc<Mutex<Vec<(Instant, bool)>>>,
    }

    impl Running {
        /// Starts the loop; each open takes the next scripted result (then "no such device").
        fn start(
            cameras: Vec<Result<FakeCamera, DeviceError>>,
            settings: CaptureSettings,
            capacity: usize,
        ) -> Self {
            let stats = Arc::new(StreamStats::default());
            let (tx, rx) = bounded(
                capacity,
                WhenFull::DropOldest,
                DropReason::SampleQueueFull,
                Arc::clone(&stats),
            );
            let cancel = CancellationToken::new();
            let ctx = SourceContext {
                name: "thermal".into(),
                clock: Clock::new(),
                cancel: cancel.clone(),
                stats: Arc::clone(&stats),
                out: tx,
                others: Vec::new(),
            };
            let attempts = Arc::new(Mutex::new(Vec::new()));
            let thread = {
                let attempts = Arc::clone(&attempts);
                let stats = Arc::clone(&stats);
                let mut cameras: VecDeque<_> = cameras.into();
                std::thread::spawn(move || {
                    let open = || {
                        let connected = stats.snapshot().connected;
                        attempts.lock().unwrap().push((Instant::now(), connected));
                        cameras.pop_front().unwrap_or_else(|| {
                            Err(DeviceError::NotFound {
                                device: "/dev/video0".into(),
                                detail: "no such device node".into(),
                            })
                        })
                    };
                    run_capture(open, &settings, &ctx);
                })
            };
            Self {
                rx,
                stats,
                cancel,
                thread,
                attempts,
            }
        }

        fn frames(&self, n: usize) -> Vec<Frame> {
            (0..n)
                .map(|i| match self.rx.recv_timeout(Duration::from_secs(5)) {
                    Ok(SourceMessage::Frame(f)) => f,
                    other => panic!("frame {i}: {other:?}"),
                })
                .collect()
        }

        /// Cancels and returns how long the loop took to stop.
        fn stop(self) -> Duration {
            let t = Instant::now();
            self.cancel.cancel();
            self.thread.join().unwrap();
            t.elapsed()
        }
    }

    fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn frames_are_decoded_stamped_with_the_device_clock_and_numbered() {
        let camera = FakeCamera::new(vec![
            lepton_frame(29_000, 0, 7),
            lepton_frame(29_100, 1, 8),
            // The driver lost sequence 9.
            lepton_frame(29_200, 3, 10),
        ]);
        let run = Running::start(
            vec![Ok(camera)],
            settings(FrameLayout::Lepton { telemetry_rows: 2 }),
            8,
        );
        let frames = run.frames(3);
        assert_eq!(
            frames.iter().map(|f| f.seq).collect::<Vec<_>>(),
            vec![0, 1, 3]
        );
        for (f, base) in frames.iter().zip([29_000, 29_100, 29_200]) {
            // Telemetry rows and row padding are gone.
            assert_eq!(f.image, FrameImage::U16(lepton_image(base)));
        }
        // Capture times are the driver's (1 ms apart), not the arrival times (>= 5 ms apart).
        assert_eq!(frames[1].t.mono_ns - frames[0].t.mono_ns, MS);
        assert_eq!(frames[2].t.mono_ns - frames[0].t.mono_ns, 3 * MS);
        assert_eq!(frames[1].t.utc_ns - frames[0].t.utc_ns, MS as i64);
        assert!(run.stats.snapshot().connected);
        assert_eq!(run.stats.snapshot().samples_total, 3);
        run.stop();
    }

    #[test]
    fn frames_the_stream_would_skip_are_not_decoded_nor_sent_but_counted() {
        // 25 fps for 400 ms, one frame per 100 ms wanted; the frame at 120 ms is corrupt.
        let steps: Vec<Step> = (0..10u32)
            .map(|k| {
                let mut step = lepton_frame(k as u16 * 100, u64::from(k) * 40, k);
                if let Step::Frame { corrupt, delay, .. } = &mut step {
                    *corrupt = k == 3;
                    // Arriving no faster than stamped, so the driver's times are kept.
                    *delay = Duration::from_millis(40);
                }
                step
            })
            .collect();
        let run = Running::start(
            vec![Ok(FakeCamera::new(steps))],
            CaptureSettings {
                interval_ms: 100,
                ..settings(FrameLayout::Lepton { telemetry_rows: 2 })
            },
            8,
        );
        // The corrupt frame leaves its interval open: the next frame (160 ms) is taken.
        let frames = run.frames(4);
        assert_eq!(
            frames.iter().map(|f| f.seq).collect::<Vec<_>>(),
            vec![0, 4, 5, 8]
        );
        assert_eq!(frames[1].image, FrameImage::U16(lepton_image(400)));
        wait_for("the last frame to be skipped", || {
            run.stats.drops(DropReason::FrameSkipped) == 5
        });
        assert_eq!(run.stats.drops(DropReason::BadInput), 1);
        assert_eq!(run.stats.snapshot().samples_total, 9);
        assert!(run.rx.try_recv().is_err(), "only the taken frames are sent");
        run.stop();
    }

    #[test]
    fn every_format_reaches_the_pipeline_as_its_image() {
        let geometry = |w, h, stride| BufferGeometry {
            width_px: w,
            height_px: h,
            bytes_per_line: stride,
        };
        let frame = |bytes: Vec<u8>, format, geometry| Step::Frame {
            bytes,
            format,
            geometry,
            timestamp: None,
            sequence: 0,
            corrupt: false,
            delay: Duration::ZERO,
        };
        // 4x2 frames; packed YUV is `Y0 U Y1 V` (YUYV) or `U Y0 V Y1` (UYVY).
        let plain = FakeCamera::new(vec![
            frame(
                y16_rows(&[vec![1, 2, 3, 4], vec![5, 6, 7, 0xFFFF]], 8),
                PixelFormat::Y16,
                geometry(4, 2, 8),
            ),
            frame(
                vec![10, 11, 12, 13, 0, 0, 14, 15, 16, 17],
                PixelFormat::Grey,
                geometry(4, 2, 6),
            ),
            frame(
                vec![
                    10, 128, 11, 128, 12, 128, 13, 128, 14, 128, 15, 128, 16, 128, 17, 128,
                ],
                PixelFormat::Yuyv,
                geometry(4, 2, 8),
            ),
            frame(
                vec![
                    128, 10, 128, 11, 128, 12, 128, 13, 128, 14, 128, 15, 128, 16, 128, 17,
                ],
                PixelFormat::Uyvy,
                geometry(4, 2, 8),
            ),
        ]);
        let run = Running::start(vec![Ok(plain)], settings(FrameLayout::Plain), 8);
        let images: Vec<FrameImage> = run.frames(4).into_iter().map(|f| f.image).collect();
        let u8_image = FrameImage::U8(
            Array2::from_shape_vec((2, 4), vec![10, 11, 12, 13, 14, 15, 16, 17]).unwrap(),
        );
        assert_eq!(
            images,
            vec![
                FrameImage::U16(
                    Array2::from_shape_vec((2, 4), vec![1, 2, 3, 4, 5, 6, 7, 0xFFFF]).unwrap()
                ),
                u8_image.clone(),
                u8_image.clone(),
                u8_image,
            ]
        );
        run.stop();

        // InfiRay split: top half YUYV image, bottom half kelvin x 64 (300 K = 19200).
        let mut bytes = vec![50, 128, 60, 128, 70, 128, 80, 128];
        bytes.extend(y16_rows(&[vec![19_200, 19_201, 19_202, 19_203]], 8));
        let split = FakeCamera::new(vec![frame(bytes, PixelFormat::Yuyv, geometry(4, 2, 8))]);
        let run = Running::start(vec![Ok(split)], settings(FrameLayout::InfiRaySplit), 8);
        assert_eq!(
            run.frames(1)[0].image,
            FrameImage::U16(
                Array2::from_shape_vec((1, 4), vec![19_200, 19_201, 19_202, 19_203]).unwrap()
            )
        );
        run.stop();
    }

    #[test]
    fn a_camera_that_disappears_is_reopened_with_backoff_and_numbering_continues() {
        let first = FakeCamera::new(vec![
            lepton_frame(1, 0, 100),
            lepton_frame(2, 111, 101),
            Step::Unplugged,
        ]);
        let second = FakeCamera::new(vec![lepton_frame(3, 5000, 0), lepton_frame(4, 5111, 1)]);
        let not_found = || DeviceError::NotFound {
            device: "/dev/video0".into(),
            detail: "no such device node".into(),
        };
        let run = Running::start(
            vec![Ok(first), Err(not_found()), Err(not_found()), Ok(second)],
            settings(FrameLayout::Lepton { telemetry_rows: 2 }),
            8,
        );
        let frames = run.frames(4);
        assert_eq!(
            frames.iter().map(|f| f.seq).collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );
        assert!(frames.windows(2).all(|w| w[0].t <= w[1].t));
        let attempts = run.attempts.lock().unwrap().clone();
        assert_eq!(attempts.len(), 4);
        // While the camera is away the sensor is reported disconnected.
        assert!(attempts[1..].iter().all(|(_, connected)| !connected));
        // The backoff restarts at 100 ms after a camera that delivered, then doubles (capped).
        // Only lower bounds are exact: a loaded machine may wake a thread late by seconds
        // (2.2 s seen under stress), and the arithmetic itself is tested in
        // `sources::reconnect`; the upper bound only catches a wait of the 30 s stall timeout.
        let gaps: Vec<u128> = attempts
            .windows(2)
            .map(|w| (w[1].0 - w[0].0).as_millis())
            .collect();
        assert!(gaps[0] >= 100 && gaps[0] < 10_000, "{gaps:?}");
        assert!(gaps[1] >= 200 && gaps[1] < 10_000, "{gaps:?}");
        assert!(gaps[2] >= 400 && gaps[2] < 10_000, "{gaps:?}");
        wait_for("connected again", || run.stats.snapshot().connected);
        // A missed cancellation would wait out the 30 s stall timeout.
        assert!(run.stop() < Duration::from_millis(1_000));
    }

    #[test]
    fn the_backoff_is_capped() {
        let run = Running::start(Vec::new(), settings(FrameLayout::Plain), 8);
        wait_for("seven open attempts", || {
            run.attempts.lock().unwrap().len() >= 7
        });
        let attempts = run.attempts.lock().unwrap().clone();
        run.stop();
        // 0, 100, 300, 700, 1100, 1500, 1900 ms: 100, 200, 400 (the cap), 400, …
        let gaps: Vec<u128> = attempts
            .windows(2)
            .map(|w| (w[1].0 - w[0].0).as_millis())
            .collect();
        assert!(gaps.len() >= 6, "{gaps:?}");
        assert!(gaps[3..6].iter().all(|g| *g >= 400), "{gaps:?}");
        // Uncapped the sixth wait would be 3.2 s: a margin a loaded machine cannot eat.
        assert!(gaps[5] < 3_200, "{gaps:?}");
    }

    #[test]
    fn undecodable_and_corrupt_frames_are_counted_and_skipped() {
        let Step::Frame {
            bytes, geometry, ..
        } = lepton_frame(0, 0, 0)
        else {
            unreachable!()
        };
        let truncated = Step::Frame {
            bytes: bytes[..bytes.len() - 10].to_vec(),
            format: PixelFormat::Y16,
            geometry,
            timestamp: None,
            sequence: 1,
            corrupt: false,
            delay: Duration::ZERO,
        };
        let mut corrupt = lepton_frame(5, 2, 2);
        if let Step::Frame { corrupt: c, .. } = &mut corrupt {
            *c = true;
        }
        let camera = FakeCamera::new(vec![
            lepton_frame(10, 0, 0),
            truncated,
            corrupt,
            lepton_frame(20, 3, 3),
        ]);
        let run = Running::start(
            vec![Ok(camera)],
            settings(FrameLayout::Lepton { telemetry_rows: 2 }),
            8,
        );
        let frames = run.frames(2);
        assert_eq!(frames[0].image, FrameImage::U16(lepton_image(10)));
        assert_eq!(frames[1].image, FrameImage::U16(lepton_image(20)));
        assert_eq!(frames[1].seq, 3);
        assert_eq!(run.stats.drops(DropReason::BadInput), 2);
        run.stop();
    }

    #[test]
    fn a_silent_camera_is_reopened_after_the_stall_timeout() {
        let mut s = settings(FrameLayout::Lepton { telemetry_rows: 2 });
        s.stall_timeout = Duration::from_millis(300);
        let run = Running::start(
            vec![
                Ok(FakeCamera::new(vec![lepton_frame(1, 0, 0)])),
                Ok(FakeCamera::new(vec![lepton_frame(2, 900, 0)])),
            ],
            s,
            8,
        );
        let frames = run.frames(2);
        assert_eq!(frames[1].seq, 1);
        let attempts = run.attempts.lock().unwrap().clone();
        // 300 ms of silence, then 100 ms of backoff.
        assert!((attempts[1].0 - attempts[0].0) >= Duration::from_millis(400));
        run.stop();
    }

    #[test]
    fn cancellation_is_seen_promptly_while_waiting_or_backing_off() {
        // Bounds are generous (a loaded machine wakes threads late) but below what a missed
        // cancellation would cost: a quiet camera is waited for forever, and the fifth backoff
        // sleep lasts 1.6 s.
        let run = Running::start(
            vec![Ok(FakeCamera::new(Vec::new()))],
            settings(FrameLayout::Plain),
            8,
        );
        wait_for("open", || run.stats.snapshot().connected);
        assert!(run.stop() < Duration::from_millis(1_000));

        let mut s = settings(FrameLayout::Plain);
        s.max_backoff = Duration::from_secs(60);
        let run = Running::start(Vec::new(), s, 8);
        wait_for("five open attempts", || {
            run.attempts.lock().unwrap().len() >= 5
        });
        std::thread::sleep(Duration::from_millis(100));
        assert!(!run.stats.snapshot().connected);
        assert!(run.stop() < Duration::from_millis(1_000));
    }

    #[test]
    fn the_latest_frame_wins_when_the_pipeline_is_behind() {
        let camera = FakeCamera::new(
            (0..5)
                .map(|i| lepton_frame(i, u64::from(i), u32::from(i)))
                .collect(),
        );
        let run = Running::start(
            vec![Ok(camera)],
            settings(FrameLayout::Lepton { telemetry_rows: 2 }),
            1,
        );
        wait_for("5 frames", || run.stats.snapshot().samples_total == 5);
        let frames = run.frames(1);
        assert_eq!(frames[0].seq, 4);
        assert_eq!(run.stats.drops(DropReason::SampleQueueFull), 4);
        assert!(run.rx.is_empty());
        run.stop();
    }

    #[test]
    fn device_time_is_fixed_at_the_first_frame_and_lowered_by_faster_frames() {
        let mut time = DeviceTime::default();
        let s = |ms: u64| Some(Duration::from_millis(10_000 + ms));
        // First frame: seen 20 ms after capture; its time is its arrival.
        assert_eq!(time.map(s(0), 1_020 * MS), 1_020 * MS);
        // Later frames keep the offset: their own latency does not move them.
        assert_eq!(time.map(s(111), 1_150 * MS), 1_131 * MS);
        // A frame delivered with less latency (5 ms) lowers the offset; time stays monotonic.
        assert_eq!(time.map(s(222), 1_227 * MS), 1_227 * MS);
        assert_eq!(time.map(s(333), 1_400 * MS), 1_338 * MS);
        // No driver timestamp: the arrival time.
        assert_eq!(time.map(None, 1_500 * MS), 1_500 * MS);
        // Never backwards, never in the future.
        assert_eq!(time.map(s(100), 1_600 * MS), 1_500 * MS);
        assert!(time.map(s(10_000), 1_700 * MS) <= 1_700 * MS);
    }

    #[test]
    fn frame_numbers_continue_across_reopens_and_jump_over_lost_frames() {
        let mut n = FrameNumbers::default();
        assert_eq!(n.number(41), (0, 0));
        assert_eq!(n.number(42), (1, 0));
        assert_eq!(n.number(45), (4, 2));
        n.reopened();
        assert_eq!(n.number(0), (5, 0));
        assert_eq!(n.number(1), (6, 0));
        // A counter that goes back (restart without reopen) or wraps.
        assert_eq!(n.number(0), (7, 0));
        let mut w = FrameNumbers::default();
        w.number(u32::MAX);
        assert_eq!(w.number(0), (1, 0));
    }
}
