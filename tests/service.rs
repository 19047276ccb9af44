//! The daemon under a (test-owned) service manager: sd_notify READY, periodic WATCHDOG and
//! STOPPING on a socket the test binds, the heartbeat withheld when inference stalls (a model
//! that hangs for real: `tools/make_hanging_model.py`); and `edgebind check` on generated
//! malformed configurations.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// Records every notification.
struct Manager {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    /// Notification lines in the order the socket received them.
    seen: Arc<Mutex<Vec<String>>>,
}

impl Manager {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = Arc::clone(&seen);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = sock.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                for line in text.lines() {
                    s2.lock().unwrap().push(line.to_string());
                }
            }
        });
        Self {
            _dir: dir,
            path,
            seen,
        }
    }

    /// Every notification line so far, in the order the socket received them.
    fn lines(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    fn wait_until(&self, timeout: Duration, pred: impl Fn(&[String]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if pred(&self.seen.lock().unwrap()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        pred(&self.seen.lock().unwrap())
    }

    fn wait(&self, what: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.seen.lock().unwrap().iter().any(|l| l == what) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

fn start(
    manager: &Manager,
    port: u16,
    dir: &std::path::Path,
    models: Option<&std::path::Path>,
) -> KillOnDrop {
    let mut base = base_config("notify", port);
    if let Some(models) = models {
        let tiny = repo().join("models/tiny").display().to_string();
        base = base.replace(&tiny, &models.display().to_string());
    }
    let config = format!(
        "{base}\n[[sources]]\ntype = \"imu_replay\"\nname = \"imu\"\npath = \"{}\"\nspeed = \"realtime\"\nloop = true\nhop_ms = 100\n",
        fixture("recordings/imu_demo_200hz.csv").display()
    );
    let path = write_config(dir, &config);
    let log = std::fs::File::create(dir.join("daemon.log")).unwrap();
    let mut cmd = edgebind();
    cmd.arg("run")
        .arg("--config")
        .arg(&path)
        .env("NOTIFY_SOCKET", &manager.path)
        .env("WATCHDOG_USEC", "300000")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    cmd.spawn_guarded()
}

#[test]
fn the_daemon_notifies_ready_beats_the_watchdog_and_says_stopping() {
    let broker = LocalBroker::start(&[]).unwrap();
    let manager = Manager::new();
    let dir = tempfile::tempdir().unwrap();
    let mut child = start(&manager, broker.port(), dir.path(), None);
    assert!(
        manager.wait("READY=1", Duration::from_secs(20)),
        "no READY=1"
    );
    // Counted, not timed: a loaded machine may stretch the period, but the heartbeat repeats.
    let after_ready = manager.seen.lock().unwrap().len();
    assert!(
        manager.wait_until(Duration::from_secs(30), |seen| {
            seen[after_ready..]
                .iter()
                .filter(|l| *l == "WATCHDOG=1")
                .count()
                >= 5
        }),
        "fewer than 5 heartbeats in 30 s with a 150 ms period: {:?}",
        manager.lines()
    );
    sigterm(&child);
    assert!(wait_with_timeout(&mut child, Duration::from_secs(20)).is_some_and(|s| s.success()));
    assert!(manager.wait("STOPPING=1", Duration::from_secs(10)));
    assert!(manager
        .seen
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.starts_with("STATUS=running")));
}

#[test]
fn a_stalled_inference_worker_stops_the_watchdog_heartbeat() {
    let broker = LocalBroker::start(&[]).unwrap();
    let manager = Manager::new();
    let dir = tempfile::tempdir().unwrap();
    let models = hanging_model_set(dir.path());
    let mut child = start(&manager, broker.port(), dir.path(), Some(&models));
    assert!(
        manager.wait("READY=1", Duration::from_secs(20)),
        "no READY=1"
    );
    let log = dir.path().join("daemon.log");
    // The first window (after 5 s of motion) hangs the worker. Notifications are judged in the
    // order the socket received them, not by when the test thread read them (a heartbeat sent
    // before the stall can be read after it). So: once the worker hangs, the last notification
    // must become the stall status and stay the last one, with no heartbeat after it, for 10
    // watchdog periods.
    let quiet = Duration::from_millis(1500);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last_change = (Instant::now(), manager.lines().len());
    let stalled = loop {
        let lines = manager.lines();
        if lines.len() != last_change.1 {
            last_change = (Instant::now(), lines.len());
        }
        let ends_stalled = lines
            .last()
            .is_some_and(|l| l.starts_with("STATUS=stalled"));
        if ends_stalled && last_change.0.elapsed() >= quiet {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        stalled,
        "the heartbeat did not stop after the worker hung: {:?}\n{}",
        manager.lines(),
        std::fs::read_to_string(&log).unwrap()
    );
    assert!(child.try_wait().unwrap().is_none(), "daemon still running");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Mutations of a valid configuration, each with one mistake `check` must name.
fn malformed_configs(valid: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let bad_values = [
        ("id = \"check\"", "id = \"bad id!\""),
        ("id = \"check\"", "id = \"\""),
        ("id = \"check\"", "id = 7"),
        (
            "execution_providers = [\"cpu\"]",
            "execution_providers = []",
        ),
        (
            "execution_providers = [\"cpu\"]",
            "execution_providers = [\"gpu\"]",
        ),
        (
            "execution_providers = [\"cpu\"]",
            "execution_providers = [\"cpu\", \"cpu\"]",
        ),
        (
            "execution_providers = [\"cpu\"]",
            "execution_providers = \"cpu\"",
        ),
        ("top_k = 3", "top_k = 0"),
        ("top_k = 3", "top_k = -1"),
        ("top_k = 3", "top_k = \"three\""),
        ("min_score = 0.1", "min_score = 2.0"),
        ("min_score = 0.1", "min_score = \"high\""),
        ("url = \"mqtt://127.0.0.1:1883\"", "url = \"http://x\""),
        ("url = \"mqtt://127.0.0.1:1883\"", "url = \"mqtt://:1883\""),
        ("url = \"mqtt://127.0.0.1:1883\"", "url = \"mqtt://h:0\""),
        (
            "url = \"mqtt://127.0.0.1:1883\"",
            "url = \"mqtt://h:70000\"",
        ),
        ("url = \"mqtt://127.0.0.1:1883\"", "url = 1883"),
        ("stats_interval_s = 0", "stats_interval_s = -5"),
        ("stats_interval_s = 0", "keep_alive_s = 0"),
        ("stats_interval_s = 0", "max_packet_bytes = 10"),
        ("stats_interval_s = 0", "queue_capacity = 0"),
        ("stats_interval_s = 0", "reconnect_max_backoff_ms = 1"),
        ("stats_interval_s = 0", "qos = \"2\""),
        ("stats_interval_s = 0", "embedding_encoding = \"hex\""),
        ("stats_interval_s = 0", "topic_prefix = \"a/#\""),
        ("stats_interval_s = 0", "topic_prefix = \"a/\""),
        ("stats_interval_s = 0", "client_id = \"\""),
        (
            "stats_interval_s = 0",
            "password_file = \"/nonexistent/pw\"\nusername = \"u\"",
        ),
        (
            "stats_interval_s = 0",
            "password_env = \"EDGEBIND_TEST_UNSET_VARIABLE\"\nusername = \"u\"",
        ),
        ("stats_interval_s = 0", "password_env = \"PATH\""),
        (
            "stats_interval_s = 0",
            "tls = { ca_file = \"/nonexistent/ca.pem\" }",
        ),
        ("stats_interval_s = 0", "bogus_option = 1"),
        ("[outbox]", "[outbox]\nmax_bytes = \"1KiB\""),
        ("[outbox]", "[outbox]\nmax_bytes = \"lots\""),
        ("[outbox]", "[outbox]\nmax_bytes = \"5 parsecs\""),
        ("[outbox]", "[outbox]\nwhen_full = \"explode\""),
        ("[outbox]", "[outbox]\nfsync = \"sometimes\""),
        ("[outbox]", "[outbox]\nfsync_interval_ms = 0"),
        ("[outbox]", "[outbox]\ndir = \"/proc/edgebind-outbox\""),
        ("[outbox]", "[outbox]\nunknown = true"),
        (
            "[outbox]",
            "[metrics]\nlisten = \"not an address\"\n[outbox]",
        ),
        ("[outbox]", "[metrics]\n[outbox]"),
        ("type = \"imu_replay\"", "type = \"imu_teleport\""),
        ("name = \"imu\"", "name = \"bad name\""),
        ("name = \"imu\"", "name = \"\""),
        ("speed = \"max\"", "speed = \"ludicrous\""),
        ("speed = \"max\"", "window_ms = 0"),
        ("speed = \"max\"", "hop_ms = 0"),
        ("speed = \"max\"", "sample_rate_hz = -3.0"),
        ("[device]", "[device\n"),
        ("[device]", "device = ["),
    ];
    for (i, (from, to)) in bad_values.iter().enumerate() {
        assert!(
            valid.contains(from),
            "mutation {i}: {from:?} not in the config"
        );
        out.push((format!("{i}: {to}"), valid.replacen(from, to, 1)));
    }
    out
}

#[test]
fn fifty_malformed_configs_give_fifty_clear_errors_and_exit_78() {
    let dir = tempfile::tempdir().unwrap();
    let valid = format!(
        "{}\n[outbox]\ndir = \"{}\"\n\n[[sources]]\ntype = \"imu_replay\"\nname = \"imu\"\npath = \"{}\"\nspeed = \"max\"\n",
        base_config("check", 1883),
        dir.path().join("outbox").display(),
        fixture("recordings/imu_still_200hz.csv").display()
    );
    let ok = run(edgebind()
        .arg("check")
        .arg("--config")
        .arg(write_config(dir.path(), &valid)));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let configs = malformed_configs(&valid);
    assert!(configs.len() >= 50, "{}", configs.len());
    for (what, text) in configs {
        let path = write_config(dir.path(), &text);
        let out = run(edgebind().arg("check").arg("--config").arg(&path));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{what}: {stderr}");
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
        assert!(
            stderr.contains("edgebind.toml"),
            "{what}: the error does not name the file: {stderr}"
        );
    }
}
