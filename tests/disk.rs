//! The daemon with its outbox on a real small filesystem: a tmpfs mounted by each test (root or
//! CAP_SYS_ADMIN; without it the test says SKIPPED on stderr and passes), a real mosquitto.
//! A full disk is an expected state: acknowledged segments are reclaimed, `outbox.when_full`
//! applies to disk space as to `max_bytes`, every drop is counted and seen as a `seq` gap,
//! delivery resumes by itself, a restart finds no corrupt tail, and the log stays short. (The
//! outbox alone on a small filesystem, policy by policy: `tests/outbox_disk.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use common::small_fs::SmallFs;
use common::*;

/// A replay of `recording` (200 Hz IMU, a 5 s window) with the given options.
fn imu_file_source(name: &str, recording: &str, options: &str) -> String {
    format!(
        "\n[[sources]]\ntype = \"imu_replay\"\nname = \"{name}\"\npath = \"{}\"\n{options}\n",
        fixture(&format!("recordings/{recording}")).display()
    )
}

/// The 16 s demo recording with the given options.
fn imu_source(name: &str, options: &str) -> String {
    imu_file_source(name, "imu_demo_200hz.csv", options)
}

/// A daemon config whose outbox is `outbox` with the default `max_bytes` (1 GiB).
fn config(device: &str, port: u16, outbox: &Path, mqtt_extra: &str, rest: &str) -> String {
    format!(
        "{}reconnect_max_backoff_ms = 500\n{mqtt_extra}\n[outbox]\ndir = \"{}\"\n{rest}",
        base_config(device, port),
        outbox.display()
    )
}

fn scrape(port: u16) -> String {
    use std::io::Read;
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

/// Asserts that the outbox's warnings and errors in `log` stay within what the rate limiter
/// allows over `elapsed`: one line per problem and 5 s, plus the start-up warning about
/// `max_bytes` and the ones at a stop. (Before the limiter: one line per dropped message.)
fn assert_few_outbox_lines(log: &str, elapsed: Duration) {
    let lines = log
        .lines()
        .filter(|l| (l.contains("WARN") || l.contains("ERROR")) && l.contains("outbox"))
        .count();
    let allowed = 4 + elapsed.as_secs() as usize / 5;
    assert!(
        lines <= allowed,
        "{lines} outbox lines in {elapsed:?} (at most {allowed}):\n{log}"
    );
}

#[test]
fn with_the_broker_up_a_small_filesystem_never_stops_delivery() {
    let Some(fs) = SmallFs::mount(
        1024,
        "with_the_broker_up_a_small_filesystem_never_stops_delivery",
    ) else {
        return;
    };
    let broker = LocalBroker::start(&[]).unwrap();
    let sub = Subscriber::start(broker.port(), "edgebind/diskup/#");
    let dir = tempfile::tempdir().unwrap();
    // 50 windows a second in real time: ~0.7 MB/s of messages through a 1 MiB filesystem.
    let path = write_config(
        dir.path(),
        &config(
            "diskup",
            broker.port(),
            &fs.path.join("outbox"),
            "",
            &imu_source("imu", "loop = true\nhop_ms = 20"),
        ),
    );
    let log = dir.path().join("daemon.log");
    let started = Instant::now();
    let mut child = spawn_daemon(&path, &log, &["--shutdown-timeout-s", "30"]);
    // 300 embeddings are ~4 MiB: four times the filesystem.
    let flowing = sub.wait_for(Duration::from_secs(90), |m| {
        m.iter().filter(|s| s.topic.ends_with("/embedding")).count() >= 300
    });
    sigterm(&child);
    let exit = wait_with_timeout(&mut child, Duration::from_secs(60)).expect("daemon stops");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        flowing,
        "delivery stopped on the small filesystem with the broker up ({} embeddings):\n{text}",
        sub.on("/embedding").len()
    );
    assert!(exit.success(), "{text}");
    assert!(sub.wait_for(Duration::from_secs(5), |m| m
        .iter()
        .any(|s| s.topic.ends_with("/status") && s.payload == b"offline")));
    // Every window was delivered or counted as dropped (with the broker up, drops can only come
    // from a burst larger than the filesystem on a loaded machine).
    let state = sub.on("/imu/state").last().unwrap().json();
    let windows = state["windows_total"].as_u64().unwrap();
    let dropped = state["drops_total"]["outbox_full"].as_u64().unwrap();
    let seqs = seqs_of(&sub, "imu");
    assert!(
        windows - seqs.len() as u64 <= dropped,
        "{} of {windows} windows arrived, {dropped} messages counted as dropped\n{text}",
        seqs.len()
    );
    assert_few_outbox_lines(&text, started.elapsed());
}

#[test]
fn with_the_broker_down_a_full_filesystem_drops_the_oldest_then_delivery_resumes_with_a_counted_gap(
) {
    let Some(fs) = SmallFs::mount(
        1024,
        "with_the_broker_down_a_full_filesystem_drops_the_oldest_then_delivery_resumes_with_a_counted_gap",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::closed(0);
    let metrics_port = edgebind::publish::broker::free_port().unwrap();
    let text = config(
        "diskdown",
        gate.port,
        &fs.path.join("outbox"),
        "",
        &format!(
            "[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n{}",
            imu_source("imu", "loop = true\nhop_ms = 20")
        ),
    )
    .replace("stats_interval_s = 0", "stats_interval_s = 1");
    let path = write_config(dir.path(), &text);
    let log = dir.path().join("daemon.log");
    let started = Instant::now();
    let mut child = spawn_daemon(&path, &log, &["--shutdown-timeout-s", "30"]);
    // The broker is down: the outbox fills the filesystem, then drops the oldest (~150 messages
    // fit; wait for 200 dropped).
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut body = String::new();
    while Instant::now() < deadline {
        body = scrape(metrics_port);
        if metric(&body, "edgebind_outbox_dropped_total ").is_some_and(|v| v >= 200.0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let daemon_log = || std::fs::read_to_string(&log).unwrap();
    let dropped = metric(&body, "edgebind_outbox_dropped_total ").unwrap_or(0.0);
    assert!(dropped >= 200.0, "{body}\n{}", daemon_log());
    assert_eq!(
        metric(
            &body,
            "edgebind_drops_total{sensor=\"imu\",reason=\"outbox_full\"} "
        ),
        Some(dropped),
        "{body}"
    );
    // Hundreds of drops, a handful of log lines.
    assert_few_outbox_lines(&daemon_log(), started.elapsed());
    assert!(
        metric(&body, "edgebind_outbox_disk_full_total ").is_some_and(|v| v >= 1.0),
        "{body}"
    );

    let broker = LocalBroker::start(&[]).unwrap();
    let sub = Subscriber::start(broker.port(), "edgebind/diskdown/#");
    gate.set_target(broker.port());
    gate.open();
    assert!(
        sub.wait_for(Duration::from_secs(60), |m| {
            m.iter().any(|s| s.topic.ends_with("/stats"))
                && m.iter().filter(|s| s.topic.ends_with("/embedding")).count() >= 100
        }),
        "delivery did not resume after the broker came back:\n{}",
        daemon_log()
    );
    sigterm(&child);
    let exit = wait_with_timeout(&mut child, Duration::from_secs(60)).expect("daemon stops");
    let text = daemon_log();
    assert!(exit.success(), "{text}");
    assert!(sub.wait_for(Duration::from_secs(5), |m| m
        .iter()
        .any(|s| s.topic.ends_with("/status") && s.payload == b"offline")));

    let stats = sub.on("/stats").last().unwrap().json();
    assert!(
        stats["outbox_dropped_total"].as_u64().unwrap() >= 200,
        "{stats}"
    );
    assert!(
        stats["outbox_disk_full_total"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    // The oldest went: the subscriber sees the stream start late (a `seq` gap from 0), and
    // every window that did not arrive is counted.
    let seqs = seqs_of(&sub, "imu");
    let state = sub.on("/imu/state").last().unwrap().json();
    let windows = state["windows_total"].as_u64().unwrap();
    let counted = state["drops_total"]["outbox_full"].as_u64().unwrap();
    assert!(seqs[0] > 0, "nothing was dropped: {seqs:?}");
    assert!(
        windows - seqs.len() as u64 <= counted,
        "{} of {windows} windows arrived, {counted} messages counted as dropped\n{text}",
        seqs.len()
    );
    assert_few_outbox_lines(&text, started.elapsed());
}

#[test]
fn a_daemon_killed_on_a_full_filesystem_restarts_without_a_corrupt_tail_and_delivers() {
    let Some(fs) = SmallFs::mount(
        1024,
        "a_daemon_killed_on_a_full_filesystem_restarts_without_a_corrupt_tail_and_delivers",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let outbox = fs.path.join("outbox");
    let gate = Gate::closed(0);
    // 221 windows at full speed, ~3 MiB of messages for a 1 MiB filesystem, broker down.
    let path = write_config(
        dir.path(),
        &config(
            "diskkill",
            gate.port,
            &outbox,
            "",
            &imu_source("first", "speed = \"max\"\nhop_ms = 50"),
        ),
    );
    let log = dir.path().join("first.log");
    let started = Instant::now();
    let mut child = spawn_daemon(&path, &log, &["--shutdown-timeout-s", "60"]);
    assert!(
        wait_for_log(
            &log,
            "every message is in the outbox",
            Duration::from_secs(90)
        ),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    // The outbox is fsynced every 100 ms.
    std::thread::sleep(Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();
    let first_log = std::fs::read_to_string(&log).unwrap();
    let first_run = started.elapsed();

    let options = edgebind::publish::OutboxOptions::new(
        outbox.clone(),
        1 << 30,
        edgebind::config::WhenFull::DropOldest,
    );
    let (reopened, recovery) = edgebind::publish::Outbox::open(options).unwrap();
    assert_eq!(recovery.corrupt_tails, 0, "{recovery:?}\n{first_log}");
    assert!(recovery.pending > 0, "{recovery:?}\n{first_log}");
    drop(reopened);

    let broker = LocalBroker::start(&[]).unwrap();
    let sub = Subscriber::start(broker.port(), "edgebind/diskkill/#");
    gate.set_target(broker.port());
    gate.open();
    let path = write_config(
        dir.path(),
        &config(
            "diskkill",
            gate.port,
            &outbox,
            "",
            &imu_file_source("second", "imu_still_200hz.csv", "speed = \"max\""),
        ),
    );
    let log = dir.path().join("second.log");
    let mut child = spawn_daemon(&path, &log, &["--shutdown-timeout-s", "30"]);
    let exit = wait_with_timeout(&mut child, Duration::from_secs(60)).expect("daemon stops");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(exit.success(), "{text}");
    assert!(!text.contains("corrupt tail"), "{text}");
    assert!(sub.wait_for(Duration::from_secs(5), |m| m
        .iter()
        .any(|s| s.topic.ends_with("/status") && s.payload == b"offline")));
    // What the first run kept is the newest windows, contiguous up to its last (220).
    let seqs = seqs_of(&sub, "first");
    assert!(!seqs.is_empty(), "{text}");
    let first = seqs[0];
    assert!(first > 0, "{seqs:?}");
    assert_eq!(
        seqs,
        (first..221).collect::<Vec<_>>(),
        "{first_log}\n{text}"
    );
    assert_eq!(seqs_of(&sub, "second"), vec![0, 1, 2]);
    assert_few_outbox_lines(&first_log, first_run);
}

#[test]
fn check_warns_when_max_bytes_exceeds_the_free_space_of_the_outbox_filesystem() {
    let Some(fs) = SmallFs::mount(
        1024,
        "check_warns_when_max_bytes_exceeds_the_free_space_of_the_outbox_filesystem",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let source = imu_source("imu", "");
    let outbox = fs.path.join("outbox");
    let path = write_config(dir.path(), &config("diskcheck", 1883, &outbox, "", &source));
    let out = run(edgebind().arg("check").arg("--config").arg(&path));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: outbox.max_bytes")
            && stderr.contains(&outbox.display().to_string()),
        "{stderr}"
    );
    // A limit that fits: no warning.
    let path = write_config(
        dir.path(),
        &config("diskcheck", 1883, &outbox, "", &source)
            .replace("[outbox]\n", "[outbox]\nmax_bytes = \"512KiB\"\n"),
    );
    let out = run(edgebind().arg("check").arg("--config").arg(&path));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
}
