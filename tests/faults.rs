//! Fault tests of delivery: a real mosquitto killed and restarted, a broker that is down when the
//! daemon starts, a daemon killed while its broker is down, a full outbox and a corrupt outbox
//! tail. Every test checks windows by `seq`: none may be missing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// 16 s of IMU at 200 Hz with a 100 ms hop: (3200 - 1000) / 20 + 1 windows.
const DEMO_WINDOWS: u64 = 111;

fn config(device: &str, port: u16, outbox: &Path, sources: &str, extra: &str) -> String {
    let base = base_config(device, port).replace(
        "when_full = \"block\"\n",
        "when_full = \"block\"\nqueue_capacity = 4\n",
    );
    format!(
        "{base}reconnect_max_backoff_ms = 500\n{extra}\n[outbox]\ndir = \"{}\"\n{sources}",
        outbox.display()
    )
}

fn demo_source(name: &str, looping: bool) -> String {
    format!(
        "\n[[sources]]\ntype = \"imu_replay\"\nname = \"{name}\"\npath = \"{}\"\nspeed = \"max\"\nhop_ms = 100\nloop = {looping}\n",
        fixture("recordings/imu_demo_200hz.csv").display()
    )
}

fn still_source(name: &str) -> String {
    format!(
        "\n[[sources]]\ntype = \"imu_replay\"\nname = \"{name}\"\npath = \"{}\"\nspeed = \"max\"\n",
        fixture("recordings/imu_still_200hz.csv").display()
    )
}

fn count(sub: &Subscriber, suffix: &str) -> usize {
    sub.on(suffix).len()
}

#[test]
fn broker_killed_mid_stream_and_restarted_empty_loses_no_window() {
    broker_killed_mid_stream("kill", "");
}

#[test]
fn with_mqtt5_a_broker_killed_mid_stream_loses_no_window() {
    broker_killed_mid_stream("kill5", "protocol = \"5\"");
}

fn broker_killed_mid_stream(device: &str, extra: &str) {
    let filter = format!("edgebind/{device}/#");
    // mosquitto queues at most 1000 QoS 1 messages per subscriber by default and drops the rest
    // when the subscriber falls behind the backlog re-sent at full speed; not what is tested.
    let unlimited = ["max_queued_messages 0"];
    let mut broker = LocalBroker::start(&unlimited).unwrap();
    let gate = Gate::closed(broker.port());
    gate.open();
    let sub1 = Subscriber::start(broker.port(), &filter);
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &config(
            device,
            gate.port,
            &dir.path().join("outbox"),
            &demo_source("imu", true),
            extra,
        ),
    );
    let log = dir.path().join("daemon.log");
    // Room for a loaded machine to deliver the backlog the outage left.
    let mut child = spawn_daemon(&path, &log, &["--shutdown-timeout-s", "30"]);
    assert!(
        sub1.wait_for(Duration::from_secs(30), |m| m.len() >= 60),
        "no stream before the kill"
    );
    // The daemon's connection is cut with messages in flight (sent, not acknowledged), then the
    // broker dies and comes back with an empty store. It dies only once it has handed `sub1`
    // everything it acknowledged: a broker that acknowledges a message and crashes before
    // delivering it loses it for any QoS 1 publisher, which is not what is tested here
    // (docs/mqtt.md, "What needs the broker"). Waiting for that, not for a fixed pause, keeps a
    // loaded machine from failing the test.
    gate.cut();
    let acked = gate.acked();
    assert!(
        sub1.wait_for(Duration::from_secs(30), |m| received_all(m, &acked)),
        "the broker did not deliver what it acknowledged before the cut"
    );
    broker.kill();
    let port = broker.port();
    drop(broker);
    std::thread::sleep(Duration::from_millis(300));
    let broker = LocalBroker::start_on(port, &unlimited).unwrap();
    let sub2 = Subscriber::start(broker.port(), &filter);
    gate.open();
    assert!(
        sub2.wait_for(Duration::from_secs(30), |m| m
            .iter()
            .filter(|s| s.topic.ends_with("/embedding"))
            .count()
            >= 60),
        "no stream after the broker came back: {}",
        std::fs::read_to_string(&log).unwrap()
    );
    sigterm(&child);
    let exit = wait_with_timeout(&mut child, Duration::from_secs(60)).expect("daemon stops");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(exit.success(), "{text}");
    assert!(
        sub2.wait_for(Duration::from_secs(5), |m| m
            .iter()
            .any(|s| s.topic.ends_with("/status") && s.payload == b"offline")),
        "{text}"
    );
    let mut seqs = seqs_of(&sub1, "imu");
    seqs.extend(seqs_of(&sub2, "imu"));
    seqs.sort_unstable();
    seqs.dedup();
    // Exit 0 means everything handed to the publisher was acknowledged (a publisher that
    // cannot finish in time makes the exit 1), and the final retained state, published after the
    // pipeline drained, counts every window: all of them arrived.
    let windows = sub2.on("/imu/state").last().unwrap().json()["windows_total"]
        .as_u64()
        .unwrap();
    assert_eq!(
        seqs,
        (0..windows).collect::<Vec<_>>(),
        "a window is missing after the broker crash, or the final state is stale"
    );
    let log = std::fs::read_to_string(&log).unwrap();
    assert_eq!(log.matches("connected to MQTT broker").count(), 2, "{log}");
}

#[test]
fn broker_down_at_start_then_up_20_s_later_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::closed(0);
    let path = write_config(
        dir.path(),
        &config(
            "late",
            gate.port,
            &dir.path().join("outbox"),
            &demo_source("imu", false),
            "",
        ),
    );
    let log = dir.path().join("daemon.log");
    let t0 = Instant::now();
    let mut child = spawn_daemon(&path, &log, &["--shutdown-timeout-s", "60"]);
    assert!(wait_for_log(
        &log,
        "broker unreachable",
        Duration::from_secs(15)
    ));
    std::thread::sleep(Duration::from_secs(20).saturating_sub(t0.elapsed()));
    let broker = LocalBroker::start(&[]).unwrap();
    let sub = Subscriber::start(broker.port(), "edgebind/late/#");
    gate.set_target(broker.port());
    gate.open();
    let exit = wait_with_timeout(&mut child, Duration::from_secs(60)).expect("daemon stops");
    assert!(exit.success(), "{}", std::fs::read_to_string(&log).unwrap());
    assert!(sub.wait_for(Duration::from_secs(5), |m| m
        .iter()
        .any(|s| s.topic.ends_with("/status") && s.payload == b"offline")));
    assert_eq!(seqs_of(&sub, "imu"), (0..DEMO_WINDOWS).collect::<Vec<_>>());
    assert_eq!(count(&sub, "/imu/labels"), DEMO_WINDOWS as usize);
}

/// Runs a daemon whose broker is down until its replay is in the outbox, then SIGKILLs it.
fn fill_outbox_and_kill(dir: &Path, gate: &Gate, outbox: &Path) {
    let path = write_config(
        dir,
        &config(
            "restart",
            gate.port,
            outbox,
            &demo_source("first", false),
            "",
        ),
    );
    let log = dir.join("first.log");
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
    // Appends reach the files at the next fsync (every 100 ms): kill only once the files hold
    // every message, as read by a fresh start, rather than after a pause a loaded machine may
    // overrun.
    assert!(
        wait_outbox_pending(outbox, 2 * DEMO_WINDOWS, Duration::from_secs(30)),
        "the outbox files never held all {} messages",
        2 * DEMO_WINDOWS
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Waits until the files in `outbox`, opened as a restart would open them (on a copy, the daemon
/// is still writing), hold `n` unacknowledged messages (embedding + labels per window).
fn wait_outbox_pending(outbox: &Path, n: u64, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let copy = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(outbox).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
            }
        }
        let options = edgebind::publish::OutboxOptions::new(
            copy.path().to_path_buf(),
            1 << 30,
            edgebind::config::WhenFull::DropOldest,
        );
        let pending = edgebind::publish::Outbox::open(options)
            .map(|(_, recovery)| recovery.pending)
            .unwrap_or(0);
        if pending >= n {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn restart_and_collect(
    dir: &Path,
    gate: &Gate,
    outbox: &Path,
) -> (LocalBroker, Subscriber, String) {
    let broker = LocalBroker::start(&[]).unwrap();
    let sub = Subscriber::start(broker.port(), "edgebind/restart/#");
    gate.set_target(broker.port());
    gate.open();
    let path = write_config(
        dir,
        &config("restart", gate.port, outbox, &still_source("second"), ""),
    );
    let log = dir.join("second.log");
    let mut child = spawn_daemon(&path, &log, &["--shutdown-timeout-s", "30"]);
    let exit = wait_with_timeout(&mut child, Duration::from_secs(60)).expect("daemon stops");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(exit.success(), "{text}");
    assert!(sub.wait_for(Duration::from_secs(5), |m| m
        .iter()
        .any(|s| s.topic.ends_with("/status") && s.payload == b"offline")));
    (broker, sub, text)
}

#[test]
fn daemon_killed_while_the_broker_is_down_delivers_its_outbox_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox");
    let gate = Gate::closed(0);
    fill_outbox_and_kill(dir.path(), &gate, &outbox);
    let (_broker, sub, log) = restart_and_collect(dir.path(), &gate, &outbox);
    assert_eq!(
        seqs_of(&sub, "first"),
        (0..DEMO_WINDOWS).collect::<Vec<_>>(),
        "{log}"
    );
    assert_eq!(seqs_of(&sub, "second"), vec![0, 1, 2]);
    assert!(log.contains("outbox recovered"), "{log}");
    // Everything was acknowledged: a third start finds nothing to send.
    let options = edgebind::publish::OutboxOptions::new(
        outbox.clone(),
        1 << 30,
        edgebind::config::WhenFull::DropOldest,
    );
    let (_, recovery) = edgebind::publish::Outbox::open(options).unwrap();
    assert_eq!(recovery.pending, 0);
}

#[test]
fn a_corrupt_outbox_tail_is_truncated_counted_and_the_rest_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox");
    let gate = Gate::closed(0);
    fill_outbox_and_kill(dir.path(), &gate, &outbox);
    // A power loss mid-write: half a record at the end of the newest segment.
    let mut segs: Vec<_> = std::fs::read_dir(&outbox)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg") && dir_file_len(p) > 0)
        .collect();
    segs.sort();
    let seg = segs.last().unwrap();
    let mut data = std::fs::read(seg).unwrap();
    let half = data[..600].to_vec();
    data.extend_from_slice(&half);
    std::fs::write(seg, &data).unwrap();
    let (_broker, sub, log) = restart_and_collect(dir.path(), &gate, &outbox);
    assert!(log.contains("corrupt tail"), "{log}");
    assert!(log.contains("corrupt_tails=1"), "{log}");
    assert_eq!(
        seqs_of(&sub, "first"),
        (0..DEMO_WINDOWS).collect::<Vec<_>>()
    );
}

fn dir_file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

#[test]
fn a_full_outbox_drops_the_oldest_counts_them_and_stays_under_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox");
    let gate = Gate::closed(0);
    let limit = 256 * 1024;
    let path = write_config(
        dir.path(),
        &config("full", gate.port, &outbox, &demo_source("imu", false), "")
            .replace("[outbox]\n", "[outbox]\nmax_bytes = \"256KiB\"\n"),
    );
    let log = dir.path().join("daemon.log");
    let mut child = spawn_daemon(&path, &log, &["--shutdown-timeout-s", "60"]);
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut peak = 0;
    while Instant::now() < deadline {
        peak = peak.max(dir_bytes(&outbox));
        if std::fs::read_to_string(&log).is_ok_and(|t| t.contains("every message is in the outbox"))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(500));
    peak = peak.max(dir_bytes(&outbox));
    assert!(peak <= limit, "outbox used {peak} bytes > {limit}");
    let broker = LocalBroker::start(&[]).unwrap();
    let sub = Subscriber::start(broker.port(), "edgebind/full/#");
    gate.set_target(broker.port());
    gate.open();
    let exit = wait_with_timeout(&mut child, Duration::from_secs(60)).expect("daemon stops");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(exit.success(), "{text}");
    assert!(text.contains("outbox full"), "{text}");
    assert!(sub.wait_for(Duration::from_secs(5), |m| m
        .iter()
        .any(|s| s.topic.ends_with("/status") && s.payload == b"offline")));
    let seqs = seqs_of(&sub, "imu");
    assert!(!seqs.is_empty());
    let first = seqs[0];
    assert!(first > 0, "nothing was dropped");
    // The oldest were dropped: what arrived is the newest windows, without a hole.
    assert_eq!(seqs, (first..DEMO_WINDOWS).collect::<Vec<_>>());
    let state = sub.on("/imu/state").last().unwrap().json();
    let dropped = state["drops_total"]["outbox_full"].as_u64().unwrap();
    assert!(dropped >= first, "{state}");
}

#[test]
fn a_stalled_pipeline_still_stops_within_the_shutdown_timeout_saying_offline_itself() {
    let broker = LocalBroker::start(&[]).unwrap();
    let sub = Subscriber::start(broker.port(), "edgebind/stall/#");
    let dir = tempfile::tempdir().unwrap();
    // A model that runs at once on still (zero) windows and hangs on the first with motion:
    // 5 windows are embedded, then the pipeline can never drain. One window per run, so that
    // the hanging window holds back no other.
    let models = hanging_model_set(dir.path());
    let recording = imu_zeros_then_motion(dir.path(), 1000 + 20 * 4);
    let source = format!(
        "\n[[sources]]\ntype = \"imu_replay\"\nname = \"imu\"\npath = \"{}\"\nspeed = \"max\"\nhop_ms = 100\nloop = true\n",
        recording.display()
    );
    let path = write_config(
        dir.path(),
        &config(
            "stall",
            broker.port(),
            &dir.path().join("outbox"),
            &source,
            "",
        )
        .replace(
            &repo().join("models/tiny").display().to_string(),
            &models.display().to_string(),
        )
        .replace(
            "queue_capacity = 4\n",
            "queue_capacity = 4\nmax_batch = 1\n",
        ),
    );
    let log = dir.path().join("daemon.log");
    let err = std::fs::File::create(&log).unwrap();
    let mut child = edgebind()
        .args(["run", "--shutdown-timeout-s", "2", "--config"])
        .arg(&path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(err)
        .spawn_guarded();
    assert!(
        sub.wait_for(Duration::from_secs(30), |m| m
            .iter()
            .filter(|s| s.topic.ends_with("/embedding"))
            .count()
            >= 5),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let t0 = Instant::now();
    sigterm(&child);
    let exit = wait_with_timeout(&mut child, Duration::from_secs(30)).expect("daemon stops");
    let text = std::fs::read_to_string(&log).unwrap();
    // 2 s of drain, then `offline` and DISCONNECT: well within the 5 s the supervisor allows.
    assert!(
        t0.elapsed() < Duration::from_secs(9),
        "{:?}\n{text}",
        t0.elapsed()
    );
    assert!(
        text.contains("the pipeline did not drain within the shutdown timeout"),
        "{text}"
    );
    assert!(!text.contains("publisher did not finish"), "{text}");
    // Windows were left in the hung model: not a clean stop.
    assert_eq!(exit.code(), Some(1), "{text}");
    assert!(text.contains("pipeline_drained=false"), "{text}");
    // `offline` came from the daemon itself: a clean DISCONNECT, so the Last Will never fired
    // and the broker saw no connection loss.
    assert!(sub.wait_for(Duration::from_secs(5), |m| m
        .iter()
        .any(|s| s.topic.ends_with("/status") && s.payload == b"offline")));
    assert_eq!(seqs_of(&sub, "imu"), (0..5).collect::<Vec<_>>());
}

/// `tests/fixtures/outbox_format0`: what a build before the sensor travelled with the outbox
/// record left undelivered (3 windows of sensor `wrist` of device `legacy`, made with
/// `embedding_encoding = "base64_f16"` and the broker down). An upgraded daemon delivers them.
#[test]
fn an_outbox_of_the_previous_record_format_is_delivered_after_an_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox");
    std::fs::create_dir_all(&outbox).unwrap();
    for name in ["00000000000000000000.seg", "acks.log"] {
        std::fs::copy(fixture("outbox_format0").join(name), outbox.join(name)).unwrap();
    }
    let broker = LocalBroker::start(&[]).unwrap();
    let sub = Subscriber::start(broker.port(), "edgebind/legacy/#");
    let path = write_config(
        dir.path(),
        &config("upgrade", broker.port(), &outbox, &still_source("imu"), ""),
    );
    let log = dir.path().join("daemon.log");
    let mut child = spawn_daemon(&path, &log, &["--shutdown-timeout-s", "30"]);
    let exit = wait_with_timeout(&mut child, Duration::from_secs(60)).expect("daemon stops");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(exit.success(), "{text}");
    assert!(text.contains("outbox recovered"), "{text}");
    assert!(
        sub.wait_for(Duration::from_secs(5), |m| m.len() >= 6),
        "{text}"
    );
    assert_eq!(seqs_of(&sub, "wrist"), vec![0, 1, 2]);
    let labels: Vec<u64> = sub
        .on("/wrist/labels")
        .iter()
        .map(|m| m.json()["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(labels, vec![0, 1, 2]);
    for m in sub.on("/wrist/embedding") {
        let v = m.json();
        assert_eq!(v["device"], "legacy");
        assert_eq!(v["embedding"]["dtype"], "f16");
    }
    let options = edgebind::publish::OutboxOptions::new(
        outbox,
        1 << 30,
        edgebind::config::WhenFull::DropOldest,
    );
    let (_, recovery) = edgebind::publish::Outbox::open(options).unwrap();
    assert_eq!(recovery.pending, 0, "everything acknowledged");
}

/// Two daemons on one outbox directory would corrupt each other: the second refuses to start,
/// naming the directory and the first one's pid, and the first goes on delivering.
#[test]
fn a_second_daemon_on_the_same_outbox_refuses_to_start_and_the_first_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox");
    let broker = LocalBroker::start(&[]).unwrap();
    let sub = Subscriber::start(broker.port(), "edgebind/first/#");
    let first_path = write_config(
        dir.path(),
        &config(
            "first",
            broker.port(),
            &outbox,
            &demo_source("imu", true),
            "",
        ),
    );
    let first_log = dir.path().join("first.log");
    let mut first = spawn_daemon(&first_path, &first_log, &[]);
    assert!(
        wait_for_log(&first_log, "edgebind running", Duration::from_secs(60)),
        "{}",
        std::fs::read_to_string(&first_log).unwrap()
    );
    let second_dir = dir.path().join("second");
    std::fs::create_dir_all(&second_dir).unwrap();
    let second_path = write_config(
        &second_dir,
        &config("second", broker.port(), &outbox, &still_source("imu"), ""),
    );
    let out = run(edgebind().arg("run").arg("--config").arg(&second_path));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "outbox {}: in use by another edgebind process (pid {})",
            outbox.display(),
            first.id()
        )),
        "{err}"
    );
    assert!(err.contains("outbox.dir"), "{err}");
    // The first daemon was not disturbed: it keeps delivering new windows.
    let before = count(&sub, "/imu/embedding");
    assert!(
        sub.wait_for(Duration::from_secs(30), |m| m
            .iter()
            .filter(|s| s.topic.ends_with("/imu/embedding"))
            .count()
            > before + 5),
        "{}",
        std::fs::read_to_string(&first_log).unwrap()
    );
    sigterm(&first);
    let exit = wait_with_timeout(&mut first, Duration::from_secs(30)).expect("daemon stops");
    assert!(
        exit.success(),
        "{}",
        std::fs::read_to_string(&first_log).unwrap()
    );
}
