//! The device loop shared by every source that owns hardware (serial IMU, V4L2 camera, ALSA
//! device, RealSense): open → capture → lost → backoff → reopen, until the daemon stops.
//! A source says how to open its device and how to capture from it ([`Hardware`]); the loop
//! owns the rest: the `connected` flag and rate of the stream's `state`, cancellation, the
//! backoff and the outage logs.
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

/// Why capture from an open device ended.
#[derive(Debug)]
pub enum Ended<E> {
    /// The daemon is stopping, the stream thread is gone, or the source has all it wanted
    /// (`max_frames`): the loop returns.
    Stop,
    /// A recording played to its end: the loop returns, saying so.
    Finished,
    /// The device failed; `delivered` says whether it had produced data since it opened.
    Lost {
        /// Why, naming what failed.
        error: E,
        /// It had delivered data (resets the backoff).
        delivered: bool,
    },
}

/// A source that owns a device, as the device loop drives it.
pub trait Hardware {
    /// An open device.
    type Device;
    /// Why a device could not be opened (the message names the device).
    type OpenError: Display;
    /// Why an open device was lost.
    type Error: Display;
    /// What the device is called in log lines: "camera", "serial port", …
    const KIND: &'static str;

    /// The rate the stream's `state` reports while no device is open.
    fn nominal_rate_hz(&self) -> f64;

    /// Opens the device.
    ///
    /// # Errors
    /// Why it cannot be opened now (retried with backoff).
    fn open(&mut self) -> Result<Self::Device, Self::OpenError>;

    /// The open device as log lines name it.
    fn describe(&self, device: &Self::Device) -> String;

    /// The rate the open device delivers at.
    fn rate_hz(&self, device: &Self::Device) -> f64;

    /// Logs the first open, with what was negotiated (reopens are logged by the loop).
    fn announce(&self, device: &Self::Device);

    /// Captures from the open device until it fails or the source must stop.
    fn capture(&mut self, device: &mut Self::Device, ctx: &SourceContext) -> Ended<Self::Error>;

    /// The rates of the source's further streams ([`SourceContext::others`], same order), which
    /// share the device's `connected` state.
    fn other_rates_hz(&self) -> Vec<f64> {
        Vec::new()
    }
}

/// Sets the `connected` state of every stream of the source: the first at `rate_hz`, the
/// others at theirs.
fn set_connected<H: Hardware>(hardware: &H, ctx: &SourceContext, connected: bool, rate_hz: f64) {
    ctx.stats.set_connected(connected, rate_hz);
    for (port, rate_hz) in ctx.others.iter().zip(hardware.other_rates_hz()) {
        port.stats.set_connected(connected, rate_hz);
    }
}

/// Runs `hardware` until cancelled or finished: opens its device, captures from it, and
/// reopens it with backoff (capped at `max_backoff`) whenever it cannot be opened or fails.
/// The device is closed before the backoff, so another process may take it meanwhile.
pub fn run_device<H: Hardware>(hardware: &mut H, max_backoff: Duration, ctx: &SourceContext) {
    let mut reconnect = Reconnect::new(H::KIND, max_backoff);
    set_connected(hardware, ctx, false, hardware.nominal_rate_hz());
    while !ctx.cancel.is_cancelled() {
        match hardware.open() {
            Ok(mut device) => {
                ctx.stats.set_device_error(None);
                let what = hardware.describe(&device);
                if !reconnect.opened(&what) {
                    hardware.announce(&device);
                }
                let rate_hz = hardware.rate_hz(&device);
                set_connected(hardware, ctx, true, rate_hz);
                let end = hardware.capture(&mut device, ctx);
                drop(device);
                set_connected(hardware, ctx, false, rate_hz);
                match end {
                    Ended::Stop => break,
                    Ended::Finished => {
                        tracing::info!(device = %what, "recording finished");
                        ctx.stats.set_finished();
                        for port in &ctx.others {
                            port.stats.set_finished();
                        }
                        break;
                    }
                    Ended::Lost { error, delivered } => {
                        ctx.stats.set_device_error(Some(format!("{what}: {error}")));
                        reconnect.lost(&what, &error, delivered);
                    }
                }
            }
            Err(error) => {
                ctx.stats.set_device_error(Some(error.to_string()));
                reconnect.open_failed(&error);
            }
        }
        if !reconnect.wait(ctx) {
            break;
        }
    }
    set_connected(hardware, ctx, false, hardware.nominal_rate_hz());
    tracing::debug!("{} source stopped", H::KIND);
}

/// Sleeps `d` unless cancelled first; `false` when cancelled.
pub fn sleep_unless_cancelled(ctx: &SourceContext, d: Duration) -> bool {
    ctx.sleep_until(Instant::now() + d)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
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
            others: Vec::new(),
        }
    }

    /// A device that plays a script of opens and captures, recording what the loop asked.
    struct Scripted {
        opens: std::vec::IntoIter<Result<f64, &'static str>>,
        captures: std::vec::IntoIter<Ended<&'static str>>,
        calls: Vec<String>,
        connected_in_capture: Vec<(bool, f64)>,
        /// The rates of the further streams, and their state seen in each capture.
        other_rates: Vec<f64>,
        others_in_capture: Vec<Vec<(bool, f64)>>,
    }

    impl Hardware for Scripted {
        type Device = f64;
        type OpenError = &'static str;
        type Error = &'static str;
        const KIND: &'static str = "scripted device";

        fn nominal_rate_hz(&self) -> f64 {
            10.0
        }
        fn open(&mut self) -> Result<f64, &'static str> {
            self.calls.push("open".into());
            self.opens.next().unwrap_or(Err("script over"))
        }
        fn describe(&self, rate: &f64) -> String {
            format!("dev@{rate}")
        }
        fn rate_hz(&self, rate: &f64) -> f64 {
            *rate
        }
        fn announce(&self, _rate: &f64) {}
        fn capture(&mut self, rate: &mut f64, ctx: &SourceContext) -> Ended<&'static str> {
            self.calls.push(format!("capture@{rate}"));
            let s = ctx.stats.snapshot();
            self.connected_in_capture
                .push((s.connected, s.sample_rate_hz));
            self.others_in_capture.push(
                ctx.others
                    .iter()
                    .map(|p| {
                        let s = p.stats.snapshot();
                        (s.connected, s.sample_rate_hz)
                    })
                    .collect(),
            );
            self.captures.next().unwrap_or(Ended::Stop)
        }
        fn other_rates_hz(&self) -> Vec<f64> {
            self.other_rates.clone()
        }
    }

    #[test]
    fn the_loop_reopens_a_failing_device_until_a_recording_finishes() {
        let mut device = Scripted {
            opens: vec![Err("absent"), Ok(30.0), Ok(25.0)].into_iter(),
            captures: vec![
                Ended::Lost {
                    error: "unplugged",
                    delivered: true,
                },
                Ended::Finished,
            ]
            .into_iter(),
            calls: Vec::new(),
            connected_in_capture: Vec::new(),
            other_rates: Vec::new(),
            others_in_capture: Vec::new(),
        };
        let ctx = context();
        run_device(&mut device, Duration::from_millis(100), &ctx);
        assert_eq!(
            device.calls,
            ["open", "open", "capture@30", "open", "capture@25"]
        );
        // Connected at the open device's rate while capturing, not after.
        assert_eq!(device.connected_in_capture, [(true, 30.0), (true, 25.0)]);
        let s = ctx.stats.snapshot();
        assert_eq!((s.connected, s.sample_rate_hz), (false, 10.0));
        // The device opened again after its failures: no error is left standing.
        assert_eq!(ctx.stats.device_error(), None);
    }

    #[test]
    fn every_stream_of_a_source_shares_the_devices_state_at_its_own_rate() {
        let mut device = Scripted {
            opens: vec![Ok(30.0)].into_iter(),
            captures: vec![Ended::Finished].into_iter(),
            calls: Vec::new(),
            connected_in_capture: Vec::new(),
            other_rates: vec![15.0],
            others_in_capture: Vec::new(),
        };
        let mut ctx = context();
        let stats = Arc::new(StreamStats::default());
        let (out, _rx) = bounded(
            1,
            WhenFull::DropOldest,
            DropReason::SampleQueueFull,
            Arc::clone(&stats),
        );
        ctx.others.push(crate::sources::StreamPort {
            name: "colour".into(),
            stats: Arc::clone(&stats),
            out,
        });
        run_device(&mut device, Duration::from_millis(100), &ctx);
        assert_eq!(device.others_in_capture, [vec![(true, 15.0)]]);
        let s = stats.snapshot();
        assert_eq!((s.connected, s.sample_rate_hz), (false, 15.0));
        assert!(s.finished, "the recording finished for every stream");
    }

    #[test]
    fn a_stop_ends_the_loop_and_cancellation_ends_the_backoff() {
        let mut device = Scripted {
            opens: vec![Ok(30.0)].into_iter(),
            captures: vec![Ended::Stop].into_iter(),
            calls: Vec::new(),
            connected_in_capture: Vec::new(),
            other_rates: Vec::new(),
            others_in_capture: Vec::new(),
        };
        run_device(&mut device, Duration::from_secs(60), &context());
        assert_eq!(device.calls, ["open", "capture@30"]);

        let ctx = context();
        let cancel = ctx.cancel.clone();
        let mut absent = Scripted {
            opens: Vec::new().into_iter(),
            captures: Vec::new().into_iter(),
            calls: Vec::new(),
            connected_in_capture: Vec::new(),
            other_rates: Vec::new(),
            others_in_capture: Vec::new(),
        };
        // Cancelled from another thread while the loop waits out its backoff: the loop ends
        // (the test would hang otherwise).
        let stopper = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            cancel.cancel();
        });
        run_device(&mut absent, Duration::from_secs(3600), &ctx);
        stopper.join().unwrap();
        assert!(!absent.calls.is_empty());
        assert!(absent.calls.iter().all(|c| c == "open"), "never opened");
        // Why it cannot be opened is kept for `check --devices`.
        assert_eq!(ctx.stats.device_error().as_deref(), Some("script over"));
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
