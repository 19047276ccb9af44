//! Reopening a lost device: exponential backoff and outage logging shared by every source that
//! owns hardware (serial IMU, V4L2 camera, ALSA device, RealSense).
//!
//! The rules are the same everywhere: one warning per outage (the retries in between are at
//! debug level), the outage length logged when the device is back, and the backoff reset only by
//! a device that delivered — one that opens and fails at once is retried ever more slowly, never
//! in a tight loop. A device that keeps coming and going is logged once, then summarised every
//! few seconds with how often it repeated ([`LogLimiter`]).

use std::fmt::Display;
use std::time::{Duration, Instant};

use super::SourceContext;
use crate::log_limited;
use crate::telemetry::LogLimiter;

/// First retry delay after a failure.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);

/// Backoff and outage state of one device.
#[derive(Debug)]
pub struct Reconnect {
    kind: &'static str,
    backoff: Duration,
    max_backoff: Duration,
    outage_since: Option<Instant>,
    /// "lost" lines of a device that keeps failing.
    lost_log: LogLimiter,
    /// "reopened" lines of a device that keeps coming back.
    reopened_log: LogLimiter,
}

impl Reconnect {
    /// State for a device of `kind` ("camera", "serial port", …), retried at most every
    /// `max_backoff` (never less than [`INITIAL_BACKOFF`]).
    #[must_use]
    pub fn new(kind: &'static str, max_backoff: Duration) -> Self {
        Self {
            kind,
            backoff: INITIAL_BACKOFF,
            max_backoff: max_backoff.max(INITIAL_BACKOFF),
            outage_since: None,
            lost_log: LogLimiter::default(),
            reopened_log: LogLimiter::default(),
        }
    }

    /// The device opened. Logs the end of an outage and returns `true`; returns `false` at the
    /// first open, which the caller logs with its own details.
    pub fn opened(&mut self, device: &dyn Display) -> bool {
        match self.outage_since.take() {
            Some(t) => {
                log_limited!(self.reopened_log, tracing::Level::INFO,
                    format_args!("{} reopened", self.kind),
                    device = %device, outage_s = format!("{:.1}", t.elapsed().as_secs_f64()));
                true
            }
            None => false,
        }
    }

    /// The open device failed; `delivered` says whether it had produced data.
    pub fn lost(&mut self, device: &dyn Display, error: &dyn Display, delivered: bool) {
        log_limited!(self.lost_log, tracing::Level::WARN,
            format_args!("{} lost; reopening with backoff", self.kind),
            device = %device, %error);
        self.outage_since = Some(Instant::now());
        if delivered {
            self.backoff = INITIAL_BACKOFF;
        }
    }

    /// Opening failed; `error` names the device.
    pub fn open_failed(&mut self, error: &dyn Display) {
        if self.outage_since.is_none() {
            tracing::warn!(
                %error,
                max_backoff_ms = self.max_backoff.as_millis() as u64,
                "cannot open {}; retrying with backoff",
                self.kind
            );
            self.outage_since = Some(Instant::now());
        } else {
            tracing::debug!(%error, "reopen failed");
        }
    }

    /// Waits the current backoff, then doubles it (capped). `false` when cancelled meanwhile.
    pub fn wait(&mut self, ctx: &SourceContext) -> bool {
        let go_on = sleep_unless_cancelled(ctx, self.backoff);
        self.backoff = (self.backoff * 2).min(self.max_backoff);
        go_on
    }

    /// The delay the next [`Reconnect::wait`] sleeps.
    #[must_use]
    pub fn backoff(&self) -> Duration {
        self.backoff
    }
}

/// Sleeps `d` unless cancelled first; `false` when cancelled.
pub fn sleep_unless_cancelled(ctx: &SourceContext, d: Duration) -> bool {
    ctx.sleep_until(Instant::now() + d)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::config::WhenFull;
    use crate::pipeline::queue::bounded;
    use crate::telemetry::{DropReason, StreamStats};
    use crate::time::Clock;

    fn context() -> SourceContext {
        let stats = Arc::new(StreamStats::default());
        let (out, _rx) = bounded(
            1,
            WhenFull::DropOldest,
            DropReason::SampleQueueFull,
            Arc::clone(&stats),
        );
        SourceContext {
            name: "test".into(),
            clock: Clock::new(),
            cancel: CancellationToken::new(),
            stats,
            out,
        }
    }

    #[test]
    fn backoff_doubles_to_its_cap_and_only_a_delivering_device_resets_it() {
        let mut r = Reconnect::new("camera", Duration::from_millis(350));
        let ctx = context();
        assert_eq!(r.backoff(), INITIAL_BACKOFF);
        r.open_failed(&"cam0: no such device");
        assert!(r.wait(&ctx));
        assert_eq!(r.backoff(), Duration::from_millis(200));
        assert!(r.wait(&ctx));
        assert!(r.wait(&ctx));
        assert_eq!(r.backoff(), Duration::from_millis(350));
        assert!(r.opened(&"cam0"), "a reopen after an outage is reported");
        r.lost(&"cam0", &"gone", false);
        assert_eq!(r.backoff(), Duration::from_millis(350));
        assert!(r.opened(&"cam0"));
        r.lost(&"cam0", &"gone", true);
        assert_eq!(r.backoff(), INITIAL_BACKOFF);
    }

    #[test]
    fn a_device_that_keeps_failing_is_logged_once_then_counted() {
        let mut r = Reconnect::new("camera", Duration::from_secs(1));
        // 50 flaps well within one log interval (5 s).
        for _ in 0..50 {
            r.lost(&"cam0", &"gone", false);
            assert!(r.opened(&"cam0"));
        }
        assert_eq!(r.lost_log.suppressed(), 49);
        assert_eq!(r.reopened_log.suppressed(), 49);
    }

    #[test]
    fn the_first_open_is_left_to_the_caller_and_a_cancelled_wait_says_so() {
        let mut r = Reconnect::new("serial port", Duration::ZERO);
        assert!(!r.opened(&"/dev/ttyUSB0"));
        let ctx = context();
        ctx.cancel.cancel();
        assert!(!r.wait(&ctx));
    }
}
