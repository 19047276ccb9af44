//! Pure windowing of a sample stream: fixed-length windows every hop, with capture times and the
//! number of samples missing inside each window. No clocks, no channels: `push` in, windows out.

pub mod frames;

use std::collections::VecDeque;

pub use frames::FrameSampler;

use crate::config::limits::{number, Unit, MAX_HOP_SAMPLES, MAX_WINDOW_SAMPLES};
use crate::time::Timestamp;

/// Invalid window parameters.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WindowError {
    /// The rate is not a positive finite number.
    #[error("a sample rate of {} Hz is not a positive number", number(*.0))]
    BadRate(f64),
    /// A length rounds to zero samples.
    #[error("{what} = {ms} ms holds no sample at {} Hz (one sample every {} ms)", number(*rate_hz), number(1000.0 / rate_hz))]
    TooShort {
        /// `window_ms` or `hop_ms`.
        what: &'static str,
        /// The length.
        ms: u64,
        /// The rate.
        rate_hz: f64,
    },
    /// A length holds more samples than [`MAX_WINDOW_SAMPLES`] (a window, held in memory) or
    /// [`MAX_HOP_SAMPLES`] (a hop).
    #[error(
        "{what} = {} is {} samples at {} Hz, more than the {max} samples allowed (at most {} at this rate): a window's samples are held in memory until it is cut",
        Unit::Ms.show(*ms as f64), number(*samples), number(*rate_hz), Unit::Ms.show((*max as f64 * 1000.0 / rate_hz).floor())
    )]
    TooLong {
        /// `window_ms` or `hop_ms`.
        what: &'static str,
        /// The length.
        ms: u64,
        /// The rate.
        rate_hz: f64,
        /// Samples the length holds at the rate.
        samples: f64,
        /// The most samples allowed.
        max: u64,
    },
}

/// Whole samples in `ms` of `what` (`"window_ms"` or `"hop_ms"`) at `sample_rate_hz`: at least
/// one, and at most [`MAX_WINDOW_SAMPLES`] for a window (held in memory) or [`MAX_HOP_SAMPLES`]
/// for a hop.
///
/// # Errors
/// [`WindowError`] for a non-positive rate or a length out of those bounds.
pub fn samples_in(what: &'static str, ms: u64, sample_rate_hz: f64) -> Result<usize, WindowError> {
    if !(sample_rate_hz.is_finite() && sample_rate_hz > 0.0) {
        return Err(WindowError::BadRate(sample_rate_hz));
    }
    let max = if what == "window_ms" {
        MAX_WINDOW_SAMPLES
    } else {
        MAX_HOP_SAMPLES
    };
    let n = (ms as f64 * sample_rate_hz / 1000.0).round();
    if n < 1.0 {
        Err(WindowError::TooShort {
            what,
            ms,
            rate_hz: sample_rate_hz,
        })
    } else if n > max as f64 {
        Err(WindowError::TooLong {
            what,
            ms,
            rate_hz: sample_rate_hz,
            samples: n,
            max,
        })
    } else {
        Ok(n as usize)
    }
}

/// Window geometry in samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowSpec {
    /// Samples per window.
    pub window_len: usize,
    /// Samples between window starts.
    pub hop_len: usize,
    /// Nominal rate.
    pub sample_rate_hz: f64,
}

impl WindowSpec {
    /// Geometry for `window_ms`/`hop_ms` at `sample_rate_hz` (lengths rounded to whole samples).
    ///
    /// # Errors
    /// [`WindowError`] for a non-positive rate, a length under one sample, or a window beyond
    /// [`MAX_WINDOW_SAMPLES`] (so that a windower never allocates beyond it).
    pub fn from_ms(window_ms: u64, hop_ms: u64, sample_rate_hz: f64) -> Result<Self, WindowError> {
        if !(sample_rate_hz.is_finite() && sample_rate_hz > 0.0) {
            return Err(WindowError::BadRate(sample_rate_hz));
        }
        Ok(Self {
            window_len: samples_in("window_ms", window_ms, sample_rate_hz)?,
            hop_len: samples_in("hop_ms", hop_ms, sample_rate_hz)?,
            sample_rate_hz,
        })
    }

    fn period_ns(&self) -> u64 {
        (1e9 / self.sample_rate_hz).round() as u64
    }
}

/// A window of consecutive sample slots.
#[derive(Debug, Clone, PartialEq)]
pub struct Window<T> {
    /// Position of this window in its stream (0, 1, 2, …).
    pub seq: u64,
    /// Capture time of the window's first slot.
    pub start: Timestamp,
    /// Capture time just after the window's last slot.
    pub end: Timestamp,
    /// One value per slot (`window_len` of them); a missing sample holds the value before it
    /// (or, at the start, the first value present).
    pub samples: Vec<T>,
    /// Slots that had no sample (filled as above).
    pub gaps: u64,
    /// Nominal rate of the samples.
    pub sample_rate_hz: f64,
}

/// Cuts a stream of samples into windows of sample *slots*: window k covers the samples with
/// `seq` in `[origin + k·hop, origin + k·hop + len)`, whether or not each one arrived, so that a
/// lost sample never shifts time. Missing samples are counted as gaps.
#[derive(Debug)]
pub struct Windower<T> {
    spec: WindowSpec,
    buf: VecDeque<(u64, Timestamp, T)>,
    next_start: Option<u64>,
    last_sample_seq: Option<u64>,
    next_window_seq: u64,
    restarts: u64,
}

impl<T: Copy> Windower<T> {
    /// A windower with the given geometry.
    #[must_use]
    pub fn new(spec: WindowSpec) -> Self {
        Self {
            spec,
            buf: VecDeque::with_capacity(spec.window_len),
            next_start: None,
            last_sample_seq: None,
            next_window_seq: 0,
            restarts: 0,
        }
    }

    /// The geometry.
    #[must_use]
    pub fn spec(&self) -> WindowSpec {
        self.spec
    }

    /// How often a gap of a whole window or more made the windower start over.
    #[must_use]
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// Adds one sample (`seq` counts the samples the device should have sent, so a jump is a
    /// gap) and appends every window it completes to `out`. A gap of a whole window or more
    /// starts over at this sample; an older or repeated `seq` is ignored.
    pub fn push(&mut self, seq: u64, t: Timestamp, value: T, out: &mut Vec<Window<T>>) {
        let len = self.spec.window_len as u64;
        match self.last_sample_seq {
            Some(last) if seq <= last => return,
            Some(last) if seq - last > len => {
                self.buf.clear();
                self.next_start = Some(seq);
                self.restarts += 1;
            }
            _ => {}
        }
        self.last_sample_seq = Some(seq);
        let mut start = *self.next_start.get_or_insert(seq);
        // Windows that end before this sample are complete (their last slots are missing).
        while seq >= start + len {
            self.emit(start, out);
            start += self.spec.hop_len as u64;
        }
        self.next_start = Some(start);
        if seq < start {
            // Between windows (hop longer than the window).
            return;
        }
        self.buf.push_back((seq, t, value));
        if seq + 1 == start + len {
            self.emit(start, out);
            self.next_start = Some(start + self.spec.hop_len as u64);
        }
        let keep_from = self.next_start.unwrap_or(0);
        while self.buf.front().is_some_and(|(s, _, _)| *s < keep_from) {
            self.buf.pop_front();
        }
    }

    /// Adds consecutive samples, the first at `first_seq`, with the windows they complete
    /// appended to `out`: the same windows as [`push`](Self::push) of each sample in turn, but
    /// once the stream is contiguous only the checks a consecutive sample needs are made
    /// (a 48 kHz microphone hands over 48 000 samples a second).
    pub fn push_block(
        &mut self,
        first_seq: u64,
        samples: impl IntoIterator<Item = (Timestamp, T)>,
        out: &mut Vec<Window<T>>,
    ) {
        let mut samples = samples.into_iter();
        let mut seq = first_seq;
        // Until the sample before `seq` has been taken (a start, a restart, a jump or a repeat),
        // one at a time.
        while self.last_sample_seq.is_none_or(|last| last + 1 != seq) || self.next_start.is_none() {
            let Some((t, value)) = samples.next() else {
                return;
            };
            self.push(seq, t, value, out);
            seq += 1;
        }
        let (len, hop) = (self.spec.window_len as u64, self.spec.hop_len as u64);
        let mut start = self.next_start.unwrap_or(seq);
        // `push` leaves `start + len > last + 1`: a consecutive sample completes no window that
        // ends before it, so only the window it ends needs looking at.
        let mut last = None;
        for (t, value) in samples {
            if seq >= start {
                self.buf.push_back((seq, t, value));
                if seq + 1 == start + len {
                    self.emit(start, out);
                    start += hop;
                    while self.buf.front().is_some_and(|(s, _, _)| *s < start) {
                        self.buf.pop_front();
                    }
                }
            }
            last = Some(seq);
            seq += 1;
        }
        if last.is_some() {
            self.last_sample_seq = last;
        }
        self.next_start = Some(start);
    }

    fn emit(&mut self, start: u64, out: &mut Vec<Window<T>>) {
        let len = self.spec.window_len;
        let end = start + len as u64;
        // The common case, no sample missing: the window is one run of the buffer (its seqs
        // strictly increase, so first == start and last == end - 1 means every slot is there).
        let first = self.buf.partition_point(|(s, _, _)| *s < start);
        let last = (first + len).checked_sub(1).and_then(|i| self.buf.get(i));
        if let (Some(&(s0, t0, _)), Some(&(s1, t1, _))) = (self.buf.get(first), last) {
            if s0 == start && s1 == end - 1 {
                let samples = self.buf.range(first..first + len).map(|e| e.2).collect();
                let seq = self.next_window_seq;
                self.next_window_seq += 1;
                out.push(Window {
                    seq,
                    start: t0,
                    end: t1.plus_ns(self.spec.period_ns()),
                    samples,
                    gaps: 0,
                    sample_rate_hz: self.spec.sample_rate_hz,
                });
                return;
            }
        }
        let mut present = self
            .buf
            .iter()
            .filter(|(s, _, _)| *s >= start && *s < end)
            .peekable();
        let Some(&&(first_seq, first_t, first_v)) = present.peek() else {
            return;
        };
        let period = self.spec.period_ns();
        let mut samples = Vec::with_capacity(len);
        let mut held = first_v;
        let mut last = (first_seq, first_t);
        let mut found = 0u64;
        for slot in start..end {
            if let Some(&&(s, t, v)) = present.peek() {
                if s == slot {
                    held = v;
                    last = (s, t);
                    found += 1;
                    present.next();
                }
            }
            samples.push(held);
        }
        let before = (first_seq - start) * period;
        let after = (end - last.0) * period;
        let seq = self.next_window_seq;
        self.next_window_seq += 1;
        out.push(Window {
            seq,
            start: Timestamp {
                mono_ns: first_t.mono_ns.saturating_sub(before),
                utc_ns: first_t.utc_ns - i64::try_from(before).unwrap_or(0),
            },
            end: last.1.plus_ns(after),
            samples,
            gaps: len as u64 - found,
            sample_rate_hz: self.spec.sample_rate_hz,
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ts(ns: u64) -> Timestamp {
        Timestamp {
            mono_ns: ns,
            utc_ns: ns as i64 + 1_000,
        }
    }

    fn feed(w: &mut Windower<u64>, seqs: impl IntoIterator<Item = u64>) -> Vec<Window<u64>> {
        let mut out = Vec::new();
        for s in seqs {
            w.push(s, ts(s * 10), s, &mut out);
        }
        out
    }

    #[test]
    fn spec_rounds_lengths_to_samples() {
        let s = WindowSpec::from_ms(5000, 1000, 200.0).unwrap();
        assert_eq!((s.window_len, s.hop_len), (1000, 200));
        assert!(WindowSpec::from_ms(0, 1000, 200.0).is_err());
        assert!(WindowSpec::from_ms(1000, 1000, f64::NAN).is_err());
    }

    #[test]
    fn a_window_beyond_memory_is_refused_not_allocated() {
        // #14: 1e11 ms and u64::MAX ms at 200 Hz made the windower thread panic (capacity
        // overflow) or abort (allocation failure) at its first sample.
        for ms in [100_000_000_000, u64::MAX] {
            let e = WindowSpec::from_ms(ms, 1000, 200.0).unwrap_err();
            assert!(
                matches!(
                    e,
                    WindowError::TooLong {
                        what: "window_ms",
                        ..
                    }
                ),
                "{e}"
            );
        }
        let e = WindowSpec::from_ms(5000, u64::MAX, 200.0).unwrap_err();
        assert!(
            matches!(e, WindowError::TooLong { what: "hop_ms", .. }),
            "{e}"
        );
        // The largest window allowed is accepted.
        let max_ms = MAX_WINDOW_SAMPLES * 1000 / 400;
        assert_eq!(
            WindowSpec::from_ms(max_ms, 1000, 400.0).unwrap().window_len as u64,
            MAX_WINDOW_SAMPLES
        );
        let e = WindowSpec::from_ms(5000, 1000, 1e-300)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "window_ms = 5000 ms holds no sample at 1e-300 Hz (one sample every 1e303 ms)"
        );
    }

    #[test]
    fn a_window_without_gaps_is_timed_by_its_first_and_last_samples() {
        let spec = WindowSpec {
            window_len: 4,
            hop_len: 3,
            sample_rate_hz: 1e8,
        };
        let mut w = Windower::new(spec);
        let out = feed(&mut w, 5..15);
        assert_eq!(out.len(), 3);
        for (k, win) in out.iter().enumerate() {
            let first = 5 + 3 * k as u64;
            assert_eq!(win.samples, (first..first + 4).collect::<Vec<_>>());
            assert_eq!(win.start, ts(first * 10));
            // One period (10 ns at 1e8 Hz) after the last sample.
            assert_eq!(win.end, ts((first + 3) * 10 + 10));
            assert_eq!(win.gaps, 0);
        }
        // The same geometry with one sample missing takes the gap-filling path and agrees on
        // the times of the slots around the gap.
        let mut w = Windower::new(spec);
        let out = feed(&mut w, (5..15).filter(|&s| s != 6));
        assert_eq!(out[0].samples, vec![5, 5, 7, 8]);
        assert_eq!((out[0].start, out[0].end, out[0].gaps), (ts(50), ts(90), 1));
        assert_eq!(out[1].start, ts(80));
    }

    #[test]
    fn window_emits_when_full_then_every_hop() {
        let spec = WindowSpec {
            window_len: 5,
            hop_len: 2,
            sample_rate_hz: 1e8,
        };
        let mut w = Windower::new(spec);
        let out = feed(&mut w, 0..11);
        let starts: Vec<u64> = out.iter().map(|w| w.samples[0]).collect();
        assert_eq!(starts, vec![0, 2, 4, 6]);
        assert_eq!(out[1].samples, vec![2, 3, 4, 5, 6]);
        assert_eq!(out[1].seq, 1);
        assert_eq!(out[1].start, ts(20));
        assert_eq!(out[1].end, ts(70));
        assert!(out.iter().all(|w| w.gaps == 0));
    }

    #[test]
    fn hop_longer_than_window_skips_samples() {
        let spec = WindowSpec {
            window_len: 2,
            hop_len: 5,
            sample_rate_hz: 1e8,
        };
        let mut w = Windower::new(spec);
        let out = feed(&mut w, 0..12);
        let firsts: Vec<u64> = out.iter().map(|w| w.samples[0]).collect();
        assert_eq!(firsts, vec![0, 5, 10]);
    }

    #[test]
    fn gaps_inside_a_window_are_counted() {
        let spec = WindowSpec {
            window_len: 4,
            hop_len: 4,
            sample_rate_hz: 1e8,
        };
        let mut w = Windower::new(spec);
        let out = feed(&mut w, [0, 1, 3, 4, 5, 6, 7, 8]);
        // The lost sample 2 keeps its slot: time does not shift, the value before it is held.
        assert_eq!(out[0].samples, vec![0, 1, 1, 3]);
        assert_eq!(out[0].gaps, 1);
        assert_eq!(out[1].samples, vec![4, 5, 6, 7]);
        assert_eq!(out[1].gaps, 0);
        assert_eq!(out[1].start, ts(40));
    }

    #[test]
    fn missing_last_slots_complete_the_window_when_a_later_sample_arrives() {
        let spec = WindowSpec {
            window_len: 4,
            hop_len: 1,
            sample_rate_hz: 1e8,
        };
        let mut w = Windower::new(spec);
        let out = feed(&mut w, [0, 1, 2, 6]);
        let got: Vec<(Vec<u64>, u64)> = out.iter().map(|w| (w.samples.clone(), w.gaps)).collect();
        assert_eq!(
            got,
            vec![
                (vec![0, 1, 2, 2], 1),
                (vec![1, 2, 2, 2], 2),
                (vec![2, 2, 2, 2], 3),
                (vec![6, 6, 6, 6], 3),
            ]
        );
        assert_eq!(out[0].end, ts(40));
        assert_eq!(out[3].start, ts(30));
    }

    #[test]
    fn a_gap_of_a_whole_window_starts_over() {
        let spec = WindowSpec {
            window_len: 3,
            hop_len: 1,
            sample_rate_hz: 1e8,
        };
        let mut w = Windower::new(spec);
        let out = feed(&mut w, [0, 1, 10, 11, 12]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].samples, vec![10, 11, 12]);
        assert_eq!(w.restarts(), 1);
    }

    #[test]
    fn repeated_or_older_samples_are_ignored() {
        let spec = WindowSpec {
            window_len: 2,
            hop_len: 2,
            sample_rate_hz: 1e8,
        };
        let mut w = Windower::new(spec);
        let out = feed(&mut w, [0, 0, 1, 1, 2, 3]);
        assert_eq!(
            out.iter().map(|w| w.samples.clone()).collect::<Vec<_>>(),
            vec![vec![0, 1], vec![2, 3]]
        );
    }

    #[test]
    fn a_block_gives_the_windows_of_its_samples_pushed_one_by_one() {
        let spec = WindowSpec {
            window_len: 4,
            hop_len: 3,
            sample_rate_hz: 1e8,
        };
        let mut one_by_one = Windower::new(spec);
        let expected = feed(&mut one_by_one, (0..6).chain(9..20));
        let mut blocks = Windower::new(spec);
        let mut got = Vec::new();
        blocks.push_block(0, (0..6).map(|s| (ts(s * 10), s)), &mut got);
        blocks.push_block(9, (9..20).map(|s| (ts(s * 10), s)), &mut got);
        assert_eq!(got, expected);
        assert_eq!(got.len(), 6);
    }

    proptest! {
        #[test]
        fn blocks_and_single_samples_give_the_same_windows(
            // (seq jump before the block, block length)
            blocks in proptest::collection::vec((0u64..30, 0usize..40), 0..40),
            window_len in 1usize..25,
            hop_len in 1usize..25,
        ) {
            let spec = WindowSpec { window_len, hop_len, sample_rate_hz: 1e8 };
            let mut one_by_one = Windower::new(spec);
            let mut by_block = Windower::new(spec);
            let (mut expected, mut got) = (Vec::new(), Vec::new());
            let mut next: u64 = 0;
            for (jump, n) in blocks {
                // A jump of 0..4 goes back (a repeat), 5 is consecutive, more is a gap.
                let first = (next + jump).saturating_sub(5);
                let seqs = first..first + n as u64;
                for s in seqs.clone() {
                    one_by_one.push(s, ts(s * 10), s, &mut expected);
                }
                by_block.push_block(first, seqs.map(|s| (ts(s * 10), s)), &mut got);
                next = next.max(first + n as u64);
                prop_assert_eq!(&got, &expected);
            }
            prop_assert_eq!(by_block.restarts(), one_by_one.restarts());
        }

        #[test]
        fn windows_without_gaps_follow_the_hop(
            window_len in 1usize..40,
            hop_len in 1usize..40,
            n in 0u64..400,
        ) {
            let spec = WindowSpec { window_len, hop_len, sample_rate_hz: 1e8 };
            let mut w = Windower::new(spec);
            let out = feed(&mut w, 0..n);
            let expected = if (n as usize) < window_len { 0 } else { (n as usize - window_len) / hop_len + 1 };
            prop_assert_eq!(out.len(), expected);
            for (k, win) in out.iter().enumerate() {
                prop_assert_eq!(win.seq, k as u64);
                prop_assert_eq!(win.samples.len(), window_len);
                let first = (k * hop_len) as u64;
                prop_assert_eq!(win.samples.clone(), (first..first + window_len as u64).collect::<Vec<_>>());
                prop_assert_eq!(win.gaps, 0);
            }
        }

        #[test]
        fn every_window_is_full_length_and_slot_aligned_whatever_the_gaps(
            steps in proptest::collection::vec(0u64..5, 0..300),
        ) {
            let spec = WindowSpec { window_len: 7, hop_len: 3, sample_rate_hz: 1e8 };
            let mut w = Windower::new(spec);
            let mut seq = 0;
            let mut out = Vec::new();
            for step in steps {
                seq += step;
                w.push(seq, ts(seq * 10), seq, &mut out);
            }
            for win in &out {
                prop_assert_eq!(win.samples.len(), 7);
                prop_assert!(win.gaps < 7);
                prop_assert_eq!(win.end.mono_ns - win.start.mono_ns, 70);
                // Each new value sits in its own slot; the rest are held copies.
                let first_slot = win.start.mono_ns / 10;
                for i in 1..7 {
                    if win.samples[i] != win.samples[i - 1] {
                        prop_assert_eq!(win.samples[i], first_slot + i as u64);
                    }
                }
            }
        }
    }
}
