//! Depth end to end: frame replay → disparity preprocessing → the real ONNX Runtime →
//! mosquitto, and `preprocess depth` against the reference data.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use ndarray::Array3;

#[test]
fn preprocess_depth_matches_refdata_and_its_prenorm_alternative() {
    let dir = tempfile::tempdir().unwrap();
    let input = refdata_dir().join("depth/depth_640x480_u16_mm.npy");
    for (extra, want) in [
        (vec![], "depth/depth_out_1x224x224_f32.npy"),
        (
            vec!["--no-normalize"],
            "depth/depth_prenorm_1x224x224_f32.npy",
        ),
    ] {
        let out_path = dir.path().join("out.npy");
        let out = run(edgebind()
            .args(["preprocess", "depth"])
            .arg(&input)
            .args(["--focal-px", "518.857901", "--baseline-m", "0.075"])
            .args(&extra)
            .arg("-o")
            .arg(&out_path));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: ndarray::ArrayD<f32> = ndarray_npy::read_npy(&out_path).unwrap();
        let want: ndarray::ArrayD<f32> = ndarray_npy::read_npy(refdata_dir().join(want)).unwrap();
        let d = max_abs_diff(&got, &want);
        assert!(d <= 2e-3, "{extra:?}: max |diff| {d}");
    }
}

#[test]
fn embed_depth_writes_the_encoder_output() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("e.npy");
    let out = run(edgebind()
        .args(["embed", "depth"])
        .arg(refdata_dir().join("depth/depth_640x480_u16_mm.npy"))
        .arg("--model")
        .arg(repo().join("models/tiny/depth.onnx"))
        .arg("-o")
        .arg(&out_path));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let e = npy_f32_2d(&out_path);
    assert_eq!(e.shape(), [1, 1024]);
    assert!(e.iter().all(|v| v.is_finite()));
}

/// 640×480 millimetre frames: a box 0.5 m in front of a 3 m wall, or an open corridor 1.5-8 m.
fn scenes(n: usize) -> (Array3<u16>, Array3<u16>) {
    let (h, w) = (480, 640);
    let near = Array3::from_shape_fn((n, h, w), |(k, y, x)| {
        let in_box = (100..380).contains(&y) && (150 + k * 4..490 + k * 4).contains(&x);
        if in_box {
            500
        } else {
            3000
        }
    });
    let far = Array3::from_shape_fn((n, h, w), |(_, y, x)| {
        (1500.0 + 6500.0 * (1.0 - y as f64 / h as f64) + (x % 7) as f64) as u16
    });
    (near, far)
}

#[test]
fn depth_replay_is_embedded_and_labelled_end_to_end() {
    let broker = LocalBroker::start(&[]).unwrap();
    let sub = Subscriber::start(broker.port(), "edgebind/depth/#");
    let dir = tempfile::tempdir().unwrap();
    let (near, far) = scenes(5);
    ndarray_npy::write_npy(dir.path().join("near.npy"), &near).unwrap();
    ndarray_npy::write_npy(dir.path().join("far.npy"), &far).unwrap();
    let config = format!(
        r#"{base}
[[sources]]
type = "depth_replay"
name = "near"
path = "{dir}/near.npy"
interval_ms = 0
speed = "max"

[[sources]]
type = "depth_replay"
name = "far"
path = "{dir}/far.npy"
interval_ms = 0
speed = "max"
[sources.preprocess]
focal_px = 600.0
baseline_m = 0.05
holes = "nearest_in_row"
"#,
        base = base_config("depth", broker.port()),
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
        == 10));
    for (sensor, want) in [
        ("near", "object close to the camera"),
        ("far", "open space far away"),
    ] {
        let msgs: Vec<serde_json::Value> = sub
            .on(&format!("/{sensor}/embedding"))
            .iter()
            .map(Seen::json)
            .collect();
        assert_eq!(msgs.len(), 5, "{sensor}");
        for v in &msgs {
            assert_eq!(v["modality"], "depth");
            assert_eq!(top_label(v), want, "{sensor}: {}", v["labels"]);
        }
    }
}

#[test]
fn a_depth_frame_of_another_type_or_bad_calibration_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("u8.npy");
    ndarray_npy::write_npy(&f, &ndarray::Array2::<u8>::zeros((48, 64))).unwrap();
    let out = run(edgebind()
        .args(["preprocess", "depth"])
        .arg(&f)
        .arg("-o")
        .arg(dir.path().join("o.npy")));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be 16-bit"));
    let g = dir.path().join("u16.npy");
    ndarray_npy::write_npy(&g, &ndarray::Array2::<u16>::zeros((48, 64))).unwrap();
    let out = run(edgebind()
        .args(["preprocess", "depth"])
        .arg(&g)
        .arg("--focal-px=-3")
        .arg("-o")
        .arg(dir.path().join("o.npy")));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    // The flag is refused with its range before the file is read (#14).
    assert!(
        err.contains("--focal-px") && err.contains("-3 px is less than the 1 px allowed"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}
