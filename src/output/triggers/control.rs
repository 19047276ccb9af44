//! Trigger control commands over MQTT (when `concepts.control.enabled`), parsed and checked
//! without touching the engines: `set` and `remove` of one trigger of a sensor (or the scene) on
//! `<prefix>/<sensor>/triggers/<trigger>/{set,remove}`, and "remember the last N windows" on
//! `<prefix>/<sensor>/examples/remember`. A refused command is a [`Refusal`] with a stable code
//! and, where one is at fault, the field (docs/mqtt.md, Triggers over MQTT).

use serde::{Deserialize, Serialize};

use crate::triggers::config::{check_name, validate_all};
use crate::triggers::engine::MAX_RECENT_WINDOWS;
use crate::triggers::{ConfigProblem, TriggerConfig, TriggerSpec};

/// Most triggers a sensor can have through `set` (each costs every window some work).
pub const MAX_TRIGGERS_PER_SENSOR: usize = 64;

/// Largest command body accepted (checked before parsing); a trigger table is a few hundred bytes.
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;

/// What a command asks.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Add or replace the trigger `trigger` of `sensor`.
    Set {
        /// Sensor or scene.
        sensor: String,
        /// The trigger's table (its `name` is the topic's).
        config: Box<TriggerConfig>,
    },
    /// Remove the trigger `trigger` of `sensor`.
    Remove {
        /// Sensor or scene.
        sensor: String,
        /// Trigger name.
        trigger: String,
    },
    /// Store the last `windows` windows of `sensor` as example set `name`.
    Remember {
        /// Sensor or scene.
        sensor: String,
        /// The request.
        body: RememberBody,
    },
}

impl Command {
    /// The sensor it is about.
    #[must_use]
    pub fn sensor(&self) -> &str {
        match self {
            Self::Set { sensor, .. }
            | Self::Remove { sensor, .. }
            | Self::Remember { sensor, .. } => sensor,
        }
    }
}

/// Body of `remember`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RememberBody {
    /// The example set's name (`example_set` of an `example` trigger).
    pub name: String,
    /// How many of the newest windows (1 to `triggers.recent_windows`).
    pub windows: usize,
}

/// Which command a topic names, before its body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verb {
    /// `…/triggers/<trigger>/set`.
    Set,
    /// `…/triggers/<trigger>/remove`.
    Remove,
    /// `…/examples/remember`.
    Remember,
}

impl Verb {
    /// As in topics and answers.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Set => "set",
            Self::Remove => "remove",
            Self::Remember => "remember",
        }
    }
}

/// A command's topic: sensor, verb and (for `set`/`remove`) the trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Sensor or scene.
    pub sensor: String,
    /// The command.
    pub verb: Verb,
    /// The trigger named by the topic.
    pub trigger: Option<String>,
}

/// Why a command was refused (nothing changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    /// Stable code: `unknown_sensor`, `too_large`, `not_utf8`, `bad_json`, `invalid_trigger`,
    /// `too_many_triggers`, `not_enough_windows`, `invalid_name`, `no_examples_dir`,
    /// `too_many_sets`, `not_persisted`.
    pub code: &'static str,
    /// The field at fault (a key of the trigger table or of the `remember` body).
    pub field: Option<String>,
    /// What is wrong, for people.
    pub message: String,
}

impl Refused {
    /// A refusal with `code`, naming `field`.
    #[must_use]
    pub fn new(code: &'static str, field: Option<&str>, message: impl Into<String>) -> Self {
        Self {
            code,
            field: field.map(String::from),
            message: message.into(),
        }
    }
}

/// `<prefix>/<sensor>/triggers` (retained): a sensor's triggers in use, at start and after
/// every `set`/`remove` applied (schema `#/$defs/trigger_list`).
#[derive(Debug, Clone, Serialize)]
pub struct TriggerList {
    /// Envelope version.
    pub v: u32,
    /// Sensor or scene.
    pub sensor: String,
    /// The triggers, in order, with the keys of the configuration.
    pub triggers: Vec<TriggerConfig>,
    /// `config` (the configuration's list) or `control` (edited over MQTT).
    pub origin: &'static str,
    /// When it was published, ms since the epoch.
    pub updated_unix_ms: u64,
}

/// `<prefix>/<sensor>/examples` (not retained): an example set stored by `remember`
/// (schema `#/$defs/example_set`).
#[derive(Debug, Clone, Serialize)]
pub struct ExampleStored {
    /// Envelope version.
    pub v: u32,
    /// Sensor or scene.
    pub sensor: String,
    /// The set's name.
    pub set: String,
    /// Embeddings stored (the newest windows).
    pub windows: usize,
    /// Their width.
    pub dim: usize,
    /// The file written.
    pub file: String,
    /// The `example` triggers of the sensor that name the set (they score from the next window).
    pub triggers: Vec<String>,
    /// When it was stored, ms since the epoch.
    pub time_unix_ms: u64,
}

/// `<prefix>/triggers/error` (not retained): a refused command (schema `#/$defs/trigger_error`).
#[derive(Debug, Clone, Serialize)]
pub struct Refusal {
    /// Envelope version.
    pub v: u32,
    /// The sensor the topic names.
    pub sensor: String,
    /// `set`, `remove` or `remember`.
    pub command: &'static str,
    /// The trigger the topic names (`set`, `remove`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    /// [`Refused::code`].
    pub code: &'static str,
    /// What is wrong.
    pub message: String,
    /// The field at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// When it was refused, ms since the epoch.
    pub time_unix_ms: u64,
}

impl Refusal {
    /// The answer to the command of `target` refused with `r`.
    #[must_use]
    pub fn new(target: &Target, r: Refused) -> Self {
        Self {
            v: crate::publish::payload::ENVELOPE_VERSION,
            sensor: target.sensor.clone(),
            command: target.verb.as_str(),
            trigger: target.trigger.clone(),
            code: r.code,
            message: r.message,
            field: r.field,
            time_unix_ms: crate::concepts::live::now_unix_ms(),
        }
    }
}

/// Parses `body` as the command `target` names.
///
/// # Errors
/// [`Refused`]: too large, not UTF-8, not the command's JSON (unknown fields are refused,
/// naming the field), a `name` that differs from the topic's trigger, a bad set name or window
/// count.
pub fn parse(target: &Target, body: &[u8]) -> Result<Command, Refused> {
    if body.len() > MAX_COMMAND_BYTES {
        return Err(Refused::new(
            "too_large",
            None,
            format!("body is {} bytes, at most {MAX_COMMAND_BYTES}", body.len()),
        ));
    }
    let text = std::str::from_utf8(body).map_err(|e| {
        Refused::new(
            "not_utf8",
            None,
            format!(
                "body is not UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            ),
        )
    })?;
    let sensor = target.sensor.clone();
    match (target.verb, &target.trigger) {
        (Verb::Set, Some(trigger)) => Ok(Command::Set {
            sensor,
            config: Box::new(trigger_table(text, trigger)?),
        }),
        (Verb::Remove, Some(trigger)) => {
            if !text.trim().is_empty() && text.trim() != "{}" {
                return Err(Refused::new(
                    "bad_json",
                    None,
                    "body of `remove` must be empty or {}",
                ));
            }
            Ok(Command::Remove {
                sensor,
                trigger: trigger.clone(),
            })
        }
        (Verb::Remember, None) => Ok(Command::Remember {
            sensor,
            body: remember_body(text)?,
        }),
        _ => Err(Refused::new(
            "bad_json",
            None,
            "not a trigger command topic",
        )),
    }
}

/// The body of a `set`: a trigger table whose `name`, if given, is the topic's.
fn trigger_table(text: &str, trigger: &str) -> Result<TriggerConfig, Refused> {
    let mut value: serde_json::Value = serde_json::from_str(text).map_err(json_err)?;
    let Some(table) = value.as_object_mut() else {
        return Err(Refused::new(
            "bad_json",
            None,
            "body must be a JSON object: the keys of a [[triggers.sensors.<sensor>]] table",
        ));
    };
    match table.get("name") {
        None => {
            table.insert("name".into(), trigger.into());
        }
        Some(n) if n == trigger => {}
        Some(n) => {
            return Err(Refused::new(
                "invalid_trigger",
                Some("name"),
                format!("is {n}, the topic names {trigger:?} (leave it out or make them equal)"),
            ))
        }
    }
    serde_json::from_value(value).map_err(json_err)
}

/// The body of a `remember`: a set name and 1 to [`MAX_RECENT_WINDOWS`] windows.
fn remember_body(text: &str) -> Result<RememberBody, Refused> {
    let body: RememberBody = serde_json::from_str(text).map_err(json_err)?;
    check_name(&body.name)
        .map_err(|m| Refused::new("invalid_name", Some("name"), format!("{:?} {m}", body.name)))?;
    if body.windows == 0 || body.windows > MAX_RECENT_WINDOWS {
        return Err(Refused::new(
            "not_enough_windows",
            Some("windows"),
            format!("must be 1 to {MAX_RECENT_WINDOWS}, got {}", body.windows),
        ));
    }
    Ok(body)
}

/// serde_json's error, naming the field when it is an unknown or a missing one.
fn json_err(e: serde_json::Error) -> Refused {
    let message = e.to_string();
    let field = ["unknown field `", "missing field `", "unknown variant `"]
        .iter()
        .find_map(|p| message.strip_prefix(p))
        .and_then(|rest| rest.split('`').next())
        .map(String::from);
    Refused {
        code: "bad_json",
        field,
        message: format!("body is not a valid trigger command: {message}"),
    }
}

/// `list` with `config` in place of the trigger of its name (or appended), validated as `check`
/// validates the configuration; a problem names the key of the trigger table.
///
/// # Errors
/// [`Refused`] (`invalid_trigger`) with the first problem's key; the message lists them all.
pub fn replaced(
    list: &[TriggerConfig],
    config: TriggerConfig,
) -> Result<(Vec<TriggerConfig>, Vec<TriggerSpec>), Refused> {
    let mut out = list.to_vec();
    match out.iter().position(|t| t.name == config.name) {
        Some(i) => out[i] = config,
        None if out.len() >= MAX_TRIGGERS_PER_SENSOR => {
            return Err(Refused::new(
                "too_many_triggers",
                Some("name"),
                format!("the sensor has {} triggers, at most {MAX_TRIGGERS_PER_SENSOR} can be set over MQTT", out.len()),
            ))
        }
        None => out.push(config),
    }
    let specs = validate_all(&out).map_err(|problems| invalid(&problems))?;
    Ok((out, specs))
}

fn invalid(problems: &[ConfigProblem]) -> Refused {
    // Paths are `[i].key`; the command is one trigger, so its key alone names the field.
    let key = |p: &ConfigProblem| {
        p.path
            .split_once("].")
            .map_or_else(|| p.path.clone(), |(_, k)| k.to_string())
    };
    let message = problems
        .iter()
        .map(|p| format!("{}: {}", key(p), p.message))
        .collect::<Vec<_>>()
        .join("; ");
    Refused {
        code: "invalid_trigger",
        field: problems.first().map(key),
        message,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn target(verb: Verb, trigger: Option<&str>) -> Target {
        Target {
            sensor: "imu0".into(),
            verb,
            trigger: trigger.map(String::from),
        }
    }

    fn set(body: &str) -> Result<(Vec<TriggerConfig>, Vec<TriggerSpec>), Refused> {
        match parse(&target(Verb::Set, Some("shaking")), body.as_bytes())? {
            Command::Set { config, .. } => replaced(&[], *config),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_set_takes_the_topics_name_and_the_tables_keys() {
        let (list, specs) =
            set(r#"{"kind":"concept","labels":["device shaking"],"on_threshold":0.6}"#).unwrap();
        assert_eq!(list[0].name, "shaking");
        assert_eq!(specs.len(), 1);
    }

    #[test]
    fn each_bad_command_names_its_field_and_code() {
        let cases = [
            (
                r#"{"kind":"concept","labels":["a"],"on_threshold":5}"#,
                "invalid_trigger",
                Some("on_threshold"),
            ),
            (
                r#"{"kind":"concept","labels":["a"],"on_threshold":0.5,"colour":1}"#,
                "bad_json",
                Some("colour"),
            ),
            (
                r#"{"kind":"novelty"}"#,
                "invalid_trigger",
                Some("on_threshold"),
            ),
            (
                r#"{"kind":"banana","on_threshold":0.5}"#,
                "bad_json",
                Some("banana"),
            ),
            (
                r#"{"name":"other","kind":"stuck"}"#,
                "invalid_trigger",
                Some("name"),
            ),
            ("[1]", "bad_json", None),
        ];
        for (body, code, field) in cases {
            let e = set(body).unwrap_err();
            assert_eq!((e.code, e.field.as_deref()), (code, field), "{body}: {e}");
        }
        let e = parse(&target(Verb::Set, Some("x")), b"\xff").unwrap_err();
        assert_eq!(e.code, "not_utf8");
        let big = vec![b' '; MAX_COMMAND_BYTES + 1];
        assert_eq!(
            parse(&target(Verb::Set, Some("x")), &big).unwrap_err().code,
            "too_large"
        );
    }

    #[test]
    fn a_sensor_takes_at_most_64_triggers_but_one_can_still_be_replaced() {
        let t = |name: &str| -> TriggerConfig {
            serde_json::from_value(serde_json::json!({"name": name, "kind": "stuck"})).unwrap()
        };
        let full: Vec<TriggerConfig> = (0..MAX_TRIGGERS_PER_SENSOR)
            .map(|i| t(&format!("t{i}")))
            .collect();
        let e = replaced(&full, t("one_more")).unwrap_err();
        assert_eq!(
            (e.code, e.field.as_deref()),
            ("too_many_triggers", Some("name"))
        );
        assert_eq!(
            replaced(&full, t("t3")).unwrap().0.len(),
            MAX_TRIGGERS_PER_SENSOR
        );
    }

    #[test]
    fn remember_checks_the_name_and_the_window_count() {
        let t = target(Verb::Remember, None);
        let ok = parse(&t, br#"{"name":"door_opening","windows":4}"#).unwrap();
        assert_eq!(ok.sensor(), "imu0");
        let e = parse(&t, br#"{"name":"door opening","windows":4}"#).unwrap_err();
        assert_eq!((e.code, e.field.as_deref()), ("invalid_name", Some("name")));
        let e = parse(&t, br#"{"name":"d","windows":100000}"#).unwrap_err();
        assert_eq!(
            (e.code, e.field.as_deref()),
            ("not_enough_windows", Some("windows"))
        );
        let e = parse(&t, br#"{"name":"d"}"#).unwrap_err();
        assert_eq!((e.code, e.field.as_deref()), ("bad_json", Some("windows")));
        let e = parse(&target(Verb::Remove, Some("x")), br#"{"a":1}"#).unwrap_err();
        assert_eq!(e.code, "bad_json");
        assert!(parse(&target(Verb::Remove, Some("x")), b"").is_ok());
    }
}
