//! The trigger stage: one thread (`triggers`) that takes every embedded window from the
//! fan-out (its own bounded queue, `block` when full: a lost window would break an event's
//! window count), runs the sensor's [`TriggerEngine`] and the scene fuser, and hands `start`,
//! `update`, `end`, the changed trigger states and scene embeddings to the MQTT output through
//! an emitter of its own (so the MQTT output's queue closes only after this stage has
//! finished). The engines run here, off the inference workers, which only compute input
//! statistics for sensors with `stuck` triggers.
//!
//! Restarts (docs/triggers.md): each engine's state is saved to `<state_dir>/<sensor>.state`
//! before a `start` is handed over and after an `end` is in the outbox, so that a crash at any
//! moment leaves the subscriber a `start` matched by an `end` (the `end` may come twice, with the
//! same event id, as any message of the at-least-once outbox may).

mod apply;
pub mod control;
pub mod examples;
pub mod overrides;
mod run;
pub mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use crate::concepts::SharedConcepts;
use crate::config::Config;
use crate::telemetry::{ErrorKind, Telemetry};
use crate::time::Clock;
use crate::triggers::{
    config::validate_all, EngineOptions, SceneFuser, TriggerEngine, TriggerError, TriggerEvent,
};

/// Windows waiting for the trigger stage at most (it is much faster than any encoder).
pub const QUEUE_CAPACITY: usize = 256;

/// Why the trigger stage cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// A sensor's triggers are not valid (`check` reports the details).
    #[error("triggers.sensors.{sensor}: {message}")]
    Invalid {
        /// Sensor.
        sensor: String,
        /// What is wrong.
        message: String,
    },
    /// An engine cannot be built (a concept label the bank does not have).
    #[error("triggers.sensors.{sensor}: {source}")]
    Engine {
        /// Sensor.
        sensor: String,
        /// Why.
        source: TriggerError,
    },
    /// An example file cannot be used.
    #[error("triggers.examples_dir: {0}")]
    Examples(#[from] examples::ExampleFileErrors),
    /// A trigger list saved by an edit over MQTT cannot be read.
    #[error("triggers.state_dir: {0}")]
    Override(#[from] overrides::OverrideError),
    /// The state directory cannot be made.
    #[error("triggers.state_dir {}: {source}", dir.display())]
    StateDir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// One sensor's (or the scene's) engine and where its state is saved.
#[derive(Debug)]
struct SensorEngine {
    engine: TriggerEngine,
    file: PathBuf,
}

/// The built stage, before its thread runs.
#[derive(Debug)]
pub struct TriggerStage {
    engines: BTreeMap<String, SensorEngine>,
    scene: Option<SceneFuser>,
    /// `end`s (reason `restart`) of events open when the states were saved, sent first.
    restored_ends: Vec<(String, TriggerEvent)>,
    concepts: SharedConcepts,
    top_k: usize,
    min_score: f32,
    clock: Clock,
    telemetry: Arc<Telemetry>,
    /// Trigger control over MQTT, when `concepts.control.enabled`.
    control: Option<apply::Control>,
}

impl TriggerStage {
    /// The stage of `config` (`None` when it has no triggers and no scene): engines built,
    /// their saved state restored and example sets loaded from disk.
    ///
    /// # Errors
    /// [`StageError`] naming the sensor, file or directory.
    pub fn build(
        config: &Config,
        concepts: &SharedConcepts,
        dim: usize,
        clock: Clock,
        telemetry: &Arc<Telemetry>,
    ) -> Result<Option<Self>, StageError> {
        let control_on = config.concepts.control.enabled;
        if !config.triggers.any() && config.scene.is_none() && !control_on {
            return Ok(None);
        }
        let dir = config.triggers.resolved_state_dir(config);
        // Only engines have state: a scene alone writes nothing.
        if config.triggers.any() || control_on {
            std::fs::create_dir_all(&dir).map_err(|source| StageError::StateDir {
                dir: dir.clone(),
                source,
            })?;
        }
        let examples_dir = config
            .triggers
            .examples_dir
            .as_ref()
            .map(|d| config.resolve(d));
        let mut stage = Self {
            engines: BTreeMap::new(),
            scene: config.scene.clone().map(|s| SceneFuser::new(s, dim)),
            restored_ends: Vec::new(),
            concepts: concepts.clone(),
            top_k: config.concepts.top_k,
            min_score: config.concepts.min_score,
            clock,
            telemetry: Arc::clone(telemetry),
            control: None,
        };
        let options = EngineOptions {
            recent_windows: config.triggers.recent_windows,
        };
        let mut control = control_on.then(|| {
            apply::Control::new(config, &dir, examples_dir.clone(), dim, options, telemetry)
        });
        for sensor in engine_names(config, control_on) {
            let configured = config
                .triggers
                .sensors
                .get(&sensor)
                .cloned()
                .unwrap_or_default();
            let list = match &mut control {
                Some(c) => c.start_list(&dir, &sensor, configured)?,
                None => configured,
            };
            let specs = validate_all(&list).map_err(|p| StageError::Invalid {
                sensor: sensor.clone(),
                message: p
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            })?;
            let bank = concepts.current();
            let lookup = |label: &str| bank.unit_embedding(label);
            let mut engine =
                TriggerEngine::new(&sensor, dim, specs, &lookup, options).map_err(|source| {
                    StageError::Engine {
                        sensor: sensor.clone(),
                        source,
                    }
                })?;
            let file = store::state_file(&dir, &sensor);
            stage.restore(&mut engine, &file);
            if let Some(d) = &examples_dir {
                examples::load_into(d, &mut engine)?;
            }
            stage.engines.insert(sensor, SensorEngine { engine, file });
        }
        stage.control = control;
        Ok(Some(stage))
    }

    /// The route of the trigger control topics (taken once, for the MQTT output's inbound
    /// routes); `None` when control is off.
    pub fn take_route(&mut self) -> Option<crate::publish::mqtt::InboundRoute> {
        self.control.as_mut().and_then(apply::Control::take_route)
    }

    /// Every trigger in use at start as `(sensor or scene, trigger)`: what Home Assistant
    /// discovery announces (edits over MQTT kept from an earlier run included).
    #[must_use]
    pub fn pairs(&self) -> Vec<(String, String)> {
        self.engines
            .iter()
            .flat_map(|(sensor, slot)| {
                slot.engine
                    .specs()
                    .map(move |s| (sensor.clone(), s.name.clone()))
            })
            .collect()
    }

    /// Restores `engine` from `file` when there is one; a state that cannot be read is logged
    /// and counted, and the engine starts afresh (the next save replaces the file).
    fn restore(&mut self, engine: &mut TriggerEngine, file: &std::path::Path) {
        let bytes = match store::load(file) {
            Ok(Some(b)) => b,
            Ok(None) => return,
            Err(e) => {
                self.telemetry.errors.add(ErrorKind::TriggerState);
                tracing::error!(error = %e, "starting the triggers afresh");
                return;
            }
        };
        match engine.restore(&bytes) {
            Ok(report) => {
                tracing::info!(
                    sensor = engine.sensor(),
                    ended = report.ended.len(),
                    novelty_windows = report.novelty_windows,
                    example_sets = report.example_sets,
                    "trigger state restored"
                );
                let sensor = engine.sensor().to_string();
                self.restored_ends
                    .extend(report.ended.into_iter().map(|e| (sensor.clone(), e)));
            }
            Err(e) => {
                self.telemetry.errors.add(ErrorKind::TriggerState);
                tracing::error!(file = %file.display(), error = %e,
                    "trigger state cannot be used; starting the triggers afresh");
            }
        }
    }
}

/// The sensors (and scene) that get an engine: those with configured triggers, and with control
/// on every sensor and the scene (so that `remember` and trigger edits work on any of them).
fn engine_names(config: &Config, control_on: bool) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = config.triggers.sensors.keys().cloned().collect();
    if control_on {
        names.extend(
            config
                .streams()
                .iter()
                .map(|(_, s)| s.name.as_str().to_string()),
        );
        names.extend(config.scene.iter().map(|s| s.name.clone()));
    }
    names
}

/// The sensors of `config` with `stuck` triggers: their windows carry statistics of the
/// model input (the inference workers compute them).
#[must_use]
pub fn stuck_sensors(config: &Config) -> BTreeSet<String> {
    config
        .triggers
        .sensors
        .iter()
        .filter(|(_, list)| {
            list.iter()
                .any(|t| t.kind == crate::triggers::TriggerKind::Stuck)
        })
        .map(|(name, _)| name.clone())
        .collect()
}
