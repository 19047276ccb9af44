//! `skip_unchanged` end to end: a thermal replay that holds still and then moves, through the
//! real preprocessing, ONNX Runtime and mosquitto. The still frames reuse the first embedding;
//! once the scene moves every window is embedded again; a source without the key never reuses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use ndarray::Array3;

/// Centi-kelvin frames: a warm body on a 20 °C background that holds still for `still` frames
/// (with one count of sensor noise flickering on the background) and then walks 8 px a frame.
fn still_then_moving(still: usize, moving: usize) -> Array3<u16> {
    let (h, w) = (120, 160);
    Array3::from_shape_fn((still + moving, h, w), |(k, y, x)| {
        let shift = k.saturating_sub(still - 1) as f64 * 8.0;
        let dy = y as f64 - 60.0;
        let dx = x as f64 - 50.0 - shift;
        if (dy / 35.0).powi(2) + (dx / 20.0).powi(2) < 1.0 {
            30_815 // 35 °C
        } else {
            // Noise of one count (0.01 K) that changes from frame to frame.
            29_315 + ((x * 7 + y * 3 + k) % 2) as u16
        }
    })
}

#[test]
fn a_still_scene_reuses_its_embedding_and_a_moving_one_never_does() {
    let broker = LocalBroker::start(&[]).unwrap();
    let sub = Subscriber::start(broker.port(), "edgebind/still/#");
    let dir = tempfile::tempdir().unwrap();
    let (still, moving) = (5, 5);
    ndarray_npy::write_npy(
        dir.path().join("scene.npy"),
        &still_then_moving(still, moving),
    )
    .unwrap();
    let config = format!(
        r#"{base}
[[sources]]
type = "thermal_replay"
name = "skips"
path = "{dir}/scene.npy"
fps = 9.0
interval_ms = 0
speed = "max"
skip_unchanged = {{ distance = "max_abs", threshold = 0.05 }}

[[sources]]
type = "thermal_replay"
name = "always"
path = "{dir}/scene.npy"
fps = 9.0
interval_ms = 0
speed = "max"
"#,
        base = base_config("still", broker.port()),
        dir = dir.path().display(),
    );
    let path = write_config(dir.path(), &config);
    let out = run(edgebind().arg("run").arg("--config").arg(&path));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let n = still + moving;
    assert!(sub.wait_for(Duration::from_secs(30), |m| {
        m.iter().filter(|s| s.topic.ends_with("/embedding")).count() == 2 * n
            && m.iter().filter(|s| s.topic.ends_with("/state")).count() >= 2
    }));

    let msgs: Vec<serde_json::Value> = sub.on("/skips/embedding").iter().map(Seen::json).collect();
    let seqs: Vec<u64> = msgs.iter().map(|v| v["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (0..n as u64).collect::<Vec<_>>());
    let reused: Vec<Option<u64>> = msgs
        .iter()
        .map(|v| v["window"]["reused_from_seq"].as_u64())
        .collect();
    // The first still frame is embedded, the other still ones reuse it; after the change every
    // window is embedded (the last still frame is also the first moving one: shift 0).
    let mut want = vec![None];
    want.extend(std::iter::repeat_n(Some(0), still - 1));
    want.extend(std::iter::repeat_n(None, moving));
    assert_eq!(reused, want);
    for (v, r) in msgs.iter().zip(&reused) {
        assert!(v["window"]
            .as_object()
            .unwrap()
            .contains_key("reused_from_seq"));
        if r.is_some() {
            assert_eq!(v["embedding"], msgs[0]["embedding"], "seq {}", v["seq"]);
            assert_eq!(v["labels"], msgs[0]["labels"]);
            assert_eq!(v["latency"]["inference_ms"], 0.0);
        }
    }
    // Moving frames are all different embeddings.
    for pair in msgs[still..].windows(2) {
        assert_ne!(pair[0]["embedding"], pair[1]["embedding"]);
    }

    let always: Vec<serde_json::Value> =
        sub.on("/always/embedding").iter().map(Seen::json).collect();
    assert_eq!(always.len(), n);
    for v in &always {
        assert_eq!(v["window"]["reused_from_seq"], serde_json::Value::Null);
    }

    let state = |sensor: &str| sub.on(&format!("/{sensor}/state")).last().unwrap().json();
    let skips = state("skips");
    assert_eq!(skips["windows_total"], n as u64, "{skips}");
    assert_eq!(skips["embeddings_total"], n as u64, "{skips}");
    assert_eq!(
        skips["embeddings_reused_total"],
        (still - 1) as u64,
        "{skips}"
    );
    assert_eq!(state("always")["embeddings_reused_total"], 0);
}

#[test]
fn check_names_a_bad_skip_unchanged_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let scene = dir.path().join("scene.npy");
    ndarray_npy::write_npy(&scene, &still_then_moving(1, 0)).unwrap();
    for (value, want) in [
        (
            r#"{ distance = "max_abs", threshold = 1e6 }"#,
            "is more than the 100 allowed",
        ),
        (
            r#"{ distance = "l1", threshold = 0.1 }"#,
            r#""l1" is not one of "max_abs", "rms""#,
        ),
        (r#"{ threshold = 0.1 }"#, "distance"),
        (
            r#"{ distance = "rms", threshold = nan }"#,
            "is not a number",
        ),
        (
            r#"{ distance = "rms", threshold = 0.1, every = 3 }"#,
            "every",
        ),
    ] {
        let config = format!(
            "{base}\n[[sources]]\ntype = \"thermal_replay\"\nname = \"cam\"\npath = \"{scene}\"\nskip_unchanged = {value}\n",
            base = base_config("check", 1),
            scene = scene.display(),
        );
        let path = write_config(dir.path(), &config);
        let out = run(edgebind().arg("check").arg("--config").arg(&path));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{value}: {stderr}");
        assert!(stderr.contains(want), "{value}: {stderr}");
        let line = config
            .lines()
            .position(|l| l.starts_with("skip_unchanged"))
            .unwrap()
            + 1;
        assert!(
            stderr.contains(&format!(":{line}:")),
            "{value}: the line of the key: {stderr}"
        );
    }
}
