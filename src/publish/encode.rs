//! How the MQTT output turns events into messages: topics under the prefix, QoS, retain, the
//! embedding's encoding and the device id — everything MQTT about an event lives here and in
//! [`super::payload`]. Embedding and labels messages go through the outbox (durable); status,
//! state and stats are control messages, rebuilt at every connection and sent only while
//! connected.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::payload::{
    EmbeddingEnvelope, EmbeddingField, LabelsMessage, Latency, ModelInfo, StateMessage, Topics,
    WindowInfo, ENVELOPE_VERSION,
};
use crate::config::{EmbeddingEncoding, Qos};
use crate::output::{
    ConceptsAnswer, ConceptsNotice, EmbeddedWindow, Event, SensorState, StoredNotice,
};
use crate::telemetry::{Stage, StatsSnapshot, StreamStats};

/// A message for the broker.
#[derive(Debug, Clone)]
pub struct OutMessage {
    /// Topic.
    pub topic: String,
    /// The sensor it belongs to (it travels with the message, also through the outbox).
    pub sensor: Option<Arc<str>>,
    /// Payload bytes.
    pub payload: Vec<u8>,
    /// Retained on the broker.
    pub retain: bool,
    /// Delivery guarantee.
    pub qos: Qos,
    /// For an embedding: what the publisher needs to record the publish and end-to-end latency
    /// at the broker's acknowledgement.
    pub timing: Option<MessageTiming>,
    /// Dropped once the message is in the outbox (or given up): a trigger event's waiter.
    pub stored: Option<StoredNotice>,
    /// MQTT 5: the correlation data of the request this message answers (on its response
    /// topic; never stored in the outbox).
    pub correlation_data: Option<Vec<u8>>,
}

/// Latency bookkeeping carried by an embedding message (memory only; a message replayed from
/// the outbox after a restart has none).
#[derive(Debug, Clone)]
pub struct MessageTiming {
    /// The sensor's counters, where the latencies are recorded.
    pub stats: Arc<StreamStats>,
    /// When the worker handed the message over.
    pub handed_at: Instant,
    /// Window end → handed over.
    pub window_end_age: Duration,
}

impl MessageTiming {
    /// Records the publish and end-to-end latencies of a message acknowledged now.
    pub fn record_delivered(&self) {
        let publish = self.handed_at.elapsed();
        self.stats.record_latency(Stage::Publish, publish);
        self.stats
            .record_latency(Stage::EndToEnd, self.window_end_age + publish);
    }
}

/// A message and how it travels.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// Through the outbox: kept until the broker acknowledges it, also across restarts.
    Durable(OutMessage),
    /// Memory only, sent while connected (status, state, stats: rebuilt at every connection).
    Control(OutMessage),
}

/// A payload that could not be encoded (it is not published; counted as `serialize`).
#[derive(Debug, thiserror::Error)]
#[error("cannot encode the {what} message{}: {source}", sensor.as_ref().map_or_else(String::new, |s| format!(" of {s}")))]
pub struct EncodeError {
    /// Which message.
    pub what: &'static str,
    /// Its sensor.
    pub sensor: Option<Arc<str>>,
    /// Why.
    pub source: serde_json::Error,
}

/// The MQTT side of events.
#[derive(Debug, Clone)]
pub struct Codec {
    /// Device id (in every embedding, and an MQTT 5 user property of every message).
    pub device: String,
    /// Topic names.
    pub topics: Topics,
    /// QoS of embedding, labels and state messages (`mqtt.qos`).
    pub qos: Qos,
    /// How the embedding vector is written.
    pub encoding: EmbeddingEncoding,
}

impl Codec {
    fn json<T: serde::Serialize>(
        what: &'static str,
        sensor: Option<&Arc<str>>,
        value: &T,
    ) -> Result<Vec<u8>, EncodeError> {
        serde_json::to_vec(value).map_err(|source| EncodeError {
            what,
            sensor: sensor.cloned(),
            source,
        })
    }

    /// The embedding message of a window (carrying its latency bookkeeping).
    ///
    /// # Errors
    /// [`EncodeError`] when it cannot be serialised.
    pub fn embedding(&self, w: &EmbeddedWindow) -> Result<OutMessage, EncodeError> {
        let envelope = EmbeddingEnvelope {
            v: ENVELOPE_VERSION,
            device: &self.device,
            sensor: &w.sensor,
            modality: w.modality,
            seq: w.window.seq,
            window: WindowInfo {
                start_utc_ns: w.window.start.utc_ns,
                end_utc_ns: w.window.end.utc_ns,
                sample_count: w.window.sample_count,
                gaps: w.window.gaps,
                reused_from_seq: w.reused_from_seq,
            },
            model: ModelInfo {
                name: &w.encoder.name,
                sha256: &w.encoder.sha256,
                provider: &w.encoder.provider,
                ort_version: &w.encoder.ort_version,
            },
            embedding: EmbeddingField::encode(&w.embedding, self.encoding),
            embedding_norm: w.norm,
            labels: &w.labels,
            latency: Latency {
                preprocess_ms: w.latency.preprocess_ms,
                queue_ms: w.latency.queue_ms,
                inference_ms: w.latency.inference_ms,
                window_end_to_publish_ms: w.window_end_age.as_nanos() as f64 / 1e6,
            },
        };
        Ok(OutMessage {
            topic: self.topics.embedding(&w.sensor),
            sensor: Some(Arc::clone(&w.sensor)),
            payload: Self::json("embedding", Some(&w.sensor), &envelope)?,
            retain: false,
            qos: self.qos,
            timing: Some(MessageTiming {
                stats: Arc::clone(&w.stats),
                handed_at: w.emitted_at,
                window_end_age: w.window_end_age,
            }),
            stored: None,
            correlation_data: None,
        })
    }

    /// The labels message of a window.
    ///
    /// # Errors
    /// [`EncodeError`] when it cannot be serialised.
    pub fn labels(&self, w: &EmbeddedWindow) -> Result<OutMessage, EncodeError> {
        let labels = LabelsMessage {
            v: ENVELOPE_VERSION,
            sensor: &w.sensor,
            seq: w.window.seq,
            window_end_utc_ns: w.window.end.utc_ns,
            labels: &w.labels,
        };
        Ok(OutMessage {
            topic: self.topics.labels(&w.sensor),
            sensor: Some(Arc::clone(&w.sensor)),
            payload: Self::json("labels", Some(&w.sensor), &labels)?,
            retain: false,
            qos: self.qos,
            timing: None,
            stored: None,
            correlation_data: None,
        })
    }

    /// A sensor's retained `state`.
    ///
    /// # Errors
    /// [`EncodeError`] when it cannot be serialised.
    pub fn state(&self, s: &SensorState) -> Result<OutMessage, EncodeError> {
        let state = StateMessage {
            v: ENVELOPE_VERSION,
            sensor: &s.sensor,
            modality: s.modality,
            snapshot: &s.snapshot,
        };
        Ok(OutMessage {
            topic: self.topics.state(&s.sensor),
            sensor: Some(Arc::clone(&s.sensor)),
            payload: Self::json("state", Some(&s.sensor), &state)?,
            retain: true,
            qos: self.qos,
            timing: None,
            stored: None,
            correlation_data: None,
        })
    }

    /// The daemon's `stats` (QoS 0: it is replaced every interval anyway).
    ///
    /// # Errors
    /// [`EncodeError`] when it cannot be serialised.
    pub fn stats(&self, s: &StatsSnapshot) -> Result<OutMessage, EncodeError> {
        Ok(OutMessage {
            topic: self.topics.stats(),
            sensor: None,
            payload: Self::json("stats", None, s)?,
            retain: false,
            qos: Qos::AtMostOnce,
            timing: None,
            stored: None,
            correlation_data: None,
        })
    }

    /// A concept set in use (retained on `<prefix>/concepts/<set>`) or a refused command (on
    /// `<prefix>/concepts/error`), both through the outbox; with an MQTT 5 response topic, the
    /// same payload there too (memory only: the requester waits for it now or never).
    pub fn concepts(&self, n: &ConceptsNotice, out: &mut Vec<Result<Outgoing, EncodeError>>) {
        let (topic, retain, payload) = match &n.what {
            ConceptsAnswer::Active(a) => (
                self.topics.concept_set(&a.set),
                true,
                Self::json("concept set", None, a),
            ),
            ConceptsAnswer::Refused(r) => (
                self.topics.concept_error(),
                false,
                Self::json("concept error", None, r),
            ),
        };
        let payload = match payload {
            Ok(p) => p,
            Err(e) => return out.push(Err(e)),
        };
        let message = |topic: String, retain: bool| OutMessage {
            topic,
            sensor: None,
            payload: payload.clone(),
            retain,
            qos: Qos::AtLeastOnce,
            timing: None,
            stored: None,
            correlation_data: None,
        };
        if let Some((reply, correlation)) = &n.reply {
            let mut answer = message(reply.clone(), false);
            answer.correlation_data.clone_from(correlation);
            out.push(Ok(Outgoing::Control(answer)));
        }
        out.push(Ok(Outgoing::Durable(message(topic, retain))));
    }

    /// The retained `status`: `online` or `offline` (QoS 1; the Last Will says `offline` too).
    #[must_use]
    pub fn status(&self, online: bool) -> OutMessage {
        OutMessage {
            topic: self.topics.status(),
            sensor: None,
            payload: if online {
                b"online".to_vec()
            } else {
                b"offline".to_vec()
            },
            retain: true,
            qos: Qos::AtLeastOnce,
            timing: None,
            stored: None,
            correlation_data: None,
        }
    }
}

/// What the MQTT output takes from its queue: events, or (benches, tools) ready messages.
pub trait Publish: Send + 'static {
    /// Appends the messages `self` stands for to `out`.
    fn encode(self, codec: &Codec, out: &mut Vec<Result<Outgoing, EncodeError>>);
}

impl Publish for OutMessage {
    fn encode(self, _: &Codec, out: &mut Vec<Result<Outgoing, EncodeError>>) {
        out.push(Ok(Outgoing::Durable(self)));
    }
}

impl Publish for Event {
    fn encode(self, codec: &Codec, out: &mut Vec<Result<Outgoing, EncodeError>>) {
        match self {
            Self::Embedded(w) => {
                out.push(codec.embedding(&w).map(Outgoing::Durable));
                out.push(codec.labels(&w).map(Outgoing::Durable));
            }
            Self::State(s) => out.push(codec.state(&s).map(Outgoing::Control)),
            Self::Stats(s) => out.push(codec.stats(&s).map(Outgoing::Control)),
            Self::Trigger(e) => out.push(codec.trigger_event(&e).map(Outgoing::Durable)),
            Self::TriggerState(s) => out.push(codec.trigger_state(&s).map(Outgoing::Durable)),
            Self::Scene(s) => out.push(codec.scene(&s).map(Outgoing::Durable)),
            Self::Concepts(n) => codec.concepts(&n, out),
            Self::TriggerControl(n) => codec.trigger_control(&n, out),
        }
    }
}
