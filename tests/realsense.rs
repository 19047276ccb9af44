//! RealSense end to end (feature `realsense`): recordings made at test time by
//! `tools/make_realsense_recording.py` (pyrealsense2's software device) → realsense-rust
//! playback → the daemon → a real mosquitto; and bad input: corrupt recordings, a stream of the
//! wrong size, all-zero frames, a camera that is not there.
//!
//! Needs `tools/setup_realsense.sh` (librealsense and pyrealsense2 from the PyPI wheel);
//! `EDGEBIND_REALSENSE_PYTHONPATH` overrides where pyrealsense2 is imported from.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::realsense::*;
use common::*;

#[test]
fn a_recording_is_played_embedded_and_published_with_its_calibration() {
    let broker = LocalBroker::start(&[]).unwrap();
    let sub = Subscriber::start(broker.port(), "edgebind/rs-play/#");
    let dir = tempfile::tempdir().unwrap();
    let bag = dir.path().join("box.bag");
    let made = make_recording(&bag, &["--fx", "383.5", "--baseline-mm", "50"]);
    assert_eq!(made["frames"], 30);
    // 30 frames at 30 fps stamped by the device clock: slots of 250 ms hold 7-8 frames each,
    // so even with frames dropped by real-time playback every slot gives one window.
    let path = write_config(
        dir.path(),
        &realsense_config(
            broker.port(),
            "rs-play",
            &format!("recording = \"{}\"\ninterval_ms = 250\n", bag.display()),
        ),
    );
    let started = Instant::now();
    let out = run(edgebind().arg("run").arg("--config").arg(&path));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    // The recording plays in real time (1 s) and ends the source.
    assert!(started.elapsed() >= Duration::from_millis(900), "{log}");
    assert!(log.contains("recording finished"), "{log}");
    assert!(sub.wait_for(Duration::from_secs(5), |m| m
        .iter()
        .filter(|s| s.topic.ends_with("/embedding"))
        .count()
        >= 4));
    std::thread::sleep(Duration::from_millis(300));
    let msgs = embeddings(&sub);
    assert_eq!(msgs.len(), 4, "{log}");
    for v in &msgs {
        assert_eq!(v["modality"], "depth");
        assert_eq!(v["embedding"].as_array().map(Vec::len), Some(1024));
    }
    // Calibration from the recording: intrinsics fx, stereo_baseline (mm), depth_units.
    let cal = log
        .lines()
        .find(|l| l.contains("depth calibration"))
        .unwrap_or_else(|| panic!("no calibration line in {log}"));
    for want in [
        "camera_focal_px=Some(383.5)",
        "camera_baseline_m=Some(0.05)",
        "baseline_from=\"stereo_baseline option\"",
        "camera_depth_units_m=Some(0.0010000000474974513)",
        "focal_px=383.5",
        "baseline_m=0.05",
    ] {
        assert!(cal.contains(want), "{want} not in {cal}");
    }
}

#[test]
fn config_calibration_overrides_the_recordings() {
    let broker = LocalBroker::start(&[]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bag = dir.path().join("box.bag");
    make_recording(&bag, &["--frames", "10"]);
    let path = write_config(
        dir.path(),
        &realsense_config(
            broker.port(),
            "rs-override",
            &format!(
                "recording = \"{}\"\n[sources.preprocess]\nfocal_px = 600.0\n",
                bag.display()
            ),
        ),
    );
    let out = run(edgebind().arg("run").arg("--config").arg(&path));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let cal = log
        .lines()
        .find(|l| l.contains("depth calibration"))
        .unwrap();
    assert!(cal.contains("camera_focal_px=Some(383.5)"), "{cal}");
    assert!(cal.contains(" focal_px=600"), "{cal}");
    assert!(cal.contains(" baseline_m=0.05"), "{cal}");
}

#[test]
fn a_corrupt_or_truncated_recording_is_a_clear_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.bag");
    std::fs::write(&garbage, b"this is not a rosbag\n".repeat(100)).unwrap();
    let good = dir.path().join("good.bag");
    make_recording(&good, &["--frames", "5"]);
    let bytes = std::fs::read(&good).unwrap();
    let truncated = dir.path().join("truncated.bag");
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    for bad in [&garbage, &truncated] {
        let path = write_config(
            dir.path(),
            &realsense_config(
                1883,
                "rs-bad",
                &format!("recording = \"{}\"\n", bad.display()),
            ),
        );
        let out = run(edgebind().arg("run").arg("--config").arg(&path));
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{log}");
        assert!(log.contains(&bad.display().to_string()), "{log}");
        assert!(log.contains("source depth: recording"), "{log}");
        assert!(!log.contains("panicked"), "{log}");
    }
}

#[test]
fn a_stream_of_another_size_is_refused_and_all_zero_frames_are_counted_skips() {
    let broker = LocalBroker::start(&[]).unwrap();
    let sub = Subscriber::start(broker.port(), "edgebind/rs-zero/#");
    let dir = tempfile::tempdir().unwrap();
    let bag = dir.path().join("small.bag");
    make_recording(
        &bag,
        &["--frames", "8", "--width", "320", "--height", "240"],
    );
    let path = write_config(
        dir.path(),
        &realsense_config(
            broker.port(),
            "rs-zero",
            &format!("recording = \"{}\"\n", bag.display()),
        ),
    );
    let out = run(edgebind().arg("run").arg("--config").arg(&path));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{log}");
    assert!(
        log.contains("has no Z16 depth stream 640x480 at 30 fps"),
        "{log}"
    );
    assert!(log.contains(&bag.display().to_string()), "{log}");

    let zeros = dir.path().join("zeros.bag");
    make_recording(&zeros, &["--frames", "10", "--zeros"]);
    let path = write_config(
        dir.path(),
        &realsense_config(
            broker.port(),
            "rs-zero",
            &format!("recording = \"{}\"\ninterval_ms = 0\n", zeros.display()),
        ),
    );
    let out = run(edgebind().arg("run").arg("--config").arg(&path));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    assert!(log.contains("every pixel is 0"), "{log}");
    assert_eq!(log.matches("depth frame dropped").count(), 1, "{log}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(embeddings(&sub).is_empty());
}

#[test]
fn a_missing_camera_is_retried_with_backoff_until_the_daemon_stops() {
    let broker = LocalBroker::start(&[]).unwrap();
    let sub = Subscriber::start(broker.port(), "edgebind/rs-missing/#");
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &realsense_config(
            broker.port(),
            "rs-missing",
            "serial = \"000000000404\"\nreconnect_max_backoff_ms = 200\n",
        )
        .replace("stats_interval_s = 0", "stats_interval_s = 1"),
    );
    let mut child = edgebind()
        .arg("run")
        .arg("--config")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn_guarded();
    let log = Arc::new(Mutex::new(String::new()));
    let reader = {
        let log = Arc::clone(&log);
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = log.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !log.lock().unwrap().contains("cannot open RealSense") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Several retries (backoff 100, 200, 200 ms …) while the daemon keeps running.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(child.try_wait().unwrap().is_none(), "daemon exited");
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let exit = wait_with_timeout(&mut child, Duration::from_secs(15)).expect("stops on SIGTERM");
    reader.join().unwrap();
    let log = log.lock().unwrap().clone();
    assert!(exit.success(), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("cannot open RealSense"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        line.contains("no camera with serial 000000000404"),
        "{line}"
    );
    // Logged once per outage, not per retry.
    assert_eq!(log.matches("cannot open RealSense").count(), 1, "{log}");
    // The sensor's retained state says it is not connected.
    let states = sub.on("/depth/state");
    assert!(!states.is_empty(), "no state message");
    assert!(
        states.iter().all(|s| s.json()["connected"] == false),
        "{states:?}"
    );
}

/// `edgebind devices` lists a recording as a device (librealsense plays it back as one): name,
/// serial, streams, and a block that `check` accepts as it stands.
#[test]
fn devices_lists_a_recording_with_its_streams_and_a_block_check_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let bag = dir.path().join("walk.bag");
    make_recording(
        &bag,
        &[
            "--frames", "5", "--width", "424", "--height", "240", "--fps", "15",
        ],
    );
    let out = run(edgebind()
        .args(["devices", "--json", "--realsense-recording"])
        .arg(&bag));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["realsense"]["status"], "found", "{:#}", v["realsense"]);
    let devices = v["realsense"]["devices"].as_array().unwrap();
    let rec = devices
        .iter()
        .find(|d| d["recording"] == bag.display().to_string())
        .unwrap_or_else(|| panic!("{devices:?}"));
    assert!(!rec["name"].as_str().unwrap().is_empty(), "{rec}");
    let streams = rec["streams"].as_array().unwrap();
    assert!(
        streams.iter().any(|s| s["stream"] == "depth"
            && s["format"] == "Z16"
            && s["width_px"] == 424
            && s["height_px"] == 240
            && s["fps"] == 15),
        "{streams:?}"
    );
    let toml = rec["source"]["toml"].as_str().unwrap();
    assert!(
        toml.contains(&format!("recording = \"{}\"", bag.display())),
        "{toml}"
    );
    assert!(
        toml.contains("width_px = 424\nheight_px = 240\nfps = 15\n"),
        "{toml}"
    );
    let path = write_config(
        dir.path(),
        &format!("{}\n{toml}", base_config("rs-devices", 1883)),
    );
    let check = run(edgebind().arg("check").arg("--config").arg(&path));
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    // A file that is not a recording fails after the listing, naming the file.
    let bad = dir.path().join("not.bag");
    std::fs::write(&bad, b"not a rosbag").unwrap();
    let out = run(edgebind()
        .args(["devices", "--realsense-recording"])
        .arg(&bad));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("error: {}: ", bad.display())),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
