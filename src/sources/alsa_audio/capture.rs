//! The capture loop, generic over the device: the device's callback thread hands converted
//! blocks to a bounded queue without ever blocking ([`BlockSink`]); the source's own thread
//! numbers and stamps them ([`Timeline`]), forwards them to the windower, and reopens the device
//! with backoff when it disappears.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{self as cb, Receiver, Sender};

use super::negotiate::CaptureFormat;
use crate::log_limited;
pub use crate::sources::device_loop::INITIAL_BACKOFF;
use crate::sources::device_loop::{run_device, Ended, Hardware};
use crate::sources::{SourceContext, SourceMessage};
use crate::telemetry::{DropReason, LogLimiter, StreamStats};
use crate::time::Clock;

/// How often the loop looks at cancellation while waiting.
pub const POLL_SLICE: Duration = Duration::from_millis(100);

/// A device could not be opened, or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{device}: {message}")]
pub struct DeviceError {
    /// The PCM.
    pub device: String,
    /// What went wrong.
    pub message: String,
}

/// One callback's worth of audio.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    /// Frames the stream delivered before this block (blocks dropped in the queue included).
    pub stream_pos: u64,
    /// Capture time of the first frame on the daemon's monotonic clock.
    pub capture_mono_ns: u64,
    /// Interleaved samples in [-1, 1].
    pub interleaved: Vec<f32>,
}

/// What a stream's error callback reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// An overrun: the device's buffer filled before it was read; frames were lost and the
    /// stream was restarted by the backend.
    Xrun,
    /// The device is gone; the stream must be rebuilt.
    Lost(String),
    /// Anything else (the stream goes on).
    Other(String),
}

/// The data side of a running stream: owned by the device's callback. Never blocks.
#[derive(Debug)]
pub struct BlockSink {
    tx: Sender<Block>,
    stats: Arc<StreamStats>,
    clock: Clock,
    channels: usize,
    pos: u64,
    /// daemon monotonic ns − stream instant ns, fixed at the first callback.
    offset_ns: Option<i128>,
}

impl BlockSink {
    /// Hands one callback's samples over. `callback_ns` and `capture_ns` are the stream's own
    /// instants of the callback and of the first frame's capture.
    pub fn push(&mut self, interleaved: Vec<f32>, callback_ns: u128, capture_ns: u128) {
        let frames = (interleaved.len() / self.channels.max(1)) as u64;
        let now = i128::from(self.clock.now().mono_ns);
        let offset = *self
            .offset_ns
            .get_or_insert_with(|| now - i128::try_from(callback_ns).unwrap_or(i128::MAX));
        let capture = i128::try_from(capture_ns)
            .unwrap_or(i128::MAX)
            .saturating_add(offset);
        let block = Block {
            stream_pos: self.pos,
            capture_mono_ns: u64::try_from(capture.max(0)).unwrap_or(u64::MAX),
            interleaved,
        };
        self.pos += frames;
        if let Err(cb::TrySendError::Full(_)) = self.tx.try_send(block) {
            // The source thread is behind: this block is lost (a seq jump downstream).
            self.stats.add_drops(DropReason::SampleQueueFull, 1);
        }
    }
}

/// The error side of a running stream: owned by the device's error callback. Never blocks.
#[derive(Debug, Clone)]
pub struct FaultSink {
    tx: Sender<Fault>,
    stats: Arc<StreamStats>,
}

impl FaultSink {
    /// Reports a fault; overruns are counted here (`drops_total.device_overrun`).
    pub fn report(&self, fault: Fault) {
        if fault == Fault::Xrun {
            self.stats.add_drops(DropReason::DeviceOverrun, 1);
        }
        // A full fault queue already holds news for the source thread.
        let _ = self.tx.try_send(fault);
    }
}

/// An open, running device. Dropping it stops the stream.
pub trait AudioDevice {
    /// The format the stream runs at.
    fn format(&self) -> CaptureFormat;
    /// For logs.
    fn describe(&self) -> String;
}

/// Frame numbers and capture times of a stream, across overruns and reopens.
///
/// Frames are numbered as the device's sample clock counts them; their times follow the nominal
/// rate from an anchor on the stream's capture clock. When the capture clock runs ahead of the
/// frame count by more than a tolerance (frames lost in an overrun, the device gone for a
/// while), the numbers jump by the missing frames and the anchor moves. A capture clock behind
/// the frame count (a backlog delivered in a burst, a file played faster than real time) does
/// not move times backwards.
#[derive(Debug, Clone)]
pub struct Timeline {
    rate_hz: f64,
    tolerance_frames: i128,
    anchor: Option<(u64, u64)>,
    base: i128,
    next_seq: u64,
    restarted: bool,
}

/// Where a block goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    /// Number of its first frame.
    pub seq: u64,
    /// Capture time of its first frame, daemon monotonic ns.
    pub mono_ns: u64,
    /// Frames missing just before it.
    pub lost: u64,
}

impl Timeline {
    /// A timeline for a stream at `rate_hz`; gaps shorter than 100 ms are taken as jitter.
    #[must_use]
    pub fn new(rate_hz: u32) -> Self {
        Self {
            rate_hz: f64::from(rate_hz.max(1)),
            tolerance_frames: i128::from(rate_hz / 10).max(1),
            anchor: None,
            base: 0,
            next_seq: 0,
            restarted: false,
        }
    }

    /// The rate.
    #[must_use]
    pub fn rate_hz(&self) -> f64 {
        self.rate_hz
    }

    /// A new stream starts: its positions count from 0 again.
    pub fn restart(&mut self) {
        self.restarted = true;
    }

    /// Numbers and stamps a block of `frames` frames.
    pub fn place(&mut self, stream_pos: u64, capture_mono_ns: u64, frames: u64) -> Placed {
        let pos = i128::from(stream_pos);
        let Some((anchor_seq, anchor_ns)) = self.anchor else {
            self.anchor = Some((0, capture_mono_ns));
            self.base = -pos;
            self.restarted = false;
            self.next_seq = frames;
            return Placed {
                seq: 0,
                mono_ns: capture_mono_ns,
                lost: 0,
            };
        };
        if std::mem::take(&mut self.restarted) {
            self.base = i128::from(self.next_seq) - pos;
        }
        let mut seq = (pos + self.base).max(i128::from(self.next_seq));
        let elapsed_ns = i128::from(capture_mono_ns) - i128::from(anchor_ns);
        let by_clock =
            i128::from(anchor_seq) + (elapsed_ns as f64 * self.rate_hz / 1e9).round() as i128;
        let (mut anchor_seq, mut anchor_ns) = (anchor_seq, anchor_ns);
        if by_clock > seq + self.tolerance_frames {
            self.base += by_clock - seq;
            seq = by_clock;
            anchor_seq = u64::try_from(seq).unwrap_or(u64::MAX);
            anchor_ns = capture_mono_ns;
            self.anchor = Some((anchor_seq, anchor_ns));
        }
        let seq = u64::try_from(seq).unwrap_or(u64::MAX);
        let lost = seq - self.next_seq;
        self.next_seq = seq + frames;
        let since_anchor = (seq - anchor_seq) as f64 * 1e9 / self.rate_hz;
        Placed {
            seq,
            mono_ns: anchor_ns + since_anchor.round() as u64,
            lost,
        }
    }
}

/// How the loop runs.
#[derive(Debug, Clone, Copy)]
pub struct CaptureSettings {
    /// Rate reported while no device is open.
    pub nominal_rate_hz: u32,
    /// Blocks the callback may queue for the source thread.
    pub block_queue: std::num::NonZeroUsize,
    /// Cap of the reopen backoff.
    pub max_backoff: Duration,
    /// A stream silent this long is reopened.
    pub stall_timeout: Duration,
    /// Stop after this many frames (tests, diagnostics).
    pub max_frames: Option<u64>,
}

/// Runs until cancelled (or `max_frames`): opens a device with `open`, captures from it, and
/// reopens it with backoff whenever it cannot be opened or fails (the shared [`run_device`]
/// loop).
pub fn run_capture<D: AudioDevice>(
    open: impl FnMut(BlockSink, FaultSink) -> Result<D, DeviceError>,
    settings: &CaptureSettings,
    ctx: &SourceContext,
) {
    let mut microphone = Microphone {
        open,
        settings,
        stats: Arc::clone(&ctx.stats),
        clock: ctx.clock,
        timeline: None,
        state: LoopState::default(),
    };
    run_device(&mut microphone, settings.max_backoff, ctx);
}

/// An audio device as the device loop drives it.
struct Microphone<'a, F> {
    open: F,
    settings: &'a CaptureSettings,
    stats: Arc<StreamStats>,
    clock: Clock,
    /// Kept across reopens at the same rate, so sample numbers go on.
    timeline: Option<Timeline>,
    state: LoopState,
}

/// An open audio device with the queues its callback thread fills.
struct OpenDevice<D> {
    device: D,
    blocks: Receiver<Block>,
    faults: Receiver<Fault>,
}

impl<D: AudioDevice, F: FnMut(BlockSink, FaultSink) -> Result<D, DeviceError>> Hardware
    for Microphone<'_, F>
{
    type Device = OpenDevice<D>;
    type OpenError = DeviceError;
    type Error = String;
    const KIND: &'static str = "audio device";

    fn nominal_rate_hz(&self) -> f64 {
        f64::from(self.settings.nominal_rate_hz)
    }

    fn open(&mut self) -> Result<OpenDevice<D>, DeviceError> {
        let (block_tx, blocks) = cb::bounded(self.settings.block_queue.get());
        let (fault_tx, faults) = cb::bounded(64);
        // The sink learns the channel count from the opener (`with_channels`), once negotiated.
        let block_sink = BlockSink {
            tx: block_tx,
            stats: Arc::clone(&self.stats),
            clock: self.clock,
            channels: 1,
            pos: 0,
            offset_ns: None,
        };
        let fault_sink = FaultSink {
            tx: fault_tx,
            stats: Arc::clone(&self.stats),
        };
        let device = (self.open)(block_sink, fault_sink)?;
        Ok(OpenDevice {
            device,
            blocks,
            faults,
        })
    }

    fn describe(&self, open: &OpenDevice<D>) -> String {
        open.device.describe()
    }

    fn rate_hz(&self, open: &OpenDevice<D>) -> f64 {
        f64::from(open.device.format().sample_rate_hz)
    }

    fn announce(&self, open: &OpenDevice<D>) {
        let format = open.device.format();
        tracing::info!(device = %open.device.describe(), %format, "audio device open");
    }

    fn capture(&mut self, open: &mut OpenDevice<D>, ctx: &SourceContext) -> Ended<String> {
        let format = open.device.format();
        let timeline = match &mut self.timeline {
            Some(t) if t.rate_hz() == f64::from(format.sample_rate_hz) => {
                t.restart();
                t
            }
            slot => slot.insert(Timeline::new(format.sample_rate_hz)),
        };
        capture(
            format,
            &open.blocks,
            &open.faults,
            timeline,
            &mut self.state,
            self.settings,
            ctx,
        )
    }
}

/// What lives across reopens.
#[derive(Debug, Default)]
struct LoopState {
    frames: u64,
    xruns: u64,
    /// Overruns and other stream errors: logged once, then summarised every few seconds.
    xrun_log: LogLimiter,
    fault_log: LogLimiter,
}

impl LoopState {
    /// Counts and logs the faults the device's callback reported; the error of the first that
    /// means the device is lost, if any.
    fn take_faults(&mut self, faults: &Receiver<Fault>) -> Option<String> {
        for fault in faults.try_iter() {
            match fault {
                Fault::Xrun => {
                    self.xruns += 1;
                    log_limited!(
                        self.xrun_log,
                        tracing::Level::WARN,
                        "audio overrun: frames were lost (counted in drops_total.device_overrun)",
                        xruns_total = self.xruns
                    );
                }
                Fault::Lost(error) => return Some(error),
                Fault::Other(error) => {
                    log_limited!(self.fault_log, tracing::Level::WARN, "audio stream error", %error);
                }
            }
        }
        None
    }
}

impl BlockSink {
    /// The same sink for streams of `channels` channels (set once the format is negotiated).
    #[must_use]
    pub fn with_channels(mut self, channels: u16) -> Self {
        self.channels = usize::from(channels.max(1));
        self
    }
}

fn capture(
    format: CaptureFormat,
    blocks: &Receiver<Block>,
    faults: &Receiver<Fault>,
    timeline: &mut Timeline,
    state: &mut LoopState,
    settings: &CaptureSettings,
    ctx: &SourceContext,
) -> Ended<String> {
    let mut delivered = false;
    let mut last_block = Instant::now();
    loop {
        if ctx.cancel.is_cancelled() {
            return Ended::Stop;
        }
        if let Some(error) = state.take_faults(faults) {
            return Ended::Lost { error, delivered };
        }
        let block = match blocks.recv_timeout(POLL_SLICE) {
            Ok(block) => block,
            Err(cb::RecvTimeoutError::Timeout) => {
                let silent = last_block.elapsed();
                if silent >= settings.stall_timeout {
                    return Ended::Lost {
                        error: format!("no audio for {} ms", silent.as_millis()),
                        delivered,
                    };
                }
                continue;
            }
            Err(cb::RecvTimeoutError::Disconnected) => {
                return Ended::Lost {
                    error: "the stream stopped".into(),
                    delivered,
                }
            }
        };
        last_block = Instant::now();
        delivered = true;
        if let Some(end) = deliver(block, format, timeline, state, settings, ctx) {
            return end;
        }
    }
}

/// Places one block of the device on the timeline and hands it to the stream, cut at
/// `max_frames`; how capture ends, if it does.
fn deliver(
    block: Block,
    format: CaptureFormat,
    timeline: &mut Timeline,
    state: &mut LoopState,
    settings: &CaptureSettings,
    ctx: &SourceContext,
) -> Option<Ended<String>> {
    let channels = usize::from(format.channels.max(1));
    let mut interleaved = block.interleaved;
    let mut frames = (interleaved.len() / channels) as u64;
    interleaved.truncate(frames as usize * channels);
    if frames == 0 {
        return None;
    }
    let placed = timeline.place(block.stream_pos, block.capture_mono_ns, frames);
    if placed.lost > 0 {
        tracing::debug!(seq = placed.seq, lost = placed.lost, "audio frames missing");
    }
    let mut finished = false;
    if let Some(max) = settings.max_frames {
        let left = max.saturating_sub(state.frames);
        if frames >= left {
            frames = left;
            interleaved.truncate(frames as usize * channels);
            finished = true;
        }
    }
    state.frames += frames;
    if frames > 0 {
        let first_t = ctx.clock.at_mono_ns(placed.mono_ns);
        let last_t = first_t.plus_ns(((frames - 1) as f64 * 1e9 / timeline.rate_hz()) as u64);
        if !ctx.send(SourceMessage::Audio {
            sample_rate_hz: format.sample_rate_hz,
            channels: format.channels,
            first_seq: placed.seq,
            first_t,
            interleaved,
        }) {
            return Some(Ended::Stop);
        }
        ctx.stats.add_samples(frames, last_t.utc_ns);
    }
    if finished {
        tracing::info!(
            frames = state.frames,
            "max_frames reached; audio source finished"
        );
        return Some(Ended::Stop);
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn frames_are_numbered_and_stamped_at_the_nominal_rate() {
        let mut t = Timeline::new(1_000);
        assert_eq!(t.place(0, 5 * MS, 10).seq, 0);
        // Callback jitter (a few ms either way) does not move anything.
        let p = t.place(10, 17 * MS, 10);
        assert_eq!((p.seq, p.mono_ns, p.lost), (10, 15 * MS, 0));
        let p = t.place(20, 23 * MS, 10);
        assert_eq!((p.seq, p.mono_ns, p.lost), (20, 25 * MS, 0));
    }

    #[test]
    fn a_burst_faster_than_real_time_keeps_nominal_spacing() {
        let mut t = Timeline::new(16_000);
        t.place(0, 0, 1_024);
        for k in 1..100u64 {
            let p = t.place(k * 1_024, k * 1_000, 1_024);
            assert_eq!(p.seq, k * 1_024);
            assert_eq!(p.mono_ns, k * 1_024 * 62_500, "{k}");
        }
    }

    #[test]
    fn an_overrun_becomes_a_seq_jump_by_the_frames_the_clock_says_were_lost() {
        let mut t = Timeline::new(1_000);
        t.place(0, 0, 100);
        // The stream position continues at 100, but 500 ms passed on the capture clock.
        let p = t.place(100, 600 * MS, 100);
        assert_eq!((p.seq, p.mono_ns, p.lost), (600, 600 * MS, 500));
        let p = t.place(200, 700 * MS, 100);
        assert_eq!((p.seq, p.mono_ns, p.lost), (700, 700 * MS, 0));
    }

    #[test]
    fn blocks_dropped_in_the_queue_are_a_seq_jump() {
        let mut t = Timeline::new(1_000);
        t.place(0, 0, 10);
        let p = t.place(30, 30 * MS, 10);
        assert_eq!((p.seq, p.lost), (30, 20));
    }

    #[test]
    fn a_reopened_stream_continues_after_the_outage() {
        let mut t = Timeline::new(1_000);
        t.place(0, 0, 100);
        t.place(100, 100 * MS, 100);
        t.restart();
        // The new stream counts from 0 again, 2 s later.
        let p = t.place(0, 2_200 * MS, 100);
        assert_eq!((p.seq, p.mono_ns, p.lost), (2_200, 2_200 * MS, 2_000));
        t.restart();
        // Reopened at once (within the tolerance): no jump, no overlap.
        let p = t.place(0, 2_300 * MS, 100);
        assert_eq!((p.seq, p.lost), (2_300, 0));
    }

    /// A scripted microphone: a thread plays its script into the sinks, as cpal's callback
    /// thread would.
    struct FakeMic {
        format: CaptureFormat,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl AudioDevice for FakeMic {
        fn format(&self) -> CaptureFormat {
            self.format
        }
        fn describe(&self) -> String {
            "fake".into()
        }
    }

    impl Drop for FakeMic {
        fn drop(&mut self) {
            if let Some(t) = self.thread.take() {
                t.join().unwrap();
            }
        }
    }

    #[test]
    fn a_lost_device_is_reopened_overruns_are_counted_and_max_frames_ends_the_source() {
        use crate::config::WhenFull;
        use crate::pipeline::bounded;
        use tokio_util::sync::CancellationToken;

        let format = CaptureFormat {
            channels: 2,
            sample_rate_hz: 100,
            kind: super::super::negotiate::SampleKind::I16,
        };
        let stats = Arc::new(StreamStats::default());
        let (tx, rx) = bounded(
            64,
            WhenFull::Block,
            DropReason::SampleQueueFull,
            Arc::clone(&stats),
        );
        let ctx = SourceContext {
            name: "mic".into(),
            clock: Clock::new(),
            cancel: CancellationToken::new(),
            stats: Arc::clone(&stats),
            out: tx,
            others: Vec::new(),
        };
        let settings = CaptureSettings {
            nominal_rate_hz: 100,
            block_queue: std::num::NonZeroUsize::new(16).unwrap(),
            max_backoff: Duration::from_millis(100),
            stall_timeout: Duration::from_secs(5),
            max_frames: Some(500),
        };
        let mut opens = 0;
        run_capture(
            |blocks, faults| {
                opens += 1;
                if opens == 2 {
                    return Err(DeviceError {
                        device: "fake".into(),
                        message: "no such device".into(),
                    });
                }
                let first = opens == 1;
                let mut blocks = blocks.with_channels(2);
                let thread = std::thread::spawn(move || {
                    // 100-frame blocks (1 s each at 100 Hz), delivered in a burst.
                    for k in 0..3u128 {
                        let v = vec![0.25f32; 200];
                        blocks.push(v, k * 1_000_000_000, k * 1_000_000_000);
                        if first && k == 1 {
                            faults.report(Fault::Xrun);
                        }
                    }
                    if first {
                        std::thread::sleep(Duration::from_millis(50));
                        faults.report(Fault::Lost("unplugged".into()));
                    }
                });
                Ok(FakeMic {
                    format,
                    thread: Some(thread),
                })
            },
            &settings,
            &ctx,
        );
        drop(ctx);
        assert_eq!(opens, 3, "open, lost, one failed reopen, reopened");
        let mut seqs = Vec::new();
        let mut frames = 0;
        for m in rx.try_iter() {
            let SourceMessage::Audio {
                first_seq,
                interleaved,
                channels,
                ..
            } = m
            else {
                panic!("not audio");
            };
            assert_eq!(channels, 2);
            seqs.push(first_seq);
            frames += interleaved.len() / 2;
        }
        // The reopened stream continues the numbering; capture stops at max_frames.
        assert_eq!(seqs, vec![0, 100, 200, 300, 400]);
        assert_eq!(frames, 500);
        assert_eq!(stats.drops(DropReason::DeviceOverrun), 1);
        assert!(!stats.snapshot().connected);
    }
}
