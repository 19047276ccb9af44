//! Files `run` needs at start that `check` must refuse too (exit 78 from both): concept banks
//! that are huge, empty or invalid (and the same on SIGHUP, where the bank in use stays), a CA
//! file without a certificate, files the service user cannot read.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::hostile::*;
use common::*;

/// Writes an embeddings file.
type WriteNpy = Box<dyn Fn(&Path)>;

#[test]
fn invalid_or_empty_concept_banks_fail_check_and_run_with_78() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    model_set(&models);
    let config = config_with(dir.path(), Some(&models), &still_imu());
    let cases: Vec<(&str, WriteNpy, &str)> = vec![
        (
            "a\nb\n",
            Box::new(|p| huge_npy(p, "<f4")),
            "header declares",
        ),
        (
            "",
            Box::new(|p| {
                ndarray_npy::write_npy(p, &ndarray::Array2::<f32>::zeros((0, 1024))).unwrap()
            }),
            "the bank holds no concepts",
        ),
        (
            "a\nb\n",
            Box::new(|p| {
                let mut e = ndarray::Array2::<f32>::ones((2, 1024));
                e[[1, 7]] = f32::NAN;
                ndarray_npy::write_npy(p, &e).unwrap();
            }),
            "embedding of \"b\" is not finite",
        ),
        (
            "a\nb\nc\n",
            Box::new(|p| {
                ndarray_npy::write_npy(p, &ndarray::Array2::<f32>::ones((2, 1024))).unwrap()
            }),
            "3 labels but 2 embeddings",
        ),
        (
            "a\nb\n",
            Box::new(|p| {
                ndarray_npy::write_npy(p, &ndarray::Array2::<f32>::ones((2, 512))).unwrap()
            }),
            "width 512",
        ),
    ];
    for (labels, embeddings, want) in cases {
        write_bank(&models, labels, embeddings);
        for out in [check(&config), run_daemon(&config)] {
            assert_exit(&out, EX_CONFIG);
            let text = stderr(&out);
            assert!(
                text.contains("models.dir: ") && text.contains(want),
                "no {want:?} in {text}"
            );
        }
    }
}

fn hup(pid: u32) {
    assert!(Command::new("kill")
        .arg("-HUP")
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success());
}

#[test]
fn sighup_with_a_huge_or_an_empty_bank_refuses_it_and_the_daemon_runs_on() {
    let broker = LocalBroker::start(&[]).unwrap();
    let sub = Subscriber::start(broker.port(), "edgebind/hostile/#");
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    model_set(&models);
    let config = write_config(
        dir.path(),
        &format!(
            "{}\n{}",
            base_config("hostile", broker.port()).replace(
                &format!("dir = \"{}\"", repo().join("models/tiny").display()),
                &format!("dir = \"{}\"", models.display()),
            ),
            replay(
                "imu_replay",
                "imu",
                &fixture("recordings/imu_demo_200hz.csv"),
                "speed = \"max\"\nhop_ms = 100\nloop = true",
            )
        ),
    );
    let log = dir.path().join("daemon.log");
    let mut child = spawn_daemon(&config, &log, &[]);
    let log_text = || std::fs::read_to_string(&log).unwrap();
    let labelled = |n: usize| {
        sub.wait_for(Duration::from_secs(30), |m| {
            m.iter()
                .filter(|s| s.topic.ends_with("/labels") && !top_label(&s.json()).is_empty())
                .count()
                >= n
        })
    };
    assert!(labelled(5), "{}", log_text());

    write_bank(&models, "a\nb\n", |p| huge_npy(p, "<f4"));
    hup(child.id());
    assert!(
        wait_for_log(&log, "new concept bank refused", Duration::from_secs(20)),
        "{}",
        log_text()
    );
    assert!(log_text().contains("header declares"), "{}", log_text());

    write_bank(&models, "", |p| {
        ndarray_npy::write_npy(p, &ndarray::Array2::<f32>::zeros((0, 1024))).unwrap();
    });
    hup(child.id());
    let refused_twice = || log_text().matches("new concept bank refused").count() == 2;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !refused_twice() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(refused_twice(), "{}", log_text());
    assert!(
        log_text().contains("the bank holds no concepts"),
        "{}",
        log_text()
    );

    // Still running, and windows are still labelled by the old bank.
    assert!(child.try_wait().unwrap().is_none(), "{}", log_text());
    let seen = sub.on("/labels").len();
    assert!(labelled(seen + 5), "{}", log_text());
    sigterm(&child);
    let exit = wait_with_timeout(&mut child, Duration::from_secs(45)).expect("daemon stops");
    assert!(exit.success(), "{}", log_text());
}

#[test]
fn a_ca_file_without_a_certificate_fails_check_and_run_with_78() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate\n").unwrap();
    let base = base_config("hostile", 1).replace(
        "url = \"mqtt://127.0.0.1:1\"",
        &format!(
            "url = \"mqtts://localhost:1\"\ntls = {{ ca_file = \"{}\" }}",
            ca.display()
        ),
    );
    let config = write_config(dir.path(), &format!("{base}\n{}", still_imu()));
    for out in [check(&config), run_daemon(&config)] {
        assert_exit(&out, EX_CONFIG);
        let want = format!(
            "mqtt.tls.ca_file: {}: no certificate in the file",
            ca.display()
        );
        assert!(
            stderr(&out).contains(&want),
            "no {want:?} in {}",
            stderr(&out)
        );
    }
}

/// Runs `edgebind` as the unprivileged user `nobody` (uid 65534), as `sudo -u edgebind` would.
fn as_nobody(args: &[&std::ffi::OsStr]) -> Output {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(bin())
        .args(["--log", "info"])
        .args(args)
        .env_remove("RUST_LOG");
    run(&mut c)
}

#[test]
fn files_the_service_user_cannot_read_fail_check_and_run_as_that_user_with_78() {
    if !nix::unistd::getuid().is_root() {
        eprintln!("SKIPPED: switching to an unprivileged user needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let open = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    open(dir.path(), 0o755);
    let models = dir.path().join("models");
    model_set(&models);
    open(&models, 0o755);
    for e in std::fs::read_dir(&models).unwrap() {
        open(&e.unwrap().path(), 0o644);
    }
    let outbox = dir.path().join("outbox");
    std::fs::create_dir(&outbox).unwrap();
    open(&outbox, 0o777);
    let recording = dir.path().join("imu.csv");
    std::fs::copy(fixture("recordings/imu_still_200hz.csv"), &recording).unwrap();
    let ca = make_ca(dir.path());
    let base = base_config("hostile", 1)
        .replace(
            "url = \"mqtt://127.0.0.1:1\"",
            &format!(
                "url = \"mqtts://localhost:1\"\ntls = {{ ca_file = \"{}\" }}",
                ca.display()
            ),
        )
        .replace(
            &format!("dir = \"{}\"", repo().join("models/tiny").display()),
            &format!("dir = \"{}\"", models.display()),
        );
    let config = write_config(
        dir.path(),
        &format!(
            "{base}\n[outbox]\ndir = \"{}\"\n{}",
            outbox.display(),
            replay("imu_replay", "imu", &recording, "")
        ),
    );
    for p in [&config, &recording, &ca] {
        open(p, 0o644);
    }
    // Readable by everyone: valid for nobody too.
    let ok = as_nobody(&["check".as_ref(), "--config".as_ref(), config.as_os_str()]);
    assert_exit(&ok, 0);

    // Root-only: the recording, the CA, one model and the bank's labels.
    for p in [
        &recording,
        &ca,
        &models.join("imu.onnx"),
        &models.join("concepts.txt"),
    ] {
        open(p, 0o600);
    }
    assert_exit(&check(&config), 0);
    let who = "cannot be read by user nobody (uid 65534): permission denied";
    for args in [
        ["check".as_ref(), "--config".as_ref(), config.as_os_str()],
        ["run".as_ref(), "--config".as_ref(), config.as_os_str()],
    ] {
        let out = as_nobody(&args);
        assert_exit(&out, EX_CONFIG);
        let text = stderr(&out);
        for want in [
            format!("sources[0].path (imu): {}: {who}", recording.display()),
            format!("mqtt.tls.ca_file: {}: {who}", ca.display()),
            format!("models.dir: {}: {who}", models.join("imu.onnx").display()),
            format!(
                "models.dir: {}: {who}",
                models.join("concepts.txt").display()
            ),
        ] {
            assert!(text.contains(&want), "no {want:?} in {text}");
        }
    }
}

/// A CA certificate (PEM) made with openssl in `dir`.
fn make_ca(dir: &Path) -> PathBuf {
    let pem = dir.join("ca.pem");
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=edgebind test CA",
        ])
        .arg("-keyout")
        .arg(dir.join("ca.key"))
        .arg("-out")
        .arg(&pem)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    pem
}
