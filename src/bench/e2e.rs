//! The end-to-end benchmark: the real daemon (this binary's `run`, as a child process) on replay
//! sources for every modality at real-time rates, publishing to a private mosquitto; its CPU
//! time and peak RSS from `/proc/<pid>`, per-stage latency from its Prometheus endpoint, and the
//! window end → delivery latency seen by a subscriber. Then the audio stream alone at
//! `speed = "max"` for the highest sustained rate.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::inputs::{self, AUDIO_CHANNELS, AUDIO_RATE_HZ};
use super::procfs::{self, ProcSample};
use super::prom::{self, Histogram, Latency, Scrape, STAGE_HISTOGRAM};
use super::stats::nearest_rank;
use super::BenchError;
use crate::config::ExecutionProviderKind;
use crate::publish::broker::free_port;
use crate::publish::LocalBroker;
use crate::telemetry::{DropReason, Stage};

/// Camera rates of the replays: a FLIR Lepton delivers ~9 frames/s, a RealSense 30; the
/// daemon embeds one frame per second of each and counts the rest as skipped.
const THERMAL_FPS: f64 = 9.0;
const DEPTH_FPS: f64 = 30.0;
const FRAME_INTERVAL_MS: u64 = 1000;
/// Device id (and topic prefix `edgebind/<id>`) of the benchmarked daemon.
pub const DEVICE_ID: &str = "bench";
/// Time after the first embedding of every sensor before measuring starts.
pub(super) const SETTLE: Duration = Duration::from_secs(1);
/// Longest wait for the daemon to come up and embed a first window of every sensor.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// What the end-to-end run needs.
#[derive(Debug, Clone)]
pub struct E2eOptions {
    /// The edgebind binary to run as the daemon.
    pub daemon: PathBuf,
    /// libonnxruntime for the daemon.
    pub ort_library: PathBuf,
    /// Model set.
    pub models_dir: PathBuf,
    /// Execution providers, in order.
    pub providers: Vec<ExecutionProviderKind>,
    /// ONNX Runtime intra-op threads per session.
    pub intra_threads: usize,
    /// Measured time of the real-time phase.
    pub duration: Duration,
    /// Measured time of the `speed = "max"` phase.
    pub max_speed_duration: Duration,
    /// Bundled recordings (`None`: synthetic ones are written).
    pub recordings: Option<PathBuf>,
    /// A Python interpreter (with numpy, onnxruntime, paho-mqtt) to run
    /// `tools/python_daemon_reference.py` against the same broker and inputs.
    pub python: Option<PathBuf>,
    /// The Python reference script.
    pub python_script: Option<PathBuf>,
}

/// One configured sensor.
#[derive(Debug, Clone, Serialize)]
pub struct SensorSetup {
    /// Sensor name.
    pub name: String,
    /// What it replays, at which rate.
    pub source: String,
    /// Windows embedded per second.
    pub windows_per_s: f64,
}

/// The real-time phase.
#[derive(Debug, Clone, Serialize)]
pub struct RealtimeResult {
    /// The sensors.
    pub sensors: Vec<SensorSetup>,
    /// Seconds measured (after every sensor's first embedding and a settling second).
    pub measured_s: f64,
    /// Windows delivered (acknowledged) while measuring.
    pub windows: u64,
    /// Daemon CPU time per wall time, percent of one core.
    pub daemon_cpu_percent: f64,
    /// CPU time of the inference workers inside session runs (the daemon's
    /// `edgebind_inference_cpu_seconds_total`, thread CPU clock), percent of one core.
    pub inference_cpu_percent: f64,
    /// `daemon_cpu_percent − inference_cpu_percent`.
    pub cpu_beyond_inference_percent: f64,
    /// CPU time is read in clock ticks: the resolution of the percentages above.
    pub cpu_resolution_percent: f64,
    /// Peak resident set size of the daemon (`VmHWM`), MiB.
    pub peak_rss_mib: f64,
    /// Threads of the daemon at the end.
    pub threads: u64,
    /// CPU per thread name, percent of one core (`src-*` sources, `win-*` windowing and
    /// preprocessing, `infer-*` inference workers, `edgebind-rt` the async runtime: publisher,
    /// MQTT, metrics).
    pub thread_cpu_percent: BTreeMap<String, f64>,
    /// Per stage (all sensors): preprocess, queue, inference, publish (handed to the publisher →
    /// PUBACK), end_to_end (window end → PUBACK); from the daemon's histograms (±15 %).
    pub latency: BTreeMap<&'static str, Option<Latency>>,
    /// The same per sensor.
    pub latency_by_sensor: BTreeMap<String, BTreeMap<&'static str, Option<Latency>>>,
    /// Window end → a subscriber receives the embedding, minus that window's inference time
    /// (from the payload), measured per window (exact, not bucketed). For a camera frame the
    /// window's data is complete at its capture time (`window.start_utc_ns`), used instead of
    /// `end_utc_ns` (capture + one frame period).
    pub end_to_delivery_excluding_inference: Option<Latency>,
    /// Drops counted while measuring, by reason (frames skipped by design excluded).
    pub drops: BTreeMap<&'static str, u64>,
}

/// The audio stream alone at `speed = "max"`.
#[derive(Debug, Clone, Serialize)]
pub struct MaxSpeedResult {
    /// Seconds measured.
    pub measured_s: f64,
    /// Windows delivered while measuring.
    pub windows: u64,
    /// Sustained windows per second (the replay is paced by back-pressure: `when_full =
    /// "block"`, so this is the highest rate without drops).
    pub windows_per_s: f64,
    /// Daemon CPU, percent of one core (200 = both cores of a 2-core machine busy).
    pub daemon_cpu_percent: f64,
    /// Mean time per window of each stage that occupies a thread, ms.
    pub stage_mean_ms: BTreeMap<&'static str, f64>,
    /// Inference CPU time per window (session runs' thread CPU / windows), ms: with batching
    /// smaller than the inference stage latency, which is the whole batch's run.
    pub inference_cpu_ms_per_window: f64,
    /// The stage with the most thread time per window (preprocessing, or inference CPU): what
    /// limits the rate.
    pub bottleneck: &'static str,
    /// `1000 / inference_cpu_ms_per_window`: the rate if inference were the only cost.
    pub inference_bound_windows_per_s: f64,
    /// Drops counted while measuring (0 expected).
    pub drops: u64,
    /// CPU per thread name, percent of one core.
    pub thread_cpu_percent: BTreeMap<String, f64>,
    /// Peak RSS, MiB.
    pub peak_rss_mib: f64,
}

/// A target of issue #10 and whether it was met.
#[derive(Debug, Clone, Serialize)]
pub struct TargetCheck {
    /// What is measured.
    pub name: &'static str,
    /// The target, readable.
    pub target: &'static str,
    /// The figure measured.
    pub measured: f64,
    /// Whether it is met.
    pub met: bool,
}

/// Everything the end-to-end mode measures.
#[derive(Debug, Clone, Serialize)]
pub struct E2eReport {
    /// The real-time phase.
    pub realtime: RealtimeResult,
    /// The max-speed audio phase.
    pub max_speed: MaxSpeedResult,
    /// The issue's targets (2-core x86, tiny models).
    pub targets: Vec<TargetCheck>,
    /// The Python reference daemon measured the same way, when `--python` is given.
    pub python_reference: Option<PythonReference>,
}

/// The Python reference daemon's figures from the same run.
#[derive(Debug, Clone, Serialize)]
pub struct PythonReference {
    /// Seconds measured.
    pub measured_s: f64,
    /// Its CPU, percent of one core (from /proc, as for the daemon).
    pub cpu_percent: f64,
    /// Inference share, percent of one core (its own sum of inference times).
    pub inference_cpu_percent: f64,
    /// `cpu_percent − inference_cpu_percent`.
    pub cpu_beyond_inference_percent: f64,
    /// Peak RSS, MiB.
    pub peak_rss_mib: f64,
    /// Window end → subscriber, minus inference, per window.
    pub end_to_delivery_excluding_inference: Option<Latency>,
    /// Its own window end → PUBACK latency (paho's on_publish).
    pub end_to_puback: Option<Latency>,
    /// Audio alone as fast as it goes, windows per second.
    pub max_speed_windows_per_s: Option<f64>,
    /// Its CPU in the max-speed run, percent of one core.
    pub max_speed_cpu_percent: Option<f64>,
}

/// A directory removed when dropped.
#[derive(Debug)]
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self, BenchError> {
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
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The replay files of a run.
#[derive(Debug, Clone)]
struct Replays {
    imu: PathBuf,
    thermal: PathBuf,
    depth: PathBuf,
    audio: PathBuf,
}

pub(super) fn io_err(path: &Path, e: impl std::fmt::Display) -> BenchError {
    BenchError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn materialize(dir: &Path, recordings: Option<&Path>) -> Result<Replays, BenchError> {
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

fn toml_str(p: &Path) -> String {
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
fn config_text(
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

fn realtime_sources(r: &Replays) -> (String, Vec<SensorSetup>) {
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

fn max_speed_sources(r: &Replays) -> String {
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

/// The daemon as a child process, stopped with SIGTERM (then killed) when dropped.
#[derive(Debug)]
struct Daemon {
    child: Child,
    log: PathBuf,
    metrics: String,
}

impl Daemon {
    fn start(
        exe: &Path,
        config: &Path,
        log: PathBuf,
        metrics_port: u16,
    ) -> Result<Self, BenchError> {
        let log_file = std::fs::File::create(&log).map_err(|e| io_err(&log, e))?;
        let child = Command::new(exe)
            .args(["--log", "warn", "run", "--config"])
            .arg(config)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| io_err(exe, e))?;
        Ok(Self {
            child,
            log,
            metrics: format!("127.0.0.1:{metrics_port}"),
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!(
                "the daemon exited ({status}) before the measurement ended:\n{}",
                self.log_tail()
            )),
            _ => None,
        }
    }

    fn scrape(&mut self) -> Result<Scrape, BenchError> {
        match prom::fetch(&self.metrics, Duration::from_secs(5)) {
            Ok(body) => Ok(Scrape::parse(&body)),
            Err(e) => {
                Err(BenchError::Daemon(self.exited().unwrap_or_else(|| {
                    format!("metrics endpoint {}: {e}", self.metrics)
                })))
            }
        }
    }

    /// Waits until every sensor's end-to-end histogram has a window.
    fn wait_for_windows(&mut self, sensors: &[&str]) -> Result<(), BenchError> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(e) = self.exited() {
                return Err(BenchError::Daemon(e));
            }
            if let Ok(body) = prom::fetch(&self.metrics, Duration::from_secs(2)) {
                let s = Scrape::parse(&body);
                let ready = sensors.iter().all(|name| {
                    s.sum(
                        &format!("{STAGE_HISTOGRAM}_count"),
                        &[("sensor", name), ("stage", Stage::EndToEnd.as_str())],
                    ) >= 1.0
                });
                if ready {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(BenchError::Daemon(format!(
                    "no embedding from every sensor within {} s:\n{}",
                    START_TIMEOUT.as_secs(),
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn proc(&self, ticks: f64) -> Result<ProcSample, BenchError> {
        procfs::sample(self.pid(), ticks)
            .ok_or_else(|| BenchError::Daemon(format!("/proc/{} is gone", self.pid())))
    }

    /// SIGTERM, then up to 15 s for the ordered shutdown, then SIGKILL.
    fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(super) fn utc_now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// Receives embeddings and records, per window, window end → receipt minus inference.
pub(super) struct DeliveryProbe {
    samples_ms: Arc<Mutex<Vec<(i128, f64)>>>,
    stop: Arc<AtomicBool>,
    client: rumqttc::Client,
}

impl DeliveryProbe {
    pub(super) fn start(port: u16, prefix: &str) -> Result<Self, BenchError> {
        let mut opts = rumqttc::MqttOptions::new(
            // One probe per prefix at a time; a shared id would make the broker take the
            // session from one to the other.
            format!(
                "edgebind-bench-probe-{}-{}",
                std::process::id(),
                prefix.replace('/', "-")
            ),
            "127.0.0.1",
            port,
        );
        opts.set_max_packet_size(4 << 20, 4 << 20);
        let (client, mut connection) = rumqttc::Client::new(opts, 64);
        client
            .subscribe(format!("{prefix}/+/embedding"), rumqttc::QoS::AtMostOnce)
            .map_err(|e| BenchError::Broker(format!("subscribing: {e}")))?;
        let samples_ms: Arc<Mutex<Vec<(i128, f64)>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
        {
            let samples = Arc::clone(&samples_ms);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("bench-probe".into())
                .spawn(move || {
                    for event in connection.iter() {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        match event {
                            Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                                let _ = ready_tx.try_send(());
                            }
                            Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                                let now = utc_now_ns();
                                let Ok(v) = serde_json::from_slice::<serde_json::Value>(&p.payload)
                                else {
                                    continue;
                                };
                                // A camera window is one frame whose "end" is capture + frame
                                // period; its data is complete at capture (`start`).
                                let frame = v["window"]["sample_count"].as_u64() == Some(1)
                                    && matches!(v["modality"].as_str(), Some("depth" | "thermal"));
                                let key = if frame { "start_utc_ns" } else { "end_utc_ns" };
                                let end = v["window"][key].as_i64();
                                let inference = v["latency"]["inference_ms"].as_f64();
                                if let (Some(end), Some(inf)) = (end, inference) {
                                    let ms = (now - i128::from(end)) as f64 / 1e6 - inf;
                                    if let Ok(mut s) = samples.lock() {
                                        s.push((now, ms));
                                    }
                                }
                            }
                            Ok(_) => {}
                            Err(_) => std::thread::sleep(Duration::from_millis(100)),
                        }
                    }
                })
                .map_err(|e| BenchError::Broker(format!("probe thread: {e}")))?;
        }
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| BenchError::Broker("no SUBACK from the local broker in 10 s".into()))?;
        Ok(Self {
            samples_ms,
            stop,
            client,
        })
    }

    /// Latency of the windows received between `from` and `to` (UTC ns).
    pub(super) fn between(&self, from: i128, to: i128) -> Option<Latency> {
        let mut v: Vec<f64> = self
            .samples_ms
            .lock()
            .ok()?
            .iter()
            .filter(|(t, _)| *t >= from && *t <= to)
            .map(|(_, ms)| *ms)
            .collect();
        v.sort_by(f64::total_cmp);
        Some(Latency {
            count: v.len() as u64,
            p50_ms: nearest_rank(&v, 0.5)?,
            p99_ms: nearest_rank(&v, 0.99)?,
            mean_ms: v.iter().sum::<f64>() / v.len() as f64,
        })
    }
}

impl std::fmt::Debug for DeliveryProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryProbe").finish_non_exhaustive()
    }
}

impl Drop for DeliveryProbe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.client.disconnect();
    }
}

pub(super) fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn drops_between(before: &Scrape, after: &Scrape) -> BTreeMap<&'static str, u64> {
    DropReason::ALL
        .iter()
        .filter(|r| **r != DropReason::FrameSkipped)
        .map(|r| {
            let f = [("reason", r.as_str())];
            let d = after.sum("edgebind_drops_total", &f) - before.sum("edgebind_drops_total", &f);
            (r.as_str(), d.max(0.0).round() as u64)
        })
        .collect()
}

fn stage_latencies(
    before: &Scrape,
    after: &Scrape,
    sensor: Option<&str>,
) -> BTreeMap<&'static str, Option<Latency>> {
    Stage::ALL
        .iter()
        .map(|stage| {
            let mut f = vec![("stage", stage.as_str())];
            if let Some(s) = sensor {
                f.push(("sensor", s));
            }
            let h = after
                .histogram(STAGE_HISTOGRAM, &f)
                .since(&before.histogram(STAGE_HISTOGRAM, &f));
            (stage.as_str(), h.latency())
        })
        .collect()
}

/// Inference CPU seconds of every model between two scrapes.
fn inference_cpu_s(before: &Scrape, after: &Scrape) -> f64 {
    let name = "edgebind_inference_cpu_seconds_total";
    (after.sum(name, &[]) - before.sum(name, &[])).max(0.0)
}

fn stage_hist(before: &Scrape, after: &Scrape, stage: Stage) -> Histogram {
    let f = [("stage", stage.as_str())];
    after
        .histogram(STAGE_HISTOGRAM, &f)
        .since(&before.histogram(STAGE_HISTOGRAM, &f))
}

/// Runs both phases (and the Python reference when asked); `progress` is told the phase.
///
/// # Errors
/// [`BenchError`] when the broker or the daemon cannot start, or the daemon stops early.
pub fn run(o: &E2eOptions, progress: &mut dyn FnMut(&str)) -> Result<E2eReport, BenchError> {
    let dir = TempDir::new()?;
    let recordings = super::inputs::find_recordings(o.recordings.as_deref())?
        .map(|p| std::fs::canonicalize(&p).unwrap_or(p));
    let replays = materialize(&dir.0, recordings.as_deref())?;
    progress("starting mosquitto");
    let broker = LocalBroker::start(&[]).map_err(|e| BenchError::Broker(e.to_string()))?;
    let ticks = procfs::clock_ticks_per_s();

    // Real-time phase.
    let (sources, sensors) = realtime_sources(&replays);
    let metrics_port = free_port().map_err(|e| BenchError::Broker(e.to_string()))?;
    let config = dir.0.join("realtime.toml");
    std::fs::write(
        &config,
        config_text(
            o,
            &dir.0,
            broker.port(),
            metrics_port,
            &sources,
            "drop_oldest",
        ),
    )
    .map_err(|e| io_err(&config, e))?;
    let probe = DeliveryProbe::start(broker.port(), &format!("edgebind/{DEVICE_ID}"))?;
    progress("real time: starting the daemon");
    let mut daemon = Daemon::start(&o.daemon, &config, dir.0.join("realtime.log"), metrics_port)?;
    let names: Vec<&str> = sensors.iter().map(|s| s.name.as_str()).collect();
    progress("real time: waiting for every sensor's first window");
    daemon.wait_for_windows(&names)?;
    std::thread::sleep(SETTLE);
    let (scrape0, proc0, threads0, t0, utc0) = (
        daemon.scrape()?,
        daemon.proc(ticks)?,
        procfs::thread_ticks(daemon.pid()),
        Instant::now(),
        utc_now_ns(),
    );
    progress(&format!(
        "real time: measuring for {} s",
        o.duration.as_secs_f64()
    ));
    sleep_watching(&mut daemon, o.duration)?;
    let (scrape1, proc1, threads1, measured_s, utc1) = (
        daemon.scrape()?,
        daemon.proc(ticks)?,
        procfs::thread_ticks(daemon.pid()),
        t0.elapsed().as_secs_f64(),
        utc_now_ns(),
    );
    daemon.stop();
    let e2e = stage_hist(&scrape0, &scrape1, Stage::EndToEnd);
    let daemon_cpu_percent = (proc1.cpu_s - proc0.cpu_s) / measured_s * 100.0;
    let inference_cpu_percent = inference_cpu_s(&scrape0, &scrape1) / measured_s * 100.0;
    let realtime = RealtimeResult {
        measured_s,
        windows: e2e.count.round() as u64,
        daemon_cpu_percent,
        inference_cpu_percent,
        cpu_beyond_inference_percent: daemon_cpu_percent - inference_cpu_percent,
        cpu_resolution_percent: 100.0 / ticks / measured_s,
        peak_rss_mib: mib(proc1.peak_rss_bytes),
        threads: proc1.threads,
        thread_cpu_percent: procfs::thread_cpu_percent(&threads0, &threads1, ticks, measured_s),
        latency: stage_latencies(&scrape0, &scrape1, None),
        latency_by_sensor: names
            .iter()
            .map(|n| (n.to_string(), stage_latencies(&scrape0, &scrape1, Some(n))))
            .collect(),
        end_to_delivery_excluding_inference: probe.between(utc0, utc1),
        drops: drops_between(&scrape0, &scrape1),
        sensors,
    };
    drop(daemon);

    // Max-speed phase: audio alone, paced by back-pressure.
    let metrics_port = free_port().map_err(|e| BenchError::Broker(e.to_string()))?;
    let config = dir.0.join("max.toml");
    std::fs::write(
        &config,
        config_text(
            o,
            &dir.0,
            broker.port(),
            metrics_port,
            &max_speed_sources(&replays),
            "block",
        ),
    )
    .map_err(|e| io_err(&config, e))?;
    progress("max speed: starting the daemon (audio alone)");
    let mut daemon = Daemon::start(&o.daemon, &config, dir.0.join("max.log"), metrics_port)?;
    daemon.wait_for_windows(&["mic"])?;
    std::thread::sleep(SETTLE);
    let (scrape0, proc0, threads0, t0) = (
        daemon.scrape()?,
        daemon.proc(ticks)?,
        procfs::thread_ticks(daemon.pid()),
        Instant::now(),
    );
    progress(&format!(
        "max speed: measuring for {} s",
        o.max_speed_duration.as_secs_f64()
    ));
    sleep_watching(&mut daemon, o.max_speed_duration)?;
    let (scrape1, proc1, threads1, measured_s) = (
        daemon.scrape()?,
        daemon.proc(ticks)?,
        procfs::thread_ticks(daemon.pid()),
        t0.elapsed().as_secs_f64(),
    );
    daemon.stop();
    drop(daemon);
    let mut max_speed = max_speed_result(&scrape0, &scrape1, &proc0, &proc1, measured_s);
    max_speed.thread_cpu_percent =
        procfs::thread_cpu_percent(&threads0, &threads1, ticks, measured_s);

    let python_reference = match (&o.python, &o.python_script) {
        (Some(py), Some(script)) => {
            progress("python reference daemon");
            Some(super::pyref::run(
                py,
                script,
                o,
                &replays_for_python(&replays),
                broker.port(),
                ticks,
            )?)
        }
        _ => None,
    };
    drop(probe);
    let targets = targets(&realtime, &max_speed);
    Ok(E2eReport {
        realtime,
        max_speed,
        targets,
        python_reference,
    })
}

fn sleep_watching(daemon: &mut Daemon, d: Duration) -> Result<(), BenchError> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if let Some(e) = daemon.exited() {
            return Err(BenchError::Daemon(e));
        }
        std::thread::sleep((end - Instant::now()).min(Duration::from_millis(250)));
    }
    Ok(())
}

fn max_speed_result(
    s0: &Scrape,
    s1: &Scrape,
    p0: &ProcSample,
    p1: &ProcSample,
    measured_s: f64,
) -> MaxSpeedResult {
    let windows = stage_hist(s0, s1, Stage::EndToEnd).count.round() as u64;
    let mut stage_mean_ms = BTreeMap::new();
    for stage in [Stage::Preprocess, Stage::Inference, Stage::Publish] {
        let h = stage_hist(s0, s1, stage);
        if h.count > 0.0 {
            stage_mean_ms.insert(stage.as_str(), h.sum_s / h.count * 1e3);
        }
    }
    let inference_cpu_ms_per_window = if windows > 0 {
        inference_cpu_s(s0, s1) / windows as f64 * 1e3
    } else {
        0.0
    };
    // Publishing overlaps many messages in flight; only preprocessing and inference hold a
    // thread for their whole time, so they bound the rate. A batch's run time is every one of
    // its windows' inference latency, so inference is compared by its CPU per window.
    let preprocess_ms = stage_mean_ms.get("preprocess").copied().unwrap_or(0.0);
    let bottleneck = if preprocess_ms > inference_cpu_ms_per_window {
        "preprocess"
    } else {
        "inference"
    };
    let drops: u64 = drops_between(s0, s1).values().sum();
    MaxSpeedResult {
        measured_s,
        windows,
        windows_per_s: windows as f64 / measured_s,
        daemon_cpu_percent: (p1.cpu_s - p0.cpu_s) / measured_s * 100.0,
        inference_bound_windows_per_s: if inference_cpu_ms_per_window > 0.0 {
            1000.0 / inference_cpu_ms_per_window
        } else {
            0.0
        },
        inference_cpu_ms_per_window,
        stage_mean_ms,
        bottleneck,
        drops,
        peak_rss_mib: mib(p1.peak_rss_bytes),
        thread_cpu_percent: BTreeMap::new(),
    }
}

fn targets(r: &RealtimeResult, m: &MaxSpeedResult) -> Vec<TargetCheck> {
    let p99 = r
        .end_to_delivery_excluding_inference
        .map_or(f64::INFINITY, |l| l.p99_ms);
    vec![
        TargetCheck {
            name: "cpu_beyond_inference_percent",
            target: "≤ 0.5 % of one core",
            measured: r.cpu_beyond_inference_percent,
            met: r.cpu_beyond_inference_percent <= 0.5,
        },
        TargetCheck {
            name: "peak_rss_mib",
            target: "< 64 MiB",
            measured: r.peak_rss_mib,
            met: r.peak_rss_mib < 64.0,
        },
        TargetCheck {
            name: "end_to_delivery_excluding_inference_p99_ms",
            target: "< 5 ms",
            measured: p99,
            met: p99 < 5.0,
        },
        TargetCheck {
            name: "max_speed_cpu_percent",
            target: "> 100 % (both cores) with inference the bottleneck",
            measured: m.daemon_cpu_percent,
            met: m.daemon_cpu_percent > 100.0 && m.bottleneck == "inference",
        },
    ]
}

/// Inputs of the Python reference (the same replay files).
#[derive(Debug, Clone)]
pub struct PythonInputs {
    /// IMU CSV.
    pub imu: PathBuf,
    /// Audio WAV.
    pub audio: PathBuf,
    /// Thermal `.npy`.
    pub thermal: PathBuf,
    /// Depth `.npy`.
    pub depth: PathBuf,
    /// Thermal camera rate.
    pub thermal_fps: f64,
    /// Depth camera rate.
    pub depth_fps: f64,
}

fn replays_for_python(r: &Replays) -> PythonInputs {
    PythonInputs {
        imu: r.imu.clone(),
        audio: r.audio.clone(),
        thermal: r.thermal.clone(),
        depth: r.depth.clone(),
        thermal_fps: THERMAL_FPS,
        depth_fps: DEPTH_FPS,
    }
}
