//! MQTT payloads (pure): the embedding envelope v1, the small labels message and the sensor
//! state, borrowed from the events they encode. Schema: `docs/mqtt.schema.json`; prose:
//! `docs/mqtt.md`.

use base64::Engine as _;
use serde::Serialize;

use crate::concepts::Match;
use crate::config::EmbeddingEncoding;
use crate::telemetry::StreamSnapshot;
use crate::Modality;

pub use crate::output::unit_norm;

/// Version of the envelope (`v` in every payload).
pub const ENVELOPE_VERSION: u32 = 1;

/// Window timing of an embedding.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WindowInfo {
    /// Capture time of the first sample, UTC nanoseconds.
    pub start_utc_ns: i64,
    /// Capture time just after the last sample, UTC nanoseconds.
    pub end_utc_ns: i64,
    /// Samples in the window.
    pub sample_count: u64,
    /// Samples missing inside the window.
    pub gaps: u64,
    /// `seq` of the window whose embedding is published again because this window's model
    /// input had not changed (`skip_unchanged`); `None` (JSON `null`) when the encoder ran.
    pub reused_from_seq: Option<u64>,
}

/// The model that produced an embedding.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ModelInfo<'a> {
    /// Model-set name.
    pub name: &'a str,
    /// sha256 of the encoder file.
    pub sha256: &'a str,
    /// Execution provider that ran it.
    pub provider: &'a str,
    /// ONNX Runtime version.
    pub ort_version: &'a str,
}

/// Where the time went, in milliseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Latency {
    /// Window → model input.
    pub preprocess_ms: f64,
    /// Waiting for the inference worker.
    pub queue_ms: f64,
    /// Encoder run.
    pub inference_ms: f64,
    /// From the window's end (its last sample) to handing the message to the publisher.
    pub window_end_to_publish_ms: f64,
}

/// The embedding vector as written in JSON.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(untagged)]
pub enum EmbeddingField {
    /// Plain numbers.
    Json(Vec<f32>),
    /// Base64 little-endian floats.
    Base64 {
        /// `f32` or `f16`.
        dtype: &'static str,
        /// The bytes.
        base64: String,
    },
}

impl EmbeddingField {
    /// Encodes `unit` as `encoding` says.
    #[must_use]
    pub fn encode(unit: &[f32], encoding: EmbeddingEncoding) -> Self {
        let engine = base64::engine::general_purpose::STANDARD;
        match encoding {
            EmbeddingEncoding::Json => Self::Json(unit.to_vec()),
            EmbeddingEncoding::Base64F32 => {
                let bytes: Vec<u8> = unit.iter().flat_map(|v| v.to_le_bytes()).collect();
                Self::Base64 {
                    dtype: "f32",
                    base64: engine.encode(bytes),
                }
            }
            EmbeddingEncoding::Base64F16 => {
                let bytes: Vec<u8> = unit
                    .iter()
                    .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                    .collect();
                Self::Base64 {
                    dtype: "f16",
                    base64: engine.encode(bytes),
                }
            }
        }
    }
}

/// `<prefix>/<sensor>/embedding`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EmbeddingEnvelope<'a> {
    /// [`ENVELOPE_VERSION`].
    pub v: u32,
    /// Device id.
    pub device: &'a str,
    /// Sensor name.
    pub sensor: &'a str,
    /// Modality.
    pub modality: Modality,
    /// Window number of this sensor (0, 1, 2, …); a jump means windows were dropped.
    pub seq: u64,
    /// Window timing.
    pub window: WindowInfo,
    /// Model and provider.
    pub model: ModelInfo<'a>,
    /// The unit-norm embedding.
    pub embedding: EmbeddingField,
    /// L2 norm of the encoder's raw output.
    pub embedding_norm: f32,
    /// Nearest concepts, best first.
    pub labels: &'a [Match],
    /// Where the time went.
    pub latency: Latency,
}

/// `<prefix>/<sensor>/labels`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LabelsMessage<'a> {
    /// [`ENVELOPE_VERSION`].
    pub v: u32,
    /// Sensor name.
    pub sensor: &'a str,
    /// Window number.
    pub seq: u64,
    /// Window end, UTC nanoseconds.
    pub window_end_utc_ns: i64,
    /// Nearest concepts, best first.
    pub labels: &'a [Match],
}

/// `<prefix>/<sensor>/state` (retained).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StateMessage<'a> {
    /// [`ENVELOPE_VERSION`].
    pub v: u32,
    /// Sensor name.
    pub sensor: &'a str,
    /// Modality.
    pub modality: Modality,
    /// The counters.
    #[serde(flatten)]
    pub snapshot: &'a StreamSnapshot,
}

/// Topic names under a prefix.
#[derive(Debug, Clone)]
pub struct Topics {
    prefix: String,
}

impl Topics {
    /// Topics under `prefix`.
    #[must_use]
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }
    /// Retained `online`/`offline`.
    #[must_use]
    pub fn status(&self) -> String {
        format!("{}/status", self.prefix)
    }
    /// A sensor's (or scene's) trigger events.
    #[must_use]
    pub fn events(&self, sensor: &str) -> String {
        format!("{}/{sensor}/events", self.prefix)
    }
    /// A trigger's retained state.
    #[must_use]
    pub fn trigger_state(&self, sensor: &str, trigger: &str) -> String {
        format!("{}/{sensor}/triggers/{trigger}", self.prefix)
    }
    /// Periodic statistics.
    #[must_use]
    pub fn stats(&self) -> String {
        format!("{}/stats", self.prefix)
    }
    /// A sensor's embeddings.
    #[must_use]
    pub fn embedding(&self, sensor: &str) -> String {
        format!("{}/{sensor}/embedding", self.prefix)
    }
    /// A sensor's labels.
    #[must_use]
    pub fn labels(&self, sensor: &str) -> String {
        format!("{}/{sensor}/labels", self.prefix)
    }
    /// A sensor's retained state.
    #[must_use]
    pub fn state(&self, sensor: &str) -> String {
        format!("{}/{sensor}/state", self.prefix)
    }
    /// A concept set in use (retained).
    #[must_use]
    pub fn concept_set(&self, set: &str) -> String {
        format!("{}/concepts/{set}", self.prefix)
    }
    /// Refused concept-set commands.
    #[must_use]
    pub fn concept_error(&self) -> String {
        format!("{}/concepts/error", self.prefix)
    }
    /// The filter of concept-set control commands with `verb` (`set`, `add`, `remove`).
    #[must_use]
    pub fn concept_command_filter(&self, verb: &str) -> String {
        format!("{}/concepts/+/{verb}", self.prefix)
    }
    /// A sensor's (or scene's) triggers in use (retained; with trigger control).
    #[must_use]
    pub fn trigger_list(&self, sensor: &str) -> String {
        format!("{}/{sensor}/triggers", self.prefix)
    }
    /// Example sets stored by `remember` (not retained).
    #[must_use]
    pub fn examples(&self, sensor: &str) -> String {
        format!("{}/{sensor}/examples", self.prefix)
    }
    /// Refused trigger commands.
    #[must_use]
    pub fn trigger_error(&self) -> String {
        format!("{}/triggers/error", self.prefix)
    }
    /// The filters of trigger control commands: `set` and `remove` of one trigger, `remember`.
    #[must_use]
    pub fn trigger_command_filters(&self) -> Vec<String> {
        vec![
            format!("{}/+/triggers/+/set", self.prefix),
            format!("{}/+/triggers/+/remove", self.prefix),
            format!("{}/+/examples/remember", self.prefix),
        ]
    }
    /// The sensor, verb and trigger of a trigger command's topic, if it is one.
    #[must_use]
    pub fn trigger_command(&self, topic: &str) -> Option<crate::output::triggers::control::Target> {
        use crate::output::triggers::control::{Target, Verb};
        let rest = topic.strip_prefix(&self.prefix)?.strip_prefix('/')?;
        let levels: Vec<&str> = rest.split('/').collect();
        let (sensor, verb, trigger) = match levels.as_slice() {
            [s, "triggers", t, "set"] => (s, Verb::Set, Some(t)),
            [s, "triggers", t, "remove"] => (s, Verb::Remove, Some(t)),
            [s, "examples", "remember"] => (s, Verb::Remember, None),
            _ => return None,
        };
        Some(Target {
            sensor: (*sensor).to_string(),
            verb,
            trigger: trigger.map(|t| (*t).to_string()),
        })
    }
    /// The set and the verb of a control command's topic, if it is one.
    #[must_use]
    pub fn concept_command<'t>(&self, topic: &'t str) -> Option<(&'t str, &'t str)> {
        let rest = topic
            .strip_prefix(&self.prefix)?
            .strip_prefix("/concepts/")?;
        let (set, verb) = rest.split_once('/')?;
        (!verb.contains('/')).then_some((set, verb))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn trigger_command_topics_give_sensor_verb_and_trigger_and_nothing_else_does() {
        use crate::output::triggers::control::Verb;
        let t = Topics::new("edgebind/dev1");
        let c = t
            .trigger_command("edgebind/dev1/imu0/triggers/shaking/set")
            .unwrap();
        assert_eq!(
            (c.sensor.as_str(), c.verb, c.trigger.as_deref()),
            ("imu0", Verb::Set, Some("shaking"))
        );
        let c = t
            .trigger_command("edgebind/dev1/imu0/examples/remember")
            .unwrap();
        assert_eq!((c.verb, c.trigger), (Verb::Remember, None));
        for other in [
            "edgebind/dev1/imu0/triggers/shaking",
            "edgebind/dev1/imu0/triggers",
            "edgebind/dev1/triggers/error",
            "edgebind/dev10/imu0/triggers/a/set",
            "edgebind/dev1/imu0/triggers/a/b/set",
        ] {
            assert_eq!(t.trigger_command(other), None, "{other}");
        }
        for f in t.trigger_command_filters() {
            for own in [
                "edgebind/dev1/imu0/triggers/shaking",
                "edgebind/dev1/imu0/triggers",
                "edgebind/dev1/triggers/error",
                "edgebind/dev1/imu0/examples",
            ] {
                assert!(
                    !crate::publish::mqtt::topic_matches(&f, own),
                    "{f} takes {own}"
                );
            }
        }
    }

    #[test]
    fn control_topics_give_their_set_and_verb_and_nothing_else_does() {
        let t = Topics::new("edgebind/dev1");
        assert_eq!(
            t.concept_command("edgebind/dev1/concepts/sounds/set"),
            Some(("sounds", "set"))
        );
        for other in [
            "edgebind/dev1/concepts/sounds",
            "edgebind/dev1/concepts/error",
            "edgebind/dev1/concepts/a/b/set",
            "edgebind/dev10/concepts/a/set",
            "edgebind/dev1/mic/labels",
            "other/edgebind/dev1/concepts/a/set",
        ] {
            assert_eq!(t.concept_command(other), None, "{other}");
        }
        assert_eq!(
            t.concept_command_filter("add"),
            "edgebind/dev1/concepts/+/add"
        );
        assert_eq!(t.concept_set("s"), "edgebind/dev1/concepts/s");
    }

    #[test]
    fn unit_norm_returns_the_raw_norm() {
        let (u, n) = unit_norm(&[3.0, 4.0]);
        assert_eq!(n, 5.0);
        assert_eq!(u, vec![0.6, 0.8]);
        let (z, n0) = unit_norm(&[0.0, 0.0]);
        assert_eq!((z, n0), (vec![0.0, 0.0], 0.0));
    }

    #[test]
    fn base64_embeddings_round_trip() {
        let v = [0.5f32, -0.25, 1.0];
        let EmbeddingField::Base64 { dtype, base64 } =
            EmbeddingField::encode(&v, EmbeddingEncoding::Base64F32)
        else {
            panic!("expected base64");
        };
        assert_eq!(dtype, "f32");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(base64)
            .unwrap();
        let back: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(back, v);
        let EmbeddingField::Base64 { base64, .. } =
            EmbeddingField::encode(&v, EmbeddingEncoding::Base64F16)
        else {
            panic!("expected base64");
        };
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(base64)
                .unwrap()
                .len(),
            6
        );
    }

    #[test]
    fn topics_follow_the_prefix() {
        let t = Topics::new("edgebind/dev1");
        assert_eq!(t.embedding("imu0"), "edgebind/dev1/imu0/embedding");
        assert_eq!(t.status(), "edgebind/dev1/status");
    }
}
