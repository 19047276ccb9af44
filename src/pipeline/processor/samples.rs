//! The sample-window family: slot-aligned windows of a sample stream (window k covers sample
//! numbers `[k·hop, k·hop+len)`, so a lost sample is a counted gap and never shifts time), each
//! turned into a model input by the modality's [`SampleTensor`].

use std::fmt;

use ndarray::ArrayD;

use super::{foreign, prepare, Processor, StreamCx, WindowMeta};
use crate::config::SampleWindow;
use crate::log_limited;
use crate::sources::SourceMessage;
use crate::telemetry::DropReason;
use crate::window::{Window, WindowError, WindowSpec, Windower};

/// A modality whose stream is cut in windows of samples.
pub trait SampleTensor: Send + fmt::Debug + 'static {
    /// One sample as the windower holds it.
    type Sample: Copy + Send + fmt::Debug + 'static;
    /// Why the preprocessing refuses a window.
    type Error: fmt::Display;
    /// What one message is called in the log line of a message the windower cannot take.
    const DROPPED: &'static str;

    /// The sample rate of `message` if it is one of this modality's messages.
    fn rate_hz(message: &SourceMessage) -> Option<f64>;

    /// Drops counted for `message` when the windower cannot take it.
    fn drops(message: &SourceMessage) -> u64;

    /// Pushes the samples of `message` (one of this modality's) into `windower`, appending the
    /// windows they complete to `out`.
    fn push(
        message: SourceMessage,
        windower: &mut Windower<Self::Sample>,
        out: &mut Vec<Window<Self::Sample>>,
    );

    /// The model input of one window.
    ///
    /// # Errors
    /// Why the preprocessing refuses it.
    fn tensor(&mut self, window: &Window<Self::Sample>) -> Result<ArrayD<f32>, Self::Error>;
}

/// Cuts windows as [`SampleWindow`] says and preprocesses each with `P`.
#[derive(Debug)]
pub struct SampleWindows<P: SampleTensor> {
    cut: SampleWindow,
    /// Made at the first block, when the rate is known, and anew when it changes.
    windower: Option<Windower<P::Sample>>,
    windows: Vec<Window<P::Sample>>,
    pre: P,
}

impl<P: SampleTensor> SampleWindows<P> {
    /// Windows cut as `cut` says, preprocessed by `pre`.
    #[must_use]
    pub fn new(cut: SampleWindow, pre: P) -> Self {
        Self {
            cut,
            windower: None,
            windows: Vec::new(),
            pre,
        }
    }

    /// The windower for `rate_hz`, made anew when the rate changes (a device reopened at
    /// another rate).
    fn windower_at(&mut self, rate_hz: f64) -> Result<&mut Windower<P::Sample>, WindowError> {
        let spec = WindowSpec::from_ms(self.cut.window_ms.get(), self.cut.hop_ms.get(), rate_hz)?;
        if self.windower.as_ref().is_some_and(|w| w.spec() != spec) {
            self.windower = None;
        }
        Ok(self.windower.get_or_insert_with(|| Windower::new(spec)))
    }
}

impl<P: SampleTensor> Processor for SampleWindows<P> {
    fn process(&mut self, message: SourceMessage, cx: &mut StreamCx<'_>) {
        let Some(rate_hz) = P::rate_hz(&message) else {
            return foreign(cx);
        };
        let mut windows = std::mem::take(&mut self.windows);
        let windower = match self.windower_at(rate_hz) {
            Ok(w) => w,
            Err(e) => {
                cx.stats.add_drops(DropReason::BadInput, P::drops(&message));
                log_limited!(cx.logs.window, tracing::Level::WARN,
                    format_args!("{} dropped (counted as bad_input)", P::DROPPED), error = %e);
                self.windows = windows;
                return;
            }
        };
        P::push(message, windower, &mut windows);
        for window in windows.drain(..) {
            cx.stats.add_window(window.gaps);
            let meta = WindowMeta {
                seq: window.seq,
                start: window.start,
                end: window.end,
                sample_count: window.samples.len() as u64 - window.gaps,
                gaps: window.gaps,
                preprocess_ms: 0.0,
            };
            let pre = &mut self.pre;
            prepare(cx, meta, || pre.tensor(&window));
        }
        self.windows = windows;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::pipeline::processor::imu::imu_windows;
    use crate::pipeline::processor::StreamLogs;
    use crate::telemetry::StreamStats;
    use crate::time::Clock;

    #[test]
    fn a_block_the_windower_cannot_take_is_counted_every_time_and_logged_once() {
        let c: crate::sources::imu_replay::ImuReplayConfig =
            toml::from_str("name = \"imu\"\npath = \"x.csv\"").unwrap();
        let mut p = imu_windows(c.cut);
        let stats = StreamStats::default();
        let mut logs = StreamLogs::default();
        let mut out = Vec::new();
        let clock = Clock::new();
        // 0.1 Hz: the 1 s hop is shorter than one sample.
        for k in 0..100u64 {
            let samples = (0..10)
                .map(|i| crate::sources::ImuSample {
                    seq: k * 10 + i,
                    t: clock.at_mono_ns((k * 10 + i) * 10_000_000_000),
                    values: [0.0; 6],
                })
                .collect();
            let message = SourceMessage::Imu {
                sample_rate_hz: 0.1,
                samples,
            };
            let mut cx = StreamCx {
                stats: &stats,
                logs: &mut logs,
                out: &mut out,
            };
            p.process(message, &mut cx);
        }
        assert!(out.is_empty());
        assert_eq!(stats.drops(DropReason::BadInput), 1000);
        // The first block was logged; the other 99 wait for the next line's count.
        assert_eq!(logs.window.suppressed(), 99);
    }
}
