//! Audio end to end: WAV replay → ImageBind-exact fbank → the real ONNX Runtime → mosquitto, and
//! `preprocess audio` against the reference data.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

fn tone_wav(path: &Path, freq_hz: f64, seconds: f64, rate: u32) {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    let n = (seconds * f64::from(rate)) as usize;
    for i in 0..n {
        let t = i as f64 / f64::from(rate);
        let v = (0.3 * (2.0 * std::f64::consts::PI * freq_hz * t).sin() * 32767.0) as i16;
        w.write_sample(v).unwrap(); // left: the tone (ImageBind uses channel 0)
        w.write_sample(0i16).unwrap(); // right: silence
    }
    w.finalize().unwrap();
}

#[test]
fn preprocess_audio_matches_imagebinds_file_loader() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "speech_44k1_stereo_5s",
        "window_2s_44k1_stereo",
        "chirp_noise_16k_mono_9s5",
        "short_16k_mono_1s2",
    ] {
        let out_path = dir.path().join("out.npy");
        let out = run(edgebind()
            .args(["preprocess", "audio"])
            .arg(refdata_dir().join(format!("audio/{name}.wav")))
            .arg("-o")
            .arg(&out_path));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: ndarray::ArrayD<f32> = ndarray_npy::read_npy(&out_path).unwrap();
        let want: ndarray::ArrayD<f32> =
            ndarray_npy::read_npy(refdata_dir().join(format!("audio/{name}.out.npy"))).unwrap();
        // The reference is [1, 3, 1, 128, 204] (a batch of one file).
        assert_eq!(got.shape(), &want.shape()[1..], "{name}");
        let diffs: Vec<f32> = got
            .iter()
            .zip(want.iter())
            .map(|(a, b)| (a - b).abs())
            .collect();
        let max = diffs.iter().copied().fold(0.0, f32::max);
        let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
        assert!(max <= 1e-2 && mean <= 1e-4, "{name}: max {max} mean {mean}");
    }
}

#[test]
fn audio_replay_is_embedded_and_labelled_end_to_end() {
    let broker = LocalBroker::start(&[]).unwrap();
    let sub = Subscriber::start(broker.port(), "edgebind/audio/#");
    let dir = tempfile::tempdir().unwrap();
    // 4 s at 44.1 kHz stereo → windows of 2 s every 1 s: 3 windows each.
    tone_wav(&dir.path().join("low.wav"), 200.0, 4.0, 44_100);
    tone_wav(&dir.path().join("high.wav"), 4000.0, 4.0, 44_100);
    let config = format!(
        r#"{base}
[[sources]]
type = "audio_replay"
name = "low"
path = "{dir}/low.wav"
speed = "max"

[[sources]]
type = "audio_replay"
name = "high"
path = "{dir}/high.wav"
speed = "max"
clips = 3
"#,
        base = base_config("audio", broker.port()),
        dir = dir.path().display(),
    );
    let path = write_config(dir.path(), &config);
    let out = run(edgebind().arg("run").arg("--config").arg(&path));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(sub.wait_for(Duration::from_secs(5), |m| m
        .iter()
        .filter(|s| s.topic.ends_with("/embedding"))
        .count()
        == 6));
    for (sensor, want) in [("low", "low hum"), ("high", "high whistle")] {
        let msgs: Vec<serde_json::Value> = sub
            .on(&format!("/{sensor}/embedding"))
            .iter()
            .map(Seen::json)
            .collect();
        let seqs: Vec<u64> = msgs.iter().map(|v| v["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, vec![0, 1, 2], "{sensor}");
        for v in &msgs {
            assert_eq!(v["modality"], "audio");
            assert_eq!(top_label(v), want, "{sensor}: {}", v["labels"]);
            assert_eq!(v["window"]["sample_count"], 88_200);
            assert_eq!(
                v["window"]["end_utc_ns"].as_i64().unwrap()
                    - v["window"]["start_utc_ns"].as_i64().unwrap(),
                2_000_000_000
            );
        }
    }
}

#[test]
fn bad_wav_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let truncated = dir.path().join("truncated.wav");
    tone_wav(&truncated, 440.0, 1.0, 16_000);
    let bytes = std::fs::read(&truncated).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2 + 1]).unwrap();
    let empty = dir.path().join("empty.wav");
    tone_wav(&empty, 440.0, 0.0, 16_000);
    let not_wav = dir.path().join("text.wav");
    std::fs::write(&not_wav, "hello").unwrap();
    for (file, want) in [
        (&truncated, "truncated.wav"),
        (&empty, "no samples"),
        (&not_wav, "text.wav"),
    ] {
        let out = run(edgebind()
            .args(["preprocess", "audio"])
            .arg(file)
            .arg("-o")
            .arg(dir.path().join("o.npy")));
        assert!(!out.status.success(), "{}", file.display());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
