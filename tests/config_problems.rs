//! Configuration problems as an operator meets them (#14): every number has a range, `check`
//! reports every problem of a file in one run at its file:line:column, `run` refuses the same file
//! with exit 78 before anything starts, and every numeric flag is bounded with a one-line error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::*;
use edgebind::config::EX_CONFIG;

/// The base config with one IMU replay of the 200 Hz still recording; `extra` goes into the
/// source.
fn imu_replay(extra: &str) -> String {
    format!(
        "{}\n[[sources]]\ntype = \"imu_replay\"\nname = \"imu\"\npath = \"{}\"\nspeed = \"max\"\n{extra}\n",
        base_config("limits", 1),
        fixture("recordings/imu_still_200hz.csv").display()
    )
}

/// 1-based line and column of the value of the first line of `text` starting with `key`.
fn value_at(text: &str, key: &str) -> (usize, usize) {
    let (i, line) = text
        .lines()
        .enumerate()
        .find(|(_, l)| l.starts_with(key))
        .unwrap();
    (i + 1, line.find('=').unwrap() + 3)
}

fn stderr_of(args: &[&str], config: &Path) -> (Option<i32>, String) {
    let out = run(edgebind().args(args).arg("--config").arg(config));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `check` exits 78 naming `want` at the key's line and column, and `run` exits 78 with the
/// same message before it loads anything.
fn refused_by_check_and_run(text: &str, key: &str, want: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), text);
    let (line, column) = value_at(text, key);
    let at = format!("{}:{line}:{column}: {want}", path.display());
    let (code, err) = stderr_of(&["check"], &path);
    assert_eq!(code, Some(EX_CONFIG), "check of {key}: {err}");
    assert!(
        err.contains(&at),
        "check of {key}: missing {at:?} in:\n{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let (code, err) = stderr_of(&["run"], &path);
    assert_eq!(code, Some(EX_CONFIG), "run of {key}: {err}");
    assert!(err.contains(&at), "run of {key}: missing {at:?} in:\n{err}");
    for started in ["ONNX Runtime loaded", "edgebind running", "panicked"] {
        assert!(
            !err.contains(started),
            "run of {key} went as far as {started:?}:\n{err}"
        );
    }
}

#[test]
fn the_extreme_numbers_of_the_issue_are_refused_by_check_and_by_run_before_anything_starts() {
    let cases = [
        (
            "queue_capacity = 1000000000000",
            "sources[0].queue_capacity (imu): 1000000000000 blocks is more than the 4096 blocks allowed: ",
        ),
        (
            "queue_capacity = 1e12",
            "sources[0].queue_capacity (imu): expected a whole number of items waiting, found 1e12",
        ),
        (
            "window_ms = 100000000000",
            "sources[0].window_ms (imu): 100000000000 ms (3.2 years) is more than the 600000 ms (10 min) allowed: a window's samples are held in memory",
        ),
        (
            "window_ms = 18446744073709551615",
            "sources[0].window_ms (imu): 18446744073709551615 ms (5.8e8 years) is more than the 600000 ms (10 min) allowed",
        ),
        (
            "hop_ms = 18446744073709551615",
            "sources[0].hop_ms (imu): 18446744073709551615 ms (5.8e8 years) is more than the 3600000 ms (1 h) allowed",
        ),
        (
            "window_ms = 1",
            "sources[0].window_ms (imu): 1 ms holds no sample at the recording's 200 Hz (one sample every 5 ms)",
        ),
        (
            "sample_rate_hz = 1e-300",
            "sources[0].sample_rate_hz (imu): 1e-300 Hz is less than the 1 Hz allowed",
        ),
        (
            "sample_rate_hz = 400.0\nwindow_ms = 600000\nhop_ms = 3600000",
            "",
        ),
    ];
    for (extra, want) in cases {
        let text = imu_replay(extra);
        if want.is_empty() {
            // The largest window and hop at a real rate are accepted.
            let dir = tempfile::tempdir().unwrap();
            let (code, err) = stderr_of(&["check"], &write_config(dir.path(), &text));
            assert_eq!(code, Some(0), "{err}");
            continue;
        }
        let key = extra.split(' ').next().unwrap();
        refused_by_check_and_run(&text, key, want);
    }
    let text = imu_replay("").replace(
        "execution_providers = [\"cpu\"]",
        "execution_providers = [\"cpu\"]\nintra_threads = 100000000",
    );
    refused_by_check_and_run(
        &text,
        "intra_threads",
        "runtime.intra_threads: 100000000 threads is more than the ",
    );
}

#[test]
fn three_type_errors_are_three_problems_each_at_its_value() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}\n[[sources]]\ntype = \"imu_serial\"\nname = \"imu\"\npath = \"/dev/ttyUSB0\"\n\
         protocol = \"witmotion\"\nsample_rate_hz = \"fast\"\nwindow_ms = \"5s\"\n\
         queue_capacity = 1e12\n",
        base_config("types", 1)
    );
    let path = write_config(dir.path(), &text);
    let (code, err) = stderr_of(&["check"], &path);
    assert_eq!(code, Some(EX_CONFIG), "{err}");
    assert!(err.contains(": 3 problem(s):"), "{err}");
    for (key, want) in [
        (
            "sample_rate_hz",
            "sources[0].sample_rate_hz (imu): expected a number of hertz, found \"fast\"",
        ),
        (
            "window_ms",
            "sources[0].window_ms (imu): expected a whole number of milliseconds from 1 (25 for audio) to 600000 ms (10 min), found \"5s\"",
        ),
        (
            "queue_capacity",
            "sources[0].queue_capacity (imu): expected a whole number of items waiting, found 1e12",
        ),
    ] {
        let (line, column) = value_at(&text, key);
        let at = format!("{}:{line}:{column}: {want}", path.display());
        assert!(err.contains(&at), "missing {at:?} in:\n{err}");
    }
    // `run` refuses the same file with the same report.
    let (code, run_err) = stderr_of(&["run"], &path);
    assert_eq!(code, Some(EX_CONFIG), "{run_err}");
    assert!(run_err.contains(": 3 problem(s):"), "{run_err}");
}

#[test]
fn a_wrong_type_and_an_unknown_key_are_both_reported_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let text = imu_replay("windw_ms = 3000").replace(
        "stats_interval_s = 0",
        "stats_interval_s = 0\nkeep_alive_s = \"30\"",
    );
    let path = write_config(dir.path(), &text);
    let (code, err) = stderr_of(&["check"], &path);
    assert_eq!(code, Some(EX_CONFIG), "{err}");
    assert!(err.contains(": 2 problem(s):"), "{err}");
    let (line, column) = value_at(&text, "keep_alive_s");
    let want = format!(
        "{}:{line}:{column}: mqtt.keep_alive_s: expected a whole number of seconds from 1 to 65535 s (18.2 h), found \"30\"",
        path.display()
    );
    assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    let (line, _) = value_at(&text, "windw_ms");
    let want = format!(
        "{}:{line}:1: sources[0].windw_ms (imu): unknown key \"windw_ms\" (did you mean \"window_ms\"?)",
        path.display()
    );
    assert!(err.contains(&want), "missing {want:?} in:\n{err}");
}

#[test]
fn a_required_key_of_the_wrong_type_is_reported_once_and_its_placeholder_never() {
    // `path` is required: it is replaced by a placeholder after its type error, and validation
    // (which would say "does not exist" and "cannot tell the format") says nothing about it.
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}\n[[sources]]\ntype = \"imu_replay\"\nname = \"imu\"\npath = 42\nwindow_ms = 0\n",
        base_config("placeholder", 1)
    );
    let path = write_config(dir.path(), &text);
    let (code, err) = stderr_of(&["check"], &path);
    assert_eq!(code, Some(EX_CONFIG), "{err}");
    assert!(err.contains(": 2 problem(s):"), "{err}");
    assert!(
        err.contains("sources[0].path (imu): expected a path in quotes, found 42"),
        "{err}"
    );
    assert!(
        err.contains("sources[0].window_ms (imu): 0 ms is less than the 1 ms allowed"),
        "{err}"
    );
}

/// 16-bit mono WAV of silence.
fn wav(path: &Path, seconds: u32, rate: u32) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for _ in 0..seconds * rate {
        w.write_sample(0i16).unwrap();
    }
    w.finalize().unwrap();
}

#[test]
fn a_window_beyond_memory_at_a_recordings_own_rate_is_found_by_check_and_by_run() {
    // The rate is the WAV's: only opening the recording tells that 10 min at 48 kHz is 28.8
    // million samples.
    let dir = tempfile::tempdir().unwrap();
    let wav_path = dir.path().join("a.wav");
    wav(&wav_path, 1, 48_000);
    let text = format!(
        "{}\n[[sources]]\ntype = \"audio_replay\"\nname = \"mic\"\npath = \"{}\"\nwindow_ms = 600000\n",
        base_config("wav", 1),
        wav_path.display()
    );
    refused_by_check_and_run(
        &text,
        "window_ms",
        "sources[0].window_ms (mic): 600000 ms (10 min) is 28800000 samples at the recording's 48000 Hz, more than the 2097152 allowed (at most 43690 ms (43.7 s) at this rate)",
    );
}

/// Runs the binary with `args`; it must fail with clap's usage exit code and one line saying
/// which flag and why.
fn flag_refused(args: &[&str], flag: &str, why: &str) {
    let out = run(edgebind().args(args));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    let first = err.lines().next().unwrap_or("");
    assert!(
        first.starts_with("error: invalid value ") && first.contains(flag) && first.contains(why),
        "{args:?}: first line {first:?} of:\n{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn every_numeric_flag_of_every_verb_is_bounded_with_a_one_line_error() {
    let m = "models/tiny/imu.onnx";
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &[
                "embed",
                "imu",
                "x.npy",
                "--model",
                m,
                "-o",
                "o.npy",
                "--threads",
                "100000",
            ],
            "--threads",
            "100000 threads is more than the ",
        ),
        (
            &[
                "embed",
                "imu",
                "x.npy",
                "--model",
                m,
                "-o",
                "o.npy",
                "--threads",
                "0",
            ],
            "--threads",
            "0 threads is less than the 1 thread allowed",
        ),
        (
            &[
                "preprocess",
                "imu",
                "x.npy",
                "-o",
                "o.npy",
                "--rate-hz",
                "1e300",
            ],
            "--rate-hz",
            "1e300 Hz is more than the 32000 Hz allowed",
        ),
        (
            &[
                "embed",
                "imu",
                "x.npy",
                "--model",
                m,
                "-o",
                "o.npy",
                "--rate-hz",
                "nan",
            ],
            "--rate-hz",
            "NaN Hz is not a number",
        ),
        (
            &[
                "preprocess",
                "audio",
                "x.wav",
                "-o",
                "o.npy",
                "--clips",
                "100000",
            ],
            "--clips",
            "100000 clips is more than the 16 clips allowed",
        ),
        (
            &[
                "preprocess",
                "thermal",
                "x.npy",
                "-o",
                "o.npy",
                "--agc-min-c",
                "-300",
                "--agc-max-c",
                "10",
            ],
            "--agc-min-c",
            "-300 °C is less than the -273.15 °C allowed",
        ),
        (
            &[
                "preprocess",
                "depth",
                "x.npy",
                "-o",
                "o.npy",
                "--focal-px",
                "0",
            ],
            "--focal-px",
            "0 px is less than the 1 px allowed",
        ),
        (
            &[
                "preprocess",
                "depth",
                "x.npy",
                "-o",
                "o.npy",
                "--baseline-m",
                "1e9",
            ],
            "--baseline-m",
            "1000000000 m is more than the 10 m allowed",
        ),
        (
            &[
                "preprocess",
                "depth",
                "x.npy",
                "-o",
                "o.npy",
                "--depth-units-m",
                "2",
            ],
            "--depth-units-m",
            "2 m is more than the 1 m allowed",
        ),
        (
            &[
                "run",
                "--config",
                "x.toml",
                "--shutdown-timeout-s",
                "18446744073709551615",
            ],
            "--shutdown-timeout-s",
            "18446744073709551615 s (5.8e11 years) is more than the 3600 s (1 h) allowed",
        ),
        (
            &["bench", "--duration", "1e300"],
            "--duration",
            "is more than the 86400 s (1 days) allowed",
        ),
        (
            &["bench", "--e2e", "--max-speed-duration", "0.001"],
            "--max-speed-duration",
            "0.001 s is less than the 0.1 s allowed",
        ),
        (
            &["bench", "--max-batch", "100000"],
            "--max-batch",
            "100000 windows is more than the 64 windows allowed",
        ),
        (
            &["bench", "--intra-threads", "100000"],
            "--intra-threads",
            "100000 threads is more than the ",
        ),
    ];
    for (args, flag, why) in cases {
        flag_refused(args, flag, why);
    }
}

#[test]
fn negative_temperatures_are_accepted_by_the_agc_flags() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("o.npy");
    let out = run(edgebind()
        .args(["preprocess", "thermal"])
        .arg(fixture("recordings/thermal_demo_160x120_u16.npy"))
        .arg("-o")
        .arg(&out_path)
        .args(["--agc-min-c", "-20", "--agc-max-c", "40"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out_path.is_file());
}
