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
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// Writes a recording; `extra` are options of the script. Returns its JSON summary.
fn make_recording(path: &Path, extra: &[&str]) -> serde_json::Value {
    let pythonpath = std::env::var("EDGEBIND_REALSENSE_PYTHONPATH")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join(".realsense/python"));
    let out = Command::new("python3")
        .arg(repo().join("tools/make_realsense_recording.py"))
        .arg(path)
        .args(extra)
        .env("PYTHONPATH", pythonpath)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "make_realsense_recording.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(out.stdout.trim_ascii()).unwrap()
}

fn realsense_config(port: u16, device: &str, source: &str) -> String {
    format!(
        "{base}\n[[sources]]\ntype = \"realsense\"\nname = \"depth\"\n{source}",
        base = base_config(device, port)
    )
}

fn embeddings(sub: &Subscriber) -> Vec<serde_json::Value> {
    sub.on("/depth/embedding").iter().map(Seen::json).collect()
}

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

/// A recording with depth and a 320x240 colour stream (the picture written to `picture`).
fn depth_and_colour_recording(dir: &Path, extra: &[&str]) -> (PathBuf, PathBuf) {
    let bag = dir.join("both.bag");
    let picture = dir.join("colour.npy");
    let mut args = vec![
        "--colour",
        "320x240",
        "--colour-npy",
        picture.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let made = make_recording(&bag, &args);
    assert_eq!(made["colour"], "320x240");
    (bag, picture)
}

/// `[sources.colour]` keys for the recordings' 320x240 colour stream, sensor `rgb`.
const COLOUR_TABLE: &str =
    "[sources.colour]\nname = \"rgb\"\nwidth_px = 320\nheight_px = 240\ninterval_ms = 250\n";

/// `edgebind embed vision` of `picture` with the tiny model: what the daemon must publish for
/// a colour frame holding it.
fn embedding_of_picture(picture: &Path) -> Vec<f32> {
    let out_path = picture.with_extension("emb.npy");
    let out = run(edgebind()
        .args(["embed", "vision"])
        .arg(picture)
        .arg("--model")
        .arg(repo().join("models/tiny/vision.onnx"))
        .arg("-o")
        .arg(&out_path));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    npy_f32_2d(&out_path).iter().copied().collect()
}

/// The largest difference between a published embedding and `want`.
fn distance_to(v: &serde_json::Value, want: &[f32]) -> f32 {
    let got: Vec<f32> = v["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

fn window_starts(msgs: &[serde_json::Value]) -> Vec<i64> {
    msgs.iter()
        .map(|v| v["window"]["start_utc_ns"].as_i64().unwrap())
        .collect()
}

#[test]
fn depth_and_colour_from_one_recording_are_embedded_on_their_sensors_on_one_clock() {
    let broker = LocalBroker::start(&[]).unwrap();
    let sub = Subscriber::start(broker.port(), "edgebind/rs-both/#");
    let dir = tempfile::tempdir().unwrap();
    let (bag, picture) = depth_and_colour_recording(dir.path(), &[]);
    let path = write_config(
        dir.path(),
        &realsense_config(
            broker.port(),
            "rs-both",
            &format!(
                "recording = \"{}\"\ninterval_ms = 250\n{COLOUR_TABLE}",
                bag.display()
            ),
        )
        .replace("stats_interval_s = 0", "stats_interval_s = 1"),
    );
    let out = run(edgebind().arg("run").arg("--config").arg(&path));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        log.contains("Z16 depth stream 640x480 at 30 fps and RGB8 colour stream 320x240 at 30 fps"),
        "{log}"
    );
    assert!(sub.wait_for(Duration::from_secs(5), |m| {
        let on = |s: &str| m.iter().filter(|x| x.topic.ends_with(s)).count();
        on("/depth/embedding") >= 3 && on("/rgb/embedding") >= 3
    }));
    std::thread::sleep(Duration::from_millis(300));
    let depth = embeddings(&sub);
    let colour: Vec<serde_json::Value> = sub.on("/rgb/embedding").iter().map(Seen::json).collect();
    assert!((3..=5).contains(&colour.len()), "{}", colour.len());
    for v in &depth {
        assert_eq!(v["modality"], "depth", "{v}");
    }
    // The colour frames hold one picture: every colour window is its embedding.
    let want = embedding_of_picture(&picture);
    for v in &colour {
        assert_eq!(v["modality"], "vision", "{v}");
        assert_eq!(v["window"]["sample_count"], 1, "{v}");
        let d = distance_to(v, &want);
        assert!(
            d < 1e-5,
            "colour window differs from the picture's embedding by {d}"
        );
    }
    // One clock: the recording stamps depth and colour frames of an instant alike, so colour
    // capture times are whole frame periods away from depth's (0 for a window on the same frame;
    // more when a stream's interval starts on another frame, or real-time playback dropped one).
    // Stamped by arrival, or by a clock of their own, they would be off by the handling time.
    let (d, c) = (window_starts(&depth), window_starts(&colour));
    let period_ns = 1e9 / 30.0;
    for t in &c {
        let k = ((t - d[0]) as f64 / period_ns).round();
        let off = (t - d[0]) as f64 - k * period_ns;
        assert!(
            off.abs() < 10_000.0,
            "colour {t} is {off} ns off depth's frames {d:?}"
        );
    }
    // Each stream has its own counters: every frame of the recording counted on both.
    let samples = |sensor: &str| {
        sub.on(&format!("/{sensor}/state"))
            .iter()
            .filter_map(|s| s.json()["samples_total"].as_u64())
            .max()
            .unwrap_or(0)
    };
    assert!(
        (20..=30).contains(&samples("rgb")),
        "rgb {}",
        samples("rgb")
    );
    assert!(
        (20..=30).contains(&samples("depth")),
        "depth {}",
        samples("depth")
    );
}

#[test]
fn a_colour_only_source_publishes_vision_and_no_depth() {
    let broker = LocalBroker::start(&[]).unwrap();
    let sub = Subscriber::start(broker.port(), "edgebind/rs-rgb/#");
    let dir = tempfile::tempdir().unwrap();
    let (bag, picture) = depth_and_colour_recording(dir.path(), &["--no-depth", "--frames", "20"]);
    let path = write_config(
        dir.path(),
        &realsense_config(
            broker.port(),
            "rs-rgb",
            &format!(
                "recording = \"{}\"\ndepth = false\n{COLOUR_TABLE}",
                bag.display()
            ),
        ),
    );
    let out = run(edgebind().arg("run").arg("--config").arg(&path));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("recording finished"), "{log}");
    assert!(sub.wait_for(Duration::from_secs(5), |m| m
        .iter()
        .any(|x| x.topic.ends_with("/rgb/embedding"))));
    std::thread::sleep(Duration::from_millis(300));
    let colour: Vec<serde_json::Value> = sub.on("/rgb/embedding").iter().map(Seen::json).collect();
    // 20 frames (0.67 s) over 250 ms intervals.
    assert!((2..=4).contains(&colour.len()), "{}", colour.len());
    let want = embedding_of_picture(&picture);
    for v in &colour {
        assert_eq!(v["modality"], "vision", "{v}");
        let d = distance_to(v, &want);
        assert!(
            d < 1e-5,
            "colour window differs from the picture's embedding by {d}"
        );
    }
    assert!(embeddings(&sub).is_empty(), "depth published");
    assert!(sub.on("/depth/state").is_empty(), "depth is a sensor");
}

#[test]
fn bad_colour_settings_are_refused_by_check_and_a_recording_without_them_by_run() {
    let dir = tempfile::tempdir().unwrap();
    let (bag, _) = depth_and_colour_recording(dir.path(), &["--frames", "5"]);
    let path = write_config(
        dir.path(),
        &realsense_config(
            1883,
            "rs-bad-colour",
            &format!(
                "recording = \"{}\"\n[sources.colour]\nname = \"depth\"\nfps = 0\nheight_px = 0\n",
                bag.display()
            ),
        ),
    );
    let out = run(edgebind().arg("check").arg("--config").arg(&path));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    for want in [
        ":21:7: sources[0].colour.fps",
        "0 fps is less than the 1 fps allowed",
        ":22:13: sources[0].colour.height_px",
    ] {
        assert!(err.contains(want), "{want} not in {err}");
    }
    let path = write_config(
        dir.path(),
        &realsense_config(
            1883,
            "rs-bad-colour",
            &format!(
                "recording = \"{}\"\n[sources.colour]\nname = \"depth\"\n",
                bag.display()
            ),
        ),
    );
    let out = run(edgebind().arg("check").arg("--config").arg(&path));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains(":20:8: sources[0].colour.name (depth): \"depth\" is used by another source"),
        "{err}"
    );
    // The recording's colour stream is 320x240: the default 640x480 is not in it.
    let path = write_config(
        dir.path(),
        &realsense_config(
            1883,
            "rs-bad-colour",
            &format!(
                "recording = \"{}\"\n[sources.colour]\nname = \"rgb\"\n",
                bag.display()
            ),
        ),
    );
    let out = run(edgebind().arg("run").arg("--config").arg(&path));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(
            "has no Z16 depth stream 640x480 at 30 fps and RGB8 colour stream 640x480 at 30 fps"
        ),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// A recording with a colour stream: `edgebind devices` gives a block with its colour table,
/// which `check` accepts and `run` plays on two sensors.
#[test]
fn devices_gives_a_colour_table_for_a_camera_with_colour() {
    let dir = tempfile::tempdir().unwrap();
    let (bag, _) = depth_and_colour_recording(dir.path(), &["--frames", "5"]);
    let out = run(edgebind()
        .args(["devices", "--json", "--realsense-recording"])
        .arg(&bag));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let devices = v["realsense"]["devices"].as_array().unwrap();
    let rec = devices
        .iter()
        .find(|d| d["recording"] == bag.display().to_string())
        .unwrap_or_else(|| panic!("{devices:?}"));
    let toml = rec["source"]["toml"].as_str().unwrap();
    assert!(
        toml.ends_with(
            "[sources.colour]\nname = \"colour-000000000001\"\nwidth_px = 320\nheight_px = 240\nfps = 30\n"
        ),
        "{toml}"
    );
    let path = write_config(
        dir.path(),
        &format!("{}\n{toml}", base_config("rs-devices-colour", 1883)),
    );
    let check = run(edgebind().arg("check").arg("--config").arg(&path));
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}
