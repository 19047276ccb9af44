//! The one task that owns the MQTT connection. It keeps its own record of every message until
//! the broker acknowledges it, because rumqttc drops un-acknowledged QoS 1 messages when the
//! broker comes back without the session: after every (re)connect, everything not yet
//! acknowledged is sent again, in order (at-least-once). Reconnects back off exponentially.
//!
//! rumqttc's `EventLoop::poll` is not cancel-safe while it connects (a dropped poll leaves a
//! half-open connection, and the broker then fires the Last Will of the abandoned one), so the
//! event loop lives in its own task that polls without interruption and forwards events.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, LastWill, MqttOptions, Outgoing, Packet, QoS,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::payload::{StateMessage, Topics, ENVELOPE_VERSION};
use crate::config::Qos;
use crate::telemetry::Telemetry;
use crate::Modality;

/// Requests rumqttc may hold in its own channel at once.
const CLIENT_CAPACITY: usize = 64;
/// Messages the publisher takes from the pipeline while they cannot be sent yet.
const BACKLOG_LIMIT: usize = 1024;

/// A message for the broker.
#[derive(Debug, Clone)]
pub struct OutMessage {
    /// Topic.
    pub topic: String,
    /// Payload bytes.
    pub payload: Vec<u8>,
    /// Retained on the broker.
    pub retain: bool,
    /// Delivery guarantee.
    pub qos: Qos,
}

/// How the publisher connects and what it publishes on its own.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Client id.
    pub client_id: String,
    /// Keep-alive.
    pub keep_alive: Duration,
    /// Largest packet in either direction.
    pub max_packet_bytes: usize,
    /// Topic names.
    pub topics: Topics,
    /// Sensors (for their retained `state`).
    pub sensors: Vec<(String, Modality)>,
    /// QoS of state messages.
    pub qos: Qos,
    /// Period of `stats` and `state` messages (zero: only at connect).
    pub stats_interval: Duration,
    /// Longest reconnect wait.
    pub max_backoff: Duration,
    /// How long to keep trying to deliver what is queued once the pipeline has stopped.
    pub drain_timeout: Duration,
}

/// What the publisher achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublisherReport {
    /// Messages acknowledged (or written, for QoS 0).
    pub delivered: u64,
    /// Messages still unacknowledged when it gave up at shutdown.
    pub undelivered: u64,
}

fn qos(q: Qos) -> QoS {
    match q {
        Qos::AtMostOnce => QoS::AtMostOnce,
        Qos::AtLeastOnce => QoS::AtLeastOnce,
    }
}

#[derive(Debug)]
struct Tracked {
    id: u64,
    msg: OutMessage,
}

struct State {
    backlog: VecDeque<Tracked>,
    /// Handed to rumqttc, not yet written (no packet id seen).
    handed: VecDeque<Tracked>,
    /// Written, waiting for PUBACK, by packet id.
    inflight: HashMap<u16, Tracked>,
    next_id: u64,
    connected: bool,
}

impl State {
    fn push(&mut self, msg: OutMessage) {
        let id = self.next_id;
        self.next_id += 1;
        self.backlog.push_back(Tracked { id, msg });
    }

    fn push_front(&mut self, msg: OutMessage) {
        // Control messages (status, state) go first; their id only orders resends.
        let id = self.backlog.front().map_or(self.next_id, |t| t.id);
        self.backlog.push_front(Tracked { id, msg });
    }

    fn unacked(&self) -> usize {
        self.backlog.len() + self.handed.len() + self.inflight.len()
    }

    /// Everything rumqttc held is gone after a session-less reconnect: queue it again in order.
    fn requeue_unacked(&mut self) -> u64 {
        let mut again: Vec<Tracked> = self.handed.drain(..).collect();
        again.extend(self.inflight.drain().map(|(_, t)| t));
        let n = again.len() as u64;
        again.sort_by_key(|t| t.id);
        for t in again.into_iter().rev() {
            self.backlog.push_front(t);
        }
        n
    }
}

fn state_messages(cfg: &PublisherConfig, telemetry: &Telemetry) -> Vec<OutMessage> {
    cfg.sensors
        .iter()
        .filter_map(|(name, modality)| {
            let msg = StateMessage {
                v: ENVELOPE_VERSION,
                sensor: name,
                modality: *modality,
                snapshot: telemetry.stream(name).snapshot(),
            };
            serde_json::to_vec(&msg).ok().map(|payload| OutMessage {
                topic: cfg.topics.state(name),
                payload,
                retain: true,
                qos: cfg.qos,
            })
        })
        .collect()
}

fn stats_message(cfg: &PublisherConfig, telemetry: &Telemetry) -> Option<OutMessage> {
    serde_json::to_vec(&telemetry.stats_json())
        .ok()
        .map(|payload| OutMessage {
            topic: cfg.topics.stats(),
            payload,
            retain: false,
            qos: Qos::AtMostOnce,
        })
}

/// Runs the publisher until `rx` is closed and everything taken from it is acknowledged (or
/// `drain_timeout` passes after the close), then marks the device offline and disconnects.
pub async fn run_publisher(
    cfg: PublisherConfig,
    mut rx: mpsc::Receiver<OutMessage>,
    telemetry: Arc<Telemetry>,
) -> PublisherReport {
    let mut options = MqttOptions::new(cfg.client_id.clone(), cfg.host.clone(), cfg.port);
    options
        .set_keep_alive(cfg.keep_alive.max(Duration::from_secs(1)))
        .set_max_packet_size(cfg.max_packet_bytes, cfg.max_packet_bytes)
        .set_clean_session(true)
        .set_last_will(LastWill::new(
            cfg.topics.status(),
            "offline",
            QoS::AtLeastOnce,
            true,
        ));
    let (client, eventloop) = AsyncClient::new(options, CLIENT_CAPACITY);
    let (ev_tx, mut events) = mpsc::channel(256);
    let poller = tokio::spawn(poll_forever(
        eventloop,
        ev_tx,
        cfg.max_backoff,
        format!("{}:{}", cfg.host, cfg.port),
    ));
    let stats = &telemetry.publish;
    let mut st = State {
        backlog: VecDeque::new(),
        handed: VecDeque::new(),
        inflight: HashMap::new(),
        next_id: 0,
        connected: false,
    };
    let mut input_open = true;
    let mut drain_deadline: Option<Instant> = None;
    let mut ever_connected = false;
    let mut tick = (!cfg.stats_interval.is_zero()).then(|| {
        let start = Instant::now() + cfg.stats_interval;
        let mut t = tokio::time::interval_at(start, cfg.stats_interval);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });

    loop {
        while st.connected && st.handed.len() < CLIENT_CAPACITY {
            let Some(t) = st.backlog.pop_front() else {
                break;
            };
            match client.try_publish(
                t.msg.topic.clone(),
                qos(t.msg.qos),
                t.msg.retain,
                t.msg.payload.clone(),
            ) {
                Ok(()) => st.handed.push_back(t),
                Err(e) => {
                    tracing::debug!(error = %e, "MQTT client queue full; will retry");
                    st.backlog.push_front(t);
                    break;
                }
            }
        }
        stats.unacked.store(st.unacked() as u64, Ordering::Relaxed);
        if !input_open && st.unacked() == 0 {
            break;
        }
        if drain_deadline.is_some_and(|d| Instant::now() >= d) {
            tracing::error!(
                undelivered = st.unacked(),
                "giving up on unacknowledged MQTT messages at shutdown"
            );
            break;
        }

        tokio::select! {
            m = rx.recv(), if input_open && st.backlog.len() < BACKLOG_LIMIT => match m {
                Some(m) => st.push(m),
                None => {
                    // The pipeline has drained: the counters are final, so the retained state
                    // says exactly how many windows each sensor produced.
                    input_open = false;
                    drain_deadline = Some(Instant::now() + cfg.drain_timeout);
                    for m in state_messages(&cfg, &telemetry) {
                        st.push(m);
                    }
                }
            },
            () = async {
                match drain_deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => {},
            _ = async {
                match tick.as_mut() {
                    Some(t) => t.tick().await,
                    None => std::future::pending().await,
                }
            } => {
                if st.connected {
                    if let Some(m) = stats_message(&cfg, &telemetry) {
                        st.push(m);
                    }
                    for m in state_messages(&cfg, &telemetry) {
                        st.push(m);
                    }
                }
            },
            ev = events.recv() => match ev {
                Some(Ok(Event::Incoming(Packet::ConnAck(ack)))) if ack.code == ConnectReturnCode::Success => {
                    st.connected = true;
                    stats.connected.store(true, Ordering::Relaxed);
                    if ever_connected {
                        stats.reconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    ever_connected = true;
                    let resent = st.requeue_unacked();
                    if resent > 0 {
                        stats.resent.fetch_add(resent, Ordering::Relaxed);
                        tracing::warn!(resent, "broker session lost; re-sending unacknowledged messages");
                    }
                    for m in state_messages(&cfg, &telemetry).into_iter().rev() {
                        st.push_front(m);
                    }
                    st.push_front(OutMessage {
                        topic: cfg.topics.status(),
                        payload: b"online".to_vec(),
                        retain: true,
                        qos: Qos::AtLeastOnce,
                    });
                    tracing::info!(host = %cfg.host, port = cfg.port, "connected to MQTT broker");
                }
                Some(Ok(Event::Incoming(Packet::PubAck(ack)))) => {
                    if st.inflight.remove(&ack.pkid).is_some() {
                        stats.delivered.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Some(Ok(Event::Outgoing(Outgoing::Publish(pkid)))) => {
                    if let Some(t) = st.handed.pop_front() {
                        if t.msg.qos == Qos::AtMostOnce {
                            stats.delivered.fetch_add(1, Ordering::Relaxed);
                        } else {
                            st.inflight.insert(pkid, t);
                        }
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(())) => {
                    st.connected = false;
                    stats.connected.store(false, Ordering::Relaxed);
                }
                None => {
                    tracing::error!("MQTT event loop task ended");
                    break;
                }
            },
        }
    }

    let undelivered = st.unacked() as u64;
    if st.connected {
        // A clean stop: say so (the Last Will only covers crashes), then disconnect.
        let _ = client.try_publish(cfg.topics.status(), QoS::AtLeastOnce, true, "offline");
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut acked = false;
        while !acked {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(Ok(Event::Incoming(Packet::PubAck(_))))) => acked = true,
                Ok(Some(Ok(_))) => {}
                _ => break,
            }
        }
        let _ = client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while let Some(Ok(ev)) = events.recv().await {
                if matches!(ev, Event::Outgoing(Outgoing::Disconnect)) {
                    break;
                }
            }
        })
        .await;
    }
    poller.abort();
    stats.connected.store(false, Ordering::Relaxed);
    PublisherReport {
        delivered: stats.delivered.load(Ordering::Relaxed),
        undelivered,
    }
}

/// Owns the rumqttc event loop: polls it without interruption, forwards every event, and backs
/// off exponentially (with jitter, capped) after a connection error. Ends when the receiver is
/// gone.
async fn poll_forever(
    mut eventloop: rumqttc::EventLoop,
    events: mpsc::Sender<Result<Event, ()>>,
    max_backoff: Duration,
    broker: String,
) {
    let mut backoff = Duration::from_millis(100);
    let mut logged_down = false;
    loop {
        match eventloop.poll().await {
            Ok(ev) => {
                if matches!(ev, Event::Incoming(Packet::ConnAck(_))) {
                    backoff = Duration::from_millis(100);
                    logged_down = false;
                }
                // After our DISCONNECT the broker closes the socket: that is no outage.
                let done = matches!(ev, Event::Outgoing(Outgoing::Disconnect));
                if events.send(Ok(ev)).await.is_err() || done {
                    return;
                }
            }
            Err(e) => {
                if !logged_down {
                    tracing::warn!(%broker, error = %e, "MQTT broker unreachable; retrying with backoff");
                    logged_down = true;
                } else {
                    tracing::debug!(%broker, error = %e, retry_in_ms = backoff.as_millis() as u64, "MQTT reconnect failed");
                }
                if events.send(Err(())).await.is_err() {
                    return;
                }
                tokio::time::sleep(jitter(backoff)).await;
                backoff = (backoff * 2).min(max_backoff);
            }
        }
    }
}

/// Up to +25 % of `d`, so that many devices do not reconnect in lockstep.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos());
    d + d.mul_f64(f64::from(nanos % 1000) / 4000.0)
}
