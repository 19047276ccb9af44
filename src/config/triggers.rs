//! `[triggers]` and `[scene]`: semantic events per sensor (docs/triggers.md). The trigger
//! tables themselves are the engine's (`triggers::TriggerConfig`); this module says where they
//! sit in the file and checks what only the whole configuration knows: that each sensor exists,
//! that concept labels are in the concept bank, that the state directory is writable and that
//! example sets on disk load.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::validate::Problems;
use super::Config;
use crate::triggers::config::validate_all;
use crate::triggers::{SceneConfig, TriggerConfig, TriggerKind};

/// `[triggers]`: where engine state and example sets live, and each sensor's triggers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggersConfig {
    /// Directory of each engine's saved state (`<dir>/<sensor>.state`: open events, novelty
    /// memory, example sets), written after every `start`/`end` and at shutdown (default
    /// `triggers`, relative to the configuration file).
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// Directory of example sets loaded at start: `<dir>/<sensor>/<set>.npy`, float32
    /// `[N, dim]` (absent: only sets kept in the saved state).
    #[serde(default)]
    pub examples_dir: Option<PathBuf>,
    /// Recent windows each engine keeps to capture example sets from (default 64, at most 256).
    #[serde(default = "default_recent_windows")]
    pub recent_windows: usize,
    /// Triggers per sensor (or the scene's name): `[[triggers.sensors.<name>]]` tables.
    #[serde(default)]
    pub sensors: BTreeMap<String, Vec<TriggerConfig>>,
}

fn default_recent_windows() -> usize {
    64
}

impl Default for TriggersConfig {
    fn default() -> Self {
        Self {
            state_dir: None,
            examples_dir: None,
            recent_windows: default_recent_windows(),
            sensors: BTreeMap::new(),
        }
    }
}

impl TriggersConfig {
    /// Whether any trigger is configured (the trigger stage runs only then).
    #[must_use]
    pub fn any(&self) -> bool {
        self.sensors.values().any(|t| !t.is_empty())
    }

    /// Every configured trigger as `(sensor or scene name, trigger name)`.
    #[must_use]
    pub fn pairs(&self) -> Vec<(String, String)> {
        self.sensors
            .iter()
            .flat_map(|(sensor, triggers)| {
                triggers
                    .iter()
                    .map(move |t| (sensor.clone(), t.name.clone()))
            })
            .collect()
    }

    /// The state directory in effect, resolved against the configuration file's directory.
    #[must_use]
    pub fn resolved_state_dir(&self, config: &Config) -> PathBuf {
        config.resolve(self.state_dir.as_deref().unwrap_or(Path::new("triggers")))
    }
}

/// Every problem of `[triggers]` and `[scene]`.
pub(super) fn check(config: &Config, p: &mut Problems) {
    let streams: Vec<String> = config
        .streams()
        .iter()
        .map(|(_, s)| s.name.as_str().to_string())
        .collect();
    let scene = config.scene.as_ref();
    if let Some(scene) = scene {
        check_scene(scene, &streams, p);
    }
    let t = &config.triggers;
    if t.recent_windows == 0 || t.recent_windows > crate::triggers::engine::MAX_RECENT_WINDOWS {
        p.add(
            "triggers.recent_windows",
            format!(
                "must be 1 to {}, got {}",
                crate::triggers::engine::MAX_RECENT_WINDOWS,
                t.recent_windows
            ),
        );
    }
    let bank = concept_labels(config);
    for (sensor, list) in &t.sensors {
        let prefix = format!("triggers.sensors.{sensor}");
        let known = streams.contains(sensor) || scene.is_some_and(|s| &s.name == sensor);
        if !known {
            p.add(
                prefix.clone(),
                format!(
                    "{sensor:?} is not a configured sensor or scene (sensors: {})",
                    streams.join(", ")
                ),
            );
        }
        if let Err(problems) = validate_all(list) {
            for c in problems {
                p.add(format!("{prefix}{}", c.path), c.message);
            }
        }
        check_labels(list, bank.as_deref(), &prefix, p);
    }
    if t.any() {
        let dir = t.resolved_state_dir(config);
        if let Err(message) = super::validate::writable_dir(&dir) {
            p.add(
                "triggers.state_dir",
                format!("{}: {message}", dir.display()),
            );
        }
    }
    for (path, message) in crate::output::triggers::examples::problems(config) {
        p.add(path, message);
    }
}

fn check_scene(scene: &SceneConfig, streams: &[String], p: &mut Problems) {
    if let Err(problems) = scene.validate() {
        for c in problems {
            p.add(format!("scene.{}", c.path), c.message);
        }
    }
    for (i, m) in scene.members.iter().enumerate() {
        if !streams.contains(m) {
            p.add(
                format!("scene.members[{i}]"),
                format!("{m:?} is not a configured sensor"),
            );
        }
    }
    if streams.contains(&scene.name) {
        p.add(
            "scene.name",
            format!("{:?} is also a sensor's name", scene.name),
        );
    }
}

/// The concept bank's labels (`None` when it does not load: reported by the model checks).
fn concept_labels(config: &Config) -> Option<Vec<String>> {
    let dir = config.resolve(&config.models.dir);
    let manifest = crate::inference::Manifest::load(&dir).ok()?;
    let bank = crate::concepts::reload::load_bank(&dir, manifest.embedding_dim).ok()?;
    Some(bank.labels().to_vec())
}

fn check_labels(list: &[TriggerConfig], bank: Option<&[String]>, prefix: &str, p: &mut Problems) {
    let Some(bank) = bank else { return };
    for (i, t) in list.iter().enumerate() {
        if let (TriggerKind::Concept, Some(labels)) = (t.kind, &t.labels) {
            for (j, label) in labels.iter().enumerate() {
                if !bank.contains(label) {
                    p.add(
                        format!("{prefix}[{i}].labels[{j}]"),
                        format!("{label:?} is not in the concept bank"),
                    );
                }
            }
        }
    }
}
