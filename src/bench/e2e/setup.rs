//! What a run of the end-to-end bench sets up: a temporary directory, the replay files, and the
//! daemon's configuration for each phase.

use std::path::{Path, PathBuf};

use super::super::inputs::{self, AUDIO_CHANNELS, AUDIO_RATE_HZ};
use super::super::BenchError;
use super::{E2eOptions, SensorSetup, DEPTH_FPS, DEVICE_ID, FRAME_INTERVAL_MS, THERMAL_FPS};

/// A directory removed when dropped.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh `edgebind-bench-<pid>` directory in the system's temporary directory.
    ///
    /// # Errors
    /// [`BenchError::Io`] when it cannot be created.
    pub fn new() -> Result<Self, BenchError> {
        let p = std::env::temp_dir().join(format!("edgebind-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).map_err(|e| BenchError::Io {
            path: p.clone(),
            message: e.to_string(),
        })?;
        Ok(Self(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            tracing::debug!(error = %e, "cannot remove {}", self.0.display());
        }
    }
}

/// The replay files of a run.
#[derive(Debug, Clone)]
pub struct Replays {
    /// IMU CSV at 200 Hz.
    pub imu: PathBuf,
    /// Thermal frames (`.npy`).
    pub thermal: PathBuf,
    /// Depth frames (`.npy`).
    pub depth: PathBuf,
    /// 48 kHz stereo WAV.
    pub audio: PathBuf,
}

/// A file error of the bench.
pub fn io_err(path: &Path, e: impl std::fmt::Display) -> BenchError {
    BenchError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Writes the replay files into `dir`: the synthetic microphone, and the bundled recordings
/// (from `recordings`) or synthetic ones of the same kind.
///
/// # Errors
/// [`BenchError::Io`] when a file cannot be written.
pub fn materialize(dir: &Path, recordings: Option<&Path>) -> Result<Replays, BenchError> {
    let audio = dir.join("mic_48k_stereo.wav");
    let planar = inputs::synthetic_audio(AUDIO_RATE_HZ, AUDIO_CHANNELS, 12.0);
    inputs::write_wav(&audio, &planar, AUDIO_RATE_HZ)?;
    if let Some(r) = recordings {
        return Ok(Replays {
            imu: r.join(inputs::IMU_RECORDING),
            thermal: r.join(inputs::THERMAL_RECORDING),
            depth: r.join(inputs::DEPTH_RECORDING),
            audio,
        });
    }
    // No recordings (an installed package): write the synthetic inputs the per-modality bench
    // uses, as replay files.
    let mut replays = Replays {
        imu: dir.join("imu_200hz.csv"),
        thermal: dir.join("thermal.npy"),
        depth: dir.join("depth.npy"),
        audio,
    };
    let mut csv = String::from("t_s,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z\n");
    for (i, s) in inputs::synthetic_imu(200.0, 16.0).iter().enumerate() {
        csv.push_str(&format!(
            "{:.6},{},{},{},{},{},{}\n",
            i as f64 / 200.0,
            s[0],
            s[1],
            s[2],
            s[3],
            s[4],
            s[5]
        ));
    }
    std::fs::write(&replays.imu, csv).map_err(|e| io_err(&replays.imu, e))?;
    for (path, frames) in [
        (
            &mut replays.thermal,
            inputs::synthetic_frames(8, 120, 160, 29_000, 1500.0),
        ),
        (
            &mut replays.depth,
            inputs::synthetic_frames(8, 480, 640, 500, 4000.0),
        ),
    ] {
        ndarray_npy::write_npy(&*path, &frames).map_err(|e| io_err(path, e))?;
    }
    Ok(replays)
}

pub(super) fn toml_str(p: &Path) -> String {
    // TOML basic strings: escape backslashes and quotes.
    format!(
        "\"{}\"",
        p.display()
            .to_string()
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
    )
}

/// The daemon's config for one phase.
pub(super) fn config_text(
    o: &E2eOptions,
    dir: &Path,
    broker_port: u16,
    metrics_port: u16,
    sources: &str,
    when_full: &str,
) -> String {
    let providers: Vec<String> = o
        .providers
        .iter()
        .map(|p| format!("\"{}\"", p.as_str()))
        .collect();
    format!(
        r#"[device]
id = "{DEVICE_ID}"

[runtime]
library_path = {ort}
execution_providers = [{providers}]
intra_threads = {threads}

[models]
dir = {models}
when_full = "{when_full}"

[mqtt]
url = "mqtt://127.0.0.1:{broker_port}"
stats_interval_s = 10

[outbox]
dir = {outbox}

[metrics]
listen = "127.0.0.1:{metrics_port}"
{sources}"#,
        ort = toml_str(&o.ort_library),
        providers = providers.join(", "),
        threads = o.intra_threads.max(1),
        models = toml_str(&o.models_dir),
        outbox = toml_str(&dir.join(format!("outbox-{metrics_port}"))),
    )
}

pub(super) fn realtime_sources(r: &Replays) -> (String, Vec<SensorSetup>) {
    let text = format!(
        r#"
[[sources]]
type = "imu_replay"
name = "imu"
path = {imu}
speed = "realtime"
loop = true

[[sources]]
type = "audio_replay"
name = "mic"
path = {audio}
speed = "realtime"
loop = true

[[sources]]
type = "thermal_replay"
name = "thermal"
path = {thermal}
fps = {THERMAL_FPS}
interval_ms = {FRAME_INTERVAL_MS}
speed = "realtime"
loop = true

[[sources]]
type = "depth_replay"
name = "depth"
path = {depth}
fps = {DEPTH_FPS}
interval_ms = {FRAME_INTERVAL_MS}
speed = "realtime"
loop = true
"#,
        imu = toml_str(&r.imu),
        audio = toml_str(&r.audio),
        thermal = toml_str(&r.thermal),
        depth = toml_str(&r.depth),
    );
    let file = |p: &Path| {
        p.file_name()
            .map_or_else(String::new, |f| f.to_string_lossy().to_string())
    };
    let setup = vec![
        SensorSetup {
            name: "imu".into(),
            source: format!("{} at 200 Hz, 5 s windows, 1 s hop", file(&r.imu)),
            windows_per_s: 1.0,
        },
        SensorSetup {
            name: "mic".into(),
            source: format!(
                "{} ({} kHz, {AUDIO_CHANNELS} ch), 2 s windows, 1 s hop",
                file(&r.audio),
                f64::from(AUDIO_RATE_HZ) / 1000.0
            ),
            windows_per_s: 1.0,
        },
        SensorSetup {
            name: "thermal".into(),
            source: format!(
                "{} at {THERMAL_FPS} fps, one frame per second",
                file(&r.thermal)
            ),
            windows_per_s: 1.0,
        },
        SensorSetup {
            name: "depth".into(),
            source: format!(
                "{} at {DEPTH_FPS} fps, one frame per second",
                file(&r.depth)
            ),
            windows_per_s: 1.0,
        },
    ];
    (text, setup)
}

pub(super) fn max_speed_sources(r: &Replays) -> String {
    format!(
        r#"
[[sources]]
type = "audio_replay"
name = "mic"
path = {audio}
speed = "max"
loop = true
"#,
        audio = toml_str(&r.audio)
    )
}
