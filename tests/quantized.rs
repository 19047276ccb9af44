//! An int8 model set (`models/tiny-int8`, made by `tools/quantize_int8.py` from the tiny set):
//! each encoder is checked against the fp32 reference outputs its manifest carries, with the
//! manifest's own threshold for it, never silently with `runtime.parity.min_cosine`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// A copy of the int8 set in `dir` whose manifest `edit` may change.
fn int8_set_copy(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    let src = repo().join("models/tiny-int8");
    let dst = dir.join("models");
    std::fs::create_dir(&dst).unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dst.join(entry.file_name())).unwrap();
    }
    let path = dst.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut manifest);
    std::fs::write(&path, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
    dst
}

/// An IMU and a thermal replay on the model set `models`, with `parity` under `[runtime]`.
fn config(dir: &Path, models: &Path, parity: &str) -> PathBuf {
    let config = base_config("int8", 1883)
        .replace(
            &format!("dir = \"{}\"", repo().join("models/tiny").display()),
            &format!("dir = \"{}\"", models.display()),
        )
        .replace("[runtime]\n", &format!("[runtime]\n{parity}\n"));
    assert!(config.contains(&models.display().to_string()));
    let config = format!(
        "{config}[[sources]]\ntype = \"imu_replay\"\nname = \"imu\"\npath = \"{}\"\n\
         [[sources]]\ntype = \"thermal_replay\"\nname = \"cam\"\npath = \"{}\"\n",
        fixture("recordings/imu_still_200hz.csv").display(),
        fixture("recordings/thermal_demo_160x120_u16.npy").display(),
    );
    write_config(dir, &config)
}

fn edgebind_with(verb: &str, config: &Path) -> (Option<i32>, String) {
    let out = run(edgebind().arg(verb).arg("--config").arg(config));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

fn set_imu_min_cosine(m: &mut serde_json::Value, v: serde_json::Value) {
    let reference = m["models"]["imu"]["reference"].as_object_mut().unwrap();
    if v.is_null() {
        reference.remove("min_cosine");
    } else {
        reference.insert("min_cosine".into(), v);
    }
}

#[test]
fn the_int8_set_passes_against_fp32_references_under_its_own_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let models = int8_set_copy(dir.path(), |_| {});
    // A configured threshold no reduced-precision model could meet does not apply to it.
    let config = config(dir.path(), &models, "parity = { min_cosine = 1.0 }");
    let (code, out) = edgebind_with("check", &config);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = edgebind_with("warm", &config);
    assert_eq!(code, Some(0), "{out}");
    for modality in ["imu", "thermal"] {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("{modality}: ")))
            .unwrap_or_else(|| panic!("{modality}: {out}"));
        assert!(
            line.contains("to fp32 (int8 model; accepted from 0.98 on, by its manifest)"),
            "{line}"
        );
        // The int8 model is close to fp32, but not equal: the check measured a real difference.
        let cosine: f64 = line
            .split("parity cosine ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .unwrap()
            .parse()
            .unwrap();
        assert!((0.999..1.0).contains(&cosine), "{line}");
    }
}

#[test]
fn the_manifests_threshold_refuses_an_int8_model_the_configured_one_would_pass() {
    let dir = tempfile::tempdir().unwrap();
    // int8 is not bit-exact with fp32, so a threshold of 1 cannot be met.
    let models = int8_set_copy(dir.path(), |m| set_imu_min_cosine(m, 1.0.into()));
    let config = config(dir.path(), &models, "parity = { min_cosine = 0.5 }");
    let (code, out) = edgebind_with("warm", &config);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("< 1 (the manifest's min_cosine for this int8 model)")
            && out.contains("imu_reference_output_fp32.npy"),
        "{out}"
    );
}

#[test]
fn an_int8_model_without_its_own_threshold_or_with_a_bad_one_is_refused() {
    for (value, want) in [
        (
            serde_json::Value::Null,
            "models.imu: a int8 encoder needs reference.min_cosine",
        ),
        (
            serde_json::json!(1.5),
            "models.imu: reference.min_cosine = 1.5 is not a cosine",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let models = int8_set_copy(dir.path(), |m| set_imu_min_cosine(m, value.clone()));
        let config = config(dir.path(), &models, "");
        for verb in ["check", "warm"] {
            let (code, out) = edgebind_with(verb, &config);
            assert_ne!(code, Some(0), "{verb}: {out}");
            assert!(out.contains(want), "{verb}: {out}");
            assert!(out.contains("manifest.json"), "{verb}: {out}");
        }
    }
}
