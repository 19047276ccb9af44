//! Home Assistant's birth message, the one incoming message the publisher itself acts on (the
//! event loop task forwards what no `inbound` route takes). At every connection (a clean session forgets subscriptions) it subscribes to the birth topic
//! and queues the discovery messages; when Home Assistant says `online` (it has started, and
//! forgets entities whose config was not retained) the config is queued again, as Home
//! Assistant's discovery documentation asks of publishers.

use super::state::Publisher;

impl Publisher {
    /// At a connection: subscribe to the birth topic, queue the discovery messages.
    pub(super) fn discovery_on_connect(&mut self) {
        let Some(plan) = self.cfg.discovery.clone() else {
            return;
        };
        if let Some(topic) = &plan.birth_topic {
            // Right after the ConnAck rumqttc's request queue is empty, so this only fails
            // when its event loop is gone (the publisher then ends anyway).
            if self.client.try_subscribe(topic).is_err() {
                tracing::warn!(%topic, "cannot subscribe to Home Assistant's birth topic; discovery configs are sent at each connection only");
            }
        }
        self.queue_discovery();
    }

    /// A message on a subscribed topic.
    pub(super) fn on_received(&mut self, topic: &str, payload: &[u8]) {
        let Some(plan) = &self.cfg.discovery else {
            return;
        };
        if plan.birth_topic.as_deref() == Some(topic) && payload == b"online" {
            tracing::info!(%topic, "Home Assistant started; sending the discovery config again");
            self.queue_discovery();
        }
    }

    /// Queues the discovery messages unless they are still waiting from the last time (a
    /// birth message repeated faster than they go out must not grow the queue).
    fn queue_discovery(&mut self) {
        let Some(plan) = &self.cfg.discovery else {
            return;
        };
        let messages = plan.messages();
        let waiting = |topic: &str| self.link.control.iter().any(|m| m.topic == topic);
        if messages.iter().all(|m| waiting(&m.topic)) {
            return;
        }
        self.link.control.extend(messages);
    }
}
