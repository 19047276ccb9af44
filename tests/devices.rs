//! `edgebind devices`: what it finds with what exists on this machine (a pty as a serial port,
//! an ALSA `file`-plugin PCM with the `alsa` feature), the JSON against docs/devices.schema.json,
//! and every printed `[[sources]]` block pasted into a config that `edgebind check` accepts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// A pty whose follower side is the "serial port" (kept open for the test's life).
struct Pty {
    _leader: std::os::fd::OwnedFd,
    _follower: std::os::fd::OwnedFd,
    path: PathBuf,
}

fn pty() -> Pty {
    let p = nix::pty::openpty(None, None).unwrap();
    let path = nix::unistd::ttyname(&p.slave).unwrap();
    Pty {
        _leader: p.master,
        _follower: p.slave,
        path,
    }
}

fn devices(extra: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = edgebind();
    c.arg("devices").args(extra);
    for (k, v) in env {
        c.env(k, v);
    }
    run(&mut c)
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn assert_schema(v: &serde_json::Value) {
    let text = std::fs::read_to_string(repo().join("docs/devices.schema.json")).unwrap();
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(v).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "not as documented: {errors:?}\n{v:#}");
}

/// `edgebind check` on the base config with `blocks` pasted after it.
fn check_pasted(dir: &Path, blocks: &str) -> String {
    let text = format!("{}\n{blocks}", base_config("devices", 1883));
    let path = write_config(dir, &text);
    let out = run(edgebind().arg("check").arg("--config").arg(&path));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "check refused the pasted blocks:\n{}\n--- config ---\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// What follows the "Ready-to-paste" line of the text output.
fn pasted_part(stdout: &str) -> &str {
    let at = stdout
        .find("Ready-to-paste sources")
        .unwrap_or_else(|| panic!("no blocks in:\n{stdout}"));
    let rest = &stdout[at..];
    &rest[rest.find('\n').unwrap() + 1..]
}

#[test]
fn a_pty_is_listed_and_its_printed_block_passes_check() {
    let port = pty();
    let shown = port.path.display().to_string();
    let out = devices(&["--serial-port", &shown], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("Serial ports: "), "{stdout}");
    assert!(
        stdout.contains(&format!("{shown}  -       given on the command line")),
        "{stdout}"
    );
    // Every absence is said in words: no GPU here, no TensorRT.
    assert!(
        stdout.contains("GPU: no NVIDIA GPU or Jetson found"),
        "{stdout}"
    );
    assert!(stdout.contains("TensorRT: not present"), "{stdout}");
    let blocks = pasted_part(&stdout);
    assert!(blocks.contains(&format!("path = \"{shown}\"")), "{blocks}");
    let dir = tempfile::tempdir().unwrap();
    let checked = check_pasted(dir.path(), blocks);
    let count = blocks.matches("[[sources]]").count();
    assert!(
        checked.contains(&format!("OK ({count} source(s)")),
        "{checked}"
    );
}

#[test]
fn the_json_is_as_documented_and_each_block_passes_check_alone() {
    let port = pty();
    let v = json(&devices(
        &["--json", "--serial-port", port.path.to_str().unwrap()],
        &[],
    ));
    assert_schema(&v);
    let ports = v["serial"]["devices"].as_array().unwrap();
    let given = ports.iter().find(|p| p["kind"] == "given").unwrap();
    assert_eq!(given["path"], port.path.display().to_string());
    assert_eq!(v["serial"]["status"], "found");
    // The library run would load, with a normalised absolute path, and the CPU provider.
    let lib = v["onnxruntime"]["library"].as_str().unwrap();
    assert!(
        lib.starts_with('/') && !lib.contains("/../") && !lib.contains("/./"),
        "{lib}"
    );
    assert!(v["onnxruntime"]["version"]
        .as_str()
        .unwrap()
        .starts_with("1."));
    let cpu = v["onnxruntime"]["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "cpu")
        .unwrap();
    assert_eq!(cpu["available"], true);
    assert_eq!(v["platform"]["jetson"], false);
    assert_eq!(v["platform"]["tensorrt"], serde_json::Value::Null);
    let dir = tempfile::tempdir().unwrap();
    for p in ports {
        check_pasted(dir.path(), p["source"]["toml"].as_str().unwrap());
    }
}

#[test]
fn onnx_runtime_missing_is_stated_not_an_error() {
    let out = devices(
        &["--json"],
        &[("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")],
    );
    let v = json(&out);
    assert_schema(&v);
    assert_eq!(v["onnxruntime"]["library"], serde_json::Value::Null);
    let note = v["onnxruntime"]["note"].as_str().unwrap();
    assert!(
        note.starts_with("libonnxruntime not found (searched: /nonexistent/libonnxruntime.so)"),
        "{note}"
    );
    let text = devices(&[], &[("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")]);
    assert!(text.status.success());
    assert!(String::from_utf8_lossy(&text.stdout)
        .contains("ONNX Runtime: not found\n  (libonnxruntime not found"));
}

#[test]
fn a_named_port_that_is_not_a_serial_port_fails_after_the_listing() {
    let out = devices(
        &[
            "--serial-port",
            "/dev/null",
            "--serial-port",
            "/dev/ttyEDGEBINDmissing",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error: /dev/null: not a serial port (not a terminal device)\n"),
        "{stderr}"
    );
    assert!(
        stderr.contains("error: /dev/ttyEDGEBINDmissing: No such file or directory"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    // The listing is still printed, with the reasons in its serial section.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("  /dev/null: not a serial port"),
        "{stdout}"
    );
}

#[cfg(not(feature = "v4l2"))]
#[test]
fn kinds_this_build_cannot_read_say_so() {
    let v = json(&devices(&["--json"], &[]));
    assert_eq!(v["v4l2"]["status"], "not_built");
    assert_eq!(
        v["v4l2"]["notes"][0],
        "this edgebind was built without the v4l2 feature: cargo build --features v4l2"
    );
}

#[cfg(feature = "v4l2")]
#[test]
fn without_a_camera_v4l2_says_none_found() {
    // No /dev/video* exists on CI machines; the kernel path is still asked.
    if std::fs::read_dir("/dev")
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("video"))
    {
        eprintln!("a /dev/video* node exists: skipping the no-camera case");
        return;
    }
    let v = json(&devices(&["--json"], &[]));
    assert_eq!(v["v4l2"]["status"], "none");
    let text = devices(&[], &[]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("V4L2 cameras: none found\n"));
}

/// An asoundrc defining the capture PCM `testcap` (the `file` plugin reading a raw file), as
/// tests/alsa_audio.rs does; returns the value for `ALSA_CONFIG_PATH`.
#[cfg(feature = "alsa")]
fn file_pcm(dir: &Path) -> String {
    let raw = dir.join("in.raw");
    std::fs::write(&raw, vec![0u8; 64_000]).unwrap();
    let asoundrc = dir.join("asoundrc");
    std::fs::write(
        &asoundrc,
        format!(
            "pcm.testcap {{ type file slave.pcm \"null\" file \"/dev/null\" infile \"{}\" \
             format \"raw\" hint {{ show on description \"edgebind test capture\" }} }}\n",
            raw.display()
        ),
    )
    .unwrap();
    format!("/usr/share/alsa/alsa.conf:{}", asoundrc.display())
}

#[cfg(feature = "alsa")]
#[test]
fn an_alsa_file_pcm_is_listed_with_its_formats_and_its_block_passes_check() {
    let dir = tempfile::tempdir().unwrap();
    let alsa = file_pcm(dir.path());
    let v = json(&devices(&["--json"], &[("ALSA_CONFIG_PATH", &alsa)]));
    assert_schema(&v);
    assert_eq!(v["alsa"]["status"], "found", "{:#}", v["alsa"]);
    let pcms = v["alsa"]["devices"].as_array().unwrap();
    let pcm = pcms
        .iter()
        .find(|p| p["pcm"] == "testcap")
        .unwrap_or_else(|| panic!("{pcms:?}"));
    assert_eq!(pcm["description"], "edgebind test capture");
    assert!(!pcm["formats"].as_array().unwrap().is_empty(), "{pcm}");
    assert!(
        pcm["channels"].as_array().unwrap().contains(&1.into()),
        "{pcm}"
    );
    let opens = pcm["opens"].as_str().unwrap();
    assert!(
        opens.ends_with(" Hz i16") || opens.ends_with(" Hz f32") || opens.ends_with(" Hz i32"),
        "{opens}"
    );
    let toml = pcm["source"]["toml"].as_str().unwrap();
    assert!(toml.contains("device = \"testcap\""), "{toml}");
    check_pasted(dir.path(), toml);
    let text = devices(&[], &[("ALSA_CONFIG_PATH", &alsa)]);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.contains("ALSA capture devices: "), "{stdout}");
    assert!(stdout.contains("testcap"), "{stdout}");
}
