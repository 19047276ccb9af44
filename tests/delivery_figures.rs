//! Measurement, not a CI test (ignored by default): what a subscriber loses when the broker
//! crashes mid-stream, with and without broker persistence and a persistent session. The
//! figures in docs/mqtt.md ("What a broker crash costs") come from
//!
//! ```text
//! cargo test --test delivery_figures -- --ignored --nocapture
//! ```
//!
//! (`EDGEBIND_FIGURES_RUNS=N` runs each set-up N times, default 3). Each run: the daemon
//! publishes a real-time IMU replay (20 windows/s) straight to a mosquitto; a subscriber that
//! behaves like a default paho-mqtt client (reconnects after 1, 2, 4, … s and subscribes again
//! in its connect callback) reads it; the broker is SIGKILLed at an arbitrary moment, stays down
//! for 10 s and is restarted on the same port; the daemon then runs on for a while, is stopped,
//! and the subscriber's `seq`s are compared with the windows the daemon produced.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

const OUTAGE: Duration = Duration::from_secs(10);
/// mosquitto's `autosave_interval` for the persistent set-ups, as recommended in docs/mqtt.md.
const AUTOSAVE_S: u32 = 10;

#[derive(Clone, Copy, Debug)]
enum SetUp {
    /// mosquitto's defaults (no persistence), a clean-session subscriber.
    Volatile,
    /// Persistence, and a subscriber with a persistent session (clean session false).
    Persistent,
    /// As `Persistent`, but the subscriber is offline when the broker crashes.
    PersistentSubscriberAway,
    /// The daemon publishes to a persistent mosquitto on its device, bridged to a persistent
    /// central one where the persistent subscriber reads; the bridge link is down for 10 s and
    /// the device broker is SIGKILLed at the end of that outage, holding the backlog.
    BridgeDeviceCrash,
}

impl SetUp {
    fn broker_lines(self, dir: &Path) -> Vec<String> {
        match self {
            Self::Volatile => Vec::new(),
            _ => mosquitto_persistence(dir, AUTOSAVE_S),
        }
    }

    fn persistent_session(self) -> bool {
        !matches!(self, Self::Volatile)
    }
}

/// A subscriber like a default paho-mqtt client: subscribes in its connect callback, and
/// reconnects after 1, 2, 4, … s (at most 120 s) while the broker is away.
struct PahoLike {
    seqs: Arc<Mutex<Vec<u64>>>,
    windows_total: Arc<Mutex<u64>>,
    stop: Arc<AtomicBool>,
}

impl PahoLike {
    fn start(port: u16, id: &str, filter: &str, persistent: bool) -> Self {
        let mut opts = MqttOptions::new(id, "127.0.0.1", port);
        opts.set_max_packet_size(4 << 20, 4 << 20);
        opts.set_keep_alive(Duration::from_secs(5));
        opts.set_clean_session(!persistent);
        let (client, mut connection) = Client::new(opts, 256);
        let seqs = Arc::new(Mutex::new(Vec::new()));
        let windows_total = Arc::new(Mutex::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        {
            let (seqs, windows_total, stop) = (
                Arc::clone(&seqs),
                Arc::clone(&windows_total),
                Arc::clone(&stop),
            );
            let filter = filter.to_string();
            std::thread::spawn(move || {
                let mut backoff = Duration::from_secs(1);
                for ev in connection.iter() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    match ev {
                        Ok(Event::Incoming(Packet::ConnAck(c))) => {
                            backoff = Duration::from_secs(1);
                            if !c.session_present {
                                client
                                    .try_subscribe(filter.as_str(), QoS::AtLeastOnce)
                                    .unwrap();
                            }
                        }
                        Ok(Event::Incoming(Packet::SubAck(_))) => {
                            let _ = ready_tx.try_send(());
                        }
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            let v: serde_json::Value = match serde_json::from_slice(&p.payload) {
                                Ok(v) => v,
                                Err(_) => continue,
                            };
                            if p.topic.ends_with("/embedding") {
                                seqs.lock().unwrap().push(v["seq"].as_u64().unwrap());
                            } else if p.topic.ends_with("/state") {
                                let n = v["windows_total"].as_u64().unwrap_or(0);
                                let mut total = windows_total.lock().unwrap();
                                *total = (*total).max(n);
                            }
                        }
                        Ok(_) => {}
                        Err(_) => {
                            std::thread::sleep(backoff);
                            backoff = (backoff * 2).min(Duration::from_secs(120));
                        }
                    }
                }
            });
        }
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("SUBACK within 10 s");
        Self {
            seqs,
            windows_total,
            stop,
        }
    }

    fn distinct(&self) -> BTreeSet<u64> {
        self.seqs.lock().unwrap().iter().copied().collect()
    }
}

impl Drop for PahoLike {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct Run {
    windows: u64,
    lost: u64,
    duplicates: u64,
    lost_ranges: Vec<(u64, u64)>,
}

fn ranges(missing: &[u64]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &s in missing {
        match out.last_mut() {
            Some((_, end)) if *end + 1 == s => *end = s,
            _ => out.push((s, s)),
        }
    }
    out
}

fn run_once(set_up: SetUp, round: usize) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("mosquitto");
    let lines = set_up.broker_lines(&store);
    // The subscriber's broker; with the bridge, the device broker is another one.
    let mut broker = start_mosquitto(edgebind::publish::broker::free_port().unwrap(), &lines);
    let port = broker.port();
    let link = Gate::open_to(port);
    let device_store = dir.path().join("device-mosquitto");
    let mut device_lines = mosquitto_persistence(&device_store, AUTOSAVE_S);
    device_lines.extend(mosquitto_bridge(
        link.port,
        &format!("figures-bridge-{round}"),
    ));
    let mut device_broker = matches!(set_up, SetUp::BridgeDeviceCrash).then(|| {
        start_mosquitto(
            edgebind::publish::broker::free_port().unwrap(),
            &device_lines,
        )
    });
    let daemon_port = device_broker.as_ref().map_or(port, LocalBroker::port);
    // The subscriber reaches its broker through a gate, so that it can be taken offline.
    let sub_gate = Gate::open_to(port);
    let device = format!("figures-{round}");
    let filter = format!("edgebind/{device}/#");
    let sub = PahoLike::start(
        sub_gate.port,
        &format!("figures-sub-{}-{round}", std::process::id()),
        &filter,
        set_up.persistent_session(),
    );
    if set_up.persistent_session() {
        // A session is only as durable as the broker's last save (every autosave_interval):
        // measure from a saved one, as after the first minutes of a real deployment.
        let subscribed = std::time::SystemTime::now();
        let db = store.join("mosquitto.db");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !std::fs::metadata(&db)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t > subscribed)
        {
            assert!(Instant::now() < deadline, "mosquitto never saved");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let config = format!(
        "{}[outbox]\ndir = \"{}\"\n\n[[sources]]\ntype = \"imu_replay\"\nname = \"imu\"\npath = \"{}\"\nspeed = \"realtime\"\nloop = true\nwindow_ms = 500\nhop_ms = 50\n",
        base_config(&device, daemon_port),
        dir.path().join("outbox").display(),
        fixture("recordings/imu_demo_200hz.csv").display()
    );
    let path = write_config(dir.path(), &config);
    let log = dir.path().join("daemon.log");
    let mut daemon = spawn_daemon(&path, &log, &["--shutdown-timeout-s", "120"]);
    let wait = |n: usize, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(120);
        while sub.distinct().len() < n {
            assert!(
                Instant::now() < deadline,
                "{what}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait(100, "no stream");
    let crashed_at;
    match set_up {
        SetUp::BridgeDeviceCrash => {
            link.cut();
            std::thread::sleep(OUTAGE);
            let device = device_broker.take().unwrap();
            let device_port = device.port();
            drop(device);
            crashed_at = sub.distinct().len();
            device_broker = Some(start_mosquitto(device_port, &device_lines));
            link.open();
        }
        _ => {
            if matches!(set_up, SetUp::PersistentSubscriberAway) {
                sub_gate.cut();
                std::thread::sleep(Duration::from_secs(2));
            }
            broker.kill();
            drop(broker);
            crashed_at = sub.distinct().len();
            std::thread::sleep(OUTAGE);
            broker = start_mosquitto(port, &lines);
            if matches!(set_up, SetUp::PersistentSubscriberAway) {
                std::thread::sleep(Duration::from_secs(2));
                sub_gate.open();
            }
        }
    }
    // The stream resumes at the subscriber (with or without what the outage held).
    wait(crashed_at + 100, "no stream after the broker came back");
    sigterm(&daemon);
    let exit = wait_with_timeout(&mut daemon, Duration::from_secs(180));
    assert!(
        exit.is_some_and(|s| s.success()),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // The final state (sent after the pipeline drained) gives the number of windows.
    let deadline = Instant::now() + Duration::from_secs(30);
    let windows = loop {
        let total = *sub.windows_total.lock().unwrap();
        let seen = sub.distinct();
        if (total > 0 && (0..total).all(|s| seen.contains(&s))) || Instant::now() > deadline {
            break total.max(seen.last().map_or(0, |s| s + 1));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let seen = sub.distinct();
    let missing: Vec<u64> = (0..windows).filter(|s| !seen.contains(s)).collect();
    let messages = sub.seqs.lock().unwrap().len() as u64;
    drop(device_broker);
    drop(broker);
    Run {
        windows,
        lost: missing.len() as u64,
        duplicates: messages - seen.len() as u64,
        lost_ranges: ranges(&missing),
    }
}

#[test]
#[ignore = "measurement (several minutes): cargo test --test delivery_figures -- --ignored --nocapture"]
fn what_a_broker_crash_costs_a_subscriber() {
    let runs: usize = std::env::var("EDGEBIND_FIGURES_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut table = Vec::new();
    for set_up in [
        SetUp::Volatile,
        SetUp::Persistent,
        SetUp::PersistentSubscriberAway,
        SetUp::BridgeDeviceCrash,
    ] {
        for round in 0..runs {
            let run = run_once(set_up, round);
            eprintln!("{set_up:?} #{round}: {run:?}");
            table.push((set_up, run));
        }
    }
    eprintln!("| set-up | windows | lost | duplicates | lost seq ranges |");
    eprintln!("|---|---|---|---|---|");
    for (set_up, r) in &table {
        eprintln!(
            "| {set_up:?} | {} | {} | {} | {:?} |",
            r.windows, r.lost, r.duplicates, r.lost_ranges
        );
    }
}
