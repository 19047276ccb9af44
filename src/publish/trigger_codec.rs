//! The MQTT side of the trigger stage's events: `<prefix>/<sensor>/events` (not retained),
//! `<prefix>/<sensor>/triggers/<name>` (retained) and `<prefix>/<scene>/embedding`. All go
//! through the outbox, so a broker outage or a restart loses none of them (docs/triggers.md).

use std::sync::Arc;

use super::encode::{Codec, EncodeError, OutMessage, Outgoing};
use super::payload::EmbeddingField;
use crate::output::{
    SceneOut, TriggerAnswer, TriggerControlNotice, TriggerEventOut, TriggerStateOut,
};
use crate::triggers::payload::{EventMessage, SceneMessage, TriggerStateMessage};

impl Codec {
    fn trigger_json<T: serde::Serialize>(
        what: &'static str,
        sensor: &Arc<str>,
        value: &T,
    ) -> Result<Vec<u8>, EncodeError> {
        serde_json::to_vec(value).map_err(|source| EncodeError {
            what,
            sensor: Some(Arc::clone(sensor)),
            source,
        })
    }

    /// A trigger's `start`, `update` or `end`; carries the event's stored notice.
    ///
    /// # Errors
    /// [`EncodeError`] when it cannot be serialised.
    pub fn trigger_event(&self, e: &TriggerEventOut) -> Result<OutMessage, EncodeError> {
        let sensor: Arc<str> = Arc::from(e.event.sensor.as_str());
        Ok(OutMessage {
            topic: self.topics.events(&sensor),
            payload: Self::trigger_json("event", &sensor, &EventMessage::from(&e.event))?,
            sensor: Some(sensor),
            retain: false,
            qos: self.qos,
            timing: None,
            stored: e.stored.clone(),
            correlation_data: None,
        })
    }

    /// A trigger's retained state.
    ///
    /// # Errors
    /// [`EncodeError`] when it cannot be serialised.
    pub fn trigger_state(&self, s: &TriggerStateOut) -> Result<OutMessage, EncodeError> {
        let message = TriggerStateMessage::new(&s.sensor, &s.state);
        Ok(OutMessage {
            topic: self.topics.trigger_state(&s.sensor, &s.state.trigger),
            payload: Self::trigger_json("trigger state", &s.sensor, &message)?,
            sensor: Some(Arc::clone(&s.sensor)),
            retain: true,
            qos: self.qos,
            timing: None,
            stored: None,
            correlation_data: None,
        })
    }

    /// A scene embedding, its vector encoded as the sensors' are.
    ///
    /// # Errors
    /// [`EncodeError`] when it cannot be serialised.
    pub fn scene(&self, s: &SceneOut) -> Result<OutMessage, EncodeError> {
        let name: Arc<str> = Arc::from(s.frame.name.as_str());
        let embedding = EmbeddingField::encode(&s.frame.embedding, self.encoding);
        let message = SceneMessage::new(&s.frame, embedding, &s.labels);
        Ok(OutMessage {
            topic: self.topics.embedding(&name),
            payload: Self::trigger_json("scene", &name, &message)?,
            sensor: Some(name),
            retain: false,
            qos: self.qos,
            timing: None,
            stored: None,
            correlation_data: None,
        })
    }

    /// A trigger control answer, through the outbox: a sensor's triggers (retained on
    /// `<prefix>/<sensor>/triggers`), an example set stored (`<prefix>/<sensor>/examples`), a
    /// refusal (`<prefix>/triggers/error`), or a removed trigger's retained state cleared (an
    /// empty retained message on `<prefix>/<sensor>/triggers/<name>`). With an MQTT 5 response
    /// topic, the same payload there too (memory only, as concept answers).
    pub fn trigger_control(
        &self,
        n: &TriggerControlNotice,
        out: &mut Vec<Result<Outgoing, EncodeError>>,
    ) {
        let (_sensor, topic, retain, payload): (Arc<str>, String, bool, _) = match &n.what {
            TriggerAnswer::Triggers(l) => {
                let s: Arc<str> = Arc::from(l.sensor.as_str());
                let p = Self::trigger_json("trigger list", &s, l);
                (s, self.topics.trigger_list(&l.sensor), true, p)
            }
            TriggerAnswer::Remembered(e) => {
                let s: Arc<str> = Arc::from(e.sensor.as_str());
                let p = Self::trigger_json("example set", &s, e);
                (s, self.topics.examples(&e.sensor), false, p)
            }
            TriggerAnswer::Refused(r) => {
                let s: Arc<str> = Arc::from(r.sensor.as_str());
                let p = Self::trigger_json("trigger error", &s, r);
                (s, self.topics.trigger_error(), false, p)
            }
            TriggerAnswer::Cleared(sensor, trigger) => {
                let s: Arc<str> = Arc::from(sensor.as_str());
                (
                    s,
                    self.topics.trigger_state(sensor, trigger),
                    true,
                    Ok(Vec::new()),
                )
            }
        };
        let payload = match payload {
            Ok(p) => p,
            Err(e) => return out.push(Err(e)),
        };
        let message = |topic: String, retain: bool| OutMessage {
            topic,
            // Like concept answers: not a sensor's data, and always at least once.
            sensor: None,
            payload: payload.clone(),
            retain,
            qos: crate::config::Qos::AtLeastOnce,
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
}
