//! Capture time: monotonic nanoseconds plus UTC nanoseconds derived from one offset taken at start,
//! so that a wall-clock step never reorders windows (DESIGN.md "Time").

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// When a sample or frame was captured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Timestamp {
    /// Nanoseconds on the daemon's monotonic clock (since the [`Clock`] was created).
    pub mono_ns: u64,
    /// Nanoseconds since the Unix epoch, UTC, from the offset fixed when the [`Clock`] was created.
    pub utc_ns: i64,
}

impl Timestamp {
    /// This timestamp moved forward by `delta_ns`.
    #[must_use]
    pub fn plus_ns(self, delta_ns: u64) -> Self {
        Self {
            mono_ns: self.mono_ns.saturating_add(delta_ns),
            utc_ns: self
                .utc_ns
                .saturating_add(i64::try_from(delta_ns).unwrap_or(i64::MAX)),
        }
    }
}

/// Maps the monotonic clock to UTC with a single offset captured at construction.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: Instant,
    utc_origin_ns: i64,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    /// Fixes the monotonic→UTC offset now.
    #[must_use]
    pub fn new() -> Self {
        let origin = Instant::now();
        let utc_origin_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Self {
            origin,
            utc_origin_ns,
        }
    }

    /// The current time.
    #[must_use]
    pub fn now(&self) -> Timestamp {
        self.at_instant(Instant::now())
    }

    /// The timestamp of a monotonic instant (instants before the origin map to the origin).
    #[must_use]
    pub fn at_instant(&self, instant: Instant) -> Timestamp {
        let mono_ns = u64::try_from(instant.saturating_duration_since(self.origin).as_nanos())
            .unwrap_or(u64::MAX);
        self.at_mono_ns(mono_ns)
    }

    /// The timestamp of a point on the daemon's monotonic clock.
    #[must_use]
    pub fn at_mono_ns(&self, mono_ns: u64) -> Timestamp {
        Timestamp {
            mono_ns,
            utc_ns: self
                .utc_origin_ns
                .saturating_add(i64::try_from(mono_ns).unwrap_or(i64::MAX)),
        }
    }

    /// The [`Instant`] of a point on the daemon's monotonic clock, for sleeping until it.
    #[must_use]
    pub fn instant_of(&self, mono_ns: u64) -> Instant {
        self.origin + Duration::from_nanos(mono_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_follows_monotonic_with_one_offset() {
        let clock = Clock::new();
        let a = clock.at_mono_ns(1_000);
        let b = clock.at_mono_ns(5_000);
        assert_eq!(b.utc_ns - a.utc_ns, 4_000);
        assert_eq!(a.plus_ns(4_000), b);
    }

    #[test]
    fn now_is_monotonic() {
        let clock = Clock::new();
        let a = clock.now();
        let b = clock.now();
        assert!(b >= a);
    }
}
