//! Processors: what a stream thread does with its source's messages, one implementation per
//! family of modalities — [`SampleWindows`] cuts slot-aligned windows of samples (IMU, audio),
//! [`Frames`] takes one camera frame per interval (depth, thermal, vision) — each generic over
//! the modality's own preprocessing ([`imu`], [`audio`], [`depth`], [`thermal`], [`vision`]). A source kind
//! builds the processor of its stream; the stream thread only knows the [`Processor`] trait.

pub mod audio;
pub mod depth;
pub mod frames;
pub mod imu;
pub mod samples;
pub mod thermal;
pub mod vision;

use std::fmt;
use std::time::Instant;

use ndarray::ArrayD;

pub use self::frames::{FrameTensor, Frames};
pub use self::samples::{SampleTensor, SampleWindows};
use crate::log_limited;
use crate::sources::SourceMessage;
use crate::telemetry::{DropReason, LogLimiter, StreamStats};
use crate::time::Timestamp;
use crate::Modality;

/// Where a model input sits in its stream: what the embedding's payload says of its window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowMeta {
    /// Window number in the stream.
    pub seq: u64,
    /// First capture time covered.
    pub start: Timestamp,
    /// Capture time just after the window.
    pub end: Timestamp,
    /// Samples (or frames) present.
    pub sample_count: u64,
    /// Samples missing.
    pub gaps: u64,
    /// Time spent preprocessing.
    pub preprocess_ms: f64,
}

/// A window turned into a model input.
#[derive(Debug)]
pub struct Prepared {
    /// Its place in the stream.
    pub meta: WindowMeta,
    /// The model input without the batch dimension.
    pub input: ArrayD<f32>,
}

/// One limiter per problem a stream may meet at every block, frame or window: logged once, then
/// summarised every few seconds (the drops are counted either way).
#[derive(Debug, Default)]
pub struct StreamLogs {
    /// Blocks the windower cannot take (a window shorter than one sample at the block's rate).
    pub window: LogLimiter,
    /// Frames or messages of the wrong kind.
    pub frame: LogLimiter,
    /// Camera calibrations the preprocessing rejects.
    pub calibration: LogLimiter,
    /// Windows the preprocessing rejects.
    pub preprocess: LogLimiter,
}

/// What a processor works with: the stream's counters and logs, and where its model inputs go.
#[derive(Debug)]
pub struct StreamCx<'a> {
    /// The stream's counters.
    pub stats: &'a StreamStats,
    /// Its rate-limited logs.
    pub logs: &'a mut StreamLogs,
    /// The model inputs completed by the message being processed.
    pub out: &'a mut Vec<Prepared>,
}

/// Turns one stream's source messages into model inputs (pure apart from the clock reading for
/// the preprocessing time).
pub trait Processor: Send + fmt::Debug {
    /// Processes one message: appends the model inputs it completes to `cx.out`, counts drops
    /// and logs them through `cx.logs`.
    fn process(&mut self, message: SourceMessage, cx: &mut StreamCx<'_>);
}

/// The preprocessing of a stream refused its options.
#[derive(Debug, thiserror::Error)]
#[error("sensor {sensor}: {modality} preprocessing: {source}")]
pub struct ProcessorError {
    sensor: String,
    modality: Modality,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl ProcessorError {
    /// The preprocessing of `modality` refused the options of sensor `sensor`.
    pub fn new(
        sensor: &str,
        modality: Modality,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            sensor: sensor.to_string(),
            modality,
            source: Box::new(source),
        }
    }

    /// What was refused, without the sensor's name (for a problem placed at its key).
    #[must_use]
    pub fn reason(&self) -> String {
        format!("{} preprocessing: {}", self.modality, self.source)
    }
}

/// Counts a message that belongs to another modality (a source wired to the wrong stream).
fn foreign(cx: &mut StreamCx<'_>) {
    cx.stats.add_drops(DropReason::BadInput, 1);
    log_limited!(
        cx.logs.frame,
        tracing::Level::WARN,
        "message of another modality dropped (counted as bad_input)"
    );
}

/// Runs one window's preprocessing, timed: the tensor goes to `cx.out`; a rejection is counted
/// as `preprocess_error` and logged (the stream goes on).
fn prepare<E: fmt::Display>(
    cx: &mut StreamCx<'_>,
    mut meta: WindowMeta,
    run: impl FnOnce() -> Result<ArrayD<f32>, E>,
) {
    let t0 = Instant::now();
    match run() {
        Ok(input) => {
            meta.preprocess_ms = t0.elapsed().as_secs_f64() * 1e3;
            cx.out.push(Prepared { meta, input });
        }
        Err(e) => {
            cx.stats.add_drops(DropReason::PreprocessError, 1);
            log_limited!(cx.logs.preprocess, tracing::Level::WARN,
                "window dropped by preprocessing (counted as preprocess_error)",
                seq = meta.seq, error = %e);
        }
    }
}
