//! MQTT payloads of the trigger engine (pure): `<prefix>/<sensor>/events` (`start`, `update`,
//! `end`), the retained `<prefix>/<sensor>/triggers/<name>` state and `<prefix>/scene/embedding`.
//! Field meanings: `docs/triggers.md`.

use serde::Serialize;

use super::config::TriggerKind;
use super::event::{EndReason, EventKind, Phase, TriggerEvent, TriggerState, Unscored};
use super::scene::{SceneFrame, SceneMember};
use super::stuck::StuckReason;
use crate::concepts::Match;

/// Version of these payloads (`v`).
pub const TRIGGER_PAYLOAD_VERSION: u32 = 1;

/// `<prefix>/<sensor>/events`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventMessage<'a> {
    /// [`TRIGGER_PAYLOAD_VERSION`].
    pub v: u32,
    /// `start`, `update` or `end`.
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// Same in every message of one event.
    pub event_id: &'a str,
    /// Sensor or scene name.
    pub sensor: &'a str,
    /// Trigger name.
    pub trigger: &'a str,
    /// Trigger kind.
    pub trigger_kind: TriggerKind,
    /// The window that caused this message (`null` for an end at restart or reconfiguration).
    pub seq: Option<u64>,
    /// That window's score (`null` when not scored).
    pub score: Option<f32>,
    /// Best score of the event so far.
    pub peak_score: f32,
    /// First window of the event.
    pub first_seq: u64,
    /// Last window at or above the off threshold.
    pub last_seq: u64,
    /// Start of the first window, UTC nanoseconds.
    pub start_utc_ns: i64,
    /// End of the last window, UTC nanoseconds.
    pub end_utc_ns: i64,
    /// Windows at or above the threshold so far.
    pub windows: u64,
    /// `end` only: `below_threshold`, `restart` or `reconfigured`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<EndReason>,
    /// `stuck` triggers only: why the first window counted as stuck.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stuck_reason: Option<StuckReason>,
}

impl<'a> From<&'a TriggerEvent> for EventMessage<'a> {
    fn from(e: &'a TriggerEvent) -> Self {
        Self {
            v: TRIGGER_PAYLOAD_VERSION,
            kind: e.kind,
            event_id: &e.event.id,
            sensor: &e.sensor,
            trigger: &e.trigger,
            trigger_kind: e.trigger_kind,
            seq: e.seq,
            score: e.score,
            peak_score: e.event.peak_score,
            first_seq: e.event.first.seq,
            last_seq: e.event.last.seq,
            start_utc_ns: e.event.first.start.utc_ns,
            end_utc_ns: e.event.last.end.utc_ns,
            windows: e.event.windows,
            end_reason: e.end_reason,
            stuck_reason: e.event.stuck_reason,
        }
    }
}

/// `<prefix>/<sensor>/triggers/<name>` (retained; published when the phase changes).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TriggerStateMessage<'a> {
    /// [`TRIGGER_PAYLOAD_VERSION`].
    pub v: u32,
    /// Sensor or scene name.
    pub sensor: &'a str,
    /// Trigger name.
    pub trigger: &'a str,
    /// Trigger kind.
    pub trigger_kind: TriggerKind,
    /// `idle`, `pending`, `active` or `cooldown`.
    pub state: Phase,
    /// Score of the last window (`null` when not scored).
    pub score: Option<f32>,
    /// Why the last window was not scored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unscored: Option<Unscored>,
    /// Last window seen (`null` before the first).
    pub seq: Option<u64>,
    /// The open event (`active` only).
    pub event_id: Option<&'a str>,
    /// `stuck` triggers: why the last window counted as stuck.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stuck_reason: Option<StuckReason>,
    /// On threshold.
    pub on_threshold: f32,
    /// Off threshold.
    pub off_threshold: f32,
}

impl<'a> TriggerStateMessage<'a> {
    /// The message of `state` of a trigger of `sensor`.
    #[must_use]
    pub fn new(sensor: &'a str, state: &'a TriggerState) -> Self {
        Self {
            v: TRIGGER_PAYLOAD_VERSION,
            sensor,
            trigger: &state.trigger,
            trigger_kind: state.trigger_kind,
            state: state.phase,
            score: state.score,
            unscored: state.unscored,
            seq: state.seq,
            event_id: state.event_id.as_deref(),
            stuck_reason: state.stuck_reason,
            on_threshold: state.on_threshold,
            off_threshold: state.off_threshold,
        }
    }
}

/// `<prefix>/scene/embedding`; `E` is the publisher's embedding field (JSON or base64).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SceneMessage<'a, E> {
    /// [`TRIGGER_PAYLOAD_VERSION`].
    pub v: u32,
    /// Scene name.
    pub scene: &'a str,
    /// Slot number.
    pub seq: u64,
    /// Slot start, UTC nanoseconds.
    pub start_utc_ns: i64,
    /// Slot end, UTC nanoseconds.
    pub end_utc_ns: i64,
    /// The sensors fused, with their windows and skew.
    pub members: &'a [SceneMember],
    /// The unit scene embedding.
    pub embedding: E,
    /// Nearest concepts, best first.
    pub labels: &'a [Match],
}

impl<'a, E> SceneMessage<'a, E> {
    /// The message of `frame` with its encoded embedding and labels.
    #[must_use]
    pub fn new(frame: &'a SceneFrame, embedding: E, labels: &'a [Match]) -> Self {
        Self {
            v: TRIGGER_PAYLOAD_VERSION,
            scene: &frame.name,
            seq: frame.seq,
            start_utc_ns: frame.start.utc_ns,
            end_utc_ns: frame.end.utc_ns,
            members: &frame.members,
            embedding,
            labels,
        }
    }
}
