//! Trigger control in the trigger stage's thread (`concepts.control.enabled`): commands come from
//! the MQTT output's inbound route `triggers` (a bounded queue, `drop_newest` when full, counted
//! in `edgebind_mqtt_inbound_dropped_total{route="triggers"}`) and are applied between two
//! windows, one at a time: checked as `check` checks the configuration, persisted
//! (`overrides`, example files), then put in use, then answered (docs/mqtt.md, Triggers over MQTT).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::control::{self, Command, ExampleStored, Refusal, Refused, TriggerList};
use super::{overrides, run::deliver, run::save, TriggerStage};
use crate::config::Config;
use crate::output::{Emitter, Event, TriggerAnswer, TriggerControlNotice};
use crate::publish::mqtt::{InboundMessage, InboundRoute};
use crate::publish::payload::{Topics, ENVELOPE_VERSION};
use crate::telemetry::Telemetry;
use crate::triggers::config::KindSpec;
use crate::triggers::{EngineOptions, TriggerConfig, TriggerEngine, TriggerError, TriggerKind};

/// Commands waiting for the trigger stage; more are dropped (`drop_newest`, counted).
pub const CONTROL_QUEUE: usize = 16;

/// How long the stage waits for a command while no window comes, before it looks at its window
/// queue again (the fan-out's queue cannot be waited on together with the command queue).
const IDLE_POLL: Duration = Duration::from_millis(50);

/// The state of trigger control.
#[derive(Debug)]
pub(super) struct Control {
    rx: Option<crossbeam_channel::Receiver<InboundMessage>>,
    route: Option<InboundRoute>,
    topics: Topics,
    state_dir: PathBuf,
    examples_dir: Option<PathBuf>,
    /// Each sensor's configured list (what an override replaces).
    configured: BTreeMap<String, Vec<TriggerConfig>>,
    /// Each sensor's list in use, and where it comes from (`config`, `control`).
    lists: BTreeMap<String, (Vec<TriggerConfig>, &'static str)>,
    /// Sensors whose windows carry input statistics (those with a configured `stuck` trigger).
    stats_sensors: BTreeSet<String>,
    /// The scene's name, if there is one (its windows never carry input statistics).
    scene: Option<String>,
    dim: usize,
    options: EngineOptions,
}

impl Control {
    pub(super) fn new(
        config: &Config,
        state_dir: &Path,
        examples_dir: Option<PathBuf>,
        dim: usize,
        options: EngineOptions,
        telemetry: &Telemetry,
    ) -> Self {
        let topics = Topics::new(config.topic_prefix());
        let (tx, rx) = crossbeam_channel::bounded(CONTROL_QUEUE);
        let route = InboundRoute::new("triggers", topics.trigger_command_filters(), tx, telemetry);
        Self {
            rx: Some(rx),
            route: Some(route),
            topics,
            state_dir: state_dir.to_path_buf(),
            examples_dir,
            configured: BTreeMap::new(),
            lists: BTreeMap::new(),
            stats_sensors: super::stuck_sensors(config),
            scene: config.scene.as_ref().map(|s| s.name.clone()),
            dim,
            options,
        }
    }

    pub(super) fn take_route(&mut self) -> Option<InboundRoute> {
        self.route.take()
    }

    /// The list `sensor` starts with: its override from an earlier edit, else `configured`.
    pub(super) fn start_list(
        &mut self,
        dir: &Path,
        sensor: &str,
        configured: Vec<TriggerConfig>,
    ) -> Result<Vec<TriggerConfig>, overrides::OverrideError> {
        let (list, origin) = match overrides::load(dir, sensor, &configured)? {
            Some(o) => {
                tracing::info!(
                    sensor,
                    triggers = o.triggers.len(),
                    "using the triggers edited over MQTT in place of the configuration's"
                );
                (o.triggers, "control")
            }
            None => (configured.clone(), "config"),
        };
        self.configured.insert(sensor.to_string(), configured);
        self.lists
            .insert(sensor.to_string(), (list.clone(), origin));
        Ok(list)
    }

    fn list_message(&self, sensor: &str) -> Option<TriggerList> {
        let (triggers, origin) = self.lists.get(sensor)?;
        Some(TriggerList {
            v: ENVELOPE_VERSION,
            sensor: sensor.to_string(),
            triggers: triggers.clone(),
            origin,
            updated_unix_ms: crate::concepts::live::now_unix_ms(),
        })
    }
}

impl TriggerStage {
    /// Publishes every sensor's triggers in use (retained), at start.
    pub(super) fn announce_lists(&self, out: &Emitter) {
        let Some(control) = &self.control else { return };
        for sensor in control.lists.keys() {
            if let Some(list) = control.list_message(sensor) {
                emit(out, TriggerAnswer::Triggers(list), None);
            }
        }
    }

    /// The next event of the fan-out queue, applying the commands that arrive meanwhile;
    /// `None` when the queue is closed.
    pub(super) fn next_event(
        &mut self,
        rx: &mut mpsc::Receiver<Event>,
        out: &Emitter,
    ) -> Option<Event> {
        loop {
            let Some(commands) = self.control.as_ref().and_then(|c| c.rx.clone()) else {
                return rx.blocking_recv();
            };
            while let Ok(m) = commands.try_recv() {
                self.on_command(m, out);
            }
            match rx.try_recv() {
                Ok(e) => return Some(e),
                Err(mpsc::error::TryRecvError::Disconnected) => return None,
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            match commands.recv_timeout(IDLE_POLL) {
                Ok(m) => self.on_command(m, out),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    // The MQTT output is gone: no more commands, wait for windows only.
                    if let Some(c) = &mut self.control {
                        c.rx = None;
                    }
                }
            }
        }
    }

    fn on_command(&mut self, m: InboundMessage, out: &Emitter) {
        let Some(target) = self
            .control
            .as_ref()
            .and_then(|c| c.topics.trigger_command(&m.topic))
        else {
            return;
        };
        let reply = m.response_topic.map(|t| (t, m.correlation_data));
        let verb = target.verb.as_str();
        let result = control::parse(&target, &m.payload).and_then(|c| self.apply(c, out));
        let stats = &self.telemetry.triggers;
        let answer = match result {
            Ok(answer) => {
                stats.command(verb, "applied");
                tracing::info!(sensor = %target.sensor, command = verb,
                    trigger = target.trigger.as_deref().unwrap_or(""),
                    "trigger command applied over MQTT");
                answer
            }
            Err(r) => {
                stats.command(verb, "refused");
                tracing::warn!(sensor = %target.sensor, command = verb, code = r.code,
                    error = %r.message, "trigger command refused; nothing changed");
                TriggerAnswer::Refused(Refusal::new(&target, r))
            }
        };
        emit(out, answer, reply);
    }

    fn apply(&mut self, command: Command, out: &Emitter) -> Result<TriggerAnswer, Refused> {
        let sensor = command.sensor().to_string();
        if !self.engines.contains_key(&sensor) {
            let known: Vec<&str> = self.engines.keys().map(String::as_str).collect();
            return Err(Refused::new(
                "unknown_sensor",
                None,
                format!(
                    "{sensor:?} is not a configured sensor or scene (known: {})",
                    known.join(", ")
                ),
            ));
        }
        match command {
            Command::Set { config, .. } => self.set(&sensor, *config, out),
            Command::Remove { trigger, .. } => self.remove(&sensor, &trigger, out),
            Command::Remember { body, .. } => self.remember(&sensor, &body.name, body.windows),
        }
    }

    fn set(
        &mut self,
        sensor: &str,
        config: TriggerConfig,
        out: &Emitter,
    ) -> Result<TriggerAnswer, Refused> {
        let control = self.control.as_ref().ok_or_else(no_control)?;
        let is_stream = control.scene.as_deref() != Some(sensor);
        if config.kind == TriggerKind::Stuck && is_stream && !control.stats_sensors.contains(sensor)
        {
            return Err(Refused::new(
                "invalid_trigger",
                Some("kind"),
                "a stuck trigger can be set over MQTT only on a sensor that had one configured at \
                 start (only their windows carry the input statistics it needs)",
            ));
        }
        let current = control
            .lists
            .get(sensor)
            .map(|(l, _)| l.as_slice())
            .unwrap_or_default();
        let labels = config.labels.clone().unwrap_or_default();
        let (list, _) = control::replaced(current, config)?;
        self.replace_list(sensor, list, &labels, out)?;
        self.list_answer(sensor)
    }

    fn remove(
        &mut self,
        sensor: &str,
        trigger: &str,
        out: &Emitter,
    ) -> Result<TriggerAnswer, Refused> {
        let control = self.control.as_ref().ok_or_else(no_control)?;
        let current = control
            .lists
            .get(sensor)
            .map(|(l, _)| l.clone())
            .unwrap_or_default();
        if current.iter().any(|t| t.name == trigger) {
            let list = current.into_iter().filter(|t| t.name != trigger).collect();
            self.replace_list(sensor, list, &[], out)?;
            emit(
                out,
                TriggerAnswer::Cleared(sensor.to_string(), trigger.to_string()),
                None,
            );
        }
        // Removing a trigger that is not there (a redelivered command) changes nothing.
        self.list_answer(sensor)
    }

    /// Checks `list` as a whole (labels in the bank), persists it, then puts it in use: an open
    /// event of a changed or removed trigger ends (`reconfigured`) before the state is saved.
    fn replace_list(
        &mut self,
        sensor: &str,
        list: Vec<TriggerConfig>,
        new_labels: &[String],
        out: &Emitter,
    ) -> Result<(), Refused> {
        let control = self.control.as_mut().ok_or_else(no_control)?;
        let specs = crate::triggers::config::validate_all(&list).map_err(|p| {
            Refused::new(
                "invalid_trigger",
                None,
                p.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        let bank = self.concepts.current();
        let lookup = |label: &str| bank.unit_embedding(label);
        // Built aside first: a label the bank lacks is refused before anything is written.
        TriggerEngine::new(sensor, control.dim, specs.clone(), &lookup, control.options)
            .map_err(|e| label_refusal(&e, new_labels))?;
        let configured = control.configured.get(sensor).cloned().unwrap_or_default();
        overrides::save(&control.state_dir, sensor, &configured, &list)
            .map_err(|e| Refused::new("not_persisted", None, e.to_string()))?;
        control.lists.insert(sensor.to_string(), (list, "control"));
        let Some(slot) = self.engines.get_mut(sensor) else {
            return Err(no_control());
        };
        let ended = slot
            .engine
            .set_triggers(specs, &lookup)
            .map_err(|e| label_refusal(&e, new_labels))?;
        deliver(slot, ended, out, &self.telemetry);
        Ok(())
    }

    fn list_answer(&self, sensor: &str) -> Result<TriggerAnswer, Refused> {
        self.control
            .as_ref()
            .and_then(|c| c.list_message(sensor))
            .map(TriggerAnswer::Triggers)
            .ok_or_else(no_control)
    }

    fn remember(
        &mut self,
        sensor: &str,
        name: &str,
        windows: usize,
    ) -> Result<TriggerAnswer, Refused> {
        let control = self.control.as_ref().ok_or_else(no_control)?;
        let Some(dir) = control.examples_dir.clone() else {
            return Err(Refused::new(
                "no_examples_dir",
                None,
                "triggers.examples_dir is not configured: there is nowhere to store example sets",
            ));
        };
        let Some(slot) = self.engines.get_mut(sensor) else {
            return Err(no_control());
        };
        let rows = slot
            .engine
            .last_windows(windows)
            .map_err(|m| Refused::new("not_enough_windows", Some("windows"), m))?;
        let sets = slot.engine.example_sets();
        if !sets.contains_key(name) && sets.len() >= crate::triggers::scorer::MAX_EXAMPLE_SETS {
            return Err(Refused::new(
                "too_many_sets",
                Some("name"),
                format!(
                    "{sensor} has {} example sets, the most a sensor keeps",
                    sets.len()
                ),
            ));
        }
        let file = super::examples::write(&dir, sensor, name, &rows)
            .map_err(|e| Refused::new("not_persisted", None, e.to_string()))?;
        slot.engine
            .set_example_set(name, &rows)
            .map_err(|e| Refused::new("invalid_name", Some("name"), e.to_string()))?;
        save(slot, &self.telemetry);
        let triggers = slot
            .engine
            .specs()
            .filter(|s| matches!(&s.kind, KindSpec::Example { set, .. } if set == name))
            .map(|s| s.name.clone())
            .collect();
        Ok(TriggerAnswer::Remembered(ExampleStored {
            v: ENVELOPE_VERSION,
            sensor: sensor.to_string(),
            set: name.to_string(),
            windows: rows.len(),
            dim: slot.engine.dim(),
            file: file.display().to_string(),
            triggers,
            time_unix_ms: crate::concepts::live::now_unix_ms(),
        }))
    }
}

fn emit(out: &Emitter, what: TriggerAnswer, reply: Option<(String, Option<Vec<u8>>)>) {
    // Closed only while the daemon stops: nobody is left to answer.
    let _ = out.emit_blocking(&Event::TriggerControl(Arc::new(TriggerControlNotice {
        what,
        reply,
    })));
}

fn no_control() -> Refused {
    Refused::new(
        "unknown_sensor",
        None,
        "trigger control is not available for this sensor",
    )
}

/// A label the concept bank lacks (or cannot use), naming `labels[i]` of the trigger sent.
fn label_refusal(e: &TriggerError, labels: &[String]) -> Refused {
    let field = match e {
        TriggerError::UnknownLabel { label, .. } | TriggerError::BadLabel { label, .. } => labels
            .iter()
            .position(|l| l == label)
            .map_or_else(|| "labels".to_string(), |i| format!("labels[{i}]")),
        _ => "labels".to_string(),
    };
    Refused {
        code: "invalid_trigger",
        field: Some(field),
        message: e.to_string(),
    }
}
