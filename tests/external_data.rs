//! A model whose weights are ONNX external data (as ImageBind's 2.5 GB vision encoder must be):
//! the real ONNX Runtime loads it from its folder, the manifest's checksums cover the data file,
//! and `check` refuses a changed or missing data file just as `run` and `warm` do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// A copy of the external-data fixture set in `dir` (so a test may damage it).
fn model_set_copy(dir: &Path) -> PathBuf {
    let src = fixture("models/external_data");
    let dst = dir.join("models");
    std::fs::create_dir(&dst).unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dst.join(entry.file_name())).unwrap();
    }
    dst
}

fn imu_config(dir: &Path, models: &Path) -> PathBuf {
    let config = base_config("external", 1883).replace(
        &format!("dir = \"{}\"", repo().join("models/tiny").display()),
        &format!("dir = \"{}\"", models.display()),
    );
    assert!(config.contains(&models.display().to_string()));
    let config = format!(
        "{config}[[sources]]\ntype = \"imu_replay\"\nname = \"imu\"\npath = \"{}\"\n",
        fixture("recordings/imu_still_200hz.csv").display()
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

#[test]
fn a_model_with_external_data_loads_and_passes_its_parity_check() {
    let dir = tempfile::tempdir().unwrap();
    let models = model_set_copy(dir.path());
    // The graph file alone is small: the weights really are in the data file.
    assert!(std::fs::metadata(models.join("imu.onnx")).unwrap().len() < 16 * 1024);
    let config = imu_config(dir.path(), &models);
    let (code, out) = edgebind_with("check", &config);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = edgebind_with("warm", &config);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("parity cosine 1.000000"), "{out}");
}

#[test]
fn a_changed_or_missing_data_file_is_refused_by_check_and_warm() {
    let dir = tempfile::tempdir().unwrap();
    let models = model_set_copy(dir.path());
    let config = imu_config(dir.path(), &models);
    let data = models.join("imu.onnx.data");

    // Same size, one weight changed: only the checksum can tell.
    let mut bytes = std::fs::read(&data).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&data, &bytes).unwrap();
    for verb in ["check", "warm"] {
        let (code, out) = edgebind_with(verb, &config);
        assert_ne!(code, Some(0), "{verb}: {out}");
        assert!(
            out.contains("imu.onnx.data") && out.contains("sha256 is"),
            "{verb}: {out}"
        );
    }

    std::fs::remove_file(&data).unwrap();
    for verb in ["check", "warm"] {
        let (code, out) = edgebind_with(verb, &config);
        assert_ne!(code, Some(0), "{verb}: {out}");
        assert!(out.contains("imu.onnx.data"), "{verb}: {out}");
    }
}
