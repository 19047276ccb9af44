//! The publisher's state machine driven event by event, without a network: what it hands to
//! rumqttc is seen through `Link::in_rumqttc`, what it keeps through the outbox.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::state::Publisher;
use super::{PublisherConfig, CLIENT_CAPACITY};
use crate::config::{EmbeddingEncoding, FsyncPolicy, MqttProtocol, Qos, WhenFull};
use crate::output::{EmbeddedWindow, EncoderInfo, Event, WindowLatency, WindowSpan};
use crate::publish::client::{self, EventLoop, NetEvent};
use crate::publish::encode::Codec;
use crate::publish::outbox::{Outbox, OutboxOptions};
use crate::publish::payload::Topics;
use crate::telemetry::Telemetry;
use crate::time::Timestamp;
use crate::Modality;

fn config() -> PublisherConfig {
    PublisherConfig {
        protocol: MqttProtocol::V311,
        host: "127.0.0.1".into(),
        port: 1,
        tls: None,
        credentials: None,
        client_id: "unit".into(),
        keep_alive: Duration::from_secs(30),
        max_packet_bytes: 1 << 20,
        codec: Codec {
            device: "dev".into(),
            topics: Topics::new("edgebind/dev"),
            qos: Qos::AtLeastOnce,
            encoding: EmbeddingEncoding::Base64F16,
        },
        sensors: vec![(Arc::from("imu"), Modality::Imu)],
        max_backoff: Duration::from_secs(1),
        drain_timeout: Duration::from_secs(5),
        fsync: FsyncPolicy::Interval,
        fsync_interval: Duration::from_millis(100),
        discovery: None,
    }
}

/// A publisher on a fresh outbox in `dir`; the event loop is returned only to keep rumqttc's
/// request queue open (it is never polled).
fn publisher(dir: &std::path::Path) -> (Publisher, EventLoop, Arc<Telemetry>) {
    publisher_with(dir, config())
}

fn publisher_with(
    dir: &std::path::Path,
    cfg: PublisherConfig,
) -> (Publisher, EventLoop, Arc<Telemetry>) {
    let (client, eventloop) = client::new(&cfg.connect_options());
    let options = OutboxOptions::new(dir.join("outbox"), 1 << 30, WhenFull::DropOldest);
    let (outbox, _) = Outbox::open(options).unwrap();
    let telemetry = Arc::new(Telemetry::new(["imu"]));
    let p = Publisher::new(
        cfg,
        outbox,
        client,
        Arc::new(Notify::new()),
        Arc::clone(&telemetry),
    );
    (p, eventloop, telemetry)
}

fn window(telemetry: &Telemetry, seq: u64) -> Event {
    let at = |ms: u64| Timestamp {
        mono_ns: ms * 1_000_000,
        utc_ns: 1_700_000_000_000_000_000 + (ms * 1_000_000) as i64,
    };
    Event::Embedded(Arc::new(EmbeddedWindow {
        sensor: Arc::from("imu"),
        modality: Modality::Imu,
        window: WindowSpan {
            seq,
            start: at(seq * 100),
            end: at(seq * 100 + 5000),
            sample_count: 1000,
            gaps: 0,
        },
        encoder: Arc::new(EncoderInfo {
            name: "tiny".into(),
            sha256: "00".into(),
            provider: "cpu".into(),
            ort_version: "1".into(),
        }),
        embedding: vec![0.5; 4],
        norm: 2.0,
        reused_from_seq: None,
        labels: Vec::new(),
        latency: WindowLatency {
            preprocess_ms: 1.0,
            queue_ms: 0.0,
            inference_ms: 1.0,
        },
        window_end_age: Duration::from_millis(2),
        emitted_at: Instant::now(),
        stats: telemetry.stream("imu"),
        input: None,
    }))
}

fn net(p: &mut Publisher, ev: NetEvent) {
    assert!(p.on_net_event(Some(Ok(ev))));
}

fn puback(pkid: u16, accepted: bool) -> NetEvent {
    NetEvent::PubAck {
        pkid,
        accepted,
        reason: String::new(),
    }
}

#[test]
fn windows_taken_while_disconnected_wait_in_the_outbox_and_each_puback_forgets_one() {
    let dir = tempfile::tempdir().unwrap();
    let (mut p, _eventloop, telemetry) = publisher(dir.path());
    p.on_input(Some(vec![window(&telemetry, 0), window(&telemetry, 1)]));
    assert!(p.prepare().is_some());
    // Embedding and labels of each window, nothing handed to the (absent) broker.
    assert_eq!(p.outbox.pending(), 4);
    assert_eq!(p.link.in_rumqttc(), 0);

    net(&mut p, NetEvent::Connected);
    p.prepare().unwrap();
    // `online`, the retained state of the one sensor, then the four outbox messages.
    assert_eq!(p.link.in_rumqttc(), 6);
    for pkid in 1..=6 {
        net(&mut p, NetEvent::Written(pkid));
    }
    for pkid in [1, 2, 3, 4] {
        net(&mut p, puback(pkid, true));
    }
    assert_eq!(p.outbox.pending(), 2, "two outbox messages acknowledged");
    // A PUBACK for a packet id it never wrote changes nothing.
    net(&mut p, puback(99, true));
    assert_eq!(p.outbox.pending(), 2);
    for pkid in [5, 6] {
        net(&mut p, puback(pkid, true));
    }
    assert_eq!(p.outbox.pending(), 0);
    assert_eq!(p.link.in_rumqttc(), 0);
    assert_eq!(telemetry.publish.delivered.load(Ordering::Relaxed), 6);
    // The embeddings' delivery latency was recorded at their PUBACK.
    let imu = telemetry.stream("imu");
    let publish = imu.latency().get(crate::telemetry::Stage::Publish);
    assert_eq!(publish.values().count, 2);

    // The pipeline closes and nothing is left: the publisher is done after the final states.
    p.on_input::<Event>(None);
    p.prepare().unwrap();
    assert_eq!(p.link.in_rumqttc(), 1, "the final retained state");
    net(&mut p, NetEvent::Written(7));
    net(&mut p, puback(7, true));
    assert!(p.prepare().is_none());
}

#[test]
fn a_connection_lost_before_the_pubacks_sends_everything_unacknowledged_again() {
    let dir = tempfile::tempdir().unwrap();
    let (mut p, _eventloop, telemetry) = publisher(dir.path());
    net(&mut p, NetEvent::Connected);
    p.on_input(Some(vec![window(&telemetry, 0)]));
    p.prepare().unwrap();
    assert_eq!(p.link.in_rumqttc(), 4, "online, state, embedding, labels");
    for pkid in 1..=3 {
        net(&mut p, NetEvent::Written(pkid));
    }
    net(&mut p, puback(3, true));
    assert_eq!(p.outbox.pending(), 1, "the embedding is acknowledged");

    assert!(p.on_net_event(Some(Err(()))));
    assert!(!p.link.connected);
    p.prepare().unwrap();
    assert_eq!(p.outbox.pending(), 1, "kept while disconnected");

    net(&mut p, NetEvent::Connected);
    let stats = &telemetry.publish;
    assert_eq!(stats.reconnects.load(Ordering::Relaxed), 1);
    assert_eq!(stats.resent.load(Ordering::Relaxed), 1, "only the labels");
    p.prepare().unwrap();
    // The new connection's `online` and state, and the labels again (from the outbox).
    assert_eq!(p.link.in_rumqttc(), 3);
    for pkid in 1..=3 {
        net(&mut p, NetEvent::Written(pkid));
        net(&mut p, puback(pkid, true));
    }
    assert_eq!(p.outbox.pending(), 0);
}

#[test]
fn a_message_the_broker_refuses_is_counted_and_forgotten_not_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let (mut p, _eventloop, telemetry) = publisher(dir.path());
    net(&mut p, NetEvent::Connected);
    p.on_input(Some(vec![window(&telemetry, 0)]));
    p.prepare().unwrap();
    for pkid in 1..=4 {
        net(&mut p, NetEvent::Written(pkid));
    }
    net(&mut p, puback(3, false));
    net(&mut p, puback(4, true));
    assert_eq!(p.outbox.pending(), 0);
    assert_eq!(telemetry.publish.rejected.load(Ordering::Relaxed), 1);
    // Reconnecting sends nothing from the outbox again.
    assert!(p.on_net_event(Some(Err(()))));
    net(&mut p, NetEvent::Connected);
    p.prepare().unwrap();
    assert_eq!(p.link.in_rumqttc(), 2, "online and state only");
}

#[test]
fn at_most_the_client_capacity_is_handed_to_rumqttc_unwritten_the_rest_waits_in_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let (mut p, _eventloop, telemetry) = publisher(dir.path());
    let windows = CLIENT_CAPACITY as u64;
    p.on_input(Some((0..windows).map(|s| window(&telemetry, s)).collect()));
    net(&mut p, NetEvent::Connected);
    p.prepare().unwrap();
    // rumqttc's request queue holds CLIENT_CAPACITY requests (and is never polled here): the
    // publisher hands no more than that, and the rest waits in the outbox, not in memory.
    assert_eq!(p.link.in_rumqttc(), CLIENT_CAPACITY);
    assert_eq!(p.outbox.pending(), 2 * CLIENT_CAPACITY);
}

#[test]
fn after_a_stop_the_publisher_gives_up_at_the_drain_deadline_keeping_what_is_unacknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (mut p, _eventloop, telemetry) = publisher(dir.path());
    p.on_input(Some(vec![window(&telemetry, 0)]));
    p.on_stop();
    let wait = p.prepare().unwrap();
    let deadline = wait.drain_deadline.unwrap();
    assert!(deadline > tokio::time::Instant::now() + Duration::from_secs(4));
    // Past the deadline (the broker never came): done, the messages stay in the outbox.
    p.drain_deadline = Some(tokio::time::Instant::now());
    assert!(p.prepare().is_none());
    assert_eq!(p.outbox.pending(), 2);
}

#[test]
fn a_message_that_cannot_be_read_back_is_counted_as_outbox_read_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (mut first, eventloop, telemetry) = publisher(dir.path());
    first.on_input(Some(vec![window(&telemetry, 0), window(&telemetry, 1)]));
    first.outbox.sync().unwrap();
    drop((first, eventloop));
    // A new run finds the four messages, then their segment loses its contents under it
    // (nothing from the last run is cached: every message is read back from the file).
    let (mut p, _eventloop, telemetry) = publisher(dir.path());
    assert_eq!(p.outbox.pending(), 4);
    let segment = dir.path().join("outbox").join("00000000000000000000.seg");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap()
        .set_len(0)
        .unwrap();
    net(&mut p, NetEvent::Connected);
    p.prepare().unwrap();
    assert_eq!(
        p.link.in_rumqttc(),
        2,
        "online and state; no unreadable message"
    );
    assert_eq!(p.outbox.pending(), 0, "skipped, not retried forever");
    assert_eq!(
        telemetry
            .errors
            .get(crate::telemetry::ErrorKind::OutboxRead),
        4
    );
    assert!(telemetry
        .render_prometheus()
        .contains("edgebind_errors_total{kind=\"outbox_read\"} 4\n"));
}

#[test]
fn the_discovery_config_is_queued_at_each_connection_and_on_home_assistants_birth_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.discovery = Some(Arc::new(crate::publish::discovery::Plan {
        birth_topic: Some("homeassistant/status".into()),
        retire: Vec::new(),
        config: Some((
            "homeassistant/device/edgebind_dev/config".into(),
            b"{}".to_vec(),
        )),
    }));
    let (mut p, _eventloop, _) = publisher_with(dir.path(), cfg);
    let queued = |p: &Publisher| {
        p.link
            .control
            .iter()
            .filter(|m| m.topic == "homeassistant/device/edgebind_dev/config")
            .inspect(|m| assert!(m.retain && m.qos == Qos::AtLeastOnce))
            .count()
    };
    let message = |topic: &str, payload: &[u8]| {
        NetEvent::Message(crate::publish::mqtt::InboundMessage {
            topic: topic.into(),
            payload: payload.to_vec(),
            response_topic: None,
            correlation_data: None,
        })
    };
    let birth = |payload: &[u8]| message("homeassistant/status", payload);
    net(&mut p, NetEvent::Connected);
    assert_eq!(queued(&p), 1);
    // Still waiting: a repeated birth message does not queue it twice.
    net(&mut p, birth(b"online"));
    assert_eq!(queued(&p), 1);
    p.prepare().unwrap();
    assert_eq!(queued(&p), 0, "handed to rumqttc");
    net(&mut p, birth(b"offline"));
    net(&mut p, message("elsewhere/status", b"online"));
    assert_eq!(queued(&p), 0);
    net(&mut p, birth(b"online"));
    assert_eq!(queued(&p), 1);
}
