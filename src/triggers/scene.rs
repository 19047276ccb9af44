//! Scene fusion: per time slot, the mean of the unit embeddings of chosen sensors whose windows
//! end within the slot, renormalised (ImageBind's embedding arithmetic: modalities share one
//! space, so a sum of unit vectors points at what they have in common). A sensor with several
//! windows in a slot counts once, with its latest. The scene feeds a [`TriggerEngine`] like a
//! sensor (`SceneFrame::observation`).
//!
//! [`TriggerEngine`]: super::TriggerEngine

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::config::{check_name, ConfigProblem};
use super::engine::WindowObservation;
use super::stuck::usable;
use super::vector::unit;
use crate::time::Timestamp;

/// Slots kept open at once; an older one is dropped (and counted) beyond it.
pub const MAX_OPEN_SLOTS: usize = 64;
/// Most member sensors.
pub const MAX_MEMBERS: usize = 32;

/// `[scene]` in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SceneConfig {
    /// Name the scene goes by in topics and trigger engines (default `scene`).
    #[serde(default = "default_name")]
    pub name: String,
    /// Sensors fused.
    pub members: Vec<String>,
    /// Slot length.
    pub slot_ms: u64,
    /// How long after a slot's end its late windows are still taken (inference latency).
    #[serde(default = "default_grace_ms")]
    pub grace_ms: u64,
    /// Members needed for a scene (default 1).
    #[serde(default = "default_min_members")]
    pub min_members: usize,
}

fn default_name() -> String {
    "scene".into()
}
fn default_grace_ms() -> u64 {
    2000
}
fn default_min_members() -> usize {
    1
}

impl SceneConfig {
    /// Checks names, counts and durations; keys are relative (`slot_ms`).
    ///
    /// # Errors
    /// Every problem found.
    pub fn validate(&self) -> Result<(), Vec<ConfigProblem>> {
        let mut p = Vec::new();
        let mut add = |path: &str, message: String| {
            p.push(ConfigProblem {
                path: path.into(),
                message,
            });
        };
        if let Err(m) = check_name(&self.name) {
            add("name", m);
        }
        if self.members.is_empty() || self.members.len() > MAX_MEMBERS {
            add("members", format!("must list 1 to {MAX_MEMBERS} sensors"));
        }
        for (i, m) in self.members.iter().enumerate() {
            if self.members[..i].contains(m) {
                add(&format!("members[{i}]"), format!("{m:?} is listed twice"));
            }
        }
        if !(10..=3_600_000).contains(&self.slot_ms) {
            add(
                "slot_ms",
                format!("must be in [10, 3600000], got {}", self.slot_ms),
            );
        }
        if self.grace_ms > 600_000 {
            add(
                "grace_ms",
                format!("must be at most 600000, got {}", self.grace_ms),
            );
        }
        if self.min_members == 0 || self.min_members > self.members.len().max(1) {
            add(
                "min_members",
                format!(
                    "must be 1 to the number of members, got {}",
                    self.min_members
                ),
            );
        }
        if p.is_empty() {
            Ok(())
        } else {
            Err(p)
        }
    }
}

/// One sensor's part in a scene.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SceneMember {
    /// Sensor name.
    pub sensor: String,
    /// Its window's number.
    pub seq: u64,
    /// Its window's end, UTC nanoseconds.
    pub window_end_utc_ns: i64,
    /// How much earlier its window ended than the latest member's, in milliseconds (≥ 0).
    pub skew_ms: f64,
}

/// A fused scene.
#[derive(Debug, Clone, PartialEq)]
pub struct SceneFrame {
    /// Scene name.
    pub name: String,
    /// Slot number (slot start ÷ slot length on the daemon's monotonic clock).
    pub seq: u64,
    /// Slot start.
    pub start: Timestamp,
    /// Slot end.
    pub end: Timestamp,
    /// The unit scene embedding.
    pub embedding: Vec<f32>,
    /// The members, in configuration order.
    pub members: Vec<SceneMember>,
}

impl SceneFrame {
    /// The scene as a window for a [`super::TriggerEngine`] named after the scene.
    #[must_use]
    pub fn observation(&self) -> WindowObservation<'_> {
        WindowObservation {
            sensor: &self.name,
            seq: self.seq,
            start: self.start,
            end: self.end,
            embedding: &self.embedding,
            input: None,
        }
    }
}

/// What became of an offered window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Taken into its slot.
    Taken,
    /// The sensor is not a member.
    NotMember,
    /// Its slot was already closed.
    Late,
    /// Not finite, zero or of the wrong width.
    BadEmbedding,
}

/// Counters of a fuser.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SceneCounters {
    /// Windows whose slot had closed.
    pub late_windows: u64,
    /// Unusable embeddings.
    pub bad_embeddings: u64,
    /// Slots closed with fewer than `min_members`.
    pub sparse_slots: u64,
    /// Slots dropped because more than [`MAX_OPEN_SLOTS`] were open.
    pub evicted_slots: u64,
}

#[derive(Debug, Clone)]
struct Entry {
    seq: u64,
    end: Timestamp,
    unit: Vec<f32>,
}

/// Fuses member windows into scenes.
#[derive(Debug)]
pub struct SceneFuser {
    config: SceneConfig,
    dim: usize,
    slot_ns: u64,
    grace_ns: u64,
    /// Open slots by number; per slot, an entry per member index.
    open: BTreeMap<u64, BTreeMap<usize, Entry>>,
    /// Slots below this number are closed.
    closed_below: u64,
    counters: SceneCounters,
}

impl SceneFuser {
    /// A fuser of embeddings of width `dim`; `config` must have passed [`SceneConfig::validate`].
    #[must_use]
    pub fn new(config: SceneConfig, dim: usize) -> Self {
        Self {
            dim,
            slot_ns: config.slot_ms.max(1).saturating_mul(1_000_000),
            grace_ns: config.grace_ms.saturating_mul(1_000_000),
            config,
            open: BTreeMap::new(),
            closed_below: 0,
            counters: SceneCounters::default(),
        }
    }

    /// Offers a member's window (its unit embedding and end time).
    pub fn offer(&mut self, sensor: &str, seq: u64, end: Timestamp, embedding: &[f32]) -> Offer {
        let Some(member) = self.config.members.iter().position(|m| m == sensor) else {
            return Offer::NotMember;
        };
        let Some(unit) = usable(embedding, self.dim)
            .then(|| unit(embedding))
            .flatten()
        else {
            self.counters.bad_embeddings += 1;
            return Offer::BadEmbedding;
        };
        let slot = end.mono_ns / self.slot_ns;
        if slot < self.closed_below {
            self.counters.late_windows += 1;
            return Offer::Late;
        }
        let entries = self.open.entry(slot).or_default();
        if entries.get(&member).is_none_or(|e| e.end <= end) {
            entries.insert(member, Entry { seq, end, unit });
        }
        while self.open.len() > MAX_OPEN_SLOTS {
            if let Some((oldest, _)) = self.open.pop_first() {
                self.closed_below = self.closed_below.max(oldest + 1);
                self.counters.evicted_slots += 1;
            }
        }
        Offer::Taken
    }

    /// Closes every slot that ended at least `grace_ms` before `now`: the scenes, oldest first.
    pub fn close_ready(&mut self, now: Timestamp) -> Vec<SceneFrame> {
        let mut frames = Vec::new();
        while let Some(entry) = self.open.first_entry() {
            let slot = *entry.key();
            let slot_end_ns = (slot + 1).saturating_mul(self.slot_ns);
            if now.mono_ns < slot_end_ns.saturating_add(self.grace_ns) {
                break;
            }
            let entries = entry.remove();
            self.closed_below = self.closed_below.max(slot + 1);
            match self.fuse(slot, &entries) {
                Some(frame) => frames.push(frame),
                None => self.counters.sparse_slots += 1,
            }
        }
        frames
    }

    fn fuse(&self, slot: u64, entries: &BTreeMap<usize, Entry>) -> Option<SceneFrame> {
        if entries.len() < self.config.min_members {
            return None;
        }
        let mut sum = vec![0.0f32; self.dim];
        for e in entries.values() {
            sum.iter_mut().zip(&e.unit).for_each(|(s, v)| *s += v);
        }
        let embedding = unit(&sum)?;
        let latest = entries.values().map(|e| e.end).max()?;
        let to_utc = latest.utc_ns.saturating_sub(latest.mono_ns as i64);
        let at = |mono_ns: u64| Timestamp {
            mono_ns,
            utc_ns: to_utc.saturating_add(mono_ns as i64),
        };
        let members = entries
            .iter()
            .map(|(i, e)| SceneMember {
                sensor: self.config.members[*i].clone(),
                seq: e.seq,
                window_end_utc_ns: e.end.utc_ns,
                skew_ms: (latest.mono_ns - e.end.mono_ns) as f64 / 1e6,
            })
            .collect();
        Some(SceneFrame {
            name: self.config.name.clone(),
            seq: slot,
            start: at(slot.saturating_mul(self.slot_ns)),
            end: at((slot + 1).saturating_mul(self.slot_ns)),
            embedding,
            members,
        })
    }

    /// Counters.
    #[must_use]
    pub fn counters(&self) -> SceneCounters {
        self.counters
    }

    /// Slots open now (at most [`MAX_OPEN_SLOTS`]).
    #[must_use]
    pub fn open_slots(&self) -> usize {
        self.open.len()
    }
}
