//! Shared test helpers: paths, a real mosquitto, a subscriber, the daemon binary.
#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use edgebind::publish::LocalBroker;
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn refdata_dir() -> PathBuf {
    if let Ok(p) = std::env::var("EDGEBIND_REFDATA") {
        return p.into();
    }
    repo().join("../shared/refdata")
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_edgebind"))
}

/// The daemon binary with logs at info, no colour.
pub fn edgebind() -> Command {
    let mut c = Command::new(bin());
    c.env_remove("RUST_LOG").arg("--log").arg("info");
    c
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("edgebind runs")
}

/// A message seen by the subscriber.
#[derive(Debug, Clone)]
pub struct Seen {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

impl Seen {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).expect("JSON payload")
    }
}

/// Subscribes to `filter` and records every message on a thread.
pub struct Subscriber {
    pub seen: Arc<Mutex<Vec<Seen>>>,
    client: Client,
}

impl Subscriber {
    pub fn start(port: u16, filter: &str) -> Self {
        // Unique per subscriber: a second client with the same id would take the first one's
        // session over (and rumqttc does not re-subscribe after reconnecting).
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("test-sub-{}-{}-{n}", std::process::id(), port);
        let mut opts = MqttOptions::new(id, "127.0.0.1", port);
        opts.set_max_packet_size(4 << 20, 4 << 20);
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
                            seen.lock().unwrap().push(Seen {
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
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("SUBACK within 10 s");
        Self { seen, client }
    }

    pub fn on(&self, suffix: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.topic.ends_with(suffix))
            .cloned()
            .collect()
    }

    /// Waits until `pred` holds for the messages seen so far.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&[Seen]) -> bool) -> bool {
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

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.client.disconnect();
    }
}

/// A config file in a temp dir; paths inside may be absolute.
pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("edgebind.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// The common part of a test config: tiny models, CPU, the given broker.
pub fn base_config(device: &str, port: u16) -> String {
    format!(
        r#"[device]
id = "{device}"
[runtime]
execution_providers = ["cpu"]
[models]
dir = "{models}"
[concepts]
top_k = 3
min_score = 0.1
[mqtt]
url = "mqtt://127.0.0.1:{port}"
stats_interval_s = 0
"#,
        models = repo().join("models/tiny").display()
    )
}

pub fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures").join(name)
}

/// Waits for a child with a deadline; kills it on timeout.
pub fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn npy_f32_2d(path: &Path) -> ndarray::Array2<f32> {
    ndarray_npy::read_npy(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Top label of an embedding or labels payload.
pub fn top_label(v: &serde_json::Value) -> String {
    v["labels"][0]["label"].as_str().unwrap_or("").to_string()
}
