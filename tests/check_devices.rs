//! `edgebind check --devices`: each configured source opened as `run` opens it — a serial port on
//! a pseudo-terminal, a missing port, a recording, and (with the feature) a V4L2 node that does
//! not exist — and reported by name, with exit 1 when one does not open.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{base_config, bin, fixture, run, write_config};

/// A pseudo-terminal whose slave side stands for a plugged-in IMU adapter.
struct Pty {
    _master: OwnedFd,
    _slave: OwnedFd,
    path: PathBuf,
}

impl Pty {
    fn open() -> Self {
        let pty = nix::pty::openpty(None, None).unwrap();
        let path = nix::unistd::ttyname(&pty.slave).unwrap();
        Self {
            _master: pty.master,
            _slave: pty.slave,
            path,
        }
    }
}

fn serial(name: &str, path: &Path) -> String {
    format!(
        "[[sources]]\ntype = \"imu_serial\"\nname = \"{name}\"\npath = \"{}\"\n\
         protocol = \"witmotion\"\nsample_rate_hz = 200.0\n",
        path.display()
    )
}

fn replay() -> String {
    format!(
        "[[sources]]\ntype = \"imu_replay\"\nname = \"recorded\"\npath = \"{}\"\n",
        fixture("recordings/imu_still_200hz.csv").display()
    )
}

fn check(dir: &Path, sources: &str, devices: bool) -> Output {
    let config = write_config(dir, &format!("{}\n{sources}", base_config("check", 1)));
    // No `--log`: check's own default applies (its report, not the daemon's log lines).
    let mut cmd = std::process::Command::new(bin());
    cmd.env_remove("RUST_LOG")
        .arg("check")
        .arg("--config")
        .arg(&config);
    if devices {
        cmd.args(["--devices", "--device-timeout-s", "10"]);
    }
    run(&mut cmd)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_source_that_opens_is_reported_with_its_rate_and_check_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let pty = Pty::open();
    let out = check(
        dir.path(),
        &format!("{}{}", serial("imu", &pty.path), replay()),
        true,
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{out:?}");
    assert!(text.contains("imu (imu_serial): opened, 200 Hz"), "{text}");
    assert!(
        text.contains("recorded (imu_replay): opened, 200 Hz"),
        "{text}"
    );
    assert!(text.contains("every source opened"), "{text}");
}

#[test]
fn a_missing_port_is_named_with_why_and_check_exits_1_while_plain_check_still_passes() {
    let dir = tempfile::tempdir().unwrap();
    let pty = Pty::open();
    let missing = dir.path().join("ttyUSB-unplugged");
    let sources = format!(
        "{}{}{}",
        serial("imu", &pty.path),
        serial("gone", &missing),
        replay()
    );
    let out = check(dir.path(), &sources, true);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}\n{out:?}");
    assert!(text.contains("imu (imu_serial): opened, 200 Hz"), "{text}");
    let gone = text
        .lines()
        .find(|l| {
            l.trim_start()
                .starts_with("gone (imu_serial): cannot open: ")
        })
        .unwrap_or_else(|| panic!("no line for the missing port:\n{text}"));
    assert!(gone.contains(&missing.display().to_string()), "{gone}");
    assert!(
        text.contains("1 of 3 source(s) did not open; `run` would start and keep retrying"),
        "{text}"
    );
    // The report is check's, not the daemon's retry log.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("retrying with backoff"), "{stderr}");

    // Without --devices, a port that is not there now is not a configuration problem.
    let plain = check(dir.path(), &sources, false);
    assert_eq!(plain.status.code(), Some(0), "{plain:?}");
    assert!(!stdout(&plain).contains("opening each source"));
}

#[cfg(feature = "v4l2")]
#[test]
fn a_v4l2_camera_that_does_not_exist_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let node = dir.path().join("video-unplugged");
    let out = check(
        dir.path(),
        &format!(
            "[[sources]]\ntype = \"v4l2_camera\"\nname = \"cam\"\ndevice = \"{}\"\n",
            node.display()
        ),
        true,
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}\n{out:?}");
    let cam = text
        .lines()
        .find(|l| {
            l.trim_start()
                .starts_with("cam (v4l2_camera): cannot open: ")
        })
        .unwrap_or_else(|| panic!("no line for the camera:\n{text}"));
    assert!(cam.contains("video-unplugged"), "{cam}");
}
