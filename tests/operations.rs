//! Operations against the real daemon and a real mosquitto: MQTT 5 properties seen by an MQTT 5
//! subscriber, the concept bank reloaded by SIGHUP (and a bad one refused), and queue depths on
//! the metrics endpoint.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{Client, Event, MqttOptions};

/// A message as an MQTT 5 subscriber sees it.
#[derive(Debug, Clone)]
struct Seen5 {
    topic: String,
    payload: Vec<u8>,
    content_type: Option<String>,
    user: Vec<(String, String)>,
}

/// An MQTT 5 subscriber recording every message with its properties.
struct Subscriber5 {
    seen: Arc<Mutex<Vec<Seen5>>>,
    client: Client,
}

impl Subscriber5 {
    fn start(port: u16, filter: &str) -> Self {
        let id = format!("test-sub5-{}-{port}", std::process::id());
        let mut opts = MqttOptions::new(id, "127.0.0.1", port);
        opts.set_max_packet_size(Some(4 << 20));
        opts.set_keep_alive(Duration::from_secs(5));
        let (client, mut connection) = Client::new(opts, 64);
        client.subscribe(filter, QoS::AtLeastOnce).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        {
            let seen = Arc::clone(&seen);
            std::thread::spawn(move || {
                for ev in connection.iter() {
                    match ev {
                        Ok(Event::Incoming(Packet::SubAck(_))) => {
                            let _ = ready_tx.try_send(());
                        }
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            let props = p.properties.clone().unwrap_or_default();
                            seen.lock().unwrap().push(Seen5 {
                                topic: String::from_utf8_lossy(&p.topic).into_owned(),
                                payload: p.payload.to_vec(),
                                content_type: props.content_type,
                                user: props.user_properties,
                            });
                        }
                        Ok(_) => {}
                        Err(_) => std::thread::sleep(Duration::from_millis(100)),
                    }
                }
            });
        }
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("SUBACK within 10 s");
        Self { seen, client }
    }

    fn on(&self, suffix: &str) -> Vec<Seen5> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.topic.ends_with(suffix))
            .cloned()
            .collect()
    }

    fn wait_for(&self, timeout: Duration, pred: impl Fn(&[Seen5]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if pred(&self.seen.lock().unwrap()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        pred(&self.seen.lock().unwrap())
    }
}

impl Drop for Subscriber5 {
    fn drop(&mut self) {
        let _ = self.client.disconnect();
    }
}

fn still_imu(name: &str) -> String {
    format!(
        "\n[[sources]]\ntype = \"imu_replay\"\nname = \"{name}\"\npath = \"{}\"\nspeed = \"max\"\n",
        fixture("recordings/imu_still_200hz.csv").display()
    )
}

fn looping_imu(name: &str) -> String {
    format!(
        "\n[[sources]]\ntype = \"imu_replay\"\nname = \"{name}\"\npath = \"{}\"\nspeed = \"max\"\nhop_ms = 100\nloop = true\n",
        fixture("recordings/imu_demo_200hz.csv").display()
    )
}

/// Runs a daemon on the still IMU recording (3 windows) to the end, seen by an MQTT 5
/// subscriber.
fn run_still_with_protocol(device: &str, protocol_line: &str) -> (LocalBroker, Subscriber5) {
    let broker = LocalBroker::start(&[]).unwrap();
    let sub = Subscriber5::start(broker.port(), &format!("edgebind/{device}/#"));
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}{protocol_line}\n{}",
        base_config(device, broker.port()),
        still_imu("imu")
    );
    let path = write_config(dir.path(), &config);
    let log = dir.path().join("daemon.log");
    let mut child = spawn_daemon(&path, &log, &[]);
    let exit = wait_with_timeout(&mut child, Duration::from_secs(60)).expect("daemon stops");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(exit.success(), "{text}");
    assert!(
        sub.wait_for(Duration::from_secs(5), |m| m
            .iter()
            .any(|s| s.topic.ends_with("/status") && s.payload == b"offline")),
        "{text}"
    );
    (broker, sub)
}

fn user<'a>(m: &'a Seen5, name: &str) -> Option<&'a str> {
    m.user
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn mqtt5_messages_carry_content_type_and_user_properties() {
    let (_broker, sub) = run_still_with_protocol("v5dev", "protocol = \"5\"");
    let embeddings = sub.on("/imu/embedding");
    let seqs: Vec<u64> = embeddings
        .iter()
        .map(|m| {
            serde_json::from_slice::<serde_json::Value>(&m.payload).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, vec![0, 1, 2]);
    for m in embeddings.iter().chain(&sub.on("/imu/labels")) {
        assert_eq!(m.content_type.as_deref(), Some("application/json"), "{m:?}");
        assert_eq!(user(m, "device"), Some("v5dev"), "{m:?}");
        assert_eq!(user(m, "sensor"), Some("imu"), "{m:?}");
        assert_eq!(user(m, "modality"), Some("imu"), "{m:?}");
        assert_eq!(user(m, "schema_version"), Some("1"), "{m:?}");
    }
    let state = sub.on("/imu/state");
    assert!(!state.is_empty());
    assert_eq!(state[0].content_type.as_deref(), Some("application/json"));
    assert_eq!(user(&state[0], "sensor"), Some("imu"));
    let status = sub.on("/status");
    assert!(status.len() >= 2, "online and offline: {status:?}");
    for m in &status {
        assert_eq!(
            m.content_type.as_deref(),
            Some("text/plain; charset=utf-8"),
            "{m:?}"
        );
        assert_eq!(user(m, "device"), Some("v5dev"));
        assert_eq!(user(m, "sensor"), None);
    }
}

#[test]
fn mqtt_3_1_1_stays_the_default_and_carries_no_properties() {
    let (_broker, sub) = run_still_with_protocol("v311dev", "");
    let embeddings = sub.on("/imu/embedding");
    assert_eq!(embeddings.len(), 3);
    for m in &embeddings {
        assert_eq!(m.content_type, None, "{m:?}");
        assert!(m.user.is_empty(), "{m:?}");
    }
}

/// A model set in `dir`: the tiny encoders linked, manifest and concept files copied.
fn model_set(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let tiny = repo().join("models/tiny");
    for e in std::fs::read_dir(&tiny).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap();
        if p.extension().is_some_and(|x| x == "onnx") {
            std::os::unix::fs::symlink(&p, dir.join(name)).unwrap();
        } else {
            std::fs::copy(&p, dir.join(name)).unwrap();
        }
    }
}

/// Writes `labels` as the bank's labels (the embeddings stay) and the manifest's checksum of
/// the labels file, as an operator updating a model set would.
fn write_labels(dir: &Path, labels: &str) {
    std::fs::write(dir.join("concepts.txt"), labels).unwrap();
    let sha = edgebind::inference::manifest::sha256_file(&dir.join("concepts.txt")).unwrap();
    let text = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    let mut m: serde_json::Value = serde_json::from_str(&text).unwrap();
    m["concepts"]["sha256"]["concepts.txt"] = serde_json::Value::String(sha);
    std::fs::write(dir.join("manifest.json"), m.to_string()).unwrap();
}

fn scrape(port: u16) -> String {
    use std::io::{Read, Write};
    let mut body = String::new();
    if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
        let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        let _ = s.read_to_string(&mut body);
    }
    body
}

/// The value of the metric line starting with `prefix` (name and labels).
fn metric(body: &str, prefix: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.trim().parse().ok())
}

fn wait_metric(port: u16, prefix: &str, pred: impl Fn(f64) -> bool, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let body = scrape(port);
        if metric(&body, prefix).is_some_and(&pred) || Instant::now() > deadline {
            return body;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn hup(child: &std::process::Child) {
    let ok = Command::new("kill")
        .arg("-HUP")
        .arg(child.id().to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// Top labels of the labels messages in `seen` after the first `skip`, non-empty ones only.
fn top_labels_after(seen: &[Seen], skip: usize) -> Vec<String> {
    seen.iter()
        .filter(|m| m.topic.ends_with("/imu/labels"))
        .skip(skip)
        .map(|m| top_label(&m.json()))
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn sighup_swaps_the_concept_bank_and_a_bad_bank_is_refused_keeping_the_old_one() {
    let broker = LocalBroker::start(&[]).unwrap();
    let sub = Subscriber::start(broker.port(), "edgebind/hup/#");
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    model_set(&models);
    let original = std::fs::read_to_string(models.join("concepts.txt")).unwrap();
    let metrics_port = edgebind::publish::broker::free_port().unwrap();
    let config = format!(
        "{}\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n{}",
        base_config("hup", broker.port()).replace(
            &format!("dir = \"{}\"", repo().join("models/tiny").display()),
            &format!("dir = \"{}\"", models.display())
        ),
        looping_imu("imu")
    );
    assert!(config.contains(&models.display().to_string()));
    let path = write_config(dir.path(), &config);
    let log = dir.path().join("daemon.log");
    let mut child = spawn_daemon(&path, &log, &[]);
    let log_text = || std::fs::read_to_string(&log).unwrap();
    assert!(
        sub.wait_for(Duration::from_secs(30), |m| m
            .iter()
            .filter(|s| s.topic.ends_with("/labels"))
            .count()
            >= 20),
        "{}",
        log_text()
    );
    let before = scrape(metrics_port);
    let old_sha = before
        .lines()
        .find_map(|l| l.strip_prefix("edgebind_concept_bank_concepts{sha256=\""))
        .map(|r| r.split('"').next().unwrap().to_string())
        .unwrap_or_else(|| panic!("no active bank metric:\n{before}"));
    let originals: Vec<&str> = original.lines().filter(|l| !l.is_empty()).collect();
    assert!(top_labels_after(&sub.on("/imu/labels"), 0)
        .iter()
        .all(|l| originals.contains(&l.as_str())));

    // A new bank: the same concepts under new names.
    let renamed: String = originals.iter().map(|l| format!("v2 {l}\n")).collect();
    write_labels(&models, &renamed);
    hup(&child);
    assert!(
        wait_for_log(&log, "concept bank reloaded", Duration::from_secs(20)),
        "{}",
        log_text()
    );
    let seen = sub.on("/imu/labels").len();
    let v2_count = |m: &[Seen]| {
        top_labels_after(m, seen)
            .iter()
            .filter(|l| l.starts_with("v2 "))
            .count()
    };
    assert!(
        sub.wait_for(Duration::from_secs(30), |m| v2_count(m) >= 10),
        "{}",
        log_text()
    );
    // Windows matched after the reload use the new bank: the labels (in window order) switch
    // to it once and never back. How many windows were matched before the reload and still in
    // flight when it was logged depends on scheduling, so no count of them is assumed.
    let after = top_labels_after(&sub.on("/imu/labels"), seen);
    let first_new = after.iter().position(|l| l.starts_with("v2 ")).unwrap();
    assert!(
        after[first_new..].iter().all(|l| l.starts_with("v2 ")),
        "{after:?}"
    );
    let body = scrape(metrics_port);
    assert_eq!(
        metric(&body, "edgebind_concept_bank_reloads_total "),
        Some(1.0)
    );
    assert!(!body.contains(&format!("sha256=\"{old_sha}\"")), "{body}");

    // A bad bank (one label more than embeddings, checksum updated) is refused.
    write_labels(&models, &format!("{renamed}one too many\n"));
    hup(&child);
    assert!(
        wait_for_log(&log, "new concept bank refused", Duration::from_secs(20)),
        "{}",
        log_text()
    );
    let text = log_text();
    assert!(text.contains("labels but"), "{text}");
    let seen = sub.on("/imu/labels").len();
    assert!(
        sub.wait_for(Duration::from_secs(30), |m| top_labels_after(m, seen).len()
            >= 10)
    );
    let kept = top_labels_after(&sub.on("/imu/labels"), seen);
    assert!(kept.iter().all(|l| l.starts_with("v2 ")), "{kept:?}");
    let body = scrape(metrics_port);
    assert_eq!(
        metric(&body, "edgebind_concept_bank_reload_failures_total "),
        Some(1.0)
    );
    assert_eq!(
        metric(&body, "edgebind_concept_bank_reloads_total "),
        Some(1.0)
    );

    sigterm(&child);
    let exit = wait_with_timeout(&mut child, Duration::from_secs(45)).expect("daemon stops");
    assert!(exit.success(), "{}", log_text());
}

#[test]
fn queue_depths_are_gauges_and_a_stalled_model_shows_its_queues_full() {
    let broker = LocalBroker::start(&[]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let metrics_port = edgebind::publish::broker::free_port().unwrap();
    // The inference worker hangs on its first window (a model that never finishes on motion):
    // everything upstream of it fills up.
    let models = hanging_model_set(dir.path());
    let config = format!(
        "{}\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n{}queue_capacity = 16\n",
        base_config("queues", broker.port())
            .replace(
                "when_full = \"block\"\n",
                "when_full = \"block\"\nqueue_capacity = 4\n"
            )
            .replace(
                &repo().join("models/tiny").display().to_string(),
                &models.display().to_string()
            ),
        looping_imu("imu")
    );
    let path = write_config(dir.path(), &config);
    let log = dir.path().join("daemon.log");
    let err = std::fs::File::create(&log).unwrap();
    let mut child = edgebind()
        .arg("run")
        .arg("--config")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn_guarded();
    let inference = "edgebind_queue_depth{queue=\"inference\",name=\"imu\"} ";
    let body = wait_metric(
        metrics_port,
        inference,
        |v| v >= 4.0,
        Duration::from_secs(30),
    );
    let sample = "edgebind_queue_depth{queue=\"sample\",name=\"imu\"} ";
    let body = if metric(&body, sample) == Some(16.0) {
        body
    } else {
        wait_metric(metrics_port, sample, |v| v >= 16.0, Duration::from_secs(30))
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(metric(&body, inference), Some(4.0), "{body}");
    assert_eq!(metric(&body, sample), Some(16.0), "{body}");
    for (line, value) in [
        (
            "edgebind_queue_capacity{queue=\"inference\",name=\"imu\"} ",
            4.0,
        ),
        (
            "edgebind_queue_capacity{queue=\"sample\",name=\"imu\"} ",
            16.0,
        ),
        (
            "edgebind_queue_capacity{queue=\"publisher\",name=\"mqtt\"} ",
            256.0,
        ),
        // The publisher keeps up with a stalled model: nothing waits for it.
        (
            "edgebind_queue_depth{queue=\"publisher\",name=\"mqtt\"} ",
            0.0,
        ),
    ] {
        assert_eq!(metric(&body, line), Some(value), "{line}\n{body}");
    }
}

/// 20,000 messages handed to the publisher at once: rumqttc reports their writes and PUBACKs
/// faster than one event per wake-up, so the publisher's event batching is exercised; losing or
/// mispairing a single event would leave a message unacknowledged (the publisher would then
/// wait out its drain timeout and report it undelivered).
#[test]
fn a_burst_through_the_publisher_is_acknowledged_in_full_and_leaves_the_outbox_empty() {
    use edgebind::config::{FsyncPolicy, MqttProtocol, Qos, WhenFull};
    use edgebind::publish::payload::Topics;
    use edgebind::publish::{run_publisher, OutMessage, Outbox, OutboxOptions, PublisherConfig};
    const N: usize = 20_000;
    // mosquitto queues at most 1000 QoS 1 messages per subscriber by default and drops the rest
    // when the subscriber falls behind the burst; this test checks the publisher, not that limit.
    let broker = LocalBroker::start(&["max_queued_messages 0"]).unwrap();
    let sub = Subscriber::start(broker.port(), "burst/#");
    let dir = tempfile::tempdir().unwrap();
    let options = OutboxOptions::new(dir.path().join("outbox"), 1 << 30, WhenFull::DropOldest);
    let (outbox, _) = Outbox::open(options.clone()).unwrap();
    let topics = Topics::new("burst/dev");
    let cfg = PublisherConfig {
        protocol: MqttProtocol::V311,
        host: "127.0.0.1".into(),
        port: broker.port(),
        tls: None,
        credentials: None,
        client_id: "burst-publisher".into(),
        keep_alive: Duration::from_secs(30),
        max_packet_bytes: 1 << 20,
        codec: edgebind::publish::Codec {
            device: "dev".into(),
            topics: topics.clone(),
            qos: Qos::AtLeastOnce,
            encoding: edgebind::config::EmbeddingEncoding::Json,
        },
        sensors: Vec::new(),
        max_backoff: Duration::from_secs(1),
        drain_timeout: Duration::from_secs(30),
        fsync: FsyncPolicy::Interval,
        fsync_interval: Duration::from_millis(100),
        discovery: None,
    };
    let telemetry = Arc::new(edgebind::telemetry::Telemetry::new(
        std::iter::empty::<&str>(),
    ));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let report = rt.block_on(async {
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let publisher = tokio::spawn(run_publisher(
            cfg,
            outbox,
            rx,
            Arc::clone(&telemetry),
            tokio_util::sync::CancellationToken::new(),
        ));
        for i in 0..N {
            let mut payload = vec![b' '; 1024];
            payload[..8].copy_from_slice(&(i as u64).to_le_bytes());
            let m = OutMessage {
                topic: topics.embedding("s"),
                sensor: None,
                payload,
                retain: false,
                qos: Qos::AtLeastOnce,
                timing: None,
                stored: None,
                correlation_data: None,
            };
            tx.send(m).await.unwrap();
        }
        drop(tx);
        publisher.await.unwrap()
    });
    assert_eq!(report.undelivered, 0, "{report:?}");
    assert!(sub.wait_for(Duration::from_secs(30), |m| m.len() > N));
    let mut ids: Vec<u64> = sub
        .on("/s/embedding")
        .iter()
        .map(|m| u64::from_le_bytes(m.payload[..8].try_into().unwrap()))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids, (0..N as u64).collect::<Vec<_>>());
    let (_, recovery) = Outbox::open(options).unwrap();
    assert_eq!(recovery.pending, 0);
}
