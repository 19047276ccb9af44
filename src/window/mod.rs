//! Pure windowing of a sample stream: fixed-length windows every hop, with capture times and the
//! number of samples missing inside each window. No clocks, no channels: `push` in, windows out.

use std::collections::VecDeque;

use crate::time::Timestamp;

/// Invalid window parameters.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WindowError {
    /// The rate is not a positive finite number.
    #[error("sample rate {0} Hz is not a positive number")]
    BadRate(f64),
    /// A length rounds to zero samples.
    #[error("{what} of {ms} ms at {rate_hz} Hz is shorter than one sample")]
    TooShort {
        /// `window_ms` or `hop_ms`.
        what: &'static str,
        /// The length.
        ms: u64,
        /// The rate.
        rate_hz: f64,
    },
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
    /// [`WindowError`] for a non-positive rate or a length under one sample.
    pub fn from_ms(window_ms: u64, hop_ms: u64, sample_rate_hz: f64) -> Result<Self, WindowError> {
        if !(sample_rate_hz.is_finite() && sample_rate_hz > 0.0) {
            return Err(WindowError::BadRate(sample_rate_hz));
        }
        let len = |what, ms: u64| {
            let n = (ms as f64 * sample_rate_hz / 1000.0).round();
            if n >= 1.0 {
                Ok(n as usize)
            } else {
                Err(WindowError::TooShort {
                    what,
                    ms,
                    rate_hz: sample_rate_hz,
                })
            }
        };
        Ok(Self {
            window_len: len("window_ms", window_ms)?,
            hop_len: len("hop_ms", hop_ms)?,
            sample_rate_hz,
        })
    }

    fn period_ns(&self) -> u64 {
        (1e9 / self.sample_rate_hz).round() as u64
    }
}

/// A window of consecutive samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Window<T> {
    /// Position of this window in its stream (0, 1, 2, …).
    pub seq: u64,
    /// Capture time of the first sample.
    pub start: Timestamp,
    /// Capture time of the last sample plus one sample period.
    pub end: Timestamp,
    /// The samples (`window_len` of them).
    pub samples: Vec<T>,
    /// Samples the device should have sent inside this window but did not.
    pub gaps: u64,
    /// Nominal rate of the samples.
    pub sample_rate_hz: f64,
}

#[derive(Debug, Clone, Copy)]
struct Meta {
    t: Timestamp,
    gap_before: u64,
}

/// Cuts a stream of samples into overlapping windows.
#[derive(Debug)]
pub struct Windower<T> {
    spec: WindowSpec,
    samples: VecDeque<T>,
    meta: VecDeque<Meta>,
    last_sample_seq: Option<u64>,
    skip: usize,
    next_window_seq: u64,
    restarts: u64,
}

impl<T: Copy> Windower<T> {
    /// A windower with the given geometry.
    #[must_use]
    pub fn new(spec: WindowSpec) -> Self {
        Self {
            spec,
            samples: VecDeque::with_capacity(spec.window_len),
            meta: VecDeque::with_capacity(spec.window_len),
            last_sample_seq: None,
            skip: 0,
            next_window_seq: 0,
            restarts: 0,
        }
    }

    /// The geometry.
    #[must_use]
    pub fn spec(&self) -> WindowSpec {
        self.spec
    }

    /// How often a gap longer than a window made the windower start over.
    #[must_use]
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// Adds one sample (`seq` counts the samples the device should have sent, so a jump is a
    /// gap). Returns a window when this sample completes one. A gap of a whole window or more
    /// starts over, so that no window spans it; an older or repeated `seq` is ignored.
    pub fn push(&mut self, seq: u64, t: Timestamp, value: T) -> Option<Window<T>> {
        let gap = match self.last_sample_seq {
            None => 0,
            Some(last) if seq <= last => return None,
            Some(last) => seq - last - 1,
        };
        self.last_sample_seq = Some(seq);
        if gap >= self.spec.window_len as u64 {
            self.samples.clear();
            self.meta.clear();
            self.skip = 0;
            self.restarts += 1;
        } else if gap > 0 && self.skip > 0 {
            // Missing samples count against the hop still to be skipped.
            let g = usize::try_from(gap).unwrap_or(usize::MAX);
            self.skip = self.skip.saturating_sub(g);
        }
        if self.skip > 0 {
            self.skip -= 1;
            return None;
        }
        let gap_before = if self.samples.is_empty() { 0 } else { gap };
        self.samples.push_back(value);
        self.meta.push_back(Meta { t, gap_before });
        if self.samples.len() < self.spec.window_len {
            return None;
        }
        let window = self.cut();
        let drain = self.spec.hop_len.min(self.samples.len());
        self.samples.drain(..drain);
        self.meta.drain(..drain);
        self.skip = self.spec.hop_len - drain;
        if let Some(first) = self.meta.front_mut() {
            first.gap_before = 0;
        }
        window
    }

    fn cut(&mut self) -> Option<Window<T>> {
        let first = self.meta.front()?;
        let last = self.meta.back()?;
        let gaps = self.meta.iter().skip(1).map(|m| m.gap_before).sum();
        let seq = self.next_window_seq;
        self.next_window_seq += 1;
        Some(Window {
            seq,
            start: first.t,
            end: last.t.plus_ns(self.spec.period_ns()),
            samples: self.samples.iter().copied().collect(),
            gaps,
            sample_rate_hz: self.spec.sample_rate_hz,
        })
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
        seqs.into_iter()
            .filter_map(|s| w.push(s, ts(s * 10), s))
            .collect()
    }

    #[test]
    fn spec_rounds_lengths_to_samples() {
        let s = WindowSpec::from_ms(5000, 1000, 200.0).unwrap();
        assert_eq!((s.window_len, s.hop_len), (1000, 200));
        assert!(WindowSpec::from_ms(0, 1000, 200.0).is_err());
        assert!(WindowSpec::from_ms(1000, 1000, f64::NAN).is_err());
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
        assert_eq!(out[0].samples, vec![0, 1, 3, 4]);
        assert_eq!(out[0].gaps, 1);
        assert_eq!(out[1].samples, vec![5, 6, 7, 8]);
        assert_eq!(out[1].gaps, 0);
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

    proptest! {
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
        fn every_window_is_full_length_whatever_the_gaps(
            seqs in proptest::collection::vec(0u64..5, 0..300),
        ) {
            let spec = WindowSpec { window_len: 7, hop_len: 3, sample_rate_hz: 1e8 };
            let mut w = Windower::new(spec);
            let mut seq = 0;
            for step in seqs {
                seq += step;
                if let Some(win) = w.push(seq, ts(seq), seq) {
                    prop_assert_eq!(win.samples.len(), 7);
                    let span = win.samples[6] - win.samples[0] + 1;
                    prop_assert_eq!(span, 7 + win.gaps);
                }
            }
        }
    }
}
