//! `edgebind embed` for every modality on the tiny models with the real ONNX Runtime: the vector
//! written equals what the daemon computes for the same window (its preprocessing + encoder run
//! in-process), every input format gives the same tensor, and mistakes are clear errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::*;
use edgebind::config::{DepthPreprocessConfig, ExecutionProviderKind, ThermalPreprocessConfig};
use edgebind::inference::{Encoder, OrtRuntime, TextEncoder};
use edgebind::preprocess::audio::{AudioParams, AudioPreprocessor};
use edgebind::preprocess::depth::DepthPreprocessor;
use edgebind::preprocess::imu::ImuPreprocessor;
use edgebind::preprocess::text::ClipTokenizer;
use edgebind::preprocess::thermal::ThermalPreprocessor;
use edgebind::sources::frame_replay::{load_stack, FrameKind};
use edgebind::sources::imu_replay;
use edgebind::sources::FrameImage;
use edgebind::Modality;
use ndarray::{Array2, ArrayD};

fn tiny(name: &str) -> PathBuf {
    repo().join("models/tiny").join(name)
}

fn bpe() -> PathBuf {
    let p = repo().join(".bpe/bpe_simple_vocab_16e6.txt.gz");
    assert!(
        p.is_file(),
        "{} missing: run tools/fetch_clip_bpe.sh",
        p.display()
    );
    p
}

/// Runs `edgebind embed` and returns the written `.npy`, or panics with stderr.
fn embed(modality: &str, input: &Path, model: &Path, extra: &[&str]) -> Array2<f32> {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("emb.npy");
    let out = run(edgebind()
        .args(["embed", modality])
        .arg(input)
        .arg("--model")
        .arg(model)
        .args(extra)
        .arg("-o")
        .arg(&out_path));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    npy_f32_2d(&out_path)
}

/// Runs `edgebind embed` expecting failure; returns stderr.
fn embed_err(modality: &str, input: &Path, model: &Path, extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = run(edgebind()
        .args(["embed", modality])
        .arg(input)
        .arg("--model")
        .arg(model)
        .args(extra)
        .arg("-o")
        .arg(dir.path().join("x.npy")));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// ONNX Runtime allows one environment per process: every test shares it.
fn runtime() -> &'static OrtRuntime {
    static RT: OnceLock<OrtRuntime> = OnceLock::new();
    RT.get_or_init(|| OrtRuntime::load(None).unwrap())
}

/// What the daemon's inference worker computes for one preprocessed window.
fn daemon_embedding(modality: Modality, model: &Path, input: &ArrayD<f32>) -> Vec<f32> {
    let rt = runtime();
    let mut enc = Encoder::load(rt, modality, model, &[ExecutionProviderKind::Cpu], false, 1)
        .unwrap_or_else(|e| panic!("{e}"));
    enc.run_one(input).unwrap()
}

fn assert_same(got: &Array2<f32>, want: &[f32], tol: f32, norm: f32) {
    assert_eq!(got.shape(), [1, 1024]);
    assert!(got.iter().all(|v| v.is_finite()));
    let max = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(max <= tol, "max |embed - daemon| = {max}");
    let n = got.iter().map(|v| v * v).sum::<f32>().sqrt();
    assert!((n - norm).abs() < 1e-3 * norm, "norm {n}, expected {norm}");
}

#[test]
fn embed_imu_from_a_csv_recording_equals_the_daemons_first_window() {
    let csv = fixture("recordings/imu_still_200hz.csv");
    let got = embed("imu", &csv, &tiny("imu.onnx"), &[]);
    // The daemon: imu_replay reads the CSV (rate from t_s), a 5 s window = 1000 samples at
    // 200 Hz, resampled to [6, 2000].
    let rec = imu_replay::load(
        &csv,
        edgebind::sources::imu_replay::ImuFileFormat::Csv,
        None,
    )
    .unwrap();
    assert!((rec.sample_rate_hz - 200.0).abs() < 1e-6);
    let samples: Vec<[f32; 6]> = rec.samples[..1000].iter().map(|s| s.unwrap()).collect();
    let x = ImuPreprocessor::new()
        .tensor_from_samples(&samples)
        .unwrap();
    let want = daemon_embedding(Modality::Imu, &tiny("imu.onnx"), &x.into_dyn());
    assert_same(&got, &want, 0.0, 5.0);
}

#[test]
fn embed_audio_of_a_2_s_wav_equals_the_daemons_window_embedding() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("tone.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 44_100,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&wav, spec).unwrap();
    let mut left = Vec::new();
    for i in 0..88_200 {
        let t = f64::from(i) / 44_100.0;
        let l = (0.3 * (2.0 * std::f64::consts::PI * 4000.0 * t).sin() * 32767.0).round() as i16;
        let r = (0.1 * (2.0 * std::f64::consts::PI * 200.0 * t).sin() * 32767.0).round() as i16;
        w.write_sample(l).unwrap();
        w.write_sample(r).unwrap();
        left.push(f32::from(l) / 32768.0);
    }
    w.finalize().unwrap();
    // The file path takes ImageBind's 3 clips; the daemon's window path 1 clip of channel 0.
    let got = embed("audio", &wav, &tiny("audio.onnx"), &[]);
    let x = AudioPreprocessor::new(AudioParams::default())
        .unwrap()
        .window_tensor(&left, 44_100, 1)
        .unwrap();
    let want = daemon_embedding(Modality::Audio, &tiny("audio.onnx"), &x.into_dyn());
    // 3 identical clips averaged = 1 clip, up to float rounding.
    assert_same(&got, &want, 1e-4, 20.0);
}

fn write_png_u16(path: &Path, a: &Array2<u16>) {
    let f = std::fs::File::create(path).unwrap();
    let mut enc = png::Encoder::new(f, a.ncols() as u32, a.nrows() as u32);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Sixteen);
    let bytes: Vec<u8> = a.iter().flat_map(|v| v.to_be_bytes()).collect();
    enc.write_header()
        .unwrap()
        .write_image_data(&bytes)
        .unwrap();
}

fn write_png_rgb(path: &Path, a: &Array2<u8>) {
    let f = std::fs::File::create(path).unwrap();
    let mut enc = png::Encoder::new(f, a.ncols() as u32, a.nrows() as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let bytes: Vec<u8> = a.iter().flat_map(|&v| [v, v, v]).collect();
    enc.write_header()
        .unwrap()
        .write_image_data(&bytes)
        .unwrap();
}

#[test]
fn embed_depth_from_npy_and_from_16_bit_png_equals_the_daemons_frame_embedding() {
    let npy = fixture("recordings/depth_demo_256x192_u16.npy");
    let Some(FrameImage::U16(raw)) = load_stack(&npy, FrameKind::Depth).unwrap().frame(0) else {
        panic!("fixture is uint16")
    };
    let x = DepthPreprocessor::new(DepthPreprocessConfig::default().params(None))
        .unwrap()
        .tensor(raw.view())
        .unwrap();
    let want = daemon_embedding(Modality::Depth, &tiny("depth.onnx"), &x.into_dyn());
    assert_same(
        &embed("depth", &npy, &tiny("depth.onnx"), &[]),
        &want,
        0.0,
        5.0,
    );
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("depth.png");
    write_png_u16(&png, &raw);
    assert_same(
        &embed("depth", &png, &tiny("depth.onnx"), &[]),
        &want,
        0.0,
        5.0,
    );
}

#[test]
fn embed_thermal_from_npy_and_from_png_equals_the_daemons_frame_embedding() {
    let npy = fixture("recordings/thermal_demo_160x120_u16.npy");
    let Some(FrameImage::U16(raw)) = load_stack(&npy, FrameKind::Thermal { radiometric: false })
        .unwrap()
        .frame(0)
    else {
        panic!("fixture is uint16")
    };
    let mut pre = ThermalPreprocessor::new(ThermalPreprocessConfig::default().params()).unwrap();
    let x = pre.tensor_u16(raw.view()).unwrap();
    let want = daemon_embedding(Modality::Thermal, &tiny("thermal.onnx"), &x.into_dyn());
    assert_same(
        &embed("thermal", &npy, &tiny("thermal.onnx"), &[]),
        &want,
        0.0,
        10.0,
    );
    // An 8-bit grey frame stored as RGB PNG (R = G = B): luma is the identity.
    let u8frame = raw.mapv(|v| (v % 251) as u8);
    let x8 = pre.tensor_u8(u8frame.view()).unwrap();
    let want8 = daemon_embedding(Modality::Thermal, &tiny("thermal.onnx"), &x8.into_dyn());
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("thermal.png");
    write_png_rgb(&png, &u8frame);
    assert_same(
        &embed("thermal", &png, &tiny("thermal.onnx"), &[]),
        &want8,
        0.0,
        10.0,
    );
}

#[test]
fn the_tokenizer_gives_imagebinds_ids_for_every_reference_prompt() {
    let prompts: serde_json::Value = serde_json::from_slice(
        &std::fs::read(refdata_dir().join("text/text_prompts.json")).unwrap(),
    )
    .unwrap();
    let texts: Vec<&str> = prompts["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let want: Array2<i64> =
        ndarray_npy::read_npy(refdata_dir().join("text/text_tokens_int64.npy")).unwrap();
    let got = ClipTokenizer::load(&bpe()).unwrap().tokenize(&texts);
    for (i, t) in texts.iter().enumerate() {
        assert_eq!(got.row(i), want.row(i), "prompt {i}: {t:?}");
    }
}

#[test]
fn embed_text_from_ids_from_a_string_and_from_a_file_agree_with_python() {
    let model = fixture("models/text_tiny.onnx");
    let ids = refdata_dir().join("text/text_tokens_int64.npy");
    let want = npy_f32_2d(&fixture("models/text_tiny_ref_output.npy"));
    let got = embed("text", &ids, &model, &[]);
    assert_eq!(got.shape(), [10, 1024]);
    let max = got
        .iter()
        .zip(want.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(max < 1e-5, "max |diff| vs onnxruntime (Python) {max}");
    let vocab = bpe();
    let vocab_arg = vocab.to_str().unwrap();
    // Row 0 of the reference ids is "a dog barking".
    let one = embed(
        "text",
        Path::new("a dog barking"),
        &model,
        &["--vocab", vocab_arg],
    );
    assert_eq!(one.shape(), [1, 1024]);
    assert_eq!(one.row(0), got.row(0));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("labels.txt");
    std::fs::write(&file, "a dog barking\n\na person speaking\n").unwrap();
    let two = embed("text", &file, &model, &["--vocab", vocab_arg]);
    assert_eq!(two.shape(), [2, 1024]);
    assert_eq!(two.row(0), got.row(0));
    assert_eq!(two.row(1), got.row(1));
    // The same through the library.
    let mut enc = TextEncoder::load(runtime(), &model, &[ExecutionProviderKind::Cpu], 1).unwrap();
    let ids = ClipTokenizer::load(&vocab)
        .unwrap()
        .tokenize(&["a dog barking"]);
    assert_eq!(enc.run(&ids).unwrap().row(0), got.row(0));
}

#[test]
fn every_provider_flag_works_on_the_cpu_library_and_names_why_gpus_were_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("emb.npy");
    let out = run(embed_imu_reference(&tiny("imu.onnx"), &out_path)
        .args(["--providers", "tensorrt,cuda,cpu"]));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("provider=\"tensorrt\" reason=")
            && log.contains("provider=\"cuda\" reason=")
            && log.contains("embedding written")
            && log.contains("provider=\"cpu\""),
        "{log}"
    );
    let want = npy_f32_2d(&fixture("models/imu_ref_output.npy"));
    let got = npy_f32_2d(&out_path);
    assert!(got
        .iter()
        .zip(want.iter())
        .all(|(a, b)| (a - b).abs() < 1e-5));
    // GPU providers only: a clear error listing each provider's reason.
    let err = embed_err(
        "imu",
        &fixture("models/imu_ref_input.npy"),
        &tiny("imu.onnx"),
        &["--rate-hz", "400", "--providers", "tensorrt,cuda"],
    );
    assert!(
        err.contains("no execution provider could load the model")
            && err.contains("tensorrt:")
            && err.contains("cuda:"),
        "{err}"
    );
}

#[test]
fn a_model_of_another_modality_is_refused_naming_the_file_and_the_expected_input() {
    let npy = fixture("recordings/depth_demo_256x192_u16.npy");
    let err = embed_err("depth", &npy, &tiny("imu.onnx"), &[]);
    assert!(
        err.contains(&tiny("imu.onnx").display().to_string())
            && err.contains("not a valid depth encoder")
            && err.contains("expected `depth`"),
        "{err}"
    );
    let err = embed_err(
        "text",
        &refdata_dir().join("text/text_tokens_int64.npy"),
        &tiny("imu.onnx"),
        &[],
    );
    assert!(
        err.contains("not a valid text encoder") && err.contains("int64 [B, 77]"),
        "{err}"
    );
    let err = embed_err(
        "imu",
        &fixture("models/imu_ref_input.npy"),
        &fixture("models/text_tiny.onnx"),
        &["--rate-hz", "400"],
    );
    assert!(err.contains("not a valid imu encoder"), "{err}");
}

#[test]
fn wrong_inputs_are_clear_errors_naming_the_file() {
    let model = tiny("depth.onnx");
    // An 8-bit frame is not depth.
    let dir = tempfile::tempdir().unwrap();
    let u8npy = dir.path().join("u8.npy");
    ndarray_npy::write_npy(&u8npy, &Array2::<u8>::zeros((4, 4))).unwrap();
    let err = embed_err("depth", &u8npy, &model, &[]);
    assert!(err.contains("u8.npy") && err.contains("16-bit"), "{err}");
    // IMU .npy of the wrong layout.
    let bad = dir.path().join("imu_2000x6.npy");
    ndarray_npy::write_npy(&bad, &Array2::<f32>::zeros((2000, 6))).unwrap();
    let err = embed_err("imu", &bad, &tiny("imu.onnx"), &["--rate-hz", "400"]);
    assert!(
        err.contains("imu_2000x6.npy") && err.contains("[2000, 6]"),
        "{err}"
    );
    // Not a WAV.
    let err = embed_err("audio", &bad, &tiny("audio.onnx"), &[]);
    assert!(err.contains("imu_2000x6.npy"), "{err}");
    // Text without a vocabulary next to the model.
    let err = embed_err(
        "text",
        Path::new("a dog barking"),
        &fixture("models/text_tiny.onnx"),
        &[],
    );
    assert!(
        err.contains("bpe_simple_vocab_16e6.txt.gz") && err.contains("--vocab"),
        "{err}"
    );
    // Token ids of the wrong width.
    let ids = dir.path().join("ids.npy");
    ndarray_npy::write_npy(&ids, &Array2::<i64>::zeros((2, 10))).unwrap();
    let err = embed_err("text", &ids, &fixture("models/text_tiny.onnx"), &[]);
    assert!(err.contains("ids.npy") && err.contains("[N, 77]"), "{err}");
    // A missing model.
    let err = embed_err(
        "imu",
        &fixture("models/imu_ref_input.npy"),
        Path::new("/nonexistent/imu.onnx"),
        &["--rate-hz", "400"],
    );
    assert!(err.contains("/nonexistent/imu.onnx"), "{err}");
}

#[test]
fn a_manifest_with_the_exporters_text_entry_loads_and_one_with_a_typo_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(tiny("manifest.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&base).unwrap();
    v["text"] = serde_json::json!({
        "file": "text.onnx", "sha256": "00", "input": "text", "output": "embedding",
        "tokenizer": "bpe_simple_vocab_16e6.txt.gz", "tokenizer_sha256": "00"
    });
    std::fs::write(dir.path().join("manifest.json"), v.to_string()).unwrap();
    let m = edgebind::inference::Manifest::load(dir.path()).unwrap();
    let text = m.text.unwrap();
    assert_eq!(text.file, Path::new("text.onnx"));
    assert_eq!(text.tokenizer, Path::new("bpe_simple_vocab_16e6.txt.gz"));
    v["text"]["tokeniser"] = serde_json::json!("x");
    std::fs::write(dir.path().join("manifest.json"), v.to_string()).unwrap();
    let err = edgebind::inference::Manifest::load(dir.path()).unwrap_err();
    assert!(err.to_string().contains("tokeniser"), "{err}");
}

#[test]
fn a_text_encoder_of_the_wrong_kind_is_described_in_words_not_debug_output() {
    let ids = refdata_dir().join("text/text_tokens_int64.npy");
    let err = embed_err("text", &ids, &repo().join("models/tiny/imu.onnx"), &[]);
    assert!(
        err.contains("input is `imu` float32 [?, 6, 2000], expected `text` int64 [B, 77]"),
        "{err}"
    );
    assert!(
        !err.contains("Tensor {") && !err.contains("Dimensions"),
        "{err}"
    );
}
