//! The MQTT output: the one task that owns the broker connection. Every durable message is
//! first appended to the on-disk [`Outbox`] and forgotten only after its PUBACK, because rumqttc
//! drops un-acknowledged QoS 1 messages when the broker comes back without the session: after
//! every (re)connect, everything not yet acknowledged is sent again, in outbox id order
//! (at-least-once), and after a restart the outbox still holds what the last run did not
//! deliver. The event loop lives in its own task (`poll`).
//!
//! The publisher is a state machine ([`state`]): one method per event, and the `select!` loop
//! of [`run_publisher`] only dispatches. MQTT 3.1.1 and 5 share it through
//! [`crate::publish::client`]; with 5 every message also carries a content type and user
//! properties derived from its topic and sensor ([`message_properties`]), so nothing about them
//! needs to be stored in the outbox.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::client::{self, ConnectOptions, NetEvent};
use super::connection::Security;
use super::discovery::Plan;
use super::encode::{Codec, Publish};
use super::outbox::{Outbox, PendingSync, SyncDone};
use super::payload::Topics;
use super::tls::TlsClient;
use crate::config::{Config, FsyncPolicy, MqttProtocol};
use crate::output::{FullPolicy, OutputQueue, Outputs};
use crate::telemetry::Telemetry;
use crate::Modality;

mod discovery_link;
mod finish;
pub mod inbound;
mod link;
mod poll;
mod properties;
mod state;
mod store;
#[cfg(test)]
mod tests;

pub use inbound::{topic_matches, Inbound, InboundMessage, InboundRoute};
pub use properties::message_properties;
use state::Publisher;

/// Requests rumqttc may hold in its own channel at once.
const CLIENT_CAPACITY: usize = 256;
/// QoS 1 messages rumqttc keeps in flight (written, waiting for PUBACK).
const INFLIGHT: u16 = 256;
/// Items taken from the pipeline per outbox write batch.
const BATCH: usize = 256;
/// Events of the connection handled per wake-up at most.
const EVENT_BATCH: usize = 64;

/// A user name and password for the broker; the password never appears in logs.
#[derive(Clone)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// How the publisher connects and what it publishes on its own.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// MQTT protocol version.
    pub protocol: MqttProtocol,
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// TLS (for `mqtts://`).
    pub tls: Option<TlsClient>,
    /// User name and password.
    pub credentials: Option<Credentials>,
    /// Client id.
    pub client_id: String,
    /// Keep-alive.
    pub keep_alive: Duration,
    /// Largest packet in either direction.
    pub max_packet_bytes: usize,
    /// Topics, QoS, encoding, device id.
    pub codec: Codec,
    /// Sensors (for their retained `state` and MQTT 5 properties).
    pub sensors: Vec<(Arc<str>, Modality)>,
    /// Longest reconnect wait.
    pub max_backoff: Duration,
    /// How long to keep trying to deliver what is queued once the pipeline has stopped.
    pub drain_timeout: Duration,
    /// When outbox appends are made durable.
    pub fsync: FsyncPolicy,
    /// Period of the fsync with [`FsyncPolicy::Interval`].
    pub fsync_interval: Duration,
    /// Home Assistant discovery: sent at every connection and on HA's birth message (none:
    /// off; set by the caller from `publish::discovery::prepare`, which reads its record).
    pub discovery: Option<Arc<Plan>>,
}

impl PublisherConfig {
    /// The publisher of `config`, connecting to `host:port` with `security`; `drain_timeout`
    /// bounds its delivery after a stop.
    #[must_use]
    pub fn new(
        config: &Config,
        host: &str,
        port: u16,
        security: Security,
        drain_timeout: Duration,
    ) -> Self {
        let mqtt = &config.mqtt;
        Self {
            protocol: mqtt.protocol,
            host: host.to_string(),
            port,
            tls: security.tls,
            credentials: security.credentials,
            client_id: mqtt
                .client_id
                .clone()
                .unwrap_or_else(|| format!("edgebind-{}", config.device.id)),
            keep_alive: Duration::from_secs(mqtt.keep_alive_s),
            max_packet_bytes: mqtt.max_packet_bytes,
            codec: Codec {
                device: config.device.id.clone(),
                topics: Topics::new(config.topic_prefix()),
                qos: mqtt.qos,
                encoding: mqtt.embedding_encoding,
            },
            sensors: config
                .streams()
                .iter()
                .map(|(_, s)| (Arc::from(s.name.as_str()), s.modality))
                .collect(),
            max_backoff: Duration::from_millis(mqtt.reconnect_max_backoff_ms),
            drain_timeout,
            fsync: config.outbox.fsync,
            fsync_interval: Duration::from_millis(config.outbox.fsync_interval_ms),
            discovery: None,
        }
    }

    fn connect_options(&self) -> ConnectOptions {
        ConnectOptions {
            protocol: self.protocol,
            client_id: self.client_id.clone(),
            host: self.host.clone(),
            port: self.port,
            keep_alive: self.keep_alive,
            max_packet_bytes: self.max_packet_bytes,
            inflight: INFLIGHT,
            request_capacity: CLIENT_CAPACITY,
            tls: self.tls.clone(),
            credentials: self
                .credentials
                .as_ref()
                .map(|c| (c.username.clone(), c.password.clone())),
            last_will: (self.codec.topics.status(), b"offline".to_vec()),
            last_will_content_type: properties::TEXT,
        }
    }
}

/// What the publisher achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublisherReport {
    /// Messages acknowledged (or written, for QoS 0).
    pub delivered: u64,
    /// Messages still unacknowledged when it stopped (they stay in the outbox).
    pub undelivered: u64,
}

/// Subscribes the MQTT output to the events (its queue: `mqtt.queue_capacity`, blocking when
/// full, so that every window reaches the outbox) and starts it.
pub fn start_output(
    cfg: PublisherConfig,
    outbox: Outbox,
    queue_capacity: NonZeroUsize,
    outputs: &mut Outputs,
    telemetry: Arc<Telemetry>,
    stop: CancellationToken,
    inbound: Inbound,
) -> JoinHandle<PublisherReport> {
    let events = outputs.subscribe(OutputQueue {
        name: "mqtt",
        capacity: queue_capacity,
        when_full: FullPolicy::Block,
    });
    tokio::spawn(run_publisher_with(
        cfg, outbox, events, telemetry, stop, inbound,
    ))
}

/// Runs the publisher until `rx` is closed and everything in the outbox is acknowledged, then
/// marks the device offline and disconnects. Once `stop` is cancelled (the daemon is shutting
/// down) it keeps going for at most `drain_timeout`, whether or not the pipeline has closed
/// `rx` by then, so that it always ends in bounded time with its own `offline` and DISCONNECT.
/// What is not acknowledged stays in the outbox for the next start.
pub async fn run_publisher<I: Publish>(
    cfg: PublisherConfig,
    outbox: Outbox,
    rx: mpsc::Receiver<I>,
    telemetry: Arc<Telemetry>,
    stop: CancellationToken,
) -> PublisherReport {
    run_publisher_with(cfg, outbox, rx, telemetry, stop, Inbound::default()).await
}

/// [`run_publisher`], also subscribing to the topics of `inbound` and routing what arrives.
pub async fn run_publisher_with<I: Publish>(
    cfg: PublisherConfig,
    outbox: Outbox,
    mut rx: mpsc::Receiver<I>,
    telemetry: Arc<Telemetry>,
    stop: CancellationToken,
    inbound: Inbound,
) -> PublisherReport {
    let (client, eventloop) = client::new(&cfg.connect_options());
    let (ev_tx, mut events) = mpsc::channel(1024);
    let resume = Arc::new(Notify::new());
    let poller = tokio::spawn(poll::poll_forever(
        eventloop,
        ev_tx,
        Arc::clone(&resume),
        cfg.max_backoff,
        format!("{}:{}", cfg.host, cfg.port),
        Arc::clone(&telemetry),
        (client.clone(), inbound),
    ));
    let mut p = Publisher::new(cfg, outbox, client, resume, telemetry);
    while let Some(wait) = p.prepare() {
        tokio::select! {
            ev = events.recv() => if !on_net_events(&mut p, ev, &mut events) {
                break;
            },
            done = sync_done(&mut p.durability.pending) => p.on_sync_done(done),
            batch = recv_batch(&mut rx), if wait.can_take => p.on_input(batch),
            () = sleep_until(wait.fsync_at) => p.on_fsync_timer(),
            () = sleep_until(wait.drain_deadline) => {},
            () = stop.cancelled(), if wait.drain_deadline.is_none() => p.on_stop(),
        }
    }
    let report = p.finish(&mut rx, &mut events).await;
    poller.abort();
    report
}

/// Handles `ev` and everything else already reported, in one go (fewer wake-ups, and the
/// pipeline's queue gets its turn in between, however busy the connection). An event is only
/// taken from the channel when it is handled here. False when the event loop task has ended.
fn on_net_events(
    p: &mut Publisher,
    mut ev: Option<Result<NetEvent, ()>>,
    events: &mut mpsc::Receiver<Result<NetEvent, ()>>,
) -> bool {
    let mut handled = 0;
    loop {
        if !p.on_net_event(ev) {
            return false;
        }
        handled += 1;
        if handled == EVENT_BATCH {
            return true;
        }
        match events.try_recv() {
            Ok(next) => ev = Some(next),
            Err(_) => return true,
        }
    }
}

/// The running fsync's result (never, when none runs).
async fn sync_done(
    pending: &mut Option<PendingSync>,
) -> Result<SyncDone, tokio::sync::oneshot::error::RecvError> {
    match pending.as_mut() {
        Some(p) => p.await,
        None => std::future::pending().await,
    }
}

/// Up to [`BATCH`] items already waiting (`None`: the queue is closed and empty).
async fn recv_batch<I>(rx: &mut mpsc::Receiver<I>) -> Option<Vec<I>> {
    let first = rx.recv().await?;
    let mut batch = vec![first];
    while batch.len() < BATCH {
        match rx.try_recv() {
            Ok(item) => batch.push(item),
            Err(_) => break,
        }
    }
    Some(batch)
}

/// Sleeps until `at` (forever when `None`).
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
