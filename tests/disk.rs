//! The outbox on a real small filesystem: a tmpfs mounted by each test (root or CAP_SYS_ADMIN;
//! without it the test says SKIPPED on stderr and passes), the real daemon, a real mosquitto.
//! A full disk is an expected state: acknowledged segments are reclaimed, `outbox.when_full`
//! applies to disk space as to `max_bytes`, every drop is counted and seen as a `seq` gap,
//! delivery resumes by itself, a restart finds no corrupt tail, and the log stays short.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// A tmpfs of a fixed size, unmounted when dropped.
struct SmallFs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallFs {
    /// Mounts a tmpfs of `kib` KiB, or says on stderr (not captured by the test harness) why
    /// the calling test is skipped.
    fn mount(kib: u64, test: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={kib}k,mode=0755"))
            .arg("edgebind-test")
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Self {
                path: dir.path().to_path_buf(),
                _dir: dir,
            }),
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
                    Err(e) => e.to_string(),
                };
                // Straight to the process's stderr: `cargo test` shows it even when passing.
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED {test}: cannot mount a tmpfs (needs root or CAP_SYS_ADMIN): {why}"
                );
                None
            }
        }
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

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

// The outbox alone on a small filesystem: each policy, acknowledgements, space returning.

use edgebind::config::{Qos, WhenFull};
use edgebind::publish::{Outbox, OutboxOptions};

const PAYLOAD: [u8; 4000] = [7; 4000];

fn open(dir: &Path, when_full: WhenFull) -> Outbox {
    let (o, r) = Outbox::open(OutboxOptions::new(dir.to_path_buf(), 1 << 30, when_full)).unwrap();
    assert_eq!(r.corrupt_tails, 0, "{r:?}");
    o
}

/// Appends one message; its id, `None` when refused (`u64::MAX`), and the ids dropped for it.
fn put(o: &mut Outbox) -> Option<(Option<u64>, Vec<u64>)> {
    let (id, dropped) = o
        .append("edgebind/d/s/embedding", Qos::AtLeastOnce, false, &PAYLOAD)
        .unwrap()?;
    let dropped = dropped.iter().map(|r| r.id).collect();
    Some(((id != u64::MAX).then_some(id), dropped))
}

fn pending_ids(o: &Outbox) -> Vec<u64> {
    let mut ids = Vec::new();
    let mut from = 0;
    while let Some(id) = o.next_pending(from) {
        ids.push(id);
        from = id + 1;
    }
    ids
}

/// Reopens the outbox: no corrupt tail, the same pending ids, every record readable.
fn reopen_clean(dir: &Path, expected: &[u64]) {
    let (mut o, r) = Outbox::open(OutboxOptions::new(
        dir.to_path_buf(),
        1 << 30,
        WhenFull::DropOldest,
    ))
    .unwrap();
    assert_eq!(r.corrupt_tails, 0, "{r:?}");
    assert_eq!(pending_ids(&o), expected);
    for &id in expected {
        assert_eq!(o.get(id).unwrap().unwrap().payload, PAYLOAD);
    }
}

/// A file taking all but `leave` bytes of the filesystem at `dir`.
fn ballast(dir: &Path, leave: u64) -> PathBuf {
    let path = dir.join("ballast");
    let free = edgebind::publish::outbox::available_bytes(dir).unwrap();
    let mut f = std::fs::File::create(&path).unwrap();
    let mut left = free.saturating_sub(leave);
    let chunk = [0u8; 4096];
    while left > 0 {
        let n = left.min(4096) as usize;
        if f.write_all(&chunk[..n]).is_err() {
            break;
        }
        left -= n as u64;
    }
    path
}

#[test]
fn drop_oldest_on_a_full_filesystem_keeps_the_newest_and_counts_every_drop() {
    let Some(fs) = SmallFs::mount(
        256,
        "drop_oldest_on_a_full_filesystem_keeps_the_newest_and_counts_every_drop",
    ) else {
        return;
    };
    let dir = fs.path.join("outbox");
    let mut o = open(&dir, WhenFull::DropOldest);
    let mut dropped = Vec::new();
    // ~400 KB through a 256 KiB filesystem.
    for i in 0..100 {
        let (id, d) = put(&mut o).unwrap();
        assert_eq!(id, Some(i), "every new message is taken");
        dropped.extend(d);
    }
    let left = pending_ids(&o);
    assert!(!dropped.is_empty());
    assert!(o.counters().disk_full >= 1);
    assert_eq!(o.counters().dropped_full, dropped.len() as u64);
    // The oldest went: what is left is the newest, without a hole.
    assert_eq!(dropped, (0..dropped.len() as u64).collect::<Vec<_>>());
    assert_eq!(left, (dropped.len() as u64..100).collect::<Vec<_>>());
    o.sync().unwrap();
    drop(o);
    reopen_clean(&dir, &left);
}

#[test]
fn drop_newest_on_a_full_filesystem_keeps_the_oldest_and_refuses_the_new() {
    let Some(fs) = SmallFs::mount(
        256,
        "drop_newest_on_a_full_filesystem_keeps_the_oldest_and_refuses_the_new",
    ) else {
        return;
    };
    let dir = fs.path.join("outbox");
    let mut o = open(&dir, WhenFull::DropNewest);
    let mut refused = 0;
    for _ in 0..100 {
        let (id, dropped) = put(&mut o).unwrap();
        match id {
            Some(_) => assert!(dropped.is_empty()),
            None => refused += 1,
        }
    }
    let kept = pending_ids(&o);
    assert!(refused > 0);
    assert_eq!(kept.len() + refused, 100);
    assert_eq!(kept, (0..kept.len() as u64).collect::<Vec<_>>());
    assert_eq!(o.counters().dropped_full, refused as u64);
    o.sync().unwrap();
    drop(o);
    reopen_clean(&dir, &kept);
}

#[test]
fn block_on_a_full_filesystem_waits_and_acknowledgements_make_room() {
    let Some(fs) = SmallFs::mount(
        256,
        "block_on_a_full_filesystem_waits_and_acknowledgements_make_room",
    ) else {
        return;
    };
    let dir = fs.path.join("outbox");
    let mut o = open(&dir, WhenFull::Block);
    let mut taken = 0;
    while put(&mut o).is_some() {
        taken += 1;
        assert!(taken < 100, "the filesystem never filled");
    }
    // Full: the caller is asked to wait, again and again, and nothing is dropped.
    assert!(put(&mut o).is_none());
    assert_eq!(o.counters().dropped_full, 0);
    // The broker acknowledges everything: the space is reclaimed and messages go in again.
    for id in pending_ids(&o) {
        o.ack(id).unwrap();
    }
    for _ in 0..taken {
        assert!(put(&mut o).is_some());
    }
    assert_eq!(o.counters().dropped_full, 0);
    let left = pending_ids(&o);
    o.sync().unwrap();
    drop(o);
    reopen_clean(&dir, &left);
}

#[test]
fn acknowledged_messages_are_reclaimed_so_a_small_filesystem_never_fills() {
    let Some(fs) = SmallFs::mount(
        256,
        "acknowledged_messages_are_reclaimed_so_a_small_filesystem_never_fills",
    ) else {
        return;
    };
    let dir = fs.path.join("outbox");
    let mut o = open(&dir, WhenFull::DropNewest);
    // The broker keeps up: 2 MB through 256 KiB, each message acknowledged soon after.
    for i in 0..500u64 {
        assert_eq!(put(&mut o).unwrap().0, Some(i));
        if i >= 3 {
            o.ack(i - 3).unwrap();
        }
    }
    assert_eq!(o.counters().dropped_full, 0);
    assert_eq!(
        o.counters().disk_full,
        0,
        "sealed, acknowledged segments go at once"
    );
    assert_eq!(pending_ids(&o), vec![497, 498, 499]);
}

#[test]
fn a_disk_filled_by_another_file_refuses_then_takes_messages_again_once_space_returns() {
    let Some(fs) = SmallFs::mount(
        256,
        "a_disk_filled_by_another_file_refuses_then_takes_messages_again_once_space_returns",
    ) else {
        return;
    };
    let dir = fs.path.join("outbox");
    for when_full in [WhenFull::DropOldest, WhenFull::DropNewest] {
        let mut o = open(&dir, when_full);
        for id in pending_ids(&o) {
            o.ack(id).unwrap();
        }
        // Room for one message.
        let ballast = ballast(&fs.path, 6000);
        let mut taken = Vec::new();
        for _ in 0..10 {
            taken.extend(put(&mut o).unwrap().0);
        }
        let kept = pending_ids(&o);
        assert_eq!(kept.len(), 1, "{when_full:?}");
        assert_eq!(o.counters().dropped_full, 9, "{when_full:?}");
        match when_full {
            // Each new message pushed the one before it out.
            WhenFull::DropOldest => assert_eq!((taken.len(), kept[0]), (10, taken[9])),
            // The first stayed, the other nine were refused.
            _ => assert_eq!(taken, kept),
        }
        std::fs::remove_file(&ballast).unwrap();
        // Room again: the very next message goes in.
        for _ in 0..10 {
            assert!(put(&mut o).unwrap().0.is_some(), "{when_full:?}");
        }
        let left = pending_ids(&o);
        o.sync().unwrap();
        drop(o);
        reopen_clean(&dir, &left);
    }
}

#[test]
fn acknowledgements_on_a_full_disk_are_never_an_error_and_the_log_catches_up() {
    let Some(fs) = SmallFs::mount(
        256,
        "acknowledgements_on_a_full_disk_are_never_an_error_and_the_log_catches_up",
    ) else {
        return;
    };
    let dir = fs.path.join("outbox");
    let mut o = open(&dir, WhenFull::DropNewest);
    for _ in 0..10 {
        put(&mut o).unwrap();
    }
    o.sync().unwrap();
    let ballast = ballast(&fs.path, 0);
    // Acknowledged in the active segment: nothing can be deleted yet and the ack log cannot
    // grow. Neither is an error.
    for id in [0, 1, 2, 3] {
        o.ack(id).unwrap();
    }
    o.sync().unwrap();
    assert!(o.counters().disk_full >= 1, "the ack log met the full disk");
    assert_eq!(pending_ids(&o), (4..10).collect::<Vec<_>>());
    // A crash now would send 0..=3 again (duplicates, not loss); once there is room the log
    // is rewritten from memory.
    std::fs::remove_file(&ballast).unwrap();
    o.sync().unwrap();
    drop(o);
    reopen_clean(&dir, &(4..10).collect::<Vec<_>>());
}
