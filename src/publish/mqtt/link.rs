//! The publisher's side of the connection: what it handed to rumqttc and what the broker
//! acknowledged, paired by packet id ([`Link`]); handing control messages and durable outbox
//! messages over in id order, and acting on each event of the event loop task.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;

use tracing::Level;

use super::properties::message_properties;
use super::state::Publisher;
use super::CLIENT_CAPACITY;
use crate::config::Qos;
use crate::log_limited;
use crate::publish::client::{self, NetEvent};
use crate::publish::encode::OutMessage;
use crate::publish::outbox::Record;
use crate::telemetry::ErrorKind;

/// A message handed to rumqttc: an outbox id, or a control message (status, state, stats) that
/// lives only in memory because it is rebuilt at every connect.
#[derive(Debug, Clone, Copy)]
struct Handed {
    id: Option<u64>,
    qos: Qos,
}

/// What rumqttc holds of ours, and the connection's state.
#[derive(Debug, Default)]
pub(super) struct Link {
    /// Control messages, sent before outbox messages.
    pub(super) control: VecDeque<OutMessage>,
    /// The next outbox id to hand to rumqttc (everything pending below it was handed).
    cursor: u64,
    /// Handed to rumqttc, not yet written (no packet id seen).
    handed: VecDeque<Handed>,
    /// Written, waiting for PUBACK, by packet id.
    inflight: HashMap<u16, Handed>,
    /// The broker connection is up.
    pub(super) connected: bool,
    /// A connection succeeded before (the next one is a reconnect).
    ever_connected: bool,
}

impl Link {
    pub(super) fn in_rumqttc(&self) -> usize {
        self.handed.len() + self.inflight.len()
    }

    /// Everything rumqttc held is gone after a session-less reconnect: send it all again.
    fn requeue_unacked(&mut self) -> u64 {
        let n = self
            .handed
            .iter()
            .chain(self.inflight.values())
            .filter(|h| h.id.is_some())
            .count() as u64;
        self.handed.clear();
        self.inflight.clear();
        self.cursor = 0;
        n
    }
}

impl Publisher {
    /// Hands control messages, then durable outbox messages in id order, to rumqttc.
    pub(super) fn hand_over(&mut self) {
        while self.link.connected && self.link.handed.len() < CLIENT_CAPACITY {
            if let Some(m) = self.link.control.pop_front() {
                if self.hand_control(&m).is_err() {
                    self.link.control.push_front(m);
                    return;
                }
                continue;
            }
            let Some(id) = self.outbox.next_pending(self.link.cursor) else {
                return;
            };
            if id >= self.durability.durable_below {
                return;
            }
            let record = match self.outbox.get(id) {
                Ok(Some(r)) => r,
                Ok(None) => {
                    self.link.cursor = id + 1;
                    continue;
                }
                Err(e) => {
                    self.telemetry.errors.add(ErrorKind::OutboxRead);
                    log_limited!(self.logs.read_failed, Level::ERROR,
                        "cannot read a message back from the outbox; skipping it (counted as outbox_read)",
                        error = %e, id);
                    self.ack(id);
                    self.link.cursor = id + 1;
                    continue;
                }
            };
            if self.hand_record(record).is_err() {
                tracing::debug!("MQTT client queue full; will retry");
                return;
            }
            self.link.cursor = id + 1;
        }
    }

    fn hand_control(&mut self, m: &OutMessage) -> Result<(), client::Busy> {
        let props = |topic: &str| {
            let mut p = message_properties(&self.cfg, topic, m.sensor.as_deref());
            p.correlation_data.clone_from(&m.correlation_data);
            p
        };
        self.client
            .try_publish(m.topic.clone(), m.qos, m.retain, m.payload.clone(), props)?;
        self.link.handed.push_back(Handed {
            id: None,
            qos: m.qos,
        });
        Ok(())
    }

    fn hand_record(&mut self, r: Record) -> Result<(), client::Busy> {
        let Record {
            id,
            sensor,
            topic,
            qos,
            retain,
            payload,
        } = r;
        let props = |topic: &str| message_properties(&self.cfg, topic, sensor.as_deref());
        self.client
            .try_publish(topic, qos, retain, payload, props)?;
        self.link.handed.push_back(Handed { id: Some(id), qos });
        Ok(())
    }

    /// Acts on one event of the event loop task. Returns false when that task has ended.
    pub(super) fn on_net_event(&mut self, ev: Option<Result<NetEvent, ()>>) -> bool {
        match ev {
            Some(Ok(NetEvent::Connected)) => self.on_connected(),
            Some(Ok(NetEvent::PubAck {
                pkid,
                accepted,
                reason,
            })) => self.on_puback(pkid, accepted, &reason),
            Some(Ok(NetEvent::Written(pkid))) => self.on_written(pkid),
            Some(Ok(NetEvent::Message(m))) => self.on_received(&m.topic, &m.payload),
            Some(Ok(_)) => {}
            Some(Err(())) => {
                if self.link.connected {
                    tracing::info!("MQTT connection lost");
                }
                self.link.connected = false;
                self.telemetry
                    .publish
                    .connected
                    .store(false, Ordering::Relaxed);
                // Nothing more is handed until the next ConnAck: the poller may now empty
                // rumqttc's queue and reconnect.
                self.resume.notify_one();
            }
            None => {
                tracing::error!("MQTT event loop task ended");
                return false;
            }
        }
        true
    }

    fn on_connected(&mut self) {
        let stats = &self.telemetry.publish;
        self.link.connected = true;
        stats.connected.store(true, Ordering::Relaxed);
        if self.link.ever_connected {
            stats.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        self.link.ever_connected = true;
        let resent = self.link.requeue_unacked();
        if resent > 0 {
            stats.resent.fetch_add(resent, Ordering::Relaxed);
            log_limited!(
                self.logs.resent,
                Level::WARN,
                "broker session lost; re-sending unacknowledged messages",
                resent
            );
        }
        self.link.control.clear();
        self.link.control.push_back(self.cfg.codec.status(true));
        self.queue_states();
        self.discovery_on_connect();
        let pending = self.outbox.pending();
        tracing::info!(host = %self.cfg.host, port = self.cfg.port, outbox_pending = pending, "connected to MQTT broker");
    }

    fn on_puback(&mut self, pkid: u16, accepted: bool, reason: &str) {
        let Some(h) = self.link.inflight.remove(&pkid) else {
            return;
        };
        let stats = &self.telemetry.publish;
        if accepted {
            stats.delivered.fetch_add(1, Ordering::Relaxed);
        } else {
            // An MQTT 5 broker refused it (authorisation, quota): sending it again would be
            // refused again. Counted and forgotten.
            stats.rejected.fetch_add(1, Ordering::Relaxed);
            log_limited!(self.logs.rejected, Level::WARN,
                "the broker refused a message (PUBACK reason); it is dropped", %reason);
        }
        if let Some(id) = h.id {
            self.timings.delivered(id);
            self.ack(id);
        }
    }

    fn on_written(&mut self, pkid: u16) {
        let Some(h) = self.link.handed.pop_front() else {
            return;
        };
        if h.qos == Qos::AtLeastOnce {
            self.link.inflight.insert(pkid, h);
            return;
        }
        self.telemetry
            .publish
            .delivered
            .fetch_add(1, Ordering::Relaxed);
        if let Some(id) = h.id {
            self.timings.delivered(id);
            self.ack(id);
        }
    }
}
