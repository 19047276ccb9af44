//! The one task that owns the MQTT connection. Every message from the pipeline is first
//! appended to the on-disk [`Outbox`] and forgotten only after its PUBACK, because rumqttc drops
//! un-acknowledged QoS 1 messages when the broker comes back without the session: after every
//! (re)connect, everything not yet acknowledged is sent again, in outbox id order
//! (at-least-once), and after a restart the outbox still holds what the last run did not deliver.
//! Reconnects back off exponentially with jitter.
//!
//! rumqttc's `EventLoop::poll` is not cancel-safe while it connects (a dropped poll leaves a
//! half-open connection, and the broker then fires the Last Will of the abandoned one), so the
//! event loop lives in its own task that polls without interruption and forwards events. After a
//! connection error that task waits until this one has stopped handing it messages, then empties
//! rumqttc's request queue before reconnecting: every `Outgoing::Publish` after a ConnAck is then
//! one this task handed after that ConnAck, which keeps the packet-id → outbox-id pairing exact.
//!
//! MQTT 3.1.1 and 5 share this logic through [`super::client`]; with 5 every message also
//! carries a content type and user properties derived from its topic ([`message_properties`]),
//! so nothing about them needs to be stored in the outbox.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::client::{
    self, Client, ConnectOptions, Connection, MessageProperties, NetError, NetEvent,
};
use super::outbox::{Outbox, Record};
use super::payload::{StateMessage, Topics, ENVELOPE_VERSION};
use super::tls::TlsClient;
use crate::config::{FsyncPolicy, MqttProtocol, Qos};
use crate::log_limited;
use crate::telemetry::{DropReason, LogLimiter, Stage, Telemetry};
use crate::Modality;
use tracing::Level;

/// Requests rumqttc may hold in its own channel at once.
const CLIENT_CAPACITY: usize = 256;
/// QoS 1 messages rumqttc keeps in flight (written, waiting for PUBACK).
const INFLIGHT: u16 = 256;
/// Messages taken from the pipeline per outbox write batch.
const BATCH: usize = 256;
/// Events of the connection handled per wake-up at most.
const EVENT_BATCH: usize = 64;

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
    /// For an embedding: what the publisher needs to record the publish and end-to-end latency
    /// at the broker's acknowledgement.
    pub timing: Option<MessageTiming>,
}

/// Latency bookkeeping carried by an embedding message (memory only; a message replayed from
/// the outbox after a restart has none).
#[derive(Debug, Clone)]
pub struct MessageTiming {
    /// The sensor's counters, where the latencies are recorded.
    pub stats: Arc<crate::telemetry::StreamStats>,
    /// When the worker handed the message over.
    pub handed_at: std::time::Instant,
    /// Window end → handed over.
    pub window_end_age: Duration,
}

impl MessageTiming {
    fn record_delivered(&self) {
        let publish = self.handed_at.elapsed();
        self.stats.record_latency(Stage::Publish, publish);
        self.stats
            .record_latency(Stage::EndToEnd, self.window_end_age + publish);
    }
}

/// Timings kept for messages waiting for their acknowledgement. Bounded: a long broker outage
/// must not grow memory; the oldest timings are forgotten first (their latency goes unrecorded).
const MAX_TIMINGS: usize = 65_536;

fn keep_timing(timings: &mut BTreeMap<u64, MessageTiming>, id: u64, timing: MessageTiming) {
    timings.insert(id, timing);
    while timings.len() > MAX_TIMINGS {
        timings.pop_first();
    }
}

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
    /// Device id (an MQTT 5 user property of every message).
    pub device: String,
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
    /// When outbox appends are made durable.
    pub fsync: FsyncPolicy,
    /// Period of the fsync with [`FsyncPolicy::Interval`].
    pub fsync_interval: Duration,
}

/// What the publisher achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublisherReport {
    /// Messages acknowledged (or written, for QoS 0).
    pub delivered: u64,
    /// Messages still unacknowledged when it stopped (they stay in the outbox).
    pub undelivered: u64,
}

/// A message handed to rumqttc: an outbox id, or a control message (status, state, stats) that
/// lives only in memory because it is rebuilt at every connect.
#[derive(Debug, Clone, Copy)]
struct Handed {
    id: Option<u64>,
    qos: Qos,
}

/// One limiter per problem the publisher may meet again and again (a full disk, a failing
/// disk, a broker refusing messages): each is logged once, then summarised every few seconds.
#[derive(Debug, Default)]
struct Logs {
    disk_full: LogLimiter,
    outbox_full: LogLimiter,
    write_failed: LogLimiter,
    read_failed: LogLimiter,
    ack_failed: LogLimiter,
    fsync_failed: LogLimiter,
    rejected: LogLimiter,
    resent: LogLimiter,
    /// Messages dropped by the full outbox since its last log line.
    unlogged_drops: u64,
}

struct State {
    /// Repeated problems, rate-limited.
    logs: Logs,
    /// Latency bookkeeping by outbox id.
    timings: BTreeMap<u64, MessageTiming>,
    /// Control messages, sent before outbox messages.
    control: VecDeque<OutMessage>,
    /// The next outbox id to hand to rumqttc (everything pending below it was handed).
    cursor: u64,
    /// Outbox ids below this are durable and may be sent (fsync policy).
    durable_below: u64,
    /// Handed to rumqttc, not yet written (no packet id seen).
    handed: VecDeque<Handed>,
    /// Written, waiting for PUBACK, by packet id.
    inflight: HashMap<u16, Handed>,
    connected: bool,
    /// A connection succeeded before (the next one is a reconnect).
    ever_connected: bool,
}

impl State {
    fn in_rumqttc(&self) -> usize {
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
                timing: None,
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
            timing: None,
        })
}

/// The sensor a topic `<prefix>/<sensor>/<kind>` belongs to.
fn sensor_of<'a>(topics: &Topics, topic: &'a str) -> Option<&'a str> {
    let prefix = topics.status();
    let prefix = prefix.strip_suffix("status")?;
    topic.strip_prefix(prefix)?.split('/').next()
}

/// Content type of the plain-text `status` payload (`online` / `offline`).
const TEXT: &str = "text/plain; charset=utf-8";
/// Content type of every other payload.
const JSON: &str = "application/json";

/// The MQTT 5 properties of a message on `topic` (pure): `status` is plain text, everything
/// else JSON; user properties name the device, and for sensor topics the sensor and its
/// modality, and for JSON payloads the schema version (`v`).
#[must_use]
pub fn message_properties(cfg: &PublisherConfig, topic: &str) -> MessageProperties {
    let mut user = vec![("device".to_string(), cfg.device.clone())];
    if topic == cfg.topics.status() {
        return MessageProperties {
            content_type: TEXT,
            user,
        };
    }
    let sensor = (topic != cfg.topics.stats())
        .then(|| sensor_of(&cfg.topics, topic))
        .flatten();
    if let Some((name, modality)) =
        sensor.and_then(|s| cfg.sensors.iter().find(|(n, _)| n.as_str() == s))
    {
        user.push(("sensor".to_string(), name.clone()));
        user.push(("modality".to_string(), modality.as_str().to_string()));
    }
    user.push(("schema_version".to_string(), ENVELOPE_VERSION.to_string()));
    MessageProperties {
        content_type: JSON,
        user,
    }
}

fn publish_gauges(telemetry: &Telemetry, outbox: &Outbox, st: &State) {
    let stats = &telemetry.publish;
    stats.unacked.store(
        (outbox.pending() + st.control.len()) as u64,
        Ordering::Relaxed,
    );
    stats
        .outbox_bytes
        .store(outbox.disk_bytes(), Ordering::Relaxed);
    stats
        .outbox_messages
        .store(outbox.pending() as u64, Ordering::Relaxed);
    stats
        .outbox_disk_full
        .store(outbox.counters().disk_full, Ordering::Relaxed);
}

/// Hands control messages, then durable outbox messages in id order, to rumqttc.
fn hand_over(cfg: &PublisherConfig, client: &Client, outbox: &mut Outbox, st: &mut State) {
    let props = |topic: &str| message_properties(cfg, topic);
    while st.connected && st.handed.len() < CLIENT_CAPACITY {
        if let Some(m) = st.control.pop_front() {
            match client.try_publish(m.topic.clone(), m.qos, m.retain, m.payload.clone(), props) {
                Ok(()) => st.handed.push_back(Handed {
                    id: None,
                    qos: m.qos,
                }),
                Err(_) => {
                    st.control.push_front(m);
                    return;
                }
            }
            continue;
        }
        let Some(id) = outbox.next_pending(st.cursor) else {
            return;
        };
        if id >= st.durable_below {
            return;
        }
        let record = match outbox.get(id) {
            Ok(Some(r)) => r,
            Ok(None) => {
                st.cursor = id + 1;
                continue;
            }
            Err(e) => {
                log_limited!(st.logs.read_failed, Level::ERROR,
                    "cannot read a message back from the outbox; skipping it", error = %e, id);
                let _ = outbox.ack(id);
                st.cursor = id + 1;
                continue;
            }
        };
        let Record {
            topic,
            qos: q,
            retain,
            payload,
            ..
        } = record;
        match client.try_publish(topic, q, retain, payload, props) {
            Ok(()) => {
                st.handed.push_back(Handed {
                    id: Some(id),
                    qos: q,
                });
                st.cursor = id + 1;
            }
            Err(client::Busy) => {
                tracing::debug!("MQTT client queue full; will retry");
                return;
            }
        }
    }
}

/// Counts `dropped` (by the outbox's full policy) per sensor and logs it, rate-limited.
fn count_outbox_drops(
    cfg: &PublisherConfig,
    telemetry: &Telemetry,
    logs: &mut Logs,
    dropped: &[Record],
    disk_full: bool,
    refused: bool,
) {
    if dropped.is_empty() {
        return;
    }
    telemetry
        .publish
        .outbox_dropped
        .fetch_add(dropped.len() as u64, Ordering::Relaxed);
    for r in dropped {
        if let Some(sensor) = sensor_of(&cfg.topics, &r.topic) {
            telemetry
                .stream(sensor)
                .add_drops(DropReason::OutboxFull, 1);
        }
    }
    let which = match (refused, dropped.len()) {
        (false, _) => "the oldest messages",
        (true, 1) => "the new message",
        (true, _) => "the oldest messages and the new one",
    };
    // One line per few seconds, with every message dropped since the previous line.
    logs.unlogged_drops += dropped.len() as u64;
    let (limiter, why) = if disk_full {
        (&mut logs.disk_full, "the filesystem is full")
    } else {
        (&mut logs.outbox_full, "outbox.max_bytes reached")
    };
    if let Some(repeats) = limiter.admit(std::time::Instant::now()) {
        tracing::warn!(
            dropped = std::mem::take(&mut logs.unlogged_drops),
            "outbox full ({why}): dropped {which} (outbox.when_full; counted as outbox_full){repeats}"
        );
    }
}

type SyncTask = (u64, JoinHandle<std::io::Result<()>>);

/// Runs the publisher until `rx` is closed and everything in the outbox is acknowledged, then
/// marks the device offline and disconnects. Once `stop` is cancelled (the daemon is shutting
/// down) it keeps going for at most `drain_timeout`, whether or not the pipeline has closed
/// `rx` by then, so that it always ends in bounded time with its own `offline` and DISCONNECT.
/// What is not acknowledged stays in the outbox for the next start.
pub async fn run_publisher(
    cfg: PublisherConfig,
    mut outbox: Outbox,
    mut rx: mpsc::Receiver<OutMessage>,
    telemetry: Arc<Telemetry>,
    stop: CancellationToken,
) -> PublisherReport {
    let (client, eventloop) = client::new(&ConnectOptions {
        protocol: cfg.protocol,
        client_id: cfg.client_id.clone(),
        host: cfg.host.clone(),
        port: cfg.port,
        keep_alive: cfg.keep_alive,
        max_packet_bytes: cfg.max_packet_bytes,
        inflight: INFLIGHT,
        request_capacity: CLIENT_CAPACITY,
        tls: cfg.tls.clone(),
        credentials: cfg
            .credentials
            .as_ref()
            .map(|c| (c.username.clone(), c.password.clone())),
        last_will: (cfg.topics.status(), b"offline".to_vec()),
        last_will_content_type: TEXT,
    });
    let (ev_tx, mut events) = mpsc::channel(1024);
    let resume = Arc::new(Notify::new());
    let poller = tokio::spawn(poll_forever(
        eventloop,
        ev_tx,
        Arc::clone(&resume),
        cfg.max_backoff,
        format!("{}:{}", cfg.host, cfg.port),
        Arc::clone(&telemetry),
    ));
    let stats = &telemetry.publish;
    let every_message = cfg.fsync == FsyncPolicy::EveryMessage;
    let mut st = State {
        logs: Logs::default(),
        control: VecDeque::new(),
        timings: BTreeMap::new(),
        cursor: 0,
        durable_below: if every_message { 0 } else { u64::MAX },
        handed: VecDeque::new(),
        inflight: HashMap::new(),
        connected: false,
        ever_connected: false,
    };
    if every_message {
        // What a previous run left is on disk already.
        st.durable_below = outbox.next_id();
    }
    let mut sync_task: Option<SyncTask> = None;
    let mut sync_due = false;
    // (appended, pending) when the last fsync started: an interval tick with nothing appended or
    // acknowledged since then has nothing to flush (an idle daemon would fsync 10 times a
    // second, a needless flush of eMMC/SD storage on a Jetson).
    let mut synced_mark = (outbox.next_id(), outbox.pending());
    let mut held: Option<OutMessage> = None;
    let mut held_batch: VecDeque<OutMessage> = VecDeque::new();
    let mut input_open = true;
    let mut drain_deadline: Option<Instant> = None;
    let mut tick = (!cfg.stats_interval.is_zero()).then(|| {
        let start = Instant::now() + cfg.stats_interval;
        let mut t = tokio::time::interval_at(start, cfg.stats_interval);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    let fsync_period = cfg.fsync_interval.max(Duration::from_millis(1));
    // Armed only while there is something for it to do (unsynced appends or acknowledgements,
    // or a message held by a full outbox): an idle daemon does not wake up every period.
    let mut fsync_at: Option<Instant> = None;

    'run: loop {
        hand_over(&cfg, &client, &mut outbox, &mut st);
        if sync_due && sync_task.is_none() {
            sync_due = false;
            synced_mark = (outbox.next_id(), outbox.pending());
            match outbox.sync_handle() {
                Ok(h) => {
                    let upto = outbox.next_id();
                    sync_task = Some((upto, tokio::task::spawn_blocking(move || h.sync())));
                }
                Err(e) => {
                    log_limited!(st.logs.fsync_failed, Level::ERROR, "outbox write failed", error = %e)
                }
            }
        }
        publish_gauges(&telemetry, &outbox, &st);
        let idle = outbox.pending() == 0 && st.control.is_empty() && st.in_rumqttc() == 0;
        if !input_open && idle && held.is_none() {
            break;
        }
        if drain_deadline.is_some_and(|d| Instant::now() >= d) {
            if input_open {
                tracing::warn!(
                    "the pipeline did not drain within the shutdown timeout; the final sensor state is not published"
                );
            }
            tracing::warn!(
                undelivered = outbox.pending(),
                "stopping with unacknowledged MQTT messages; they stay in the outbox for the next start"
            );
            break;
        }
        let can_take = input_open && held.is_none();
        let unsynced = !every_message && (outbox.next_id(), outbox.pending()) != synced_mark;
        if !(unsynced || held.is_some()) {
            fsync_at = None;
        } else if fsync_at.is_none() {
            fsync_at = Some(Instant::now() + fsync_period);
        }

        tokio::select! {
            ev = events.recv() => {
                let mut ev = ev;
                // Everything already reported is handled in one go (fewer wake-ups, and the
                // pipeline's channel gets its turn in between, however busy the connection).
                // An event is only taken from the channel when it is handled here.
                let mut handled = 0;
                loop {
                    if !on_event(ev, &cfg, &telemetry, &mut outbox, &mut st, &resume) {
                        break 'run;
                    }
                    handled += 1;
                    if handled == EVENT_BATCH {
                        break;
                    }
                    match events.try_recv() {
                        Ok(next) => ev = Some(next),
                        Err(_) => break,
                    }
                }
            },
            done = async {
                match sync_task.as_mut() {
                    Some((_, h)) => h.await,
                    None => std::future::pending().await,
                }
            } => {
                let upto = sync_task.take().map_or(0, |(u, _)| u);
                match done {
                    Ok(Ok(())) => {
                        if every_message {
                            st.durable_below = st.durable_below.max(upto);
                        }
                    }
                    Ok(Err(e)) => log_limited!(st.logs.fsync_failed, Level::ERROR, "outbox fsync failed", error = %e),
                    Err(e) => log_limited!(st.logs.fsync_failed, Level::ERROR, "outbox fsync task failed", error = %e),
                }
            },
            m = rx.recv(), if can_take => match m {
                Some(m) => {
                    let mut batch = vec![m];
                    while batch.len() < BATCH {
                        match rx.try_recv() {
                            Ok(m) => batch.push(m),
                            Err(_) => break,
                        }
                    }
                    // With `block` and a full outbox the first refused message is held (and the
                    // rest of the batch with it, in order) until acknowledgements make room.
                    let mut rest = batch.into_iter();
                    for m in rest.by_ref() {
                        if let Some(m) = append(&cfg, &telemetry, &mut outbox, &mut st, m) {
                            held = Some(m);
                            break;
                        }
                    }
                    held_batch.extend(rest);
                    if every_message {
                        sync_due = true;
                    }
                }
                None => {
                    // The pipeline has drained: the counters are final, so the retained state
                    // says exactly how many windows each sensor produced.
                    input_open = false;
                    drain_deadline.get_or_insert(Instant::now() + cfg.drain_timeout);
                    tracing::info!(
                        outbox_pending = outbox.pending(),
                        "pipeline drained; every message is in the outbox"
                    );
                    st.control.extend(state_messages(&cfg, &telemetry));
                }
            },
            () = async {
                match fsync_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            } => {
                fsync_at = None;
                sync_due |= unsynced;
                while let Some(m) = held.take() {
                    if let Some(m) = append(&cfg, &telemetry, &mut outbox, &mut st, m) {
                        held = Some(m);
                        break;
                    }
                    held = held_batch.pop_front();
                }
            },
            () = async {
                match drain_deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => {},
            () = stop.cancelled(), if drain_deadline.is_none() => {
                drain_deadline = Some(Instant::now() + cfg.drain_timeout);
            },
            _ = async {
                match tick.as_mut() {
                    Some(t) => t.tick().await,
                    None => std::future::pending().await,
                }
            } => {
                if st.connected {
                    if let Some(m) = stats_message(&cfg, &telemetry) {
                        st.control.push_back(m);
                    }
                    st.control.extend(state_messages(&cfg, &telemetry));
                }
            },
        }
    }

    // Whatever the pipeline handed over and is not in the outbox yet (a stop before it drained,
    // or a full outbox under `block`) goes into the outbox for the next start if it fits.
    rx.close();
    let mut lost = 0u64;
    let waiting = held
        .take()
        .into_iter()
        .chain(held_batch.drain(..))
        .chain(std::iter::from_fn(|| rx.try_recv().ok()));
    for m in waiting {
        if append(&cfg, &telemetry, &mut outbox, &mut st, m).is_some() {
            lost += 1;
        }
    }
    if lost > 0 {
        tracing::error!(
            lost,
            "the outbox is full (outbox.when_full = \"block\"): messages not stored are lost at this stop"
        );
    }
    if let Some((_, h)) = sync_task.take() {
        let _ = h.await;
    }
    if let Err(e) = outbox.sync() {
        tracing::error!(error = %e, "outbox fsync at shutdown failed");
    }
    publish_gauges(&telemetry, &outbox, &st);
    let undelivered = outbox.pending() as u64 + lost;
    if st.connected {
        // A clean stop: say so (the Last Will only covers crashes), then disconnect.
        let topic = cfg.topics.status();
        let _ = client.try_publish(
            topic,
            Qos::AtLeastOnce,
            true,
            b"offline".to_vec(),
            |t: &str| message_properties(&cfg, t),
        );
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut acked = false;
        while !acked {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(Ok(NetEvent::PubAck { .. }))) => acked = true,
                Ok(Some(Ok(_))) => {}
                _ => break,
            }
        }
        let _ = client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while let Some(Ok(ev)) = events.recv().await {
                if ev == NetEvent::Disconnected {
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

/// Acts on one event of the event loop task. Returns false when that task has ended.
fn on_event(
    ev: Option<Result<NetEvent, ()>>,
    cfg: &PublisherConfig,
    telemetry: &Telemetry,
    outbox: &mut Outbox,
    st: &mut State,
    resume: &Notify,
) -> bool {
    let stats = &telemetry.publish;
    match ev {
        Some(Ok(NetEvent::Connected)) => {
            st.connected = true;
            stats.connected.store(true, Ordering::Relaxed);
            if st.ever_connected {
                stats.reconnects.fetch_add(1, Ordering::Relaxed);
            }
            st.ever_connected = true;
            let resent = st.requeue_unacked();
            if resent > 0 {
                stats.resent.fetch_add(resent, Ordering::Relaxed);
                log_limited!(
                    st.logs.resent,
                    Level::WARN,
                    "broker session lost; re-sending unacknowledged messages",
                    resent
                );
            }
            st.control.clear();
            st.control.push_back(OutMessage {
                topic: cfg.topics.status(),
                payload: b"online".to_vec(),
                retain: true,
                qos: Qos::AtLeastOnce,
                timing: None,
            });
            st.control.extend(state_messages(cfg, telemetry));
            let pending = outbox.pending();
            tracing::info!(host = %cfg.host, port = cfg.port, outbox_pending = pending, "connected to MQTT broker");
        }
        Some(Ok(NetEvent::PubAck {
            pkid,
            accepted,
            reason,
        })) => {
            if let Some(h) = st.inflight.remove(&pkid) {
                if accepted {
                    stats.delivered.fetch_add(1, Ordering::Relaxed);
                } else {
                    // An MQTT 5 broker refused it (authorisation, quota): sending it
                    // again would be refused again. Counted and forgotten.
                    stats.rejected.fetch_add(1, Ordering::Relaxed);
                    log_limited!(st.logs.rejected, Level::WARN,
                        "the broker refused a message (PUBACK reason); it is dropped", %reason);
                }
                if let Some(id) = h.id {
                    if let Some(t) = st.timings.remove(&id) {
                        t.record_delivered();
                    }
                    if let Err(e) = outbox.ack(id) {
                        log_limited!(st.logs.ack_failed, Level::ERROR, "outbox ack failed", error = %e);
                    }
                }
            }
        }
        Some(Ok(NetEvent::Written(pkid))) => {
            if let Some(h) = st.handed.pop_front() {
                if h.qos == Qos::AtMostOnce {
                    stats.delivered.fetch_add(1, Ordering::Relaxed);
                    if let Some(id) = h.id {
                        if let Some(t) = st.timings.remove(&id) {
                            t.record_delivered();
                        }
                        let _ = outbox.ack(id);
                    }
                } else {
                    st.inflight.insert(pkid, h);
                }
            }
        }
        Some(Ok(_)) => {}
        Some(Err(())) => {
            if st.connected {
                tracing::info!("MQTT connection lost");
            }
            st.connected = false;
            stats.connected.store(false, Ordering::Relaxed);
            // Nothing more is handed until the next ConnAck: the poller may now empty
            // rumqttc's queue and reconnect.
            resume.notify_one();
        }
        None => {
            tracing::error!("MQTT event loop task ended");
            return false;
        }
    }
    true
}

/// Appends `m` to the outbox. Returns it back when the outbox (or its filesystem) is full and
/// its policy is `block`.
fn append(
    cfg: &PublisherConfig,
    telemetry: &Telemetry,
    outbox: &mut Outbox,
    st: &mut State,
    m: OutMessage,
) -> Option<OutMessage> {
    let disk_full_before = outbox.counters().disk_full;
    let result = outbox.append(&m.topic, m.qos, m.retain, &m.payload);
    let disk_full = outbox.counters().disk_full > disk_full_before;
    match result {
        Ok(Some((id, dropped))) => {
            if let Some(t) = m.timing {
                // drop_newest answers u64::MAX: `m` itself was dropped.
                if id != u64::MAX {
                    keep_timing(&mut st.timings, id, t);
                }
            }
            for d in &dropped {
                st.timings.remove(&d.id);
            }
            // drop_oldest: older messages made room; drop_newest (or nothing left to drop): `m`
            // itself (id u64::MAX).
            let refused = id == u64::MAX;
            count_outbox_drops(cfg, telemetry, &mut st.logs, &dropped, disk_full, refused);
            None
        }
        Ok(None) => {
            if disk_full {
                log_limited!(
                    st.logs.disk_full,
                    Level::WARN,
                    "outbox full (the filesystem is full): holding new messages until there is room (outbox.when_full = \"block\")"
                );
            }
            Some(m)
        }
        Err(e) => {
            log_limited!(st.logs.write_failed, Level::ERROR,
                "cannot write to the outbox; message dropped (counted as outbox_full)",
                error = %e, topic = %m.topic);
            if let Some(sensor) = sensor_of(&cfg.topics, &m.topic) {
                telemetry
                    .stream(sensor)
                    .add_drops(DropReason::OutboxFull, 1);
            }
            telemetry
                .publish
                .outbox_dropped
                .fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// Owns the rumqttc event loop: polls it without interruption, forwards every event, and backs
/// off exponentially (with jitter, capped) after a connection error. Ends when the receiver is
/// gone.
async fn poll_forever(
    mut eventloop: Connection,
    events: mpsc::Sender<Result<NetEvent, ()>>,
    resume: Arc<Notify>,
    max_backoff: Duration,
    broker: String,
    telemetry: Arc<Telemetry>,
) {
    let mut backoff = Duration::from_millis(100);
    let mut logged_down = false;
    loop {
        match eventloop.poll().await {
            Ok(ev) => {
                if ev == NetEvent::Connected {
                    backoff = Duration::from_millis(100);
                    logged_down = false;
                }
                // After our DISCONNECT the broker closes the socket: that is no outage.
                let done = ev == NetEvent::Disconnected;
                if events.send(Ok(ev)).await.is_err() || done {
                    return;
                }
            }
            Err(e) => {
                if let NetError::Refused(code) = &e {
                    telemetry.publish.refused.fetch_add(1, Ordering::Relaxed);
                    // Refused credentials do not fix themselves quickly: say so clearly, once
                    // per outage, and keep backing off (never a crash loop).
                    if !logged_down {
                        tracing::error!(%broker, reason = %code, retry_in_ms = backoff.as_millis() as u64,
                            "MQTT broker refused the connection (check mqtt.username and the password, or the broker's ACL); retrying with backoff");
                        logged_down = true;
                    }
                } else if !logged_down {
                    tracing::warn!(%broker, error = %e, "MQTT broker unreachable; retrying with backoff");
                    logged_down = true;
                } else {
                    tracing::debug!(%broker, error = %e, retry_in_ms = backoff.as_millis() as u64, "MQTT reconnect failed");
                }
                if events.send(Err(())).await.is_err() {
                    return;
                }
                // Wait until the publisher has stopped handing messages, then drop whatever it
                // handed meanwhile (rumqttc would send those after the ConnAck, out of step
                // with the publisher's bookkeeping; the outbox sends them again).
                resume.notified().await;
                tokio::time::sleep(jitter(backoff)).await;
                eventloop.forget_queued();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> PublisherConfig {
        PublisherConfig {
            protocol: MqttProtocol::V5,
            device: "dev1".into(),
            host: "127.0.0.1".into(),
            port: 1883,
            tls: None,
            credentials: None,
            client_id: "c".into(),
            keep_alive: Duration::from_secs(30),
            max_packet_bytes: 1 << 20,
            topics: Topics::new("edgebind/dev1"),
            sensors: vec![
                ("wrist".into(), Modality::Imu),
                ("cam".into(), Modality::Depth),
            ],
            qos: Qos::AtLeastOnce,
            stats_interval: Duration::ZERO,
            max_backoff: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(1),
            fsync: FsyncPolicy::Interval,
            fsync_interval: Duration::from_millis(100),
        }
    }

    fn pairs(p: &MessageProperties) -> Vec<(&str, &str)> {
        p.user
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn sensor_messages_name_device_sensor_modality_and_schema_version() {
        let c = cfg();
        for topic in [
            c.topics.embedding("cam"),
            c.topics.labels("cam"),
            c.topics.state("cam"),
        ] {
            let p = message_properties(&c, &topic);
            assert_eq!(p.content_type, "application/json");
            assert_eq!(
                pairs(&p),
                vec![
                    ("device", "dev1"),
                    ("sensor", "cam"),
                    ("modality", "depth"),
                    ("schema_version", "1")
                ]
            );
        }
    }

    #[test]
    fn status_is_plain_text_and_stats_names_no_sensor() {
        let c = cfg();
        let status = message_properties(&c, &c.topics.status());
        assert_eq!(status.content_type, "text/plain; charset=utf-8");
        assert_eq!(pairs(&status), vec![("device", "dev1")]);
        let stats = message_properties(&c, &c.topics.stats());
        assert_eq!(stats.content_type, "application/json");
        assert_eq!(
            pairs(&stats),
            vec![("device", "dev1"), ("schema_version", "1")]
        );
        // A topic of a sensor no longer configured (replayed from the outbox) names none.
        let gone = message_properties(&c, "edgebind/dev1/old/embedding");
        assert_eq!(
            pairs(&gone),
            vec![("device", "dev1"), ("schema_version", "1")]
        );
    }
}
