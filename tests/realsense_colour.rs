//! The RealSense colour stream end to end (feature `realsense`): recordings with an RGB camera
//! sensor made at test time → one librealsense pipeline → depth and colour sensors → the tiny
//! models → a real mosquitto; `check` and `run` refusing bad colour settings; `edgebind devices`
//! giving the colour table.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::realsense::*;
use common::*;

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

/// `check --devices` opens a depth+colour source as `run` does (both streams given somewhere to
/// go) and reports it opened at the depth rate.
#[test]
fn check_devices_opens_a_depth_and_colour_recording() {
    let dir = tempfile::tempdir().unwrap();
    let (bag, _) = depth_and_colour_recording(dir.path(), &["--frames", "30"]);
    let path = write_config(
        dir.path(),
        &realsense_config(
            1883,
            "rs-check-devices",
            &format!("recording = \"{}\"\n{COLOUR_TABLE}", bag.display()),
        ),
    );
    let out = run(edgebind()
        .env_remove("RUST_LOG")
        .args(["check", "--devices", "--device-timeout-s", "10", "--config"])
        .arg(&path));
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}{err}");
    assert!(text.contains("depth (realsense): opened, 30 Hz"), "{text}");
    assert!(!err.contains("panicked"), "{err}");
}
