//! Shared test helpers: paths, a real mosquitto, a subscriber, the daemon binary.
#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

pub mod ha;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod hostile;

pub use edgebind::publish::LocalBroker;

mod gate;
pub mod realsense;
pub mod small_fs;
pub use gate::{Forwarded, Gate};
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

/// `edgebind embed imu` of the reference IMU input (400 Hz) with `model`, writing `out`; the
/// caller may add flags (`--providers …`) or environment before running it.
pub fn embed_imu_reference(model: &Path, out: &Path) -> Command {
    let mut c = edgebind();
    c.args(["embed", "imu"])
        .arg(fixture("models/imu_ref_input.npy"))
        .args(["--rate-hz", "400", "--model"])
        .arg(model)
        .arg("-o")
        .arg(out);
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

/// The common part of a test config: tiny models, CPU, the given broker. The inference queue
/// blocks instead of dropping the oldest window: tests replay at `speed = "max"` and count every
/// window, and a loaded CI machine must not turn back-pressure into missing windows.
pub fn base_config(device: &str, port: u16) -> String {
    format!(
        r#"[device]
id = "{device}"
[runtime]
execution_providers = ["cpu"]
[models]
dir = "{models}"
when_full = "block"
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

/// The tiny model set with an IMU encoder that runs at once on the warm-up's zeros and never
/// finishes on real motion (`tests/fixtures/models/imu_hang.onnx`).
pub fn hanging_model_set(dir: &Path) -> PathBuf {
    let tiny = repo().join("models/tiny");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tiny.join("manifest.json")).unwrap())
            .unwrap();
    let model = fixture("models/imu_hang.onnx");
    let sha256 = edgebind::inference::manifest::sha256_file(&model).unwrap();
    manifest["models"] = serde_json::json!({ "imu": {
        "file": model.display().to_string(), "sha256": sha256, "input": "imu", "output": "embedding"
    }});
    let set = dir.join("models");
    std::fs::create_dir_all(&set).unwrap();
    for name in ["concepts.txt", "concepts.npy"] {
        std::os::unix::fs::symlink(tiny.join(name), set.join(name)).unwrap();
    }
    std::fs::write(
        set.join("manifest.json"),
        serde_json::to_string_pretty(&manifest).unwrap(),
    )
    .unwrap();
    set
}

/// `imu_demo_200hz.csv` after `zero_samples` samples of zeros: windows made of zeros only run
/// [`hanging_model_set`]'s IMU encoder at once, the first with motion hangs it. With a 100 ms
/// hop (20 samples) and 5 s windows (1000), `1000 + 20 * n` zeros give `n + 1` quick windows.
pub fn imu_zeros_then_motion(dir: &Path, zero_samples: usize) -> PathBuf {
    let demo = std::fs::read_to_string(fixture("recordings/imu_demo_200hz.csv")).unwrap();
    let mut lines = demo.lines();
    let mut text = format!("{}\n", lines.next().unwrap());
    for i in 0..zero_samples {
        text.push_str(&format!("{:.6},0,0,0,0,0,0\n", i as f64 / 200.0));
    }
    for (i, line) in lines.enumerate() {
        let (_, values) = line.split_once(',').unwrap();
        let t = (zero_samples + i) as f64 / 200.0;
        text.push_str(&format!("{t:.6},{values}\n"));
    }
    let path = dir.join("imu_zeros_then_motion.csv");
    std::fs::write(&path, text).unwrap();
    path
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

/// Whether `seen` holds every message in `forwarded` (same topic and payload).
pub fn received_all(seen: &[Seen], forwarded: &[Forwarded]) -> bool {
    let seen: std::collections::HashSet<(&str, &[u8])> = seen
        .iter()
        .map(|m| (m.topic.as_str(), m.payload.as_slice()))
        .collect();
    forwarded
        .iter()
        .all(|f| seen.contains(&(f.topic.as_str(), f.payload.as_slice())))
}

/// mosquitto settings that keep sessions, queued and retained messages across restarts, saved
/// to `dir` every `autosave_s` seconds, with no limit on queued messages (the default 1000
/// drops silently beyond it). See docs/mqtt.md ("mosquitto settings for at-least-once").
pub fn mosquitto_persistence(dir: &Path, autosave_s: u32) -> Vec<String> {
    std::fs::create_dir_all(dir).unwrap();
    vec![
        "persistence true".into(),
        format!("persistence_location {}/", dir.display()),
        format!("autosave_interval {autosave_s}"),
        "max_queued_messages 0".into(),
    ]
}

/// mosquitto settings bridging the daemon's topics to the broker at `remote_port` on loopback:
/// QoS 1 (the default is 0), the bridge's session kept on both sides (`cleansession false`) so
/// that what it has not passed on waits for the link, reconnect attempts every second.
pub fn mosquitto_bridge(remote_port: u16, name: &str) -> Vec<String> {
    vec![
        format!("connection {name}"),
        format!("address 127.0.0.1:{remote_port}"),
        "topic edgebind/# out 1".into(),
        "cleansession false".into(),
        "restart_timeout 1".into(),
        "notifications false".into(),
        "keepalive_interval 5".into(),
    ]
}

/// Starts mosquitto on `port` with `lines` added to its configuration.
pub fn start_mosquitto(port: u16, lines: &[String]) -> LocalBroker {
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    LocalBroker::start_on(port, &lines).unwrap()
}

/// Embedding `seq`s received per sensor, sorted, duplicates removed.
pub fn seqs_of(sub: &Subscriber, sensor: &str) -> Vec<u64> {
    let mut seqs: Vec<u64> = sub
        .on(&format!("/{sensor}/embedding"))
        .iter()
        .map(|m| m.json()["seq"].as_u64().unwrap())
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    seqs
}

/// Bytes of every file in `dir` (not recursive).
pub fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Waits until `path` (a log file) contains `needle`.
pub fn wait_for_log(path: &Path, needle: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::fs::read_to_string(path).is_ok_and(|t| t.contains(needle)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A spawned process that is killed (SIGKILL) and reaped when dropped, so that a test that
/// panics takes its daemon with it instead of leaving it running (and burning CPU) behind.
/// Derefs to the [`Child`], so `child.id()`, `wait_with_timeout(&mut child, …)` and
/// `sigterm(&child)` work as on a plain child.
pub struct KillOnDrop(Child);

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if !matches!(self.0.try_wait(), Ok(Some(_))) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `Command::spawn` returning a [`KillOnDrop`]; panics when the process cannot be started.
pub trait SpawnGuarded {
    fn spawn_guarded(&mut self) -> KillOnDrop;
}

impl SpawnGuarded for Command {
    fn spawn_guarded(&mut self) -> KillOnDrop {
        KillOnDrop(
            self.spawn()
                .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", self.get_program())),
        )
    }
}

/// Starts the daemon with stderr to `log`; it is killed when the returned guard is dropped.
pub fn spawn_daemon(config: &Path, log: &Path, extra: &[&str]) -> KillOnDrop {
    let err = std::fs::File::create(log).unwrap();
    edgebind()
        .arg("run")
        .arg("--config")
        .arg(config)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn_guarded()
}

pub fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// Largest absolute element difference of two tensors of the same shape.
pub fn max_abs_diff(a: &ndarray::ArrayD<f32>, b: &ndarray::ArrayD<f32>) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Checks `v` against the definition `def` of docs/mqtt.schema.json.
pub fn assert_schema(def: &str, v: &serde_json::Value) {
    let text = std::fs::read_to_string(repo().join("docs/mqtt.schema.json")).unwrap();
    let mut schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    let obj = schema.as_object_mut().unwrap();
    obj.remove("oneOf");
    obj.insert("$ref".into(), format!("#/$defs/{def}").into());
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(v).map(|e| e.to_string()).collect();
    assert!(
        errors.is_empty(),
        "{def} does not match the schema: {errors:?}\n{v}"
    );
}
