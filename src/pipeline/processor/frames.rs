//! The frame family: one camera frame per `interval_ms` ([`FrameSampler`]; the others are
//! counted as `frame_skipped`), each turned into a model input by the modality's
//! [`FrameTensor`]. A frame stands for one frame period of the camera.

use std::fmt;

use ndarray::ArrayD;

use super::{foreign, prepare, Processor, StreamCx, WindowMeta};
use crate::config::IntervalMs;
use crate::log_limited;
use crate::sources::{Frame, SourceMessage};
use crate::telemetry::DropReason;
use crate::window::FrameSampler;

/// A modality whose stream is a camera's frames.
pub trait FrameTensor: Send + fmt::Debug + 'static {
    /// Why the preprocessing refuses a frame.
    type Error: fmt::Display;

    /// Why `frame` cannot be this modality's at all (a depth frame that is not 16-bit), said in
    /// the log line; checked before the frame is sampled.
    fn refuses(&self, _frame: &Frame) -> Option<&'static str> {
        None
    }

    /// Takes up what the frame says of the camera (a depth camera's calibration) before it is
    /// preprocessed; `false` when the frame must be dropped (counted and logged here).
    fn take_up(&mut self, _frame: &Frame, _cx: &mut StreamCx<'_>) -> bool {
        true
    }

    /// The model input of one frame.
    ///
    /// # Errors
    /// Why the preprocessing refuses it.
    fn tensor(&mut self, frame: &Frame) -> Result<ArrayD<f32>, Self::Error>;
}

/// Takes one frame per interval and preprocesses it with `P`.
#[derive(Debug)]
pub struct Frames<P: FrameTensor> {
    sampler: FrameSampler,
    /// Frame period, for the window's end time.
    period_ns: u64,
    pre: P,
}

impl<P: FrameTensor> Frames<P> {
    /// One frame per `interval_ms` of a camera delivering a frame every `period_ns`,
    /// preprocessed by `pre`.
    #[must_use]
    pub fn new(interval_ms: IntervalMs, period_ns: f64, pre: P) -> Self {
        Self {
            sampler: FrameSampler::new(interval_ms.get()),
            period_ns: period_ns.round() as u64,
            pre,
        }
    }

    /// The preprocessing.
    #[must_use]
    pub fn preprocessing(&self) -> &P {
        &self.pre
    }
}

impl<P: FrameTensor> Processor for Frames<P> {
    fn process(&mut self, message: SourceMessage, cx: &mut StreamCx<'_>) {
        let SourceMessage::Frame(frame) = message else {
            return foreign(cx);
        };
        if let Some(why) = self.pre.refuses(&frame) {
            cx.stats.add_drops(DropReason::BadInput, 1);
            log_limited!(
                cx.logs.frame,
                tracing::Level::WARN,
                format_args!("{why}; dropped (counted as bad_input)")
            );
            return;
        }
        let Some(seq) = self.sampler.offer(frame.t.mono_ns) else {
            cx.stats.add_drops(DropReason::FrameSkipped, 1);
            return;
        };
        if !self.pre.take_up(&frame, cx) {
            return;
        }
        cx.stats.add_window(0);
        let meta = WindowMeta {
            seq,
            start: frame.t,
            end: frame.t.plus_ns(self.period_ns),
            sample_count: 1,
            gaps: 0,
            preprocess_ms: 0.0,
        };
        let pre = &mut self.pre;
        prepare(cx, meta, || pre.tensor(&frame));
    }
}
