//! Vision end to end: the bundled demo pictures (a folder: PNG and JPEG in name order; a glob;
//! a `.npy` stack) replayed as colour cameras → ImageBind's preprocessing → the real ONNX
//! Runtime → mosquitto, each window published with the label the tiny model gives its picture;
//! and `edgebind check` on a folder holding a truncated picture.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use ndarray::{Array4, Axis};

/// The demo pictures in name order and their labels (tools/make_recordings.py checks them).
const DEMO: [(&str, &str); 3] = [
    ("01_daylight.png", "bright daylight scene"),
    ("02_red_ball.jpg", "red object in view"),
    ("03_night.png", "dark night scene"),
];

/// The embedding payload's schema (docs/mqtt.schema.json).
fn embedding_schema() -> jsonschema::Validator {
    let text = std::fs::read_to_string(repo().join("docs/mqtt.schema.json")).unwrap();
    let mut schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    let obj = schema.as_object_mut().unwrap();
    obj.remove("oneOf");
    obj.insert("$ref".into(), "#/$defs/embedding".into());
    jsonschema::validator_for(&schema).unwrap()
}

fn labels_of(sub: &Subscriber, sensor: &str) -> Vec<(u64, String)> {
    let schema = embedding_schema();
    sub.on(&format!("/{sensor}/embedding"))
        .iter()
        .map(|m| {
            let v = m.json();
            let errors: Vec<String> = schema.iter_errors(&v).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "not the documented payload: {errors:?}");
            assert_eq!(v["modality"], "vision", "{v}");
            assert_eq!(v["window"]["sample_count"], 1, "{v}");
            (v["seq"].as_u64().unwrap(), top_label(&v))
        })
        .collect()
}

#[test]
fn vision_replays_are_embedded_and_labelled_end_to_end() {
    let broker = LocalBroker::start(&[]).unwrap();
    let sub = Subscriber::start(broker.port(), "edgebind/vis/#");
    let dir = tempfile::tempdir().unwrap();
    let demo = fixture("recordings/vision_demo");
    // The two PNGs, decoded, as a `.npy` stack [2, 240, 320, 3] (night first).
    let mut stack = Array4::<u8>::zeros((2, 240, 320, 3));
    for (k, name) in ["03_night.png", "01_daylight.png"].iter().enumerate() {
        let bytes = std::fs::read(demo.join(name)).unwrap();
        let rgb = edgebind::preprocess::vision::decode::decode_image(&bytes)
            .unwrap()
            .into_array();
        stack.index_axis_mut(Axis(0), k).assign(&rgb);
    }
    ndarray_npy::write_npy(dir.path().join("stack.npy"), &stack).unwrap();
    let config = format!(
        r#"{base}
[[sources]]
type = "vision_replay"
name = "folder"
path = "{demo}"
fps = 30.0
interval_ms = 0
speed = "max"

[[sources]]
type = "vision_replay"
name = "glob"
path = "{demo}/0[23]_*"
interval_ms = 0
speed = "max"

[[sources]]
type = "vision_replay"
name = "stack"
path = "{dir}/stack.npy"
interval_ms = 0
speed = "max"
"#,
        base = base_config("vis", broker.port()),
        demo = demo.display(),
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
        == 7));
    let label = |i: usize| DEMO[i].1.to_string();
    assert_eq!(
        labels_of(&sub, "folder"),
        vec![(0, label(0)), (1, label(1)), (2, label(2))]
    );
    assert_eq!(labels_of(&sub, "glob"), vec![(0, label(1)), (1, label(2))]);
    assert_eq!(labels_of(&sub, "stack"), vec![(0, label(2)), (1, label(0))]);
    // One picture a second by default: the stack's windows are a second apart.
    let starts: Vec<i64> = sub
        .on("/stack/embedding")
        .iter()
        .map(|m| m.json()["window"]["start_utc_ns"].as_i64().unwrap())
        .collect();
    assert_eq!(starts[1] - starts[0], 1_000_000_000);
}

#[test]
fn check_names_a_truncated_picture_of_a_vision_replay_folder() {
    let dir = tempfile::tempdir().unwrap();
    let pictures = dir.path().join("pictures");
    std::fs::create_dir(&pictures).unwrap();
    let demo = fixture("recordings/vision_demo");
    std::fs::copy(demo.join(DEMO[0].0), pictures.join(DEMO[0].0)).unwrap();
    let jpeg = std::fs::read(demo.join(DEMO[1].0)).unwrap();
    std::fs::write(pictures.join(DEMO[1].0), &jpeg[..jpeg.len() / 3]).unwrap();
    let config = format!(
        "{}\n[[sources]]\ntype = \"vision_replay\"\nname = \"cam\"\npath = \"{}\"\n",
        base_config("vis", 1883),
        pictures.display()
    );
    let path = write_config(dir.path(), &config);
    let out = run(edgebind().arg("check").arg("--config").arg(&path));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("02_red_ball.jpg: JPEG"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
