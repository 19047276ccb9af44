//! The event state machine of one trigger, fed one score per window:
//!
//! - **idle → pending**: a window scores at or above `on_threshold`;
//! - **pending → active** (`start`): `min_windows` such windows in a row; the event's first
//!   window is the first of that run; a window below `on_threshold` (or unscored) drops the run;
//! - **active**: a window at or above `off_threshold` extends the event (an `update` when the peak
//!   rises by [`UPDATE_MIN_RISE`] over the last published peak); `end_after_windows` windows in a
//!   row below it (or unscored) end it (`end`); its last window is the last one at or above;
//! - **cooldown**: the `cooldown_windows` windows after the ending window are not evaluated.
//!
//! Everything counts windows, not clock time, so that a restart (which restarts window numbers
//! and the monotonic clock) and a replay faster than real time behave the same.

use serde::Serialize;

use super::config::{EventParams, TriggerKind};
use super::stuck::StuckReason;
use crate::time::Timestamp;

/// Smallest rise of the peak score that publishes an `update`.
pub const UPDATE_MIN_RISE: f32 = 0.01;

/// One window as the state machine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowRef {
    /// Window number.
    pub seq: u64,
    /// First sample's capture time.
    pub start: Timestamp,
    /// Capture time just after the last sample.
    pub end: Timestamp,
}

/// Which message an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The event began.
    Start,
    /// Its peak score rose.
    Update,
    /// It is over.
    End,
}

/// Why an event ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// `end_after_windows` windows below `off_threshold`.
    BelowThreshold,
    /// The daemon restarted while it was open (closed at the first start after).
    Restart,
    /// Its trigger was removed or changed.
    Reconfigured,
}

/// Where a trigger is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Nothing happening.
    Idle,
    /// Windows above `on_threshold`, fewer than `min_windows` so far.
    Pending,
    /// An event is open.
    Active,
    /// An event ended recently; nothing starts yet.
    Cooldown,
}

/// An open event.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenEvent {
    /// Stable id: `<sensor>:<trigger>:<first window's start, UTC ms>`.
    pub id: String,
    /// First window of the event.
    pub first: WindowRef,
    /// Last window at or above the off threshold.
    pub last: WindowRef,
    /// Best score so far.
    pub peak_score: f32,
    /// Peak score of the last `start`/`update`.
    pub published_peak: f32,
    /// Windows at or above the threshold so far.
    pub windows: u64,
    /// `stuck` triggers: the reason of the first window.
    pub stuck_reason: Option<StuckReason>,
}

/// A `start`, `update` or `end`.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerEvent {
    /// Which message.
    pub kind: EventKind,
    /// Sensor (or scene) name.
    pub sensor: String,
    /// Trigger name.
    pub trigger: String,
    /// Trigger kind.
    pub trigger_kind: TriggerKind,
    /// The window that produced this message; `None` for an end at restart or reconfiguration.
    pub seq: Option<u64>,
    /// That window's score (`None` when not scored).
    pub score: Option<f32>,
    /// The event as of this message.
    pub event: OpenEvent,
    /// Set on `end`.
    pub end_reason: Option<EndReason>,
}

/// A trigger's current state, for the retained state message.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerState {
    /// Trigger name.
    pub trigger: String,
    /// Trigger kind.
    pub trigger_kind: TriggerKind,
    /// Phase.
    pub phase: Phase,
    /// Last window's score (`None` when it could not be scored).
    pub score: Option<f32>,
    /// Why the last window was not scored.
    pub unscored: Option<Unscored>,
    /// Last window seen.
    pub seq: Option<u64>,
    /// The open event's id.
    pub event_id: Option<String>,
    /// `stuck` triggers: why the last window counted as stuck.
    pub stuck_reason: Option<StuckReason>,
    /// The trigger's thresholds.
    pub on_threshold: f32,
    /// Off threshold.
    pub off_threshold: f32,
}

/// Why a window has no score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unscored {
    /// The embedding is not finite, zero or of the wrong width.
    BadEmbedding,
    /// A `novelty` trigger has too few windows in memory.
    WarmingUp,
    /// An `example` trigger's set has not been captured yet.
    NoExamples,
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    Idle,
    Pending {
        first: WindowRef,
        count: u32,
        peak: f32,
    },
    Active {
        event: OpenEvent,
        below: u32,
    },
    Cooldown {
        remaining: u32,
    },
}

/// One trigger's state machine.
#[derive(Debug, Clone, PartialEq)]
pub struct EventMachine {
    params: EventParams,
    state: State,
}

/// What a step produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Which message.
    pub kind: EventKind,
    /// The event as of this message.
    pub event: OpenEvent,
}

impl EventMachine {
    /// An idle machine.
    #[must_use]
    pub fn new(params: EventParams) -> Self {
        Self {
            params,
            state: State::Idle,
        }
    }

    /// The current phase.
    #[must_use]
    pub fn phase(&self) -> Phase {
        match self.state {
            State::Idle => Phase::Idle,
            State::Pending { .. } => Phase::Pending,
            State::Active { .. } => Phase::Active,
            State::Cooldown { .. } => Phase::Cooldown,
        }
    }

    /// The open event, if any.
    #[must_use]
    pub fn open_event(&self) -> Option<&OpenEvent> {
        match &self.state {
            State::Active { event, .. } => Some(event),
            _ => None,
        }
    }

    /// Windows of cooldown left.
    #[must_use]
    pub fn cooldown_remaining(&self) -> u32 {
        match self.state {
            State::Cooldown { remaining } => remaining,
            _ => 0,
        }
    }

    /// Puts the machine in cooldown for `windows` (idle when 0), dropping any pending run.
    pub fn set_cooldown(&mut self, windows: u32) {
        self.state = if windows == 0 {
            State::Idle
        } else {
            State::Cooldown { remaining: windows }
        };
    }

    /// Closes the open event without a window (restart, reconfiguration); cooldown follows.
    pub fn close(&mut self) -> Option<OpenEvent> {
        let State::Active { event, .. } = &self.state else {
            return None;
        };
        let event = event.clone();
        self.set_cooldown(self.params.cooldown_windows);
        Some(event)
    }

    /// Feeds one window's score. `new_id` names an event that starts at this window.
    pub fn step(
        &mut self,
        score: Option<f32>,
        window: WindowRef,
        stuck_reason: Option<StuckReason>,
        new_id: impl FnOnce(&WindowRef) -> String,
    ) -> Option<Step> {
        let p = self.params;
        let on = score.is_some_and(|s| s >= p.on_threshold);
        let s = score.unwrap_or(f32::NEG_INFINITY);
        match &mut self.state {
            State::Cooldown { remaining } => {
                *remaining -= 1;
                if *remaining == 0 {
                    self.state = State::Idle;
                }
                None
            }
            State::Idle | State::Pending { .. } if !on => {
                self.state = State::Idle;
                None
            }
            State::Idle => {
                self.state = State::Pending {
                    first: window,
                    count: 0,
                    peak: s,
                };
                self.pend(s, window, stuck_reason, new_id)
            }
            State::Pending { .. } => self.pend(s, window, stuck_reason, new_id),
            State::Active { event, below } => {
                if score.is_some_and(|s| s >= p.off_threshold) {
                    *below = 0;
                    event.last = window;
                    event.windows += 1;
                    event.peak_score = event.peak_score.max(s);
                    if event.peak_score >= event.published_peak + UPDATE_MIN_RISE {
                        event.published_peak = event.peak_score;
                        return Some(Step {
                            kind: EventKind::Update,
                            event: event.clone(),
                        });
                    }
                    return None;
                }
                *below += 1;
                if *below < p.end_after_windows {
                    return None;
                }
                let event = event.clone();
                self.set_cooldown(p.cooldown_windows);
                Some(Step {
                    kind: EventKind::End,
                    event,
                })
            }
        }
    }

    /// One more "on" window of a pending run; starts the event at `min_windows`.
    fn pend(
        &mut self,
        s: f32,
        window: WindowRef,
        stuck_reason: Option<StuckReason>,
        new_id: impl FnOnce(&WindowRef) -> String,
    ) -> Option<Step> {
        let State::Pending { first, count, peak } = &mut self.state else {
            return None;
        };
        *count += 1;
        *peak = peak.max(s);
        if *count < self.params.min_windows {
            return None;
        }
        let event = OpenEvent {
            id: new_id(first),
            first: *first,
            last: window,
            peak_score: *peak,
            published_peak: *peak,
            windows: u64::from(*count),
            stuck_reason,
        };
        self.state = State::Active {
            event: event.clone(),
            below: 0,
        };
        Some(Step {
            kind: EventKind::Start,
            event,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    pub(crate) fn window(seq: u64) -> WindowRef {
        let at = |ms: u64| Timestamp {
            mono_ns: ms * 1_000_000,
            utc_ns: 1_700_000_000_000_000_000 + (ms * 1_000_000) as i64,
        };
        WindowRef {
            seq,
            start: at(seq * 1000),
            end: at(seq * 1000 + 2000),
        }
    }

    fn params(min: u32, end_after: u32, cooldown: u32) -> EventParams {
        EventParams {
            on_threshold: 0.5,
            off_threshold: 0.4,
            min_windows: min,
            end_after_windows: end_after,
            cooldown_windows: cooldown,
        }
    }

    /// (seq, kind, first_seq, last_seq) of every message.
    fn run(p: EventParams, scores: &[f32]) -> Vec<(u64, EventKind, u64, u64)> {
        let mut m = EventMachine::new(p);
        let mut out = Vec::new();
        for (seq, s) in scores.iter().enumerate() {
            let seq = seq as u64;
            if let Some(step) = m.step(Some(*s), window(seq), None, |w| w.seq.to_string()) {
                out.push((seq, step.kind, step.event.first.seq, step.event.last.seq));
            }
        }
        out
    }

    #[test]
    fn an_event_starts_after_min_windows_and_ends_after_end_windows() {
        let scores = [0.1, 0.6, 0.7, 0.7, 0.45, 0.3, 0.3, 0.1];
        let got = run(params(2, 2, 0), &scores);
        assert_eq!(
            got,
            [(2, EventKind::Start, 1, 2), (6, EventKind::End, 1, 4),]
        );
    }

    #[test]
    fn a_run_shorter_than_min_windows_starts_nothing() {
        assert!(run(params(3, 1, 0), &[0.6, 0.6, 0.1, 0.6, 0.6, 0.2]).is_empty());
    }

    #[test]
    fn a_rising_peak_publishes_updates() {
        let got = run(params(1, 1, 0), &[0.5, 0.505, 0.52, 0.9, 0.1]);
        let kinds: Vec<_> = got.iter().map(|g| (g.0, g.1)).collect();
        assert_eq!(
            kinds,
            [
                (0, EventKind::Start),
                (2, EventKind::Update),
                (3, EventKind::Update),
                (4, EventKind::End)
            ]
        );
    }

    #[test]
    fn cooldown_skips_exactly_its_windows() {
        let scores = [0.9, 0.1, 0.9, 0.9, 0.9, 0.1];
        let got = run(params(1, 1, 2), &scores);
        assert_eq!(
            got,
            [
                (0, EventKind::Start, 0, 0),
                (1, EventKind::End, 0, 0),
                (4, EventKind::Start, 4, 4),
                (5, EventKind::End, 4, 4),
            ]
        );
    }

    #[test]
    fn close_hands_back_the_open_event_once() {
        let mut m = EventMachine::new(params(1, 1, 0));
        m.step(Some(0.9), window(0), None, |_| "e".into());
        assert_eq!(m.close().map(|e| e.id), Some("e".to_string()));
        assert_eq!(m.close(), None);
        assert_eq!(m.phase(), Phase::Idle);
    }
}
