//! Hostile and broken files against the real binary: sizes declared in headers that the file
//! does not hold, files the service user cannot read, recordings of the wrong kind, invalid or
//! empty concept banks (at start and on SIGHUP). Nothing aborts; `check` refuses what `run`
//! refuses, both with exit 78, each problem on one line naming the file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::*;

const EX_CONFIG: i32 = 78;

/// A 128-byte `.npy` whose header declares `(3000000, 1000000, 8)` items of `descr`
/// (24 TB as uint8) and holds no data.
fn huge_npy(path: &Path, descr: &str) {
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
fn huge_wav(path: &Path) {
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

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The process ended by itself (no abort, no other signal) with `code`.
fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.signal(),
        None,
        "killed by a signal: {}",
        stderr(out)
    );
    assert_eq!(out.status.code(), Some(code), "{}", stderr(out));
}

/// The last stderr line is one `error: …` line that says every cause once.
fn one_error_line(out: &Output) -> String {
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

fn preprocess(modality: &str, input: &Path, extra: &[&str]) -> Output {
    let out_dir = tempfile::tempdir().unwrap();
    run(edgebind()
        .args(["preprocess", modality])
        .arg(input)
        .args(extra)
        .arg("-o")
        .arg(out_dir.path().join("out.npy")))
}

fn check(config: &Path) -> Output {
    run(edgebind().arg("check").arg("--config").arg(config))
}

fn run_daemon(config: &Path) -> Output {
    run(edgebind()
        .arg("run")
        .arg("--config")
        .arg(config)
        .args(["--shutdown-timeout-s", "2"]))
}

/// A config with the tiny models (in `models`, default: the repository's), an unreachable
/// broker and `sources` (TOML).
fn config_with(dir: &Path, models: Option<&Path>, sources: &str) -> PathBuf {
    let mut base = base_config("hostile", 1);
    if let Some(m) = models {
        base = base.replace(
            &format!("dir = \"{}\"", repo().join("models/tiny").display()),
            &format!("dir = \"{}\"", m.display()),
        );
    }
    write_config(dir, &format!("{base}\n{sources}"))
}

fn replay(kind: &str, name: &str, path: &Path, extra: &str) -> String {
    format!(
        "[[sources]]\ntype = \"{kind}\"\nname = \"{name}\"\npath = \"{}\"\n{extra}\n",
        path.display()
    )
}

#[test]
fn a_128_byte_npy_declaring_24_tb_is_a_one_line_error_in_preprocess_and_embed() {
    let dir = tempfile::tempdir().unwrap();
    for (modality, descr, extra) in [
        ("thermal", "|u1", &[][..]),
        ("depth", "<u2", &[][..]),
        ("imu", "<f4", &["--rate-hz", "400"][..]),
    ] {
        let npy = dir.path().join(format!("{modality}.npy"));
        huge_npy(&npy, descr);
        let out = preprocess(modality, &npy, extra);
        assert_exit(&out, 1);
        let line = one_error_line(&out);
        assert!(
            line.contains(&npy.display().to_string()) && line.contains("header declares"),
            "{line}"
        );
    }
    let npy = dir.path().join("imu.npy");
    let out = run(edgebind()
        .args(["embed", "imu"])
        .arg(&npy)
        .args(["--rate-hz", "400", "--model"])
        .arg(repo().join("models/tiny/imu.onnx"))
        .arg("-o")
        .arg(dir.path().join("e.npy")));
    assert_exit(&out, 1);
    assert!(
        one_error_line(&out).contains("header declares"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn replays_of_huge_npy_and_wav_files_fail_check_and_run_with_78_naming_each() {
    let dir = tempfile::tempdir().unwrap();
    let (imu, thermal, depth, wav) = (
        dir.path().join("imu.npy"),
        dir.path().join("thermal.npy"),
        dir.path().join("depth.npy"),
        dir.path().join("audio.wav"),
    );
    huge_npy(&imu, "<f4");
    huge_npy(&thermal, "|u1");
    huge_npy(&depth, "<u2");
    huge_wav(&wav);
    let sources = [
        replay("imu_replay", "imu", &imu, "sample_rate_hz = 400.0"),
        replay("thermal_replay", "thermal", &thermal, ""),
        replay("depth_replay", "depth", &depth, ""),
        replay("audio_replay", "audio", &wav, ""),
    ]
    .concat();
    let config = config_with(dir.path(), None, &sources);
    for out in [check(&config), run_daemon(&config)] {
        assert_exit(&out, EX_CONFIG);
        let text = stderr(&out);
        for (i, file) in [&imu, &thermal, &depth].iter().enumerate() {
            let want = format!("sources[{i}].path: {}: header declares", file.display());
            assert!(text.contains(&want), "no {want:?} in {text}");
        }
        let want = format!(
            "sources[3].path: {}: the data chunk declares 4.0 GiB, but the file holds 4 B after the header",
            wav.display()
        );
        assert!(text.contains(&want), "no {want:?} in {text}");
    }
    let out = preprocess("audio", &wav, &[]);
    assert_exit(&out, 1);
    assert!(one_error_line(&out).contains("the data chunk declares 4.0 GiB"));
}

/// A model set in `dir`: the tiny encoders linked, manifest and concept files copied.
fn model_set(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for e in std::fs::read_dir(repo().join("models/tiny")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
    }
}

/// Replaces the bank's files and their checksums in the manifest, as an operator would.
fn write_bank(dir: &Path, labels: &str, embeddings: impl FnOnce(&Path)) {
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

fn still_imu() -> String {
    replay(
        "imu_replay",
        "imu",
        &fixture("recordings/imu_still_200hz.csv"),
        "speed = \"max\"",
    )
}

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
fn recordings_of_the_wrong_kind_fail_check_and_run_with_78() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("clip.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&wav, spec).unwrap();
    for i in 0..16_000 {
        w.write_sample((i % 100) as i16).unwrap();
    }
    w.finalize().unwrap();
    let u8_stack = dir.path().join("u8.npy");
    ndarray_npy::write_npy(&u8_stack, &ndarray::Array3::<u8>::zeros((2, 48, 64))).unwrap();
    let f32_stack = dir.path().join("f32.npy");
    ndarray_npy::write_npy(&f32_stack, &ndarray::Array3::<f32>::zeros((2, 48, 64))).unwrap();
    let sources = [
        replay(
            "imu_replay",
            "imu",
            &wav,
            "format = \"csv\"\nsample_rate_hz = 200.0",
        ),
        replay("depth_replay", "depth", &u8_stack, ""),
        replay(
            "thermal_replay",
            "thermal",
            &u8_stack,
            "[sources.preprocess]\nagc = \"fixed_celsius\"\nagc_min_c = 10.0\nagc_max_c = 40.0",
        ),
        replay("thermal_replay", "thermal2", &f32_stack, ""),
        replay("audio_replay", "audio", &u8_stack, ""),
    ]
    .concat();
    let config = config_with(dir.path(), None, &sources);
    for out in [check(&config), run_daemon(&config)] {
        assert_exit(&out, EX_CONFIG);
        let text = stderr(&out);
        for want in [
            format!("sources[0].path: {}: CSV parse error", wav.display()),
            format!("sources[1].path: {}: is uint8 [2, 48, 64]; a depth recording must be 16-bit (uint16, in depth units)", u8_stack.display()),
            format!("sources[2].path: {}: is uint8 [2, 48, 64]; agc = \"fixed_celsius\" needs uint16 (radiometric) frames", u8_stack.display()),
            format!("sources[3].path: {}: is float32 [2, 48, 64], not a uint8 or uint16 thermal recording", f32_stack.display()),
            format!("sources[4].path: {}: not a WAV file", u8_stack.display()),
        ] {
            assert!(text.contains(&want), "no {want:?} in {text}");
        }
    }
}

#[test]
fn a_directory_or_a_missing_file_as_a_source_path_says_which() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.npy");
    let sources = [
        replay("thermal_replay", "thermal", dir.path(), ""),
        replay("depth_replay", "depth", &missing, ""),
    ]
    .concat();
    let config = config_with(dir.path(), None, &sources);
    let out = check(&config);
    assert_exit(&out, EX_CONFIG);
    let text = stderr(&out);
    for want in [
        format!(
            "sources[0].path: {}: is a directory, not a file",
            dir.path().display()
        ),
        format!("sources[1].path: {}: does not exist", missing.display()),
    ] {
        assert!(text.contains(&want), "no {want:?} in {text}");
    }
    for modality in ["depth", "thermal"] {
        let out = preprocess(modality, &missing, &[]);
        assert_exit(&out, 1);
        assert_eq!(
            one_error_line(&out),
            format!("error: {}: does not exist", missing.display())
        );
        let out = preprocess(modality, dir.path(), &[]);
        assert_eq!(
            one_error_line(&out),
            format!(
                "error: {}: is a directory, not a file",
                dir.path().display()
            )
        );
    }
}

#[test]
fn imu_csv_files_too_short_or_out_of_order_are_refused_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("one.csv");
    std::fs::write(
        &one,
        "t_s,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z\n0.0,0,0,9.8,0,0,0\n",
    )
    .unwrap();
    let out = preprocess("imu", &one, &["--rate-hz", "200"]);
    assert_exit(&out, 1);
    assert_eq!(
        one_error_line(&out),
        format!(
            "error: {}: holds 1 sample (0.005 s at 200 Hz); ImageBind's IMU window is 5 s (1000 samples)",
            one.display()
        )
    );
    let back = dir.path().join("back.csv");
    std::fs::write(
        &back,
        "t_s,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z\n0.000,0,0,9.8,0,0,0\n0.005,0,0,9.8,0,0,0\n0.003,0,0,9.8,0,0,0\n0.010,0,0,9.8,0,0,0\n",
    )
    .unwrap();
    let out = preprocess("imu", &back, &[]);
    assert_exit(&out, 1);
    assert_eq!(
        one_error_line(&out),
        format!(
            "error: {}: line 4: t_s 0.003 is not after the previous sample's 0.005 (timestamps must increase)",
            back.display()
        )
    );
    let config = config_with(dir.path(), None, &replay("imu_replay", "imu", &back, ""));
    let out = check(&config);
    assert_exit(&out, EX_CONFIG);
    assert!(
        stderr(&out).contains("line 4: t_s 0.003 is not after"),
        "{}",
        stderr(&out)
    );
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
            format!("sources[0].path: {}: {who}", recording.display()),
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

#[test]
fn io_causes_are_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let vocab = dir.path().join("vocab.txt.gz");
    std::fs::write(&vocab, [0x1f, 0x8b, 0, 1, 2, 3, 4, 5, 6, 7]).unwrap();
    let out = preprocess(
        "text",
        Path::new("a dog barking"),
        &["--vocab", vocab.to_str().unwrap()],
    );
    assert_exit(&out, 1);
    let line = one_error_line(&out);
    assert!(
        line.starts_with(&format!(
            "error: {}: cannot read the CLIP BPE vocabulary: ",
            vocab.display()
        )),
        "{line}"
    );
}
