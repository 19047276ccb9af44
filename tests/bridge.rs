//! The fleet topology of docs/mqtt.md ("Fleets"): the daemon publishes to a mosquitto on its
//! device, bridged to a central mosquitto where a persistent subscriber (MQTT 3.1.1 clean
//! session false, or MQTT 5 with a session expiry) and a shared-subscription group read.
//! Each test breaks one part mid-stream — the bridge link, the local broker, the central
//! broker — and checks by `seq` that the persistent subscriber misses no window; duplicates
//! (at-least-once) are counted and printed.
//!
//! What a broker crash can lose is outside what the daemon controls: mosquitto acknowledges a
//! message before it is delivered or saved, so a broker killed in that moment loses it for any
//! publisher. The tests therefore kill a broker once it has passed on everything it
//! acknowledged (the [`Gate`]s in front of each broker record what it acknowledged);
//! `tests/delivery_figures.rs` measures what unprepared crashes cost.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use common::*;

/// Persistence saved every second (the tests wait for a save; docs/mqtt.md gives production
/// values).
fn persistent_broker(dir: &Path) -> Vec<String> {
    mosquitto_persistence(dir, 1)
}

/// A device broker, persistent, bridged to the central one behind `link_port`.
fn bridged_broker(dir: &Path, link_port: u16, name: &str) -> Vec<String> {
    let mut lines = persistent_broker(dir);
    lines.extend(mosquitto_bridge(link_port, name));
    lines
}

/// A subscriber with a session the broker keeps while it is away.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Session {
    /// MQTT 3.1.1, clean session false.
    V311,
    /// MQTT 5, clean start false, session expiry one hour.
    V5,
}

struct Persistent {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// `seq` of every embedding message, in arrival order (parsed once, on arrival).
    seqs: Arc<Mutex<Vec<u64>>>,
    /// `session_present` of every CONNACK, in order.
    sessions: Arc<Mutex<Vec<bool>>>,
    subscribed_at: SystemTime,
}

impl Persistent {
    /// Connects, subscribes to `filter` at QoS 1 once (the broker keeps the subscription), and
    /// records every message on a thread that reconnects after errors like any client would.
    fn start(kind: Session, port: u16, id: &str, filter: &str) -> Self {
        let recorder = Recorder::default();
        let sessions = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        match kind {
            Session::V311 => {
                use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
                let mut opts = MqttOptions::new(id, "127.0.0.1", port);
                opts.set_max_packet_size(4 << 20, 4 << 20);
                opts.set_keep_alive(Duration::from_secs(5));
                opts.set_clean_session(false);
                let (client, mut connection) = Client::new(opts, 256);
                client.subscribe(filter, QoS::AtLeastOnce).unwrap();
                let (recorder, sessions) = (recorder.clone(), Arc::clone(&sessions));
                std::thread::spawn(move || {
                    let _client = client;
                    for ev in connection.iter() {
                        match ev {
                            Ok(Event::Incoming(Packet::ConnAck(c))) => {
                                sessions.lock().unwrap().push(c.session_present);
                            }
                            Ok(Event::Incoming(Packet::SubAck(_))) => {
                                let _ = ready_tx.try_send(());
                            }
                            Ok(Event::Incoming(Packet::Publish(p))) => {
                                recorder.record(Seen {
                                    topic: p.topic.clone(),
                                    payload: p.payload.to_vec(),
                                    retain: p.retain,
                                });
                            }
                            Ok(_) => {}
                            Err(_) => std::thread::sleep(Duration::from_millis(100)),
                        }
                    }
                });
            }
            Session::V5 => {
                use rumqttc::v5::mqttbytes::v5::Packet;
                use rumqttc::v5::mqttbytes::QoS;
                use rumqttc::v5::{Client, Event, MqttOptions};
                let mut opts = MqttOptions::new(id, "127.0.0.1", port);
                opts.set_max_packet_size(Some(4 << 20));
                opts.set_keep_alive(Duration::from_secs(5));
                opts.set_clean_start(false);
                opts.set_session_expiry_interval(Some(3600));
                let (client, mut connection) = Client::new(opts, 256);
                client.subscribe(filter, QoS::AtLeastOnce).unwrap();
                let (recorder, sessions) = (recorder.clone(), Arc::clone(&sessions));
                std::thread::spawn(move || {
                    let _client = client;
                    for ev in connection.iter() {
                        match ev {
                            Ok(Event::Incoming(Packet::ConnAck(c))) => {
                                sessions.lock().unwrap().push(c.session_present);
                            }
                            Ok(Event::Incoming(Packet::SubAck(_))) => {
                                let _ = ready_tx.try_send(());
                            }
                            Ok(Event::Incoming(Packet::Publish(p))) => {
                                recorder.record(Seen {
                                    topic: String::from_utf8_lossy(&p.topic).into_owned(),
                                    payload: p.payload.to_vec(),
                                    retain: p.retain,
                                });
                            }
                            Ok(_) => {}
                            Err(_) => std::thread::sleep(Duration::from_millis(100)),
                        }
                    }
                });
            }
        }
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("SUBACK within 10 s");
        Self {
            seen: recorder.seen,
            seqs: recorder.seqs,
            sessions,
            subscribed_at: SystemTime::now(),
        }
    }

    /// Embedding messages received and their distinct `seq`s.
    fn embeddings(&self) -> (usize, BTreeSet<u64>) {
        let seqs = self.seqs.lock().unwrap();
        (seqs.len(), seqs.iter().copied().collect())
    }

    /// Whether windows `0..n` have all arrived.
    fn has_all(&self, n: u64) -> bool {
        let seqs = self.embeddings().1;
        (0..n).all(|s| seqs.contains(&s))
    }

    fn wait_until(&self, timeout: Duration, pred: impl Fn(&Self) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(self) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Messages and embedding `seq`s as they arrive.
#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Vec<Seen>>>,
    seqs: Arc<Mutex<Vec<u64>>>,
}

impl Recorder {
    fn record(&self, m: Seen) {
        if m.topic.ends_with("/embedding") {
            self.seqs
                .lock()
                .unwrap()
                .push(m.json()["seq"].as_u64().unwrap());
        }
        self.seen.lock().unwrap().push(m);
    }
}

/// Distinct embedding `seq`s among `seen`.
fn embedding_seqs(seen: &[Seen]) -> BTreeSet<u64> {
    seen.iter()
        .filter(|m| m.topic.ends_with("/embedding"))
        .map(|m| m.json()["seq"].as_u64().unwrap())
        .collect()
}

/// The daemon's final count of windows: the largest `windows_total` of the retained `state`
/// messages it wrote to the device broker (the last one is sent after its pipeline drained).
fn final_windows(published: &[Forwarded]) -> u64 {
    published
        .iter()
        .filter(|m| m.topic.ends_with("/imu/state"))
        .filter_map(|m| {
            serde_json::from_slice::<serde_json::Value>(&m.payload).ok()?["windows_total"].as_u64()
        })
        .max()
        .unwrap_or(0)
}

/// The central broker, the device broker bridged to it through `link`, and the daemon
/// publishing to the device broker through `uplink`, each with its own persistence directory.
struct Fleet {
    dir: tempfile::TempDir,
    device: String,
    central: Option<LocalBroker>,
    central_port: u16,
    local: Option<LocalBroker>,
    local_port: u16,
    link: Gate,
    uplink: Gate,
    daemon: Option<KillOnDrop>,
    log: PathBuf,
}

impl Fleet {
    fn start_brokers(device: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let central_port = edgebind::publish::broker::free_port().unwrap();
        let central = start_mosquitto(
            central_port,
            &persistent_broker(&dir.path().join("central")),
        );
        let link = Gate::open_to(central_port);
        let local_port = edgebind::publish::broker::free_port().unwrap();
        let uplink = Gate::closed(local_port);
        let mut fleet = Self {
            log: dir.path().join("daemon.log"),
            dir,
            device: device.to_string(),
            central: Some(central),
            central_port,
            local: None,
            local_port,
            link,
            uplink,
            daemon: None,
        };
        fleet.start_local();
        fleet.uplink.open();
        fleet
    }

    fn start_local(&mut self) {
        let lines = bridged_broker(
            &self.dir.path().join("local"),
            self.link.port,
            &format!("bridge-{}", self.device),
        );
        self.local = Some(start_mosquitto(self.local_port, &lines));
    }

    fn start_central(&mut self) {
        let lines = persistent_broker(&self.dir.path().join("central"));
        self.central = Some(start_mosquitto(self.central_port, &lines));
    }

    /// The daemon on a looping IMU replay in real time, 20 windows a second.
    fn start_daemon(&mut self) {
        let source = format!(
            "\n[[sources]]\ntype = \"imu_replay\"\nname = \"imu\"\npath = \"{}\"\nspeed = \"realtime\"\nloop = true\nwindow_ms = 500\nhop_ms = 50\n",
            fixture("recordings/imu_demo_200hz.csv").display()
        );
        let config = format!(
            "{}reconnect_max_backoff_ms = 500\n[outbox]\ndir = \"{}\"\n{source}",
            base_config(&self.device, self.uplink.port),
            self.dir.path().join("outbox").display()
        );
        let path = write_config(self.dir.path(), &config);
        self.daemon = Some(spawn_daemon(
            &path,
            &self.log,
            &["--shutdown-timeout-s", "60"],
        ));
    }

    fn filter(&self) -> String {
        format!("edgebind/{}/#", self.device)
    }

    /// Waits until the daemon has handed the device broker `n` more embeddings.
    fn wait_published(&self, n: usize) {
        let from = self.uplink.forwarded_count("/embedding");
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.uplink.forwarded_count("/embedding") < from + n {
            assert!(Instant::now() < deadline, "{}", self.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM; the daemon stops with everything acknowledged by the device broker.
    fn stop_daemon(&mut self) {
        let mut child = self.daemon.take().unwrap();
        sigterm(&child);
        let exit = wait_with_timeout(&mut child, Duration::from_secs(90));
        assert!(
            exit.is_some_and(|s| s.success()),
            "{exit:?}\n{}",
            self.log_text()
        );
    }
}

/// Waits for every window the daemon produced (it has stopped) at `sub`, then asserts none is
/// missing; prints the duplicates.
fn assert_nothing_lost(what: &str, sub: &Persistent, fleet: &Fleet) {
    let windows = final_windows(&fleet.uplink.forwarded());
    assert!(
        windows >= 60,
        "{what}: only {windows} windows\n{}",
        fleet.log_text()
    );
    let arrived = sub.wait_until(Duration::from_secs(90), |s| s.has_all(windows));
    let (messages, seqs) = sub.embeddings();
    let missing: Vec<u64> = (0..windows).filter(|s| !seqs.contains(s)).collect();
    let duplicates = messages - seqs.len();
    eprintln!(
        "{what}: {windows} windows, {} missing, {duplicates} duplicate embedding messages",
        missing.len()
    );
    assert!(
        arrived && missing.is_empty(),
        "{what}: {} of {windows} windows missing: {missing:?}\n{}",
        missing.len(),
        fleet.log_text()
    );
}

#[test]
fn a_bridge_link_cut_mid_stream_loses_nothing_and_shared_subscribers_split_the_stream() {
    let mut fleet = Fleet::start_brokers("bridge-cut");
    let sub = Persistent::start(
        Session::V311,
        fleet.central_port,
        "persistent-bridge-cut",
        &fleet.filter(),
    );
    // Two consumers sharing the load: each window goes to one of them.
    let shared_filter = format!("$share/workers/edgebind/{}/+/embedding", fleet.device);
    let workers = [
        Subscriber::start(fleet.central_port, &shared_filter),
        Subscriber::start(fleet.central_port, &shared_filter),
    ];
    fleet.start_daemon();
    assert!(
        sub.wait_until(Duration::from_secs(60), |s| s.embeddings().1.len() >= 20),
        "no stream through the bridge: {}",
        fleet.log_text()
    );
    // The link goes down mid-stream (messages in flight on it are lost with the connection);
    // the device broker keeps what the daemon sends meanwhile, and the link comes back.
    fleet.link.cut();
    fleet.wait_published(40);
    fleet.link.open();
    fleet.wait_published(20);
    fleet.stop_daemon();
    assert_nothing_lost("bridge link cut", &sub, &fleet);

    let all = sub.embeddings().1;
    let per_worker: Vec<BTreeSet<u64>> = workers
        .iter()
        .map(|w| embedding_seqs(&w.seen.lock().unwrap()))
        .collect();
    let union: BTreeSet<u64> = per_worker.iter().flatten().copied().collect();
    let both = per_worker[0].intersection(&per_worker[1]).count();
    eprintln!(
        "shared subscription: {} and {} windows, {both} to both",
        per_worker[0].len(),
        per_worker[1].len()
    );
    assert_eq!(union, all, "the shared group missed windows");
    assert!(
        per_worker.iter().all(|w| !w.is_empty()),
        "one worker got nothing"
    );
    assert!(
        both < all.len() / 2,
        "the group did not split the stream: {both} of {} to both",
        all.len()
    );
}

#[test]
fn the_device_broker_killed_mid_stream_loses_nothing_once_it_has_passed_on_what_it_took() {
    let mut fleet = Fleet::start_brokers("bridge-local");
    let sub = Persistent::start(
        Session::V311,
        fleet.central_port,
        "persistent-bridge-local",
        &fleet.filter(),
    );
    fleet.start_daemon();
    assert!(
        sub.wait_until(Duration::from_secs(60), |s| s.embeddings().1.len() >= 20),
        "no stream through the bridge: {}",
        fleet.log_text()
    );
    // The daemon's connection is cut with messages in flight (sent, not acknowledged); the
    // device broker dies once the central one has acknowledged everything the device broker
    // acknowledged to the daemon, then comes back on its persistence file while the daemon
    // keeps producing into its outbox.
    fleet.uplink.cut();
    let taken = fleet.uplink.acked();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !fleet.link.has_acked_all(&taken) {
        if Instant::now() > deadline {
            let passed = fleet.link.acked();
            let missing: Vec<String> = taken
                .iter()
                .filter(|t| {
                    !passed
                        .iter()
                        .any(|p| p.topic == t.topic && p.payload == t.payload)
                })
                .map(|t| {
                    format!(
                        "{} {:?}",
                        t.topic,
                        String::from_utf8_lossy(&t.payload[..t.payload.len().min(50)])
                    )
                })
                .collect();
            let forwarded = fleet.link.forwarded();
            let unacked: Vec<String> = forwarded
                .iter()
                .filter(|f| !f.acked)
                .map(|f| {
                    format!(
                        "{} dup{} {:?}",
                        f.topic,
                        f.dup,
                        String::from_utf8_lossy(&f.payload[..f.payload.len().min(50)])
                    )
                })
                .collect();
            panic!("the bridge did not pass everything on: missing {missing:#?}\nunacked on the link {unacked:#?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(fleet.local.take());
    fleet.start_local();
    fleet.uplink.open();
    fleet.wait_published(40);
    fleet.stop_daemon();
    assert_nothing_lost("device broker killed", &sub, &fleet);
}

#[test]
fn the_central_broker_killed_mid_stream_keeps_an_mqtt5_session_and_loses_nothing() {
    let mut fleet = Fleet::start_brokers("bridge-central");
    let sub = Persistent::start(
        Session::V5,
        fleet.central_port,
        "persistent-bridge-central",
        &fleet.filter(),
    );
    // The subscription is only as durable as the broker's last save (autosave_interval).
    let db = fleet.dir.path().join("central/mosquitto.db");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::metadata(&db)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t > sub.subscribed_at)
    {
        assert!(Instant::now() < deadline, "the central broker never saved");
        std::thread::sleep(Duration::from_millis(50));
    }
    fleet.start_daemon();
    assert!(
        sub.wait_until(Duration::from_secs(60), |s| s.embeddings().1.len() >= 20),
        "no stream through the bridge: {}",
        fleet.log_text()
    );
    // The bridge's connection is cut with messages in flight; the central broker dies once it
    // has delivered everything it acknowledged, and comes back on its persistence file.
    // Meanwhile the device broker queues, the subscriber is away, and the daemon keeps
    // publishing.
    fleet.link.cut();
    let acked = fleet.link.acked();
    assert!(
        sub.wait_until(Duration::from_secs(60), |s| received_all(
            &s.seen.lock().unwrap(),
            &acked
        )),
        "the central broker did not deliver what it acknowledged"
    );
    drop(fleet.central.take());
    fleet.wait_published(40);
    fleet.start_central();
    fleet.link.open();
    fleet.wait_published(20);
    fleet.stop_daemon();
    assert_nothing_lost("central broker killed", &sub, &fleet);
    // The broker kept the subscriber's session: it came back to its queued messages.
    let sessions = sub.sessions.lock().unwrap().clone();
    assert!(sessions.len() >= 2, "the subscriber never reconnected");
    assert!(
        sessions[1..].iter().all(|present| *present),
        "the session was lost: {sessions:?}"
    );
}
