//! The `alsa_audio` source. Without the `alsa` feature: the config validates (no sound card
//! needed) and running it says the feature is missing. With it: cpal's real capture path opens
//! an ALSA `file`-plugin PCM fed with a known tone, and the daemon publishes the expected windows
//! over a real mosquitto; a device that does not exist stops the start with a clear error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::*;

/// A config with one `alsa_audio` source (`fields` appended) next to an `audio_replay` one.
fn config_text(port: u16, dir: &Path, fields: &str) -> String {
    format!(
        r#"{base}
[[sources]]
type = "alsa_audio"
name = "mic"
{fields}

[[sources]]
type = "audio_replay"
name = "high"
path = "{dir}/high.wav"
speed = "max"
"#,
        base = base_config("alsa", port),
        dir = dir.display(),
    )
}

/// 16-bit mono WAV of a tone.
fn tone_wav(path: &Path, freq_hz: f64, seconds: f64, rate: u32) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for s in tone(freq_hz, seconds, rate) {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

fn tone(freq_hz: f64, seconds: f64, rate: u32) -> Vec<i16> {
    let n = (seconds * f64::from(rate)) as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            (0.3 * (2.0 * std::f64::consts::PI * freq_hz * t).sin() * 32767.0) as i16
        })
        .collect()
}

#[test]
fn the_config_validates_without_a_sound_card() {
    let dir = tempfile::tempdir().unwrap();
    tone_wav(&dir.path().join("high.wav"), 4000.0, 1.0, 16_000);
    let text = config_text(
        1883,
        dir.path(),
        "device = \"hw:7,0\"\nsample_rate_hz = 16000\nchannels = 1\nsample_format = \"i16\"\n",
    );
    let path = write_config(dir.path(), &text);
    let out = run(edgebind().arg("check").arg("--config").arg(&path));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_alsa_problem_is_reported_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    tone_wav(&dir.path().join("high.wav"), 4000.0, 1.0, 16_000);
    let text = config_text(
        1883,
        dir.path(),
        "device = \"\"\nsample_rate_hz = 0\nchannels = 0\nwindow_ms = 10\nclips = 0\n\
         queue_capacity = 0\nreconnect_max_backoff_ms = 5\nmax_frames = 0\n",
    );
    let path = write_config(dir.path(), &text);
    let out = run(edgebind().arg("check").arg("--config").arg(&path));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "sources[0].device (mic): must name an ALSA PCM",
        "sources[0].sample_rate_hz (mic): 0 Hz is less than the 8000 Hz allowed",
        "sources[0].channels (mic): 0 channels is less than the 1 channel allowed",
        "sources[0].window_ms (mic): 10 ms is less than the 25 ms allowed",
        "sources[0].clips (mic): 0 clips is less than the 1 clip allowed",
        "sources[0].queue_capacity (mic): 0 blocks is less than the 1 block allowed",
        "sources[0].reconnect_max_backoff_ms (mic): 5 ms is less than the 100 ms allowed",
        "sources[0].max_frames (mic): 0 frames is less than the 1 frame allowed",
    ] {
        assert!(err.contains(want), "missing {want:?} in {err}");
    }
}

#[cfg(not(feature = "alsa"))]
#[test]
fn without_the_feature_running_says_so() {
    let dir = tempfile::tempdir().unwrap();
    tone_wav(&dir.path().join("high.wav"), 4000.0, 1.0, 16_000);
    let path = write_config(dir.path(), &config_text(1883, dir.path(), ""));
    let out = run(edgebind().arg("run").arg("--config").arg(&path));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("source mic: edgebind was built without the alsa feature"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// Writes `seconds` of a tone at 16 kHz mono s16le, then a second of silence (the `file`
/// plugin repeats its last period forever at end of file), and an asoundrc defining the PCM
/// `testcap` that reads it. Returns the value for `ALSA_CONFIG_PATH`.
#[cfg(feature = "alsa")]
fn file_pcm(dir: &Path, freq_hz: f64, seconds: f64) -> String {
    let raw = dir.join("in.raw");
    let mut samples = tone(freq_hz, seconds, 16_000);
    samples.resize(samples.len() + 16_000, 0);
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    std::fs::write(&raw, bytes).unwrap();
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
fn a_file_fed_alsa_pcm_is_captured_windowed_embedded_and_published() {
    use std::time::Duration;

    let broker = LocalBroker::start(&[]).unwrap();
    let sub = Subscriber::start(broker.port(), "edgebind/alsa/#");
    let dir = tempfile::tempdir().unwrap();
    let alsa_config = file_pcm(dir.path(), 200.0, 4.0);
    tone_wav(&dir.path().join("high.wav"), 4000.0, 4.0, 16_000);
    // 4 s at 16 kHz: windows of 2 s every 1 s → 3. The queues hold the whole capture: the file
    // plugin delivers it far faster than real time.
    let text = config_text(
        broker.port(),
        dir.path(),
        "device = \"testcap\"\nsample_rate_hz = 16000\nchannels = 1\nsample_format = \"i16\"\n\
         max_frames = 64000\nqueue_capacity = 4096\nwhen_full = \"block\"\n",
    );
    let path = write_config(dir.path(), &text);
    let out = run(edgebind()
        .env("ALSA_CONFIG_PATH", &alsa_config)
        .arg("run")
        .arg("--config")
        .arg(&path));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("audio device open"), "{log}");
    assert!(
        sub.wait_for(Duration::from_secs(5), |m| m
            .iter()
            .filter(|s| s.topic.ends_with("/embedding"))
            .count()
            == 6),
        "{log}"
    );
    let msgs: Vec<serde_json::Value> = sub.on("/mic/embedding").iter().map(Seen::json).collect();
    let seqs: Vec<u64> = msgs.iter().map(|v| v["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![0, 1, 2]);
    let starts: Vec<i64> = msgs
        .iter()
        .map(|v| v["window"]["start_utc_ns"].as_i64().unwrap())
        .collect();
    for v in &msgs {
        assert_eq!(v["modality"], "audio");
        assert_eq!(top_label(v), "low hum", "{}", v["labels"]);
        assert_eq!(v["window"]["sample_count"], 32_000);
        assert_eq!(v["window"]["gaps"], 0, "{v}");
        let span = v["window"]["end_utc_ns"].as_i64().unwrap() - starts[0];
        assert!(span > 0);
    }
    for pair in starts.windows(2) {
        let hop = pair[1] - pair[0];
        assert!(
            (hop - 1_000_000_000).abs() <= 1_000,
            "window starts {hop} ns apart"
        );
    }
    // Capture times are the stream's, mapped to UTC: within a minute of now.
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    assert!((now_ns - starts[0]).abs() < 60_000_000_000, "{}", starts[0]);
    // The other source ran alongside.
    let high: Vec<u64> = sub
        .on("/high/embedding")
        .iter()
        .map(|s| s.json()["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(high, vec![0, 1, 2]);
}

#[cfg(feature = "alsa")]
#[test]
fn a_device_that_does_not_exist_is_a_clear_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let alsa_config = file_pcm(dir.path(), 200.0, 1.0);
    tone_wav(&dir.path().join("high.wav"), 4000.0, 1.0, 16_000);
    let path = write_config(
        dir.path(),
        &config_text(1883, dir.path(), "device = \"nosuchpcm\"\n"),
    );
    let out = run(edgebind()
        .env("ALSA_CONFIG_PATH", &alsa_config)
        .arg("run")
        .arg("--config")
        .arg(&path));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("source mic: ALSA device \"nosuchpcm\" not found; capture devices:"),
        "{err}"
    );
    // The list names what exists, so a typo is easy to fix.
    assert!(err.contains("testcap"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

// A format the device cannot deliver is not testable here: the `file` plugin over `null` accepts
// any rate, channel count and format. The message listing the supported configurations is
// unit-tested in `sources::alsa_audio::negotiate`.

#[cfg(feature = "alsa")]
#[test]
fn a_window_too_long_at_the_rate_the_device_opened_with_is_a_configuration_error_exit_78() {
    // `check` does not open the sound card, so it cannot know the device's rate; `run` learns it
    // when it opens the device, and refuses a window that does not fit in memory at that rate
    // with exit 78 (systemd does not restart into it) naming the key, not a panicking windower.
    let dir = tempfile::tempdir().unwrap();
    let alsa_config = file_pcm(dir.path(), 200.0, 1.0);
    tone_wav(&dir.path().join("high.wav"), 4000.0, 1.0, 16_000);
    let path = write_config(
        dir.path(),
        &config_text(
            1,
            dir.path(),
            "device = \"testcap\"\nwindow_ms = 600000\nmax_frames = 16000\n",
        ),
    );
    let check = run(edgebind()
        .env("ALSA_CONFIG_PATH", &alsa_config)
        .arg("check")
        .arg("--config")
        .arg(&path));
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let out = run(edgebind()
        .env("ALSA_CONFIG_PATH", &alsa_config)
        .arg("run")
        .arg("--config")
        .arg(&path));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(edgebind::config::EX_CONFIG),
        "{err}"
    );
    let line = config_text(1, dir.path(), "device = \"testcap\"\nwindow_ms = 600000\n")
        .lines()
        .position(|l| l.starts_with("window_ms"))
        .unwrap()
        + 1;
    let want = format!(
        "{}:{line}:13: sources[0].window_ms (mic): 600000 ms (10 min) is ",
        path.display()
    );
    assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    assert!(err.contains("at the device's "), "{err}");
    assert!(
        !err.contains("edgebind running") && !err.contains("panicked"),
        "{err}"
    );
}
