//! Semantic events from embeddings (pure: no I/O, no clocks, no threads). A [`TriggerEngine`] per
//! sensor (or per fused scene) scores each window against its triggers — `concept` (cosine to
//! words), `example` (cosine to captured windows), `novelty` (distance to a bounded f16 memory of
//! recent windows), `stuck` (sensor health) — and turns the scores into `start`/`update`/`end`
//! events with hysteresis, a minimum run, an end delay and a cooldown. Engine state (open events,
//! novelty memory, example sets) round-trips through a versioned byte form; the caller does the
//! file I/O. [`scene`] fuses several sensors' embeddings per time slot into one scene embedding
//! that feeds an engine like a sensor. Semantics and payloads: `docs/triggers.md`.
//!
//! # Layout
//! - [`config`]: trigger configuration (serde) and its validation into a [`TriggerSpec`].
//! - [`vector`]: dot products, L2 normalisation and the input statistics of a window.
//! - [`scorer`]: one score per window per trigger.
//! - [`novelty`]: the per-sensor novelty memory (f16, fixed capacity).
//! - [`stuck`]: the health detector behind `stuck` triggers.
//! - [`event`]: the per-trigger event state machine.
//! - [`engine`]: the per-sensor engine tying them together; example-set capture.
//! - [`persist`]: the versioned on-disk form of an engine's state.
//! - [`scene`]: fusion of several sensors into a scene embedding per time slot.
//! - [`payload`]: the MQTT payloads of events, trigger states and scenes.

pub mod config;
pub mod engine;
pub mod event;
pub mod novelty;
pub mod payload;
pub mod persist;
pub mod scene;
pub mod scorer;
pub mod stuck;
pub mod vector;

#[cfg(test)]
mod tests;

pub use config::{ConfigProblem, TriggerConfig, TriggerKind, TriggerSpec};
pub use engine::{EngineOptions, TriggerEngine, TriggerError, WindowObservation};
pub use event::{EndReason, EventKind, Phase, TriggerEvent, TriggerState};
pub use persist::PersistError;
pub use scene::{SceneConfig, SceneFrame, SceneFuser};
pub use vector::InputStats;
