//! Hostile and broken files against the real binary: sizes declared in headers that the file
//! does not hold, recordings of the wrong kind or length, paths that are directories, causes
//! said once. Nothing aborts; `check` refuses what `run` refuses, both with exit 78, each
//! problem on one line naming the file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::hostile::*;
use common::*;

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
        for (i, (name, file)) in [("imu", &imu), ("thermal", &thermal), ("depth", &depth)]
            .iter()
            .enumerate()
        {
            let want = format!(
                "sources[{i}].path ({name}): {}: header declares",
                file.display()
            );
            assert!(text.contains(&want), "no {want:?} in {text}");
        }
        let want = format!(
            "sources[3].path (audio): {}: the data chunk declares 4.0 GiB, but the file holds 4 B after the header",
            wav.display()
        );
        assert!(text.contains(&want), "no {want:?} in {text}");
    }
    let out = preprocess("audio", &wav, &[]);
    assert_exit(&out, 1);
    assert!(one_error_line(&out).contains("the data chunk declares 4.0 GiB"));
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
            format!("sources[0].path (imu): {}: CSV parse error", wav.display()),
            format!("sources[1].path (depth): {}: is uint8 [2, 48, 64]; a depth recording must be 16-bit (uint16, in depth units)", u8_stack.display()),
            format!("sources[2].path (thermal): {}: is uint8 [2, 48, 64]; agc = \"fixed_celsius\" needs uint16 (radiometric) frames", u8_stack.display()),
            format!("sources[3].path (thermal2): {}: is float32 [2, 48, 64], not a uint8 or uint16 thermal recording", f32_stack.display()),
            format!("sources[4].path (audio): {}: not a WAV file", u8_stack.display()),
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
            "sources[0].path (thermal): {}: is a directory, not a file",
            dir.path().display()
        ),
        format!(
            "sources[1].path (depth): {}: does not exist",
            missing.display()
        ),
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
