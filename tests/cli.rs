//! The command line on real inputs: refdata parity, the real ONNX Runtime, bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use edgebind::config::{self, EX_CONFIG};

#[test]
fn every_file_in_config_parses_and_validates() {
    let mut n = 0;
    for entry in std::fs::read_dir(repo().join("config")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) == Some("toml") {
            config::load(&path).unwrap_or_else(|e| panic!("{e}"));
            let out = run(edgebind().arg("check").arg("--config").arg(&path));
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            n += 1;
        }
    }
    assert!(n >= 2, "expected edgebind.toml and demo.toml");
}

#[test]
fn check_reports_every_problem_with_its_path_and_exits_78() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        r#"[device]
id = "dev"
[models]
dir = "nowhere"
[mqtt]
url = "mqtt://127.0.0.1:1883"
[[sources]]
type = "imu_replay"
name = "a"
path = "missing.csv"
window_ms = 0
[[sources]]
type = "imu_replay"
name = "b"
path = "missing.npy"
hop_ms = 0
"#,
    );
    let out = run(edgebind().arg("check").arg("--config").arg(&path));
    assert_eq!(out.status.code(), Some(EX_CONFIG));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "models.dir",
        "sources[0].window_ms (a): 0 ms is less than the 1 ms allowed",
        "sources[0].path (a)",
        "sources[1].hop_ms (b): 0 ms is less than the 1 ms allowed",
        "sources[1].sample_rate_hz (b)",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}

#[test]
fn a_file_that_does_not_parse_names_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "[device]\nid = \"x\"\n\n[mqtt\nurl = 3\n");
    let out = run(edgebind().arg("check").arg("--config").arg(&path));
    assert_eq!(out.status.code(), Some(EX_CONFIG));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:4:", path.display())), "{err}");
}

#[test]
fn preprocess_imu_matches_refdata_at_400_hz_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out.npy");
    let input = refdata_dir().join("imu/imu_400hz_5s_6x2000_f32.npy");
    let out = run(edgebind()
        .args(["preprocess", "imu"])
        .arg(&input)
        .args(["--rate-hz", "400", "-o"])
        .arg(&out_path));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(npy_f32_2d(&out_path), npy_f32_2d(&input));
}

#[test]
fn preprocess_imu_resamples_200_hz_like_torch_interpolate() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out.npy");
    let out = run(edgebind()
        .args(["preprocess", "imu"])
        .arg(refdata_dir().join("imu/imu_200hz_5s_6x1000_f32.npy"))
        .args(["--rate-hz", "200", "-o"])
        .arg(&out_path));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = npy_f32_2d(&out_path);
    let want = npy_f32_2d(&refdata_dir().join("imu/imu_200hz_to_6x2000_f32.npy"));
    assert_eq!(got.shape(), [6, 2000]);
    let max = got
        .iter()
        .zip(want.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    // Same float32 operations in the same order as PyTorch's CPU kernel: bit-exact.
    assert_eq!(max, 0.0, "max |diff| {max}");
}

#[test]
fn embed_imu_runs_the_real_onnx_runtime_and_matches_python() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("emb.npy");
    let out = run(&mut embed_imu_reference(
        &repo().join("models/tiny/imu.onnx"),
        &out_path,
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = npy_f32_2d(&out_path);
    let want = npy_f32_2d(&fixture("models/imu_ref_output.npy"));
    assert_eq!(got.shape(), [1, 1024]);
    let max = got
        .iter()
        .zip(want.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(max < 1e-5, "max |diff| vs onnxruntime (Python) {max}");
}

#[test]
fn a_model_of_the_wrong_shape_is_refused_naming_file_and_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixture("models/imu_wrong_shape.onnx");
    let out = run(&mut embed_imu_reference(&model, &dir.path().join("x.npy")));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&model.display().to_string()), "{err}");
    assert!(
        err.contains("[?, 6, 1000]") && err.contains("[B, 6, 2000]"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_missing_onnx_runtime_is_a_clear_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(embed_imu_reference(
        &repo().join("models/tiny/imu.onnx"),
        &dir.path().join("x.npy"),
    )
    .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so"));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("libonnxruntime not found") && err.contains("/nonexistent/libonnxruntime.so"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn run_with_an_empty_recording_fails_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("empty.csv");
    std::fs::write(&csv, "").unwrap();
    let config = format!(
        "{}\n[[sources]]\ntype = \"imu_replay\"\nname = \"imu\"\npath = \"{}\"\nsample_rate_hz = 200.0\n",
        base_config("empty", 1),
        csv.display()
    );
    let path = write_config(dir.path(), &config);
    let out = run(edgebind().arg("run").arg("--config").arg(&path));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}: no samples", csv.display())),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn run_without_onnx_runtime_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}\n[[sources]]\ntype = \"imu_replay\"\nname = \"imu\"\npath = \"{}\"\n",
        base_config("noort", 1),
        fixture("recordings/imu_still_200hz.csv").display()
    );
    let path = write_config(dir.path(), &config);
    let out = run(edgebind()
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
        .arg("run")
        .arg("--config")
        .arg(&path));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("libonnxruntime not found"), "{err}");
}
