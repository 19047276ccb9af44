//! Sensor sources. Each kind is a module owning its keys, checks and build
//! (`<kind>/config.rs`), listed once in [`registry`]; [`kind`] is what the rest of edgebind sees
//! of one. Each source is built (files opened, devices checked) before anything runs, then runs
//! on its own named thread, stamping capture times and pushing sample blocks into a bounded
//! queue. A source that ends (a non-looping replay) closes its queue.

pub mod alsa_audio;
pub mod audio_replay;
pub mod device_loop;
pub mod frame_replay;
pub mod imu_replay;
pub mod imu_serial;
pub mod kind;
pub mod realsense;
pub mod registry;
pub mod thermal_decode;
pub mod v4l2_camera;
pub mod v4l2_thermal;
pub mod vision_replay;

use std::future::Future;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::pipeline::QueueSender;
use crate::preprocess::depth::DepthCalibration;
use crate::telemetry::{DropReason, StreamStats};
use crate::time::{Clock, Timestamp};
use crate::window::{FrameSampler, WindowSpec};

/// One IMU sample in SI units: acc xyz (m/s², gravity included), gyro xyz (rad/s).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImuSample {
    /// Position in the stream (0, 1, 2, …), counting samples the device should have sent.
    pub seq: u64,
    /// Capture time.
    pub t: Timestamp,
    /// `[acc_x, acc_y, acc_z, gyro_x, gyro_y, gyro_z]`.
    pub values: [f32; 6],
}

/// The pixels of one camera frame.
#[derive(Debug, Clone, PartialEq)]
pub enum FrameImage {
    /// 8-bit intensity.
    U8(ndarray::Array2<u8>),
    /// 16-bit values (thermal: raw or radiometric; depth: depth units).
    U16(ndarray::Array2<u16>),
    /// 8-bit RGB, `[height, width, 3]` (colour cameras).
    Rgb8(ndarray::Array3<u8>),
}

impl FrameImage {
    /// `(height, width)` in pixels.
    #[must_use]
    pub fn size_px(&self) -> (usize, usize) {
        match self {
            Self::U8(a) => a.dim(),
            Self::U16(a) => a.dim(),
            Self::Rgb8(a) => (a.dim().0, a.dim().1),
        }
    }
}

/// One camera frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// Frame number from the device (a jump means frames were lost before us).
    pub seq: u64,
    /// Capture time.
    pub t: Timestamp,
    /// The pixels.
    pub image: FrameImage,
    /// Depth calibration the camera reports (depth cameras only); the stream rebuilds its
    /// preprocessing when it changes.
    pub calibration: Option<DepthCalibration>,
}

/// What a source sends to its stream's windower.
#[derive(Debug, Clone)]
pub enum SourceMessage {
    /// Consecutive IMU samples.
    Imu {
        /// Nominal rate of the device.
        sample_rate_hz: f64,
        /// The samples, in capture order.
        samples: Vec<ImuSample>,
    },
    /// A camera frame.
    Frame(Frame),
    /// Consecutive audio frames (one sample per channel each).
    Audio {
        /// Sample rate of the device.
        sample_rate_hz: u32,
        /// Channels per frame.
        channels: u16,
        /// Stream position of the first frame (a jump means frames were lost).
        first_seq: u64,
        /// Capture time of the first frame.
        first_t: Timestamp,
        /// Interleaved samples in [-1, 1].
        interleaved: Vec<f32>,
    },
}

/// Errors building a source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The IMU recording could not be used.
    #[error(transparent)]
    ImuReplay(#[from] imu_replay::ImuFileError),
    /// The WAV recording could not be used.
    #[error(transparent)]
    AudioReplay(#[from] audio_replay::WavError),
    /// The frame recording could not be used.
    #[error(transparent)]
    FrameReplay(#[from] frame_replay::FrameFileError),
    /// The pictures of a vision replay could not be used.
    #[error(transparent)]
    VisionReplay(#[from] vision_replay::VisionFileError),
    /// The serial IMU settings could not be used.
    #[error(transparent)]
    ImuSerial(#[from] imu_serial::ImuSerialError),
    /// The V4L2 camera settings could not be used (or V4L2 support is not built in).
    #[error(transparent)]
    V4l2Thermal(#[from] v4l2_thermal::V4l2ThermalError),
    /// The RealSense camera or recording could not be used.
    #[cfg(feature = "realsense")]
    #[error(transparent)]
    Realsense(#[from] realsense::RealsenseError),
    /// The source needs a Cargo feature this build does not have.
    #[error("source {name}: edgebind was built without the {feature} feature")]
    NotBuilt {
        /// The source.
        name: String,
        /// The missing feature.
        feature: &'static str,
    },
    /// The ALSA microphone could not be used (or ALSA support is not built in).
    #[error(transparent)]
    AlsaAudio(#[from] alsa_audio::AlsaAudioError),
    /// The thread could not be started.
    #[error("source {name}: cannot start its thread: {source}")]
    Spawn {
        /// The source.
        name: String,
        /// Why.
        source: std::io::Error,
    },
}

/// What a running source needs.
#[derive(Debug)]
pub struct SourceContext {
    /// The sensor name.
    pub name: String,
    /// Maps capture instants to timestamps.
    pub clock: Clock,
    /// Cancelled when the daemon stops.
    pub cancel: CancellationToken,
    /// The stream's counters.
    pub stats: Arc<StreamStats>,
    /// Where sample blocks go.
    pub out: QueueSender<SourceMessage>,
    /// The source's further streams, in [`SourceKind::streams`](kind::SourceKind::streams)
    /// order after the first (empty for a source feeding one stream).
    pub others: Vec<StreamPort>,
}

/// A further stream of a source feeding several (a RealSense's colour stream beside its depth
/// stream): its own counters and queue.
#[derive(Debug)]
pub struct StreamPort {
    /// The sensor name.
    pub name: String,
    /// The stream's counters.
    pub stats: Arc<StreamStats>,
    /// Where its frames go.
    pub out: QueueSender<SourceMessage>,
}

/// How long one wait of a source on its queue or its clock lasts before it looks at cancellation.
const CANCEL_SLICE: Duration = Duration::from_millis(50);

impl SourceContext {
    /// Hands `m` to the windower, under the queue's policy. Under `block` it waits in slices, so
    /// a stalled pipeline never hides cancellation. `false` when the daemon is stopping or the
    /// windower is gone: the source should return.
    #[must_use]
    pub fn send(&self, m: SourceMessage) -> bool {
        self.send_on(&self.out, m)
    }

    /// Hands `m` to stream `index` of the source (0: the first, [`send`](Self::send)), as
    /// `send` does; `false` as for `send`, or when the source has no such stream.
    #[must_use]
    pub fn send_to(&self, index: usize, m: SourceMessage) -> bool {
        match index {
            0 => self.send(m),
            i => match self.others.get(i - 1) {
                Some(port) => self.send_on(&port.out, m),
                None => false,
            },
        }
    }

    /// The counters of stream `index` (0: the first).
    #[must_use]
    pub fn stats_of(&self, index: usize) -> Option<&Arc<StreamStats>> {
        match index {
            0 => Some(&self.stats),
            i => self.others.get(i - 1).map(|p| &p.stats),
        }
    }

    fn send_on(&self, out: &QueueSender<SourceMessage>, m: SourceMessage) -> bool {
        let mut pending = Some(m);
        while let Some(m) = pending.take() {
            if self.cancel.is_cancelled() {
                return false;
            }
            match out.send_timeout_keep(m, CANCEL_SLICE) {
                Ok(back) => pending = back,
                Err(_) => return false,
            }
        }
        true
    }

    /// Sleeps until `deadline` unless cancelled first; `false` when cancelled. The thread is
    /// parked and woken by the deadline or by the cancellation itself, not by polling the token
    /// (a replay waiting a second for its next frame would wake 20 times in 50 ms slices).
    #[must_use]
    pub fn sleep_until(&self, deadline: std::time::Instant) -> bool {
        let mut cancelled = std::pin::pin!(self.cancel.cancelled());
        let waker = std::task::Waker::from(Arc::new(Unparker(std::thread::current())));
        let mut cx = std::task::Context::from_waker(&waker);
        loop {
            if cancelled.as_mut().poll(&mut cx).is_ready() {
                return false;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return true;
            }
            // May return early (an unpark, or spuriously): the loop looks again.
            std::thread::park_timeout(deadline - now);
        }
    }
}

/// Wakes a parked source thread when its cancellation token fires.
struct Unparker(std::thread::Thread);

impl std::task::Wake for Unparker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Passes over, in the camera source, the frames its stream's [`FrameSampler`] would pass over
/// (the same `interval_ms`, the same capture times, so the same choice), so that they are
/// neither decoded nor copied nor handed to the stream thread: one hand-off per interval instead
/// of one per frame. The frames passed over are counted as the stream would count them
/// (`frame_skipped` drops, and as samples received) when [`flush`](Self::flush) is called.
#[derive(Debug)]
pub struct FrameGate {
    sampler: FrameSampler,
    pending: u64,
    pending_last_utc_ns: i64,
}

impl FrameGate {
    /// A gate taking one frame every `interval_ms` (0 takes every frame).
    #[must_use]
    pub fn new(interval_ms: u64) -> Self {
        Self {
            sampler: FrameSampler::new(interval_ms),
            pending: 0,
            pending_last_utc_ns: 0,
        }
    }

    /// Whether the frame captured at `t` is to be passed over; if so it is noted until the next
    /// [`flush`](Self::flush). A frame not passed over is [`take`](Self::take)n once it proves
    /// usable (a frame that cannot be decoded leaves the interval open, as in the stream).
    pub fn skip(&mut self, t: Timestamp) -> bool {
        if self.sampler.clone().offer(t.mono_ns).is_some() {
            return false;
        }
        self.pending += 1;
        self.pending_last_utc_ns = t.utc_ns;
        true
    }

    /// The frame captured at `t` is handed over: the interval is used.
    pub fn take(&mut self, t: Timestamp) {
        let _ = self.sampler.offer(t.mono_ns);
    }

    /// Counts the frames passed over since the last flush in `stats`. A replay calls it when
    /// its clock has reached them (before handing over the next frame, and when it stops), so
    /// that counters never run ahead of capture time; a live camera right away.
    pub fn flush(&mut self, stats: &StreamStats) {
        if self.pending > 0 {
            stats.add_drops(DropReason::FrameSkipped, self.pending);
            stats.add_samples(self.pending, self.pending_last_utc_ns);
            self.pending = 0;
        }
    }
}

/// Samples per block a replay hands to its stream: the longest block that divides both the
/// window and the hop, so that every window's last sample ends a block (a window is never held
/// back waiting for the rest of its block, so it is cut exactly when its last sample is due), of
/// at most 1 s in real time (one wake-up of the source and the stream thread per hop for the
/// usual geometries: #10, CPU beyond inference) and 100 ms at full speed (the sample queue then
/// stays full, and its memory is capacity × block). 20 ms blocks when no such block is 20 ms or
/// longer.
#[must_use]
pub fn replay_block_len(
    sample_rate_hz: f64,
    window_ms: u64,
    hop_ms: u64,
    speed: crate::config::ReplaySpeed,
) -> usize {
    let samples_in = |s: f64| ((sample_rate_hz * s).round() as usize).max(1);
    let longest_s = match speed {
        crate::config::ReplaySpeed::Realtime => 1.0,
        crate::config::ReplaySpeed::Max => 0.1,
    };
    let (shortest, longest) = (samples_in(0.02), samples_in(longest_s));
    let Ok(spec) = WindowSpec::from_ms(window_ms, hop_ms, sample_rate_hz) else {
        return shortest;
    };
    let common = gcd(spec.window_len, spec.hop_len);
    // The largest divisor of `common` in range: scanning down from `longest` is at most one
    // second of samples, once per replay.
    (shortest..=longest.max(shortest))
        .rev()
        .find(|len| common % len == 0)
        .unwrap_or(shortest)
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The end (exclusive) of the block starting at stream position `seq` and file index `i` of a
/// recording of `n` samples: blocks end at multiples of `block` in the stream (so they stay
/// aligned with windows when the recording loops) or at the end of the recording.
#[must_use]
pub fn replay_block_end(seq: u64, i: usize, n: usize, block: usize) -> usize {
    let block = block.max(1) as u64;
    let to_boundary = (block - seq % block) as usize;
    i.saturating_add(to_boundary).min(n)
}

/// A source ready to run.
pub trait Source: Send + std::fmt::Debug + 'static {
    /// Nominal sample rate of the device.
    fn sample_rate_hz(&self) -> f64;
    /// Runs until cancelled or (for finite recordings) until the end.
    fn run(self: Box<Self>, ctx: SourceContext);
}

/// Starts a built source on a thread named after it.
///
/// # Errors
/// [`SourceError::Spawn`] when the OS refuses a thread.
pub fn spawn(source: Box<dyn Source>, ctx: SourceContext) -> Result<JoinHandle<()>, SourceError> {
    let name = ctx.name.clone();
    std::thread::Builder::new()
        .name(format!("src-{name}"))
        .spawn(move || source.run(ctx))
        .map_err(|source| SourceError::Spawn { name, source })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn replay_blocks_are_the_longest_that_end_every_window_up_to_1_s_or_100_ms() {
        use crate::config::ReplaySpeed::{Max, Realtime};
        // Audio 2 s windows, 1 s hop at 48 kHz: the hop in real time, 100 ms at full speed.
        assert_eq!(replay_block_len(48_000.0, 2000, 1000, Realtime), 48_000);
        assert_eq!(replay_block_len(48_000.0, 2000, 1000, Max), 4800);
        // IMU 5 s windows, 1 s hop at 200 Hz.
        assert_eq!(replay_block_len(200.0, 5000, 1000, Realtime), 200);
        // A 250 ms hop: 250 ms, or 62.5 ms at full speed.
        assert_eq!(replay_block_len(16_000.0, 2000, 250, Realtime), 4000);
        assert_eq!(replay_block_len(16_000.0, 2000, 250, Max), 1000);
        // A 333 ms hop has no divisor of 20 ms or more: 20 ms blocks as before.
        assert_eq!(replay_block_len(16_000.0, 2000, 333, Realtime), 320);
        // An unusable rate falls back to 20 ms (the stream reports the rate).
        assert_eq!(replay_block_len(f64::NAN, 2000, 1000, Realtime), 1);
    }

    #[test]
    fn replay_blocks_end_on_stream_boundaries_even_after_a_loop() {
        assert_eq!(replay_block_end(0, 0, 1000, 20), 20);
        // The recording ends mid-block: the block is cut there …
        assert_eq!(replay_block_end(980, 980, 990, 20), 990);
        // … and after the loop the next block ends on the stream's boundary again.
        assert_eq!(replay_block_end(990, 0, 990, 20), 10);
    }

    fn at(ms: u64) -> Timestamp {
        Timestamp {
            mono_ns: ms * 1_000_000,
            utc_ns: (ms * 1_000_000) as i64 + 7,
        }
    }

    #[test]
    fn frames_passed_over_are_counted_only_when_flushed() {
        let stats = StreamStats::default();
        let mut gate = FrameGate::new(1000);
        let mut taken = Vec::new();
        for k in 0..10 {
            let t = at(k * 250);
            // Frame 4 cannot be decoded: the next one is taken instead.
            if !gate.skip(t) && k != 4 {
                gate.take(t);
                taken.push(k);
            }
        }
        assert_eq!(taken, vec![0, 5, 8]);
        assert_eq!(stats.drops(DropReason::FrameSkipped), 0);
        gate.flush(&stats);
        assert_eq!(stats.drops(DropReason::FrameSkipped), 6);
        assert_eq!(stats.snapshot().samples_total, 6);
        gate.flush(&stats);
        assert_eq!(stats.drops(DropReason::FrameSkipped), 6);
    }

    #[test]
    fn cancellation_wakes_a_source_sleeping_for_an_hour() {
        let stats = Arc::new(StreamStats::default());
        let (out, _rx) = crate::pipeline::queue::bounded(
            1,
            crate::config::WhenFull::Block,
            DropReason::SampleQueueFull,
            Arc::clone(&stats),
        );
        let cancel = CancellationToken::new();
        let ctx = SourceContext {
            name: "test".into(),
            clock: Clock::new(),
            cancel: cancel.clone(),
            stats,
            out,
            others: Vec::new(),
        };
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        let sleeper = std::thread::spawn(move || {
            let slept = ctx.sleep_until(std::time::Instant::now() + Duration::from_secs(3600));
            done_tx.send(slept).unwrap();
        });
        // Most likely parked by now (if not, the sleep must see the cancellation at once).
        std::thread::sleep(Duration::from_millis(100));
        cancel.cancel();
        let slept = done_rx.recv_timeout(Duration::from_secs(60)).unwrap();
        assert!(!slept, "the sleep was cancelled, not completed");
        sleeper.join().unwrap();
        // A deadline already passed returns at once, and `true`.
        let stats = Arc::new(StreamStats::default());
        let (out, _rx) = crate::pipeline::queue::bounded(
            1,
            crate::config::WhenFull::Block,
            DropReason::SampleQueueFull,
            Arc::clone(&stats),
        );
        let ctx = SourceContext {
            name: "test".into(),
            clock: Clock::new(),
            cancel: CancellationToken::new(),
            stats,
            out,
            others: Vec::new(),
        };
        assert!(ctx.sleep_until(std::time::Instant::now()));
    }

    proptest! {
        #[test]
        fn the_stream_sampler_takes_every_frame_the_gate_admits_and_the_counts_add_up(
            steps_ms in proptest::collection::vec(0u64..400, 1..200),
            interval_ms in 0u64..1500,
        ) {
            // What the stream alone would do with every frame …
            let mut alone = FrameSampler::new(interval_ms);
            // … and with the gate in front of it.
            let mut gate = FrameGate::new(interval_ms);
            let mut behind = FrameSampler::new(interval_ms);
            let stats = StreamStats::default();
            let mut t_ms = 0;
            for step in steps_ms {
                t_ms += step;
                let t = at(t_ms);
                let expected = alone.offer(t.mono_ns);
                let got = if gate.skip(t) {
                    None
                } else {
                    gate.take(t);
                    behind.offer(t.mono_ns)
                };
                prop_assert_eq!(got, expected);
            }
            gate.flush(&stats);
            prop_assert_eq!(behind.skipped(), 0);
            prop_assert_eq!(stats.drops(DropReason::FrameSkipped), alone.skipped());
        }
    }
}
