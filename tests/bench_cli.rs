//! `edgebind bench` on the tiny models with the real ONNX Runtime, and end to end against a
//! real mosquitto: every documented JSON field is there with sane values; bad input fails
//! clearly. (No timing assertions: the figures only have to be positive and ordered.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::Value;

fn positive(v: &Value, what: &str) -> f64 {
    let x = v
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"));
    assert!(x.is_finite() && x > 0.0, "{what} = {x}");
    x
}

fn median_and_p99_in_order(s: &Value, what: &str) {
    let median = positive(&s["median_ms"], &format!("{what}.median_ms"));
    let p99 = positive(&s["p99_ms"], &format!("{what}.p99_ms"));
    assert!(p99 >= median, "{what}: p99 {p99} < median {median}");
    assert!(s["runs"].as_u64().unwrap() >= 3, "{what}: {s}");
}

fn check_header(r: &Value, mode: &str) {
    assert_eq!(r["version"], 1);
    assert_eq!(r["mode"], mode);
    for key in ["edgebind_version", "build_profile"] {
        assert!(!r[key].as_str().unwrap().is_empty(), "{key}");
    }
    assert!(r["started_unix_s"].as_u64().unwrap() > 1_600_000_000);
    let s = &r["system"];
    for key in ["cpu_model", "gpu_model", "power_mode", "kernel", "arch"] {
        assert!(!s[key].as_str().unwrap().is_empty(), "system.{key}: {s}");
    }
    assert!(s["cpu_cores"].as_u64().unwrap() >= 1);
    // This machine is no Jetson.
    assert_eq!(s["power_mode"], "n/a");
    assert!(r["onnxruntime"]["version"]
        .as_str()
        .unwrap()
        .starts_with("1."));
    assert!(r["onnxruntime"]["library"]
        .as_str()
        .unwrap()
        .contains("onnxruntime"));
    assert_eq!(r["models"]["name"], "edgebind-tiny");
    assert_eq!(r["providers_requested"], serde_json::json!(["cpu"]));
    assert_eq!(r["intra_threads"], 1);
    positive(&r["duration_s"], "duration_s");
}

#[test]
fn bench_json_on_the_tiny_models_has_every_field_with_sane_values() {
    let out = run(edgebind()
        .arg("bench")
        .args(["--duration", "3s", "--providers", "cpu", "--max-batch", "4"])
        .args(["--json", "-"])
        .arg("--models")
        .arg(repo().join("models/tiny")));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).expect("stdout is the JSON report");
    check_header(&r, "per_modality");
    assert!(r["e2e"].is_null());
    let modalities = r["modalities"].as_array().unwrap();
    let names: Vec<&str> = modalities
        .iter()
        .map(|m| m["modality"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["imu", "audio", "depth", "thermal", "vision"]);
    for m in modalities {
        let name = m["modality"].as_str().unwrap();
        assert_eq!(m["provider"], "cpu", "{name}");
        assert!(m["provider_fallbacks"].as_array().unwrap().is_empty());
        assert!(m["model"]
            .as_str()
            .unwrap()
            .ends_with(&format!("{name}.onnx")));
        assert!(!m["input"].as_str().unwrap().is_empty());
        let shape: Vec<u64> = m["input_shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect();
        let want: &[u64] = match name {
            "imu" => &[6, 2000],
            "audio" => &[1, 1, 128, 204],
            "vision" => &[3, 224, 224],
            _ => &[1, 224, 224],
        };
        assert_eq!(shape, want, "{name}");
        median_and_p99_in_order(&m["preprocess"], &format!("{name}.preprocess"));
        median_and_p99_in_order(&m["inference_batch1"], &format!("{name}.inference_batch1"));
        median_and_p99_in_order(
            &m["inference_best_batch"],
            &format!("{name}.inference_best_batch"),
        );
        let sizes: Vec<u64> = m["batch_sizes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                median_and_p99_in_order(&b["run"], &format!("{name} batch"));
                positive(&b["per_window_median_ms"], "per_window_median_ms");
                b["batch"].as_u64().unwrap()
            })
            .collect();
        // The tiny models take any batch: 1, 2, 4 are all tried unless larger ones stop helping.
        assert_eq!(sizes.first(), Some(&1), "{name}: {sizes:?}");
        assert!(sizes.windows(2).all(|w| w[1] == 2 * w[0]), "{sizes:?}");
        assert!(sizes.contains(&m["best_batch"].as_u64().unwrap()));
        assert!(!m["batch_limit"].as_str().unwrap().is_empty());
        let t = &m["throughput"];
        let median = positive(&t["median_per_s"], "throughput.median_per_s");
        let slow = positive(&t["p99_per_s"], "throughput.p99_per_s");
        assert!(slow <= median, "{name}: slow end {slow} > median {median}");
        assert!(t["intervals"].as_u64().unwrap() >= 1);
    }
}

#[test]
fn bench_prints_a_table_and_writes_the_json_file() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let out = run(edgebind()
        .arg("bench")
        .args([
            "--duration",
            "1s",
            "--providers",
            "cpu",
            "--modalities",
            "imu",
        ])
        .arg("--json")
        .arg(&json));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("preprocess ms") && table.contains("imu "),
        "{table}"
    );
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(r["modalities"].as_array().unwrap().len(), 1);
}

#[test]
fn bench_fails_clearly_on_a_missing_model_dir() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-models-here");
    let out = run(edgebind()
        .arg("bench")
        .args(["--duration", "1s", "--providers", "cpu"])
        .arg("--models")
        .arg(&missing));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("--models {}", missing.display()))
            && err.contains("no such directory"),
        "{err}"
    );
    // A directory without a manifest names the file it looked for.
    let out = run(edgebind()
        .arg("bench")
        .args(["--providers", "cpu"])
        .arg("--models")
        .arg(dir.path()));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("manifest.json"), "{err}");
}

#[test]
fn bench_e2e_measures_the_daemon_against_mosquitto() {
    let out = run(edgebind()
        .arg("bench")
        .arg("--e2e")
        .args(["--duration", "3s", "--max-speed-duration", "2s"])
        .args(["--providers", "cpu", "--json", "-"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).expect("stdout is the JSON report");
    check_header(&r, "end_to_end");
    assert!(r["modalities"].as_array().unwrap().is_empty());
    let e = &r["e2e"];
    let rt = &e["realtime"];
    let sensors: Vec<&str> = rt["sensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(sensors, ["imu", "mic", "thermal", "depth"]);
    positive(&rt["measured_s"], "measured_s");
    // Four sensors at one window per second for ~3 s.
    assert!(rt["windows"].as_u64().unwrap() >= 4, "{rt}");
    assert!(rt["daemon_cpu_percent"].as_f64().unwrap() >= 0.0);
    let resolution = positive(&rt["cpu_resolution_percent"], "cpu_resolution_percent");
    // Inference CPU is part of the daemon's CPU (read in clock ticks, hence the slack).
    let inference_cpu = positive(&rt["inference_cpu_percent"], "inference_cpu_percent");
    assert!(
        inference_cpu <= rt["daemon_cpu_percent"].as_f64().unwrap() + 2.0 * resolution,
        "{rt}"
    );
    let rss = positive(&rt["peak_rss_mib"], "peak_rss_mib");
    assert!(rss < 4096.0, "{rss}");
    assert!(rt["threads"].as_u64().unwrap() >= 4);
    assert!(rt["thread_cpu_percent"]
        .as_object()
        .unwrap()
        .keys()
        .any(|k| k.starts_with("infer-")));
    for stage in ["preprocess", "queue", "inference", "publish", "end_to_end"] {
        let l = &rt["latency"][stage];
        assert!(l["count"].as_u64().unwrap() >= 1, "{stage}: {l}");
        let p50 = positive(&l["p50_ms"], stage);
        assert!(l["p99_ms"].as_f64().unwrap() >= p50, "{stage}: {l}");
    }
    assert!(
        rt["latency_by_sensor"]["mic"]["inference"]["count"]
            .as_u64()
            .unwrap()
            >= 1
    );
    let d = &rt["end_to_delivery_excluding_inference"];
    assert!(d["count"].as_u64().unwrap() >= 4, "{d}");
    assert!(d["p99_ms"].as_f64().unwrap() >= d["p50_ms"].as_f64().unwrap());
    assert!(rt["drops"]
        .as_object()
        .unwrap()
        .values()
        .all(|v| v.as_u64() == Some(0)));
    let m = &e["max_speed"];
    positive(&m["windows_per_s"], "max_speed.windows_per_s");
    positive(&m["daemon_cpu_percent"], "max_speed.daemon_cpu_percent");
    let latency_ms = positive(&m["stage_mean_ms"]["inference"], "max_speed inference mean");
    // A window's inference CPU is its share of its batch's run, never more than the run took.
    let cpu_ms = positive(
        &m["inference_cpu_ms_per_window"],
        "inference_cpu_ms_per_window",
    );
    assert!(cpu_ms <= latency_ms * 1.05 + 0.01, "{m}");
    assert_eq!(m["drops"], 0);
    assert!(["preprocess", "inference"].contains(&m["bottleneck"].as_str().unwrap()));
    let targets = e["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 4);
    assert!(targets.iter().all(|t| t["met"].is_boolean()));
    assert!(e["python_reference"].is_null());
}
