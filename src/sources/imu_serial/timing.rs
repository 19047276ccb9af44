//! Sample times and sequence numbers for a serial IMU (pure: no clocks are read here; the driver
//! passes the arrival time of each read).
//!
//! Two sources of time, in order of preference:
//! - **The device's own timestamp** ([`DeviceClock`]): mapped onto the daemon's monotonic clock
//!   by an offset fixed at the first sample, so the device's sample spacing is kept exactly.
//!   The offset is taken again when the device clock jumps (backwards, or forwards by more than
//!   [`DEVICE_JUMP_NS`]): a reset device, a counter that wrapped, an outage.
//! - **Arrival time, smoothed against the nominal rate** ([`ArrivalSmoother`]): sample `k` is at
//!   `origin + k / rate`, and `origin` follows the arrivals slowly, so that serial and scheduling
//!   jitter (USB-UART bridges deliver in bursts every few milliseconds) never becomes sample-time
//!   jitter while a device clock that runs slightly fast or slow is still followed.
//!
//! Either way `seq` counts the samples the device *should* have sent: when samples were lost
//! (a gap in device time, or arrivals far later than the rate predicts) `seq` jumps, and the
//! slot-aligned windower counts the missing slots as gaps instead of shifting time.

use super::protocol::ImuReading;

/// A forward jump of the device clock larger than this (or any backward step) re-anchors it.
pub const DEVICE_JUMP_NS: u64 = 1_000_000_000;

/// Arrivals later than predicted by more than this many sample periods are a gap…
pub const GAP_TOLERANCE_PERIODS: f64 = 4.0;
/// …and by at least this much: below it, lateness is taken for read jitter (USB-UART latency
/// timers and a loaded scheduler delay reads by tens of milliseconds; a few lost frames shorter
/// than this are absorbed as timing drift rather than counted).
pub const GAP_TOLERANCE_MIN_NS: f64 = 50e6;

/// Weight of one observation when the arrival origin follows the arrivals (after the first
/// observations, which are averaged with weight 1/n so that the start converges quickly).
pub const FOLLOW_GAIN: f64 = 0.02;

/// One sample's place in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Samples the device should have sent before this one.
    pub seq: u64,
    /// Capture time on the daemon's monotonic clock, in nanoseconds.
    pub mono_ns: u64,
}

/// Sample times from arrival times: `origin + seq · period`, with `origin` smoothed.
#[derive(Debug, Clone)]
pub struct ArrivalSmoother {
    period_ns: f64,
    tolerance_ns: f64,
    /// Time of `seq` 0, in (fractional) nanoseconds; `None` before the first observation.
    origin_ns: Option<f64>,
    next_seq: u64,
    observations: u64,
    lost: u64,
}

impl ArrivalSmoother {
    /// A smoother for a device sending at `rate_hz` (must be positive and finite).
    #[must_use]
    pub fn new(rate_hz: f64) -> Self {
        let period_ns = 1e9 / rate_hz;
        Self {
            period_ns,
            tolerance_ns: (GAP_TOLERANCE_PERIODS * period_ns).max(GAP_TOLERANCE_MIN_NS),
            origin_ns: None,
            next_seq: 0,
            observations: 0,
            lost: 0,
        }
    }

    /// The `seq` the next sample will get (unless a gap is found).
    #[must_use]
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Samples counted as lost so far.
    #[must_use]
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Continue after samples stamped elsewhere: the next sample is `next_seq`, at about `mono_ns`.
    pub fn resync(&mut self, next_seq: u64, mono_ns: u64) {
        self.next_seq = next_seq;
        self.origin_ns = Some(mono_ns as f64 - next_seq as f64 * self.period_ns);
    }

    /// `count` samples were complete when a read returned at `arrival_ns` (the last of them had
    /// just arrived; the others were waiting in the buffer). Appends their stamps to `out`.
    pub fn observe(&mut self, arrival_ns: u64, count: usize, out: &mut Vec<Stamp>) {
        if count == 0 {
            return;
        }
        let p = self.period_ns;
        let arrival = arrival_ns as f64;
        let last_offset = (count - 1) as f64 * p;
        let origin = match self.origin_ns {
            None => arrival - last_offset - self.next_seq as f64 * p,
            Some(origin) => {
                let predicted = origin + self.next_seq as f64 * p + last_offset;
                let mut error = arrival - predicted;
                if error > self.tolerance_ns {
                    // Fewer samples arrived than the time elapsed holds: the rest were lost.
                    let lost = (error / p).round().max(1.0);
                    self.next_seq += lost as u64;
                    self.lost += lost as u64;
                    error -= lost * p;
                }
                // Follow the arrivals slowly. The step is capped at half a period, so the next
                // sample is always at least half a period after the previous one.
                let gain = FOLLOW_GAIN.max(1.0 / (self.observations + 1) as f64);
                origin + (gain * error).clamp(-p / 2.0, p / 2.0)
            }
        };
        self.origin_ns = Some(origin);
        self.observations += 1;
        for _ in 0..count {
            let t = origin + self.next_seq as f64 * p;
            out.push(Stamp {
                seq: self.next_seq,
                mono_ns: t.max(0.0).round() as u64,
            });
            self.next_seq += 1;
        }
    }
}

/// Where the device clock was pinned to the daemon clock.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    device_ns: u64,
    mono_ns: u64,
    seq: u64,
}

/// Sample times from the device's own timestamps.
#[derive(Debug, Clone)]
pub struct DeviceClock {
    period_ns: f64,
    anchor: Option<Anchor>,
    last_device_ns: u64,
    reanchors: u64,
}

impl DeviceClock {
    /// A device clock for a device sending at `rate_hz` (positive and finite).
    #[must_use]
    pub fn new(rate_hz: f64) -> Self {
        Self {
            period_ns: 1e9 / rate_hz,
            anchor: None,
            last_device_ns: 0,
            reanchors: 0,
        }
    }

    /// Whether a device timestamp has been seen.
    #[must_use]
    pub fn is_anchored(&self) -> bool {
        self.anchor.is_some()
    }

    /// How often the device clock jumped and was pinned again.
    #[must_use]
    pub fn reanchors(&self) -> u64 {
        self.reanchors
    }

    /// Stamps a sample with device time `device_ns` that arrived at about `arrival_ns`.
    /// `previous` is the stamp of the stream's previous sample, if any: the result always
    /// comes after it.
    pub fn stamp(&mut self, device_ns: u64, arrival_ns: u64, previous: Option<Stamp>) -> Stamp {
        let p = self.period_ns;
        let jumped = self.anchor.is_some()
            && (device_ns < self.last_device_ns
                || device_ns - self.last_device_ns > DEVICE_JUMP_NS);
        if jumped {
            self.reanchors += 1;
        }
        self.last_device_ns = device_ns;
        match self.anchor {
            Some(a) if !jumped => {
                let elapsed = device_ns - a.device_ns;
                let mut seq = a.seq + (elapsed as f64 / p).round() as u64;
                let mut mono_ns = a.mono_ns.saturating_add(elapsed);
                if let Some(prev) = previous {
                    // A device sending a little faster than nominal (or repeating a timestamp)
                    // must not collide with the slot before.
                    seq = seq.max(prev.seq + 1);
                    mono_ns = mono_ns.max(prev.mono_ns);
                }
                Stamp { seq, mono_ns }
            }
            _ => {
                // Pin the device clock here. After a jump, the arrivals say how many samples the
                // outage (if it was one) cost.
                let stamp = match previous {
                    None => Stamp {
                        seq: 0,
                        mono_ns: arrival_ns,
                    },
                    Some(prev) => {
                        let mono_ns = arrival_ns.max(prev.mono_ns.saturating_add(p as u64));
                        let steps = ((mono_ns - prev.mono_ns) as f64 / p).round().max(1.0);
                        Stamp {
                            seq: prev.seq + steps as u64,
                            mono_ns,
                        }
                    }
                };
                self.anchor = Some(Anchor {
                    device_ns,
                    mono_ns: stamp.mono_ns,
                    seq: stamp.seq,
                });
                stamp
            }
        }
    }
}

/// Stamps every sample of a serial IMU: device time where the reading has it, otherwise smoothed
/// arrival time (a reading that merely lost its time frame continues the device's spacing).
#[derive(Debug, Clone)]
pub struct SampleClock {
    period_ns: f64,
    device: DeviceClock,
    arrival: ArrivalSmoother,
    previous: Option<Stamp>,
}

impl SampleClock {
    /// A clock for a device sending at `rate_hz` (positive and finite).
    #[must_use]
    pub fn new(rate_hz: f64) -> Self {
        Self {
            period_ns: 1e9 / rate_hz,
            device: DeviceClock::new(rate_hz),
            arrival: ArrivalSmoother::new(rate_hz),
            previous: None,
        }
    }

    /// The last stamp given.
    #[must_use]
    pub fn previous(&self) -> Option<Stamp> {
        self.previous
    }

    /// Samples the arrival smoother counted as lost.
    #[must_use]
    pub fn arrival_lost(&self) -> u64 {
        self.arrival.lost()
    }

    /// How often the device clock was re-anchored.
    #[must_use]
    pub fn device_reanchors(&self) -> u64 {
        self.device.reanchors()
    }

    /// Stamps `readings`, all complete when a read returned at `arrival_ns`; appends one stamp
    /// per reading to `out`.
    pub fn stamp(&mut self, arrival_ns: u64, readings: &[ImuReading], out: &mut Vec<Stamp>) {
        let p = self.period_ns;
        let device_mode =
            self.device.is_anchored() || readings.iter().any(|r| r.device_time_ns.is_some());
        if !device_mode {
            let from = out.len();
            self.arrival.observe(arrival_ns, readings.len(), out);
            self.previous = out.get(from..).and_then(<[Stamp]>::last).copied();
            return;
        }
        let n = readings.len();
        for (i, r) in readings.iter().enumerate() {
            // The samples still behind this one in the same read were sent after it.
            let behind = ((n - 1 - i) as f64 * p) as u64;
            let arrived = arrival_ns.saturating_sub(behind);
            let stamp = match (r.device_time_ns, self.previous) {
                (Some(device_ns), previous) => self.device.stamp(device_ns, arrived, previous),
                (None, Some(prev)) if self.device.is_anchored() => Stamp {
                    seq: prev.seq + 1,
                    mono_ns: prev.mono_ns.saturating_add(p.round() as u64),
                },
                (None, _) => {
                    // Before the first device timestamp: arrival time.
                    if let Some(prev) = self.previous {
                        self.arrival
                            .resync(prev.seq + 1, prev.mono_ns.saturating_add(p as u64));
                    }
                    let mut one = Vec::with_capacity(1);
                    self.arrival.observe(arrived, 1, &mut one);
                    one.first().copied().unwrap_or(Stamp {
                        seq: 0,
                        mono_ns: arrived,
                    })
                }
            };
            self.previous = Some(stamp);
            out.push(stamp);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const RATE_HZ: f64 = 200.0;
    const P: u64 = 5_000_000;

    fn reading(device_time_ns: Option<u64>) -> ImuReading {
        ImuReading {
            device_time_ns,
            ..ImuReading::default()
        }
    }

    /// Feeds `(arrival_ns, count)` reads to a fresh smoother.
    fn smooth(reads: &[(u64, usize)]) -> Vec<Stamp> {
        let mut s = ArrivalSmoother::new(RATE_HZ);
        let mut out = Vec::new();
        for &(t, n) in reads {
            s.observe(t, n, &mut out);
        }
        out
    }

    #[test]
    fn evenly_arriving_samples_are_one_period_apart() {
        let reads: Vec<(u64, usize)> = (0..100).map(|k| (1_000_000_000 + k * P, 1)).collect();
        let out = smooth(&reads);
        for (k, s) in out.iter().enumerate() {
            assert_eq!(s.seq, k as u64);
            assert_eq!(s.mono_ns, 1_000_000_000 + k as u64 * P);
        }
    }

    #[test]
    fn a_burst_is_back_dated_from_its_last_sample() {
        let out = smooth(&[(100 * P, 4)]);
        let times: Vec<u64> = out.iter().map(|s| s.mono_ns).collect();
        assert_eq!(times, vec![97 * P, 98 * P, 99 * P, 100 * P]);
    }

    #[test]
    fn a_late_read_carrying_every_sample_is_not_a_gap() {
        // 40 ms late, but the read brings all 8 samples sent meanwhile.
        let mut reads: Vec<(u64, usize)> = (0..50).map(|k| (k * P, 1)).collect();
        reads.push((57 * P, 8));
        reads.extend((58..80).map(|k| (k * P, 1)));
        let out = smooth(&reads);
        let seqs: Vec<u64> = out.iter().map(|s| s.seq).collect();
        assert_eq!(seqs, (0..80).collect::<Vec<_>>());
    }

    #[test]
    fn samples_missing_for_longer_than_the_tolerance_make_seq_jump() {
        // 200 samples (1 s) never arrive.
        let mut reads: Vec<(u64, usize)> = (0..100).map(|k| (k * P, 1)).collect();
        reads.extend((300..400).map(|k| (k * P, 1)));
        let mut s = ArrivalSmoother::new(RATE_HZ);
        let mut out = Vec::new();
        for &(t, n) in &reads {
            s.observe(t, n, &mut out);
        }
        assert_eq!(out[99].seq, 99);
        assert_eq!(out[100].seq, 300);
        assert_eq!(out[100].mono_ns, 300 * P);
        assert_eq!(s.lost(), 200);
    }

    #[test]
    fn a_device_slightly_slower_than_nominal_is_followed_without_gaps() {
        // 0.5 % slow: 200 Hz nominal, 199 Hz real, over 60 s.
        let real_p = 1e9 / 199.0;
        let reads: Vec<(u64, usize)> = (0..12_000)
            .map(|k| ((k as f64 * real_p) as u64, 1))
            .collect();
        let out = smooth(&reads);
        assert_eq!(out.last().unwrap().seq, 11_999, "no false gap");
        let last = out.last().unwrap().mono_ns as f64;
        let real = 11_999.0 * real_p;
        assert!(
            (last - real).abs() < 5e6,
            "{} ms behind",
            (real - last) / 1e6
        );
    }

    #[test]
    fn device_time_keeps_the_device_spacing_despite_arrival_jitter() {
        let mut c = SampleClock::new(RATE_HZ);
        let mut out = Vec::new();
        for k in 0..20u64 {
            let jitter = (k % 3) * 7_000_000;
            c.stamp(
                1_000_000_000 + k * P + jitter,
                &[reading(Some(50_000 + k * P))],
                &mut out,
            );
        }
        for (k, s) in out.iter().enumerate() {
            assert_eq!(s.seq, k as u64);
            assert_eq!(s.mono_ns, 1_000_000_000 + k as u64 * P);
        }
    }

    #[test]
    fn a_gap_in_device_time_is_a_seq_jump() {
        let mut c = SampleClock::new(RATE_HZ);
        let mut out = Vec::new();
        let times = [0, P, 2 * P, 6 * P, 7 * P];
        let batch: Vec<ImuReading> = times.iter().map(|&t| reading(Some(t))).collect();
        c.stamp(7 * P, &batch, &mut out);
        let seqs: Vec<u64> = out.iter().map(|s| s.seq).collect();
        assert_eq!(seqs, vec![0, 1, 2, 6, 7]);
        assert_eq!(out[3].mono_ns - out[0].mono_ns, 6 * P);
    }

    #[test]
    fn a_device_clock_jump_reanchors_at_arrival_and_counts_the_outage() {
        let mut c = SampleClock::new(RATE_HZ);
        let mut out = Vec::new();
        for k in 0..10 {
            c.stamp(k * P, &[reading(Some(1_000_000 + k * P))], &mut out);
        }
        // The device rebooted (its clock restarts near 0) after a 2 s outage.
        c.stamp(2_000_000_000 + 9 * P, &[reading(Some(3_000))], &mut out);
        c.stamp(
            2_000_000_000 + 10 * P,
            &[reading(Some(3_000 + P))],
            &mut out,
        );
        assert_eq!(c.device_reanchors(), 1);
        assert_eq!(out[10].seq, 9 + 400);
        assert_eq!(out[10].mono_ns, 2_000_000_000 + 9 * P);
        assert_eq!(out[11].seq, out[10].seq + 1);
        assert_eq!(out[11].mono_ns, out[10].mono_ns + P);
    }

    #[test]
    fn a_lost_time_frame_continues_the_device_spacing() {
        let mut c = SampleClock::new(RATE_HZ);
        let mut out = Vec::new();
        let batch = [reading(Some(0)), reading(None), reading(Some(2 * P))];
        c.stamp(10 * P, &batch, &mut out);
        let seqs: Vec<u64> = out.iter().map(|s| s.seq).collect();
        assert_eq!(seqs, vec![0, 1, 2]);
        assert_eq!(out[1].mono_ns - out[0].mono_ns, P);
        assert_eq!(out[2].mono_ns - out[0].mono_ns, 2 * P);
    }

    proptest! {
        /// Jittery, bursty arrivals of every sample: consecutive seqs, strictly increasing times
        /// at least half a period apart, and times close to the true sending times.
        #[test]
        fn jittery_arrivals_give_smooth_monotonic_times(
            jitter_ms in prop::collection::vec(0u64..30, 200..1500),
            burst in prop::collection::vec(1usize..6, 200..1500),
        ) {
            let mut s = ArrivalSmoother::new(RATE_HZ);
            let mut out = Vec::new();
            let n = jitter_ms.len();
            let mut k = 0usize;
            let mut b = 0usize;
            while k < n {
                let count = burst[b % burst.len()].min(n - k);
                b += 1;
                let last = k + count - 1;
                // Sent at last·P, read up to 30 ms later.
                let arrival = 1_000_000_000 + last as u64 * P + jitter_ms[last] * 1_000_000;
                s.observe(arrival, count, &mut out);
                k += count;
            }
            prop_assert_eq!(out.len(), n);
            for (i, w) in out.windows(2).enumerate() {
                prop_assert_eq!(w[1].seq, w[0].seq + 1, "false gap at {}", i);
                prop_assert!(w[1].mono_ns >= w[0].mono_ns + P / 2, "not monotonic at {}", i);
            }
            // Jitter of up to 6 periods is absorbed: once settled, the spacing stays within
            // 30 % of the period.
            let settled = &out[n / 2..];
            for w in settled.windows(2) {
                let d = w[1].mono_ns as i64 - w[0].mono_ns as i64;
                prop_assert!((d - P as i64).abs() <= P as i64 * 3 / 10, "spacing {} ns", d);
            }
            for (i, st) in out.iter().enumerate() {
                let sent = 1_000_000_000 + i as u64 * P;
                prop_assert!(st.mono_ns + 20_000_000 >= sent && st.mono_ns <= sent + 40_000_000,
                    "sample {} at {} ns, sent at {} ns", i, st.mono_ns, sent);
            }
        }

        /// A real gap among jittery arrivals becomes a seq jump of the right size.
        #[test]
        fn a_real_gap_becomes_a_seq_jump_of_its_length(
            gap in 20u64..2000,
            at in 100usize..400,
            jitter_ms in prop::collection::vec(0u64..10, 600),
        ) {
            let mut s = ArrivalSmoother::new(RATE_HZ);
            let mut out = Vec::new();
            for (i, j) in jitter_ms.iter().enumerate() {
                let sent = if i < at { i as u64 } else { i as u64 + gap };
                s.observe(sent * P + j * 1_000_000, 1, &mut out);
            }
            let jump = out[at].seq - out[at - 1].seq - 1;
            prop_assert!(jump.abs_diff(gap) <= 2, "jump {} for a gap of {}", jump, gap);
            for w in out.windows(2) {
                prop_assert!(w[1].mono_ns > w[0].mono_ns);
            }
        }
    }
}
