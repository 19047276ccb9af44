//! Thermal end to end: frame replay → exact preprocessing → the real ONNX Runtime → mosquitto,
//! and the `preprocess thermal` command against the reference data.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use ndarray::{Array2, Array3};

#[test]
fn preprocess_thermal_matches_refdata_for_y16_and_u8_frames() {
    let dir = tempfile::tempdir().unwrap();
    for (input, want) in [
        (
            "thermal/thermal_y16_160x120_u16.npy",
            "thermal/thermal_y16_out_1x224x224_f32.npy",
        ),
        (
            "thermal/thermal_u8_640x512.npy",
            "thermal/thermal_u8_out_1x224x224_f32.npy",
        ),
    ] {
        let out_path = dir.path().join("out.npy");
        let out = run(edgebind()
            .args(["preprocess", "thermal"])
            .arg(refdata_dir().join(input))
            .arg("-o")
            .arg(&out_path));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: ndarray::ArrayD<f32> = ndarray_npy::read_npy(&out_path).unwrap();
        let want: ndarray::ArrayD<f32> = ndarray_npy::read_npy(refdata_dir().join(want)).unwrap();
        // Pillow's fixed-point resize is emulated exactly.
        assert_eq!(max_abs_diff(&got, &want), 0.0, "{input}");
    }
}

fn write_stack(path: &std::path::Path, frames: &Array3<u16>) {
    ndarray_npy::write_npy(path, frames).unwrap();
}

/// Lepton-style centi-kelvin frames: a warm body on a 20 °C background, or an empty cold scene.
fn scenes(n: usize) -> (Array3<u16>, Array3<u16>) {
    let (h, w) = (120, 160);
    let warm = Array3::from_shape_fn((n, h, w), |(k, y, x)| {
        let dy = y as f64 - 60.0;
        let dx = x as f64 - 80.0 - k as f64;
        if (dy / 35.0).powi(2) + (dx / 20.0).powi(2) < 1.0 {
            30_815 // 35 °C
        } else {
            29_315 + ((x * 7 + y * 3) % 5) as u16 // 20 °C
        }
    });
    let cold = Array3::from_elem((n, h, w), 28_315u16); // 10 °C, uniform
    (warm, cold)
}

#[test]
fn thermal_replay_is_embedded_and_labelled_end_to_end() {
    let broker = LocalBroker::start(&[]).unwrap();
    let sub = Subscriber::start(broker.port(), "edgebind/therm/#");
    let dir = tempfile::tempdir().unwrap();
    let (warm, cold) = scenes(6);
    write_stack(&dir.path().join("warm.npy"), &warm);
    write_stack(&dir.path().join("cold.npy"), &cold);
    // The cold scene also goes through a fixed 0-40 °C window as a radiometric camera would be.
    let config = format!(
        r#"{base}
[[sources]]
type = "thermal_replay"
name = "warm"
path = "{dir}/warm.npy"
fps = 9.0
interval_ms = 0
speed = "max"

[[sources]]
type = "thermal_replay"
name = "cold"
path = "{dir}/cold.npy"
fps = 9.0
interval_ms = 0
speed = "max"
[sources.preprocess]
agc = "fixed_celsius"
agc_min_c = 0.0
agc_max_c = 40.0
"#,
        base = base_config("therm", broker.port()),
        dir = dir.path().display(),
    );
    let path = write_config(dir.path(), &config);
    let out = run(edgebind().arg("run").arg("--config").arg(&path));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(sub.wait_for(Duration::from_secs(5), |m| m
        .iter()
        .filter(|s| s.topic.ends_with("/embedding"))
        .count()
        == 12));
    for sensor in ["warm", "cold"] {
        let msgs: Vec<serde_json::Value> = sub
            .on(&format!("/{sensor}/embedding"))
            .iter()
            .map(Seen::json)
            .collect();
        let seqs: Vec<u64> = msgs.iter().map(|v| v["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, (0..6).collect::<Vec<_>>());
        let want = if sensor == "warm" {
            "warm body in view"
        } else {
            "cold empty scene"
        };
        for v in &msgs {
            assert_eq!(v["modality"], "thermal");
            assert_eq!(top_label(v), want, "{sensor}: {}", v["labels"]);
            assert_eq!(v["window"]["sample_count"], 1);
        }
    }
}

#[test]
fn a_frame_interval_takes_one_frame_per_interval_and_counts_the_rest() {
    let broker = LocalBroker::start(&[]).unwrap();
    let sub = Subscriber::start(broker.port(), "edgebind/interval/#");
    let dir = tempfile::tempdir().unwrap();
    let (warm, _) = scenes(20);
    write_stack(&dir.path().join("warm.npy"), &warm);
    // 20 frames at 10 fps = 2 s of capture time; one frame per 500 ms → 4 windows.
    let config = format!(
        "{}\n[[sources]]\ntype = \"thermal_replay\"\nname = \"cam\"\npath = \"{}/warm.npy\"\nfps = 10.0\ninterval_ms = 500\nspeed = \"max\"\n",
        base_config("interval", broker.port()),
        dir.path().display(),
    );
    let path = write_config(dir.path(), &config);
    let out = run(edgebind().arg("run").arg("--config").arg(&path));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(sub.wait_for(Duration::from_secs(5), |m| m
        .iter()
        .any(|s| s.topic.ends_with("/status") && s.payload == b"offline")));
    let starts: Vec<i64> = sub
        .on("/cam/embedding")
        .iter()
        .map(|m| m.json()["window"]["start_utc_ns"].as_i64().unwrap())
        .collect();
    assert_eq!(starts.len(), 4);
    for w in starts.windows(2) {
        assert_eq!(w[1] - w[0], 500_000_000);
    }
    let state = sub.on("/cam/state").last().unwrap().json();
    assert_eq!(state["drops_total"]["frame_skipped"], 16, "{state}");
}

#[test]
fn bad_thermal_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f.npy");
    ndarray_npy::write_npy(&f, &Array2::<f32>::zeros((4, 4))).unwrap();
    let out = run(edgebind()
        .args(["preprocess", "thermal"])
        .arg(&f)
        .arg("-o")
        .arg(dir.path().join("o.npy")));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a uint8 or uint16"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
