//! The end-to-end benchmark: the real daemon (this binary's `run`, as a child process) on replay
//! sources for every modality at real-time rates, publishing to a private mosquitto; its CPU
//! time and peak RSS from `/proc/<pid>`, per-stage latency from its Prometheus endpoint, and the
//! window end → delivery latency seen by a subscriber ([`probe`]). Then the audio stream alone
//! at `speed = "max"` for the highest sustained rate. The Python reference daemon is measured
//! the same way by `benches/python_reference.rs`, outside the daemon.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::procfs::{self, ProcSample};
use super::prom::{Histogram, Latency, Scrape};
use super::BenchError;
use crate::config::ExecutionProviderKind;
use crate::publish::broker::free_port;
use crate::publish::LocalBroker;
use crate::telemetry::metrics::{DROPS, INFERENCE_CPU, STAGE_LATENCY};
use crate::telemetry::{DropReason, Stage};

mod daemon;
pub mod probe;
pub mod setup;

use daemon::Daemon;
pub use probe::{utc_now_ns, DeliveryProbe};
use setup::{config_text, max_speed_sources, realtime_sources};
pub use setup::{io_err, materialize, Replays, TempDir};

/// Camera rates of the replays: a FLIR Lepton delivers ~9 frames/s, a RealSense 30; the
/// daemon embeds one frame per second of each and counts the rest as skipped.
pub const THERMAL_FPS: f64 = 9.0;
/// See [`THERMAL_FPS`].
pub const DEPTH_FPS: f64 = 30.0;
const FRAME_INTERVAL_MS: u64 = 1000;
/// Device id (and topic prefix `edgebind/<id>`) of the benchmarked daemon.
pub const DEVICE_ID: &str = "bench";
/// Time after the first embedding of every sensor before measuring starts.
pub const SETTLE: Duration = Duration::from_secs(1);
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
    /// The targets (2-core x86, tiny models).
    pub targets: Vec<TargetCheck>,
}

/// Bytes in MiB.
#[must_use]
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn drops_between(before: &Scrape, after: &Scrape) -> BTreeMap<&'static str, u64> {
    DropReason::ALL
        .iter()
        .filter(|r| **r != DropReason::FrameSkipped)
        .map(|r| {
            let f = [("reason", r.as_str())];
            let d = after.sum(DROPS.name, &f) - before.sum(DROPS.name, &f);
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
                .histogram(STAGE_LATENCY.name, &f)
                .since(&before.histogram(STAGE_LATENCY.name, &f));
            (stage.as_str(), h.latency())
        })
        .collect()
}

/// Inference CPU seconds of every model between two scrapes.
fn inference_cpu_s(before: &Scrape, after: &Scrape) -> f64 {
    let name = INFERENCE_CPU.name;
    (after.sum(name, &[]) - before.sum(name, &[])).max(0.0)
}

fn stage_hist(before: &Scrape, after: &Scrape, stage: Stage) -> Histogram {
    let f = [("stage", stage.as_str())];
    after
        .histogram(STAGE_LATENCY.name, &f)
        .since(&before.histogram(STAGE_LATENCY.name, &f))
}

/// The daemon, its counters and its threads at one moment.
struct Sample {
    scrape: Scrape,
    proc: ProcSample,
    threads: Vec<(u32, String, u64)>,
    at: Instant,
    utc_ns: i128,
}

/// What both phases share: the directory, the broker, the clock tick.
struct Bench<'a> {
    o: &'a E2eOptions,
    dir: &'a std::path::Path,
    broker_port: u16,
    ticks: f64,
}

impl Bench<'_> {
    /// Writes the phase's configuration and starts the daemon on it.
    fn start(&self, phase: &str, sources: &str, when_full: &str) -> Result<Daemon, BenchError> {
        let metrics_port = free_port().map_err(|e| BenchError::Broker(e.to_string()))?;
        let config = self.dir.join(format!("{phase}.toml"));
        let text = config_text(
            self.o,
            self.dir,
            self.broker_port,
            metrics_port,
            sources,
            when_full,
        );
        std::fs::write(&config, text).map_err(|e| io_err(&config, e))?;
        let log = self.dir.join(format!("{phase}.log"));
        Daemon::start(&self.o.daemon, &config, log, metrics_port)
    }

    fn sample(&self, daemon: &mut Daemon) -> Result<Sample, BenchError> {
        Ok(Sample {
            scrape: daemon.scrape()?,
            proc: daemon.proc(self.ticks)?,
            threads: procfs::thread_ticks(daemon.pid()),
            at: Instant::now(),
            utc_ns: utc_now_ns(),
        })
    }

    /// Samples, lets the daemon run for `d` (failing if it exits), samples again, stops it.
    fn measure(&self, daemon: &mut Daemon, d: Duration) -> Result<(Sample, Sample), BenchError> {
        let before = self.sample(daemon)?;
        sleep_watching(daemon, d)?;
        let after = self.sample(daemon)?;
        daemon.stop();
        Ok((before, after))
    }

    fn realtime(
        &self,
        replays: &Replays,
        probe: &DeliveryProbe,
        progress: &mut dyn FnMut(&str),
    ) -> Result<RealtimeResult, BenchError> {
        let (sources, sensors) = realtime_sources(replays);
        progress("real time: starting the daemon");
        let mut daemon = self.start("realtime", &sources, "drop_oldest")?;
        let names: Vec<&str> = sensors.iter().map(|s| s.name.as_str()).collect();
        progress("real time: waiting for every sensor's first window");
        daemon.wait_for_windows(&names)?;
        std::thread::sleep(SETTLE);
        progress(&format!(
            "real time: measuring for {} s",
            self.o.duration.as_secs_f64()
        ));
        let (s0, s1) = self.measure(&mut daemon, self.o.duration)?;
        let measured_s = s1.at.duration_since(s0.at).as_secs_f64();
        let e2e = stage_hist(&s0.scrape, &s1.scrape, Stage::EndToEnd);
        let daemon_cpu_percent = (s1.proc.cpu_s - s0.proc.cpu_s) / measured_s * 100.0;
        let inference_cpu_percent = inference_cpu_s(&s0.scrape, &s1.scrape) / measured_s * 100.0;
        let ticks = self.ticks;
        Ok(RealtimeResult {
            measured_s,
            windows: e2e.count.round() as u64,
            daemon_cpu_percent,
            inference_cpu_percent,
            cpu_beyond_inference_percent: daemon_cpu_percent - inference_cpu_percent,
            cpu_resolution_percent: 100.0 / ticks / measured_s,
            peak_rss_mib: mib(s1.proc.peak_rss_bytes),
            threads: s1.proc.threads,
            thread_cpu_percent: procfs::thread_cpu_percent(
                &s0.threads,
                &s1.threads,
                ticks,
                measured_s,
            ),
            latency: stage_latencies(&s0.scrape, &s1.scrape, None),
            latency_by_sensor: names
                .iter()
                .map(|n| {
                    (
                        n.to_string(),
                        stage_latencies(&s0.scrape, &s1.scrape, Some(n)),
                    )
                })
                .collect(),
            end_to_delivery_excluding_inference: probe.between(s0.utc_ns, s1.utc_ns),
            drops: drops_between(&s0.scrape, &s1.scrape),
            sensors,
        })
    }

    fn max_speed(
        &self,
        replays: &Replays,
        progress: &mut dyn FnMut(&str),
    ) -> Result<MaxSpeedResult, BenchError> {
        progress("max speed: starting the daemon (audio alone)");
        let mut daemon = self.start("max", &max_speed_sources(replays), "block")?;
        daemon.wait_for_windows(&["mic"])?;
        std::thread::sleep(SETTLE);
        progress(&format!(
            "max speed: measuring for {} s",
            self.o.max_speed_duration.as_secs_f64()
        ));
        let (s0, s1) = self.measure(&mut daemon, self.o.max_speed_duration)?;
        let measured_s = s1.at.duration_since(s0.at).as_secs_f64();
        let mut result = max_speed_result(&s0.scrape, &s1.scrape, &s0.proc, &s1.proc, measured_s);
        result.thread_cpu_percent =
            procfs::thread_cpu_percent(&s0.threads, &s1.threads, self.ticks, measured_s);
        Ok(result)
    }
}

/// Runs both phases; `progress` is told the phase.
///
/// # Errors
/// [`BenchError`] when the broker or the daemon cannot start, or the daemon stops early.
pub fn run(o: &E2eOptions, progress: &mut dyn FnMut(&str)) -> Result<E2eReport, BenchError> {
    let dir = TempDir::new()?;
    let recordings = super::inputs::find_recordings(o.recordings.as_deref())?
        .map(|p| std::fs::canonicalize(&p).unwrap_or(p));
    let replays = setup::materialize(&dir.0, recordings.as_deref())?;
    progress("starting mosquitto");
    let broker = LocalBroker::start(&[]).map_err(|e| BenchError::Broker(e.to_string()))?;
    let bench = Bench {
        o,
        dir: &dir.0,
        broker_port: broker.port(),
        ticks: procfs::clock_ticks_per_s(),
    };
    let probe = DeliveryProbe::start(broker.port(), &format!("edgebind/{DEVICE_ID}"))?;
    let realtime = bench.realtime(&replays, &probe, progress)?;
    // Max-speed phase: audio alone, paced by back-pressure.
    let max_speed = bench.max_speed(&replays, progress)?;
    drop(probe);
    let targets = targets(&realtime, &max_speed);
    Ok(E2eReport {
        realtime,
        max_speed,
        targets,
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
