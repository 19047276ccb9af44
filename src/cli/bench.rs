//! `edgebind bench`: runs the measurements of [`crate::bench`], shows a progress bar on a
//! terminal, prints a table and writes the JSON report.

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

use super::{ModalityArg, ProviderArg};
use crate::bench::e2e::E2eReport;
use crate::bench::prom::Latency;
use crate::bench::{
    self, find_models, load_manifest, parse_duration, BenchReport, E2eOptions, MicroOptions,
    ModalityResult, ModelsInfo, OrtInfo, SystemInfo, REPORT_VERSION,
};
use crate::config::{limits, ExecutionProviderKind};
use crate::inference::{Manifest, OrtRuntime};

/// Options of `edgebind bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Model set: a folder with manifest.json (default: models/tiny).
    #[arg(long)]
    pub models: Option<PathBuf>,
    /// Execution providers to try, in order (each modality reports the one it got).
    #[arg(long, value_delimiter = ',', default_value = "tensorrt,cuda,cpu")]
    pub providers: Vec<ProviderArg>,
    /// Measuring time: split between the modalities, or with --e2e the real-time phase.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Also write the report as JSON to this file (`-`: stdout, instead of the table).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// End to end: the daemon on replays of every sensor at real time against a local
    /// mosquitto, then the audio stream alone at full speed.
    #[arg(long)]
    pub e2e: bool,
    /// With --e2e: measuring time of the full-speed audio phase (default: a third of
    /// --duration, at least 3 s).
    #[arg(long, value_parser = parse_duration)]
    pub max_speed_duration: Option<Duration>,
    /// Modalities to measure (default: every one in the model set).
    #[arg(long, value_delimiter = ',')]
    pub modalities: Vec<ModalityArg>,
    /// Largest batch size tried (1, 2, 4, … up to this).
    #[arg(long, default_value_t = 32, value_parser = limits::flags::max_batch)]
    pub max_batch: usize,
    /// ONNX Runtime intra-op threads per session (the daemon's `runtime.intra_threads`).
    #[arg(long, default_value_t = 1, value_parser = limits::flags::intra_threads)]
    pub intra_threads: usize,
    /// The bundled recordings (default: tests/fixtures/recordings of the repository; synthetic
    /// inputs when not found).
    #[arg(long)]
    pub recordings: Option<PathBuf>,
    /// libonnxruntime to load (ORT_DYLIB_PATH wins).
    #[arg(long)]
    pub ort_library: Option<PathBuf>,
}

/// A one-line progress bar on stderr, drawn only when stderr is a terminal.
struct Progress {
    enabled: bool,
    start: Instant,
    expected_s: f64,
    last: Option<Instant>,
}

impl Progress {
    fn new(expected: Duration) -> Self {
        Self {
            enabled: std::io::stderr().is_terminal(),
            start: Instant::now(),
            expected_s: expected.as_secs_f64().max(1.0),
            last: None,
        }
    }

    fn update(&mut self, phase: &str) {
        if !self.enabled
            || self
                .last
                .is_some_and(|t| t.elapsed() < Duration::from_millis(100))
        {
            return;
        }
        self.last = Some(Instant::now());
        let fraction = (self.start.elapsed().as_secs_f64() / self.expected_s).min(0.99);
        const WIDTH: usize = 30;
        let done = (fraction * WIDTH as f64) as usize;
        let bar: String = "#".repeat(done) + &"-".repeat(WIDTH - done);
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K[{bar}] {:3.0}%  {phase}", fraction * 100.0);
        let _ = err.flush();
    }

    fn finish(&self) {
        if self.enabled {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Runs `edgebind bench`; returns the exit code.
///
/// # Errors
/// A missing model set or ONNX Runtime, a failing model, a daemon that does not start.
#[allow(clippy::print_stdout, reason = "the bench reports to the terminal")]
pub fn run(args: BenchArgs) -> Result<i32> {
    let models_dir = find_models(args.models.as_deref());
    let manifest = load_manifest(&models_dir)?;
    let runtime = OrtRuntime::load(args.ort_library.as_deref())?;
    let mut report = new_report(&args, &runtime, &models_dir, &manifest);
    if args.e2e {
        report.e2e = Some(run_e2e(&args, &runtime, &models_dir)?);
    } else {
        report.modalities = run_micro(&args, &runtime, &models_dir)?;
    }
    let json = serde_json::to_string_pretty(&report).context("encoding the report")?;
    match args.json.as_deref() {
        Some(p) if p == Path::new("-") => println!("{json}"),
        Some(p) => {
            std::fs::write(p, format!("{json}\n"))
                .with_context(|| format!("writing {}", p.display()))?;
            print!("{}", render_table(&report));
        }
        None => print!("{}", render_table(&report)),
    }
    Ok(0)
}

fn providers(args: &BenchArgs) -> Vec<ExecutionProviderKind> {
    args.providers.iter().map(|p| (*p).into()).collect()
}

/// The report's header: what ran where; the figures are added by the run.
fn new_report(
    args: &BenchArgs,
    runtime: &OrtRuntime,
    models_dir: &Path,
    manifest: &Manifest,
) -> BenchReport {
    let started_unix_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    BenchReport {
        version: REPORT_VERSION,
        mode: if args.e2e {
            "end_to_end"
        } else {
            "per_modality"
        },
        edgebind_version: env!("CARGO_PKG_VERSION"),
        build_profile: bench::build_profile(),
        started_unix_s,
        system: SystemInfo::detect(),
        onnxruntime: OrtInfo {
            version: runtime.version.clone(),
            library: runtime.library.display().to_string(),
        },
        models: ModelsInfo {
            dir: models_dir.display().to_string(),
            name: manifest.name.clone(),
        },
        providers_requested: providers(args).iter().map(|p| p.as_str()).collect(),
        intra_threads: args.intra_threads.max(1),
        duration_s: args.duration.as_secs_f64(),
        modalities: Vec::new(),
        e2e: None,
    }
}

/// `--e2e`: the daemon end to end, with progress.
fn run_e2e(args: &BenchArgs, runtime: &OrtRuntime, models_dir: &Path) -> Result<E2eReport> {
    let max_speed_duration = args
        .max_speed_duration
        .unwrap_or_else(|| (args.duration / 3).max(Duration::from_secs(3)));
    let options = E2eOptions {
        daemon: std::env::current_exe().context("finding this executable to run as the daemon")?,
        ort_library: runtime.library.clone(),
        // The daemon resolves paths against its config file's directory.
        models_dir: absolute(models_dir),
        providers: providers(args),
        intra_threads: args.intra_threads.max(1),
        duration: args.duration,
        max_speed_duration,
        recordings: args.recordings.as_deref().map(absolute),
    };
    let expected = args.duration + max_speed_duration + Duration::from_secs(16);
    let mut progress = Progress::new(expected);
    let result = bench::e2e::run(&options, &mut |p| progress.update(p));
    progress.finish();
    Ok(result?)
}

/// Per modality: preprocessing and inference of each encoder, with progress.
fn run_micro(
    args: &BenchArgs,
    runtime: &OrtRuntime,
    models_dir: &Path,
) -> Result<Vec<ModalityResult>> {
    let modalities = args
        .modalities
        .iter()
        .map(|m| {
            m.sensor().ok_or_else(|| {
                anyhow::anyhow!(
                    "--modalities: text has no sensor window to bench (use `embed` to time it)"
                )
            })
        })
        .collect::<Result<_>>()?;
    let options = MicroOptions {
        models_dir: models_dir.to_path_buf(),
        providers: providers(args),
        duration: args.duration,
        intra_threads: args.intra_threads.max(1),
        modalities,
        max_batch: args.max_batch.max(1),
        recordings: args.recordings.clone(),
    };
    let mut progress = Progress::new(args.duration);
    let result = bench::run_micro(runtime, &options, &mut |p| progress.update(p));
    progress.finish();
    Ok(result?)
}

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn pair(a: f64, b: f64) -> String {
    format!("{} / {}", ms(a), ms(b))
}

fn latency_cells(l: Option<&Latency>) -> String {
    l.map_or_else(
        || format!("{:>10} {:>10}", "-", "-"),
        |l| format!("{:>10} {:>10}", ms(l.p50_ms), ms(l.p99_ms)),
    )
}

/// The human-readable report.
#[must_use]
pub fn render_table(r: &BenchReport) -> String {
    let mut out = String::new();
    let s = &r.system;
    out.push_str(&format!(
        "machine: {} ({} cores, {}), GPU: {}, power mode: {}\n",
        s.cpu_model, s.cpu_cores, s.arch, s.gpu_model, s.power_mode
    ));
    out.push_str(&format!(
        "ONNX Runtime {} ({}), models: {} ({}), {} build, intra-op threads {}\n\n",
        r.onnxruntime.version,
        r.onnxruntime.library,
        r.models.name,
        r.models.dir,
        r.build_profile,
        r.intra_threads
    ));
    if !r.modalities.is_empty() {
        out.push_str("per modality, median / p99 over warm runs:\n");
        out.push_str(&format!(
            "{:<8} {:<9} {:>17} {:>17} {:>6} {:>19} {:>19}\n",
            "modality",
            "provider",
            "preprocess ms",
            "infer b1 ms",
            "best b",
            "infer ms @best",
            "windows/s"
        ));
        for m in &r.modalities {
            out.push_str(&format!(
                "{:<8} {:<9} {:>17} {:>17} {:>6} {:>19} {:>19}\n",
                m.modality.as_str(),
                m.provider,
                pair(m.preprocess.median_ms, m.preprocess.p99_ms),
                pair(m.inference_batch1.median_ms, m.inference_batch1.p99_ms),
                m.best_batch,
                pair(
                    m.inference_best_batch.median_ms,
                    m.inference_best_batch.p99_ms
                ),
                format!(
                    "{:.0} / {:.0}",
                    m.throughput.median_per_s, m.throughput.p99_per_s
                ),
            ));
        }
        out.push_str("(windows/s: preprocessing and inference on two threads, batches up to the best size; p99 = slow end)\n");
        for m in &r.modalities {
            out.push_str(&format!(
                "  {}: {}; batch sweep stopped: {}\n",
                m.modality, m.input, m.batch_limit
            ));
        }
    }
    if let Some(e) = &r.e2e {
        render_e2e(&mut out, e, &r.models.name);
    }
    out
}

fn thread_cells(t: &std::collections::BTreeMap<String, f64>) -> String {
    t.iter()
        .filter(|(_, v)| **v > 0.0)
        .map(|(k, v)| format!("{k} {v:.1}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The manifest name of the bundled stand-in models, the set the e2e targets are for.
const TINY_MODEL_SET: &str = "edgebind-tiny";

fn render_e2e(out: &mut String, e: &E2eReport, models_name: &str) {
    let rt = &e.realtime;
    out.push_str(&format!(
        "end to end, real time: {} sensors, one window per sensor per second, {:.1} s measured, {} windows\n",
        rt.sensors.len(),
        rt.measured_s,
        rt.windows
    ));
    for s in &rt.sensors {
        out.push_str(&format!("  {:<8} {}\n", s.name, s.source));
    }
    out.push_str(&format!(
        "daemon CPU        {:.2} % of one core (inference {:.2} %, beyond inference {:.2} %; resolution {:.2} %)\n",
        rt.daemon_cpu_percent, rt.inference_cpu_percent, rt.cpu_beyond_inference_percent, rt.cpu_resolution_percent
    ));
    out.push_str(&format!(
        "peak RSS          {:.1} MiB ({} threads)\n",
        rt.peak_rss_mib, rt.threads
    ));
    out.push_str(&format!(
        "thread CPU %      {}\n",
        thread_cells(&rt.thread_cpu_percent)
    ));
    out.push_str(&format!("latency, ms       {:>10} {:>10}\n", "p50", "p99"));
    for (stage, l) in &rt.latency {
        out.push_str(&format!("  {stage:<15} {}\n", latency_cells(l.as_ref())));
    }
    out.push_str(&format!(
        "  window end → subscriber, minus inference {}\n",
        latency_cells(rt.end_to_delivery_excluding_inference.as_ref())
    ));
    let drops: u64 = rt.drops.values().sum();
    out.push_str(&format!("drops             {drops}\n"));
    let m = &e.max_speed;
    out.push_str(&format!(
        "\nmax speed, audio alone: {:.1} windows/s sustained, daemon CPU {:.0} %, bottleneck {} \
         (inference alone would allow {:.1}/s), drops {}\n",
        m.windows_per_s,
        m.daemon_cpu_percent,
        m.bottleneck,
        m.inference_bound_windows_per_s,
        m.drops
    ));
    let means: Vec<String> = m
        .stage_mean_ms
        .iter()
        .map(|(k, v)| format!("{k} {}", ms(*v)))
        .collect();
    out.push_str(&format!(
        "  mean ms per window: {} (stage latency; a batch's run counts for each of its windows), \
         inference CPU {}\n",
        means.join(", "),
        ms(m.inference_cpu_ms_per_window)
    ));
    out.push_str(&format!(
        "  thread CPU %: {}\n",
        thread_cells(&m.thread_cpu_percent)
    ));
    out.push_str("\ntargets (2-core x86, tiny models):\n");
    if models_name != TINY_MODEL_SET {
        out.push_str(&format!(
            "  (this run used the model set {models_name:?}: the targets are set for {TINY_MODEL_SET:?} and shown for reference only)\n"
        ));
    }
    for t in &e.targets {
        out.push_str(&format!(
            "  {:<45} {:>10.3}  target {:<50} {}\n",
            t.name,
            t.measured,
            t.target,
            if t.met { "met" } else { "NOT MET" }
        ));
    }
}
