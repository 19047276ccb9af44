//! Messages the daemon subscribes to, on the one connection the MQTT output owns. A part of the
//! daemon that wants incoming messages registers an [`InboundRoute`]: topic filters and a bounded
//! queue. The event loop task subscribes to every route's filters after each (re)connect (the
//! session is clean, and rumqttc never re-subscribes on its own) and hands each incoming publish
//! to the first route whose filter matches. A full queue drops the message (`drop_newest`:
//! the sender retries or sees no answer; the receiver is never blocked behind the connection),
//! counted in `edgebind_mqtt_inbound_dropped_total{route}`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::publish::client::Client;
use crate::telemetry::Telemetry;

/// One incoming publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMessage {
    /// Its topic.
    pub topic: String,
    /// Its payload.
    pub payload: Vec<u8>,
    /// MQTT 5: where the sender wants the answer (none with 3.1.1).
    pub response_topic: Option<String>,
    /// MQTT 5: what to put in the answer so the sender can pair it with its request.
    pub correlation_data: Option<Vec<u8>>,
}

/// Where the messages of some topic filters go.
#[derive(Debug, Clone)]
pub struct InboundRoute {
    /// Its name (the metric label).
    pub name: &'static str,
    /// MQTT topic filters (`+` and `#` allowed), subscribed at QoS 1.
    pub filters: Vec<String>,
    /// The receiver's queue (bounded; full: drop the newest, counted).
    pub tx: crossbeam_channel::Sender<InboundMessage>,
    dropped: Arc<AtomicU64>,
}

impl InboundRoute {
    /// A route named `name` for `filters` into `tx`, its drops counted in `telemetry`.
    #[must_use]
    pub fn new(
        name: &'static str,
        filters: Vec<String>,
        tx: crossbeam_channel::Sender<InboundMessage>,
        telemetry: &Telemetry,
    ) -> Self {
        Self {
            name,
            filters,
            tx,
            dropped: telemetry.inbound_drops(name),
        }
    }
}

/// Every route of the connection, and the client to subscribe with.
#[derive(Debug, Clone, Default)]
pub struct Inbound {
    routes: Vec<InboundRoute>,
}

impl Inbound {
    /// The routes (none: nothing is subscribed).
    #[must_use]
    pub fn new(routes: Vec<InboundRoute>) -> Self {
        Self { routes }
    }

    /// Adds `route` after the others.
    pub fn push(&mut self, route: InboundRoute) {
        self.routes.push(route);
    }

    /// Asks for every route's subscriptions (after a ConnAck). A request rumqttc cannot queue
    /// now is logged; the next connection asks again.
    pub(super) fn subscribe(&self, client: &Client) {
        for route in &self.routes {
            for filter in &route.filters {
                if client.try_subscribe(filter).is_err() {
                    tracing::warn!(%filter, route = route.name,
                        "cannot subscribe now (the MQTT request queue is full); retried at the next connection");
                }
            }
        }
    }

    /// Hands `message` to the first route whose filter matches its topic; gives it back when
    /// none does (the publisher's own subscriptions: Home Assistant's birth topic).
    pub(super) fn route(&self, message: InboundMessage) -> Option<InboundMessage> {
        let Some(route) = self
            .routes
            .iter()
            .find(|r| r.filters.iter().any(|f| topic_matches(f, &message.topic)))
        else {
            return Some(message);
        };
        if route.tx.try_send(message).is_err() {
            route.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                route = route.name,
                "incoming MQTT message dropped: its queue is full (drop_newest)"
            );
        }
        None
    }
}

/// Whether `topic` matches the MQTT filter `filter` (`+` one level, `#` the rest).
#[must_use]
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    let mut t = topic.split('/');
    for f in filter.split('/') {
        match (f, t.next()) {
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (f, Some(level)) if f == level => {}
            _ => return false,
        }
    }
    t.next().is_none()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_levels_and_wildcards_like_a_broker() {
        assert!(topic_matches("a/+/set", "a/x/set"));
        assert!(!topic_matches("a/+/set", "a/x/y/set"));
        assert!(!topic_matches("a/+/set", "a/x/add"));
        assert!(topic_matches("a/#", "a/x/y"));
        assert!(topic_matches("a/#", "a"));
        assert!(!topic_matches("a/b", "a/b/c"));
        assert!(!topic_matches("a/b/c", "a/b"));
    }

    #[test]
    fn a_full_queue_drops_the_newest_and_counts_it() {
        let telemetry = Telemetry::new([]);
        let (tx, rx) = crossbeam_channel::bounded(1);
        let inbound = Inbound::new(vec![InboundRoute::new(
            "concepts",
            vec!["p/concepts/+/set".into()],
            tx,
            &telemetry,
        )]);
        let msg = |n: u8| InboundMessage {
            topic: "p/concepts/a/set".into(),
            payload: vec![n],
            response_topic: None,
            correlation_data: None,
        };
        assert_eq!(inbound.route(msg(1)), None);
        assert_eq!(inbound.route(msg(2)), None);
        let unrouted = InboundMessage {
            topic: "p/other".into(),
            ..msg(3)
        };
        assert_eq!(inbound.route(unrouted.clone()), Some(unrouted));
        assert_eq!(rx.try_recv().unwrap().payload, [1]);
        assert!(rx.try_recv().is_err());
        assert_eq!(
            telemetry.inbound_dropped(),
            [("concepts".to_string(), 1u64)]
        );
    }
}
