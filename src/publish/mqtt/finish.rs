//! The publisher's end: what the pipeline handed over and is not in the outbox yet is stored
//! for the next start, the outbox is made durable, and a connected broker is told `offline`
//! before the DISCONNECT (the Last Will only covers crashes).

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::state::Publisher;
use super::PublisherReport;
use crate::publish::client::NetEvent;
use crate::publish::encode::{Outgoing, Publish};
use crate::telemetry::ErrorKind;

/// How long to wait for the broker's PUBACK of `offline`.
const OFFLINE_ACK_WAIT: Duration = Duration::from_secs(2);
/// How long to wait for our DISCONNECT to be written.
const DISCONNECT_WAIT: Duration = Duration::from_millis(500);

impl Publisher {
    /// Stores what is left, syncs, says `offline` and disconnects. What is not acknowledged
    /// stays in the outbox for the next start.
    pub(super) async fn finish<I: Publish>(
        mut self,
        rx: &mut mpsc::Receiver<I>,
        events: &mut mpsc::Receiver<Result<NetEvent, ()>>,
    ) -> PublisherReport {
        let lost = self.store_leftovers(rx);
        if let Some(pending) = self.durability.pending.take() {
            self.on_sync_done(pending.await);
        }
        match self.outbox.begin_sync() {
            Ok(pending) => self.on_sync_done(pending.await),
            Err(e) => {
                self.telemetry.errors.add(ErrorKind::OutboxSync);
                tracing::error!(error = %e, "outbox fsync at shutdown failed (counted as outbox_sync)");
            }
        }
        self.publish_gauges();
        let undelivered = self.outbox.pending() as u64 + lost;
        if self.link.connected {
            self.say_offline(events).await;
        }
        let stats = &self.telemetry.publish;
        stats.connected.store(false, Ordering::Relaxed);
        PublisherReport {
            delivered: stats.delivered.load(Ordering::Relaxed),
            undelivered,
        }
    }

    /// Whatever the pipeline handed over and is not in the outbox yet (a stop before it
    /// drained, or a full outbox under `block`) goes into the outbox if it fits. Returns how
    /// many messages did not fit (lost at this stop).
    fn store_leftovers<I: Publish>(&mut self, rx: &mut mpsc::Receiver<I>) -> u64 {
        rx.close();
        let mut messages: Vec<_> = self.intake.held.take().into_iter().collect();
        messages.extend(self.intake.waiting.drain(..));
        let mut encoded = Vec::new();
        while let Ok(item) = rx.try_recv() {
            item.encode(&self.cfg.codec, &mut encoded);
        }
        for outgoing in encoded {
            match outgoing {
                Ok(Outgoing::Durable(m)) => messages.push(m),
                // Nothing more goes to the broker from here on but `offline`.
                Ok(Outgoing::Control(_)) => {}
                Err(e) => self.encode_failed(&e),
            }
        }
        let lost = messages.into_iter().filter_map(|m| self.append(m)).count() as u64;
        if lost > 0 {
            tracing::error!(
                lost,
                "the outbox is full (outbox.when_full = \"block\"): messages not stored are lost at this stop"
            );
        }
        lost
    }

    /// A clean stop: `offline` (retained), then DISCONNECT, each waited for briefly.
    async fn say_offline(&mut self, events: &mut mpsc::Receiver<Result<NetEvent, ()>>) {
        let offline = self.cfg.codec.status(false);
        let props = |t: &str| super::properties::message_properties(&self.cfg, t, None);
        let sent = self.client.try_publish(
            offline.topic,
            offline.qos,
            offline.retain,
            offline.payload,
            props,
        );
        if sent.is_err() {
            self.request_refused("the offline status");
        } else {
            let deadline = Instant::now() + OFFLINE_ACK_WAIT;
            while let Ok(Some(Ok(ev))) = tokio::time::timeout_at(deadline, events.recv()).await {
                if matches!(ev, NetEvent::PubAck { .. }) {
                    break;
                }
            }
        }
        if self.client.try_disconnect().is_err() {
            self.request_refused("the DISCONNECT");
            return;
        }
        let deadline = Instant::now() + DISCONNECT_WAIT;
        while let Ok(Some(Ok(ev))) = tokio::time::timeout_at(deadline, events.recv()).await {
            if ev == NetEvent::Disconnected {
                break;
            }
        }
    }

    fn request_refused(&self, what: &str) {
        self.telemetry.errors.add(ErrorKind::BrokerRequest);
        tracing::warn!(
            "cannot hand {what} to the MQTT client (its queue is full); the broker does not get it (counted as broker_request)"
        );
    }
}
