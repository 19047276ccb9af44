//! Rate-limited logging. A problem that repeats — a full disk, a window shorter than one sample,
//! a device that keeps failing, a stream of bad frames — is logged the first time, then at most
//! once per interval, and that line says how often it repeated unlogged in between:
//! `outbox: the filesystem is full … (repeated 312 times in the last 5 s)`. Metrics still count
//! every occurrence; the log only says that it goes on.
//!
//! [`LogLimiter`] is the decision alone (the caller passes the time, so tests drive it with any
//! clock); [`log_limited!`](crate::log_limited) wraps a `tracing` event in it. Each call site
//! owns its limiter (a field of the component that logs), so two sensors never silence each
//! other.

use std::fmt;
use std::time::{Duration, Instant};

/// Shortest time between two lines of one repeated problem.
pub const LOG_INTERVAL: Duration = Duration::from_secs(5);

/// Whether an occurrence of one repeated problem is logged now. See the module documentation.
#[derive(Debug, Clone)]
pub struct LogLimiter {
    interval: Duration,
    /// When the last line was logged.
    last_logged: Option<Instant>,
    /// Occurrences since that line that were not logged.
    suppressed: u64,
}

/// The unlogged repeats a line stands for; displays as the suffix of that line (empty when
/// there were none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repeats {
    /// Occurrences not logged since the previous line.
    pub count: u64,
    /// Time since the previous line.
    pub over: Duration,
}

impl fmt::Display for Repeats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.count == 0 {
            return Ok(());
        }
        let times = if self.count == 1 { "time" } else { "times" };
        let s = self.over.as_secs_f64();
        // Whole seconds once it is a few of them; tenths below (a test's short interval).
        if s >= 3.0 {
            write!(f, " (repeated {} {times} in the last {s:.0} s)", self.count)
        } else {
            write!(f, " (repeated {} {times} in the last {s:.1} s)", self.count)
        }
    }
}

impl Default for LogLimiter {
    fn default() -> Self {
        Self::new(LOG_INTERVAL)
    }
}

impl LogLimiter {
    /// A limiter that lets one line through per `interval`.
    #[must_use]
    pub const fn new(interval: Duration) -> Self {
        Self {
            interval,
            last_logged: None,
            suppressed: 0,
        }
    }

    /// Counts one occurrence at `now`. `Some` when it is to be logged, carrying the repeats
    /// that were not logged since the previous line; `None` when it is only counted.
    pub fn admit(&mut self, now: Instant) -> Option<Repeats> {
        match self.last_logged {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                self.suppressed += 1;
                None
            }
            last => {
                let repeats = Repeats {
                    count: std::mem::take(&mut self.suppressed),
                    over: last.map_or(Duration::ZERO, |l| now.saturating_duration_since(l)),
                };
                self.last_logged = Some(now);
                Some(repeats)
            }
        }
    }

    /// Occurrences counted but not logged yet (the next line reports them).
    #[must_use]
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }
}

/// Logs a `tracing` event through a [`LogLimiter`]:
/// `log_limited!(limiter, Level::WARN, "message", field = %value, …)`. The message comes first
/// (it gets the `(repeated N times in the last T s)` suffix), the fields after it, without a
/// trailing comma.
#[macro_export]
macro_rules! log_limited {
    ($limiter:expr, $level:expr, $message:expr $(, $($field:tt)+)?) => {
        if let Some(repeats) = $limiter.admit(::std::time::Instant::now()) {
            ::tracing::event!($level, $($($field)+ ,)? "{}{}", $message, repeats);
        }
    };
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn the_first_occurrence_is_logged_and_repeats_within_the_interval_are_counted() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(Duration::from_secs(5));
        let first = l.admit(t0).map(|r| r.count);
        assert_eq!(first, Some(0));
        for ms in 1..=311 {
            assert_eq!(l.admit(at(t0, ms * 10)), None);
        }
        assert_eq!(l.suppressed(), 311);
        let summary = l.admit(at(t0, 5_000));
        assert_eq!(
            summary,
            Some(Repeats {
                count: 311,
                over: Duration::from_secs(5)
            })
        );
        assert_eq!(l.suppressed(), 0);
    }

    #[test]
    fn a_flood_gives_one_line_per_interval_whatever_its_rate() {
        let t0 = Instant::now();
        let mut l = LogLimiter::default();
        // 60 s of an event every millisecond.
        let lines: Vec<Repeats> = (0..60_000).filter_map(|ms| l.admit(at(t0, ms))).collect();
        assert_eq!(lines.len(), 12, "one line per 5 s");
        assert_eq!(lines[0].count, 0);
        assert!(lines[1..].iter().all(|r| r.count == 4_999), "{lines:?}");
        let logged_or_counted: u64 =
            lines.iter().map(|r| r.count + 1).sum::<u64>() + l.suppressed();
        assert_eq!(
            logged_or_counted, 60_000,
            "every occurrence is logged or counted"
        );
    }

    #[test]
    fn a_rare_problem_is_logged_every_time_without_a_suffix() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(Duration::from_secs(5));
        for k in 0..4 {
            let r = l.admit(at(t0, k * 6_000)).unwrap();
            assert_eq!(r.count, 0);
            assert_eq!(r.to_string(), "");
        }
    }

    #[test]
    fn the_suffix_reads_as_a_sentence() {
        let r = Repeats {
            count: 312,
            over: Duration::from_millis(5_004),
        };
        assert_eq!(r.to_string(), " (repeated 312 times in the last 5 s)");
        let r = Repeats {
            count: 1,
            over: Duration::from_millis(300),
        };
        assert_eq!(r.to_string(), " (repeated 1 time in the last 0.3 s)");
    }

    #[test]
    fn a_clock_going_backwards_never_panics_and_counts() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut l = LogLimiter::default();
        assert!(l.admit(t0).is_some());
        assert!(l.admit(t0 - Duration::from_secs(3)).is_none());
        assert_eq!(l.suppressed(), 1);
    }
}
