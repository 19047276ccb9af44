//! Pure frame sampling for camera streams: one frame per `interval_ms` (the first frame at or
//! after each tick; the source's queue keeps only the latest frame, so that is also the newest
//! one available), with the frames passed over counted.

/// Picks one frame per interval.
#[derive(Debug, Clone)]
pub struct FrameSampler {
    interval_ns: u64,
    next_due_ns: Option<u64>,
    next_window_seq: u64,
    skipped: u64,
}

impl FrameSampler {
    /// A sampler taking one frame every `interval_ms` (0 takes every frame).
    #[must_use]
    pub fn new(interval_ms: u64) -> Self {
        Self {
            interval_ns: interval_ms.saturating_mul(1_000_000),
            next_due_ns: None,
            next_window_seq: 0,
            skipped: 0,
        }
    }

    /// Offers a frame captured at `t_mono_ns`; returns the window number when it is taken.
    pub fn offer(&mut self, t_mono_ns: u64) -> Option<u64> {
        if let Some(due) = self.next_due_ns {
            if t_mono_ns < due {
                self.skipped += 1;
                return None;
            }
        }
        let due = self.next_due_ns.unwrap_or(t_mono_ns);
        // Keep the ticks on a grid, but never schedule into the past after a pause.
        let mut next = due.saturating_add(self.interval_ns);
        if next <= t_mono_ns {
            next = t_mono_ns.saturating_add(self.interval_ns);
        }
        self.next_due_ns = Some(next);
        let seq = self.next_window_seq;
        self.next_window_seq += 1;
        Some(seq)
    }

    /// Frames passed over so far.
    #[must_use]
    pub fn skipped(&self) -> u64 {
        self.skipped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn one_frame_per_interval_is_taken() {
        let mut s = FrameSampler::new(100);
        // 30 fps for one second.
        let taken: Vec<u64> = (0..30u64)
            .filter_map(|i| s.offer(i * 100 * MS / 3).map(|_| i))
            .collect();
        assert_eq!(taken, vec![0, 3, 6, 9, 12, 15, 18, 21, 24, 27]);
        assert_eq!(s.skipped(), 20);
    }

    #[test]
    fn a_pause_does_not_make_a_burst() {
        let mut s = FrameSampler::new(100);
        assert_eq!(s.offer(0), Some(0));
        assert_eq!(s.offer(1000 * MS), Some(1));
        assert_eq!(s.offer(1050 * MS), None);
        assert_eq!(s.offer(1100 * MS), Some(2));
    }

    proptest! {
        #[test]
        fn at_most_one_frame_is_taken_per_interval_on_average(
            steps in proptest::collection::vec(1u64..300, 1..200),
            interval_ms in 1u64..200,
        ) {
            let mut s = FrameSampler::new(interval_ms);
            let mut t = 0;
            let mut n = 0u64;
            for step in &steps {
                t += step * MS / 3;
                if let Some(seq) = s.offer(t) {
                    prop_assert_eq!(seq, n);
                    n += 1;
                }
                // Ticks stay on a grid from the first frame: never more than one per interval.
                prop_assert!(n <= t / (interval_ms * MS) + 1);
            }
            prop_assert!(n >= 1);
            prop_assert_eq!(n + s.skipped(), steps.len() as u64);
        }
    }
}
