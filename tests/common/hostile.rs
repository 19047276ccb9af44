//! Hostile and broken files for the binary: files whose headers declare sizes they do not
//! hold, configs around them, and checks on how the binary ends.
#![allow(dead_code)]

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use super::*;

pub const EX_CONFIG: i32 = 78;

/// A 128-byte `.npy` whose header declares `(3000000, 1000000, 8)` items of `descr`
/// (24 TB as uint8) and holds no data.
pub fn huge_npy(path: &Path, descr: &str) {
    let mut text =
        format!("{{'descr':'{descr}','fortran_order':False,'shape':(3000000,1000000,8)}}");
    while 10 + text.len() + 1 < 128 {
        text.push(' ');
    }
    text.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(text.len() as u16).to_le_bytes());
    bytes.extend_from_slice(text.as_bytes());
    assert_eq!(bytes.len(), 128);
    std::fs::write(path, bytes).unwrap();
}

/// A WAV header (16-bit mono 16 kHz) whose data chunk declares 4 GiB and holds 4 bytes.
pub fn huge_wav(path: &Path) {
    let mut b = Vec::new();
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&u32::MAX.to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes()); // PCM
    b.extend_from_slice(&1u16.to_le_bytes()); // mono
    b.extend_from_slice(&16_000u32.to_le_bytes());
    b.extend_from_slice(&32_000u32.to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&0xFFFF_FFFEu32.to_le_bytes());
    b.extend_from_slice(&[0, 0, 1, 0]);
    std::fs::write(path, b).unwrap();
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The process ended by itself (no abort, no other signal) with `code`.
pub fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.signal(),
        None,
        "killed by a signal: {}",
        stderr(out)
    );
    assert_eq!(out.status.code(), Some(code), "{}", stderr(out));
}

/// The last stderr line is one `error: …` line that says every cause once.
pub fn one_error_line(out: &Output) -> String {
    let text = stderr(out);
    let line = text
        .lines()
        .rfind(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line in {text}"))
        .to_string();
    let parts: Vec<&str> = line.split(": ").collect();
    for (i, p) in parts.iter().enumerate() {
        assert!(
            !parts[i + 1..].contains(p) || p.len() < 12,
            "{p:?} is said twice in {line}"
        );
    }
    line
}

pub fn preprocess(modality: &str, input: &Path, extra: &[&str]) -> Output {
    let out_dir = tempfile::tempdir().unwrap();
    run(edgebind()
        .args(["preprocess", modality])
        .arg(input)
        .args(extra)
        .arg("-o")
        .arg(out_dir.path().join("out.npy")))
}

pub fn check(config: &Path) -> Output {
    run(edgebind().arg("check").arg("--config").arg(config))
}

pub fn run_daemon(config: &Path) -> Output {
    run(edgebind()
        .arg("run")
        .arg("--config")
        .arg(config)
        .args(["--shutdown-timeout-s", "2"]))
}

/// A config with the tiny models (in `models`, default: the repository's), an unreachable
/// broker and `sources` (TOML).
pub fn config_with(dir: &Path, models: Option<&Path>, sources: &str) -> PathBuf {
    let mut base = base_config("hostile", 1);
    if let Some(m) = models {
        base = base.replace(
            &format!("dir = \"{}\"", repo().join("models/tiny").display()),
            &format!("dir = \"{}\"", m.display()),
        );
    }
    write_config(dir, &format!("{base}\n{sources}"))
}

pub fn replay(kind: &str, name: &str, path: &Path, extra: &str) -> String {
    format!(
        "[[sources]]\ntype = \"{kind}\"\nname = \"{name}\"\npath = \"{}\"\n{extra}\n",
        path.display()
    )
}

/// A model set in `dir`: the tiny encoders linked, manifest and concept files copied.
pub fn model_set(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for e in std::fs::read_dir(repo().join("models/tiny")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
    }
}

/// Replaces the bank's files and their checksums in the manifest, as an operator would.
pub fn write_bank(dir: &Path, labels: &str, embeddings: impl FnOnce(&Path)) {
    std::fs::write(dir.join("concepts.txt"), labels).unwrap();
    embeddings(&dir.join("concepts.npy"));
    let text = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    let mut m: serde_json::Value = serde_json::from_str(&text).unwrap();
    for f in ["concepts.txt", "concepts.npy"] {
        let sha = edgebind::inference::manifest::sha256_file(&dir.join(f)).unwrap();
        m["concepts"]["sha256"][f] = serde_json::Value::String(sha);
    }
    std::fs::write(dir.join("manifest.json"), m.to_string()).unwrap();
}

pub fn still_imu() -> String {
    replay(
        "imu_replay",
        "imu",
        &fixture("recordings/imu_still_200hz.csv"),
        "speed = \"max\"",
    )
}
