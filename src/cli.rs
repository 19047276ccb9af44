//! The command line: `run`, `check`, `warm`, `doctor`, `devices`, `demo`, `preprocess`, `embed`,
//! `concepts`, `bench`. Errors are reported here, once, with their context; configuration errors
//! exit with 78 (EX_CONFIG).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use crate::app::{self, RunOptions};
use crate::config::{self, limits, ConfigError, ExecutionProviderKind, EX_CONFIG};
use crate::telemetry::init_logging;
use crate::Modality;

mod bench;
mod check;
pub mod concepts;
mod demo;
mod devices;
pub mod doctor;
pub mod embed;
pub mod triggers;

pub use bench::BenchArgs;

/// Sensor-edge embedding daemon: sensors → ImageBind embeddings → MQTT.
#[derive(Debug, Parser)]
#[command(name = "edgebind", version, about)]
pub struct Cli {
    /// Log filter (`error`, `warn`, `info`, `debug`, or `edgebind=debug,…`); RUST_LOG wins.
    /// Default: `info`, `error` for `check` (its report says what the log would).
    #[arg(long, global = true)]
    pub log: Option<String>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon.
    Run {
        /// Configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Longest clean stop before what is left is abandoned.
        #[arg(long, default_value_t = 10, value_parser = limits::flags::shutdown_timeout_s)]
        shutdown_timeout_s: u64,
    },
    /// Validate a configuration file and report every problem (exit 78 if any).
    Check {
        /// Configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Also open every configured device (and recording) briefly, as `run` opens it, and
        /// report whether it opened (exit 1 when one does not).
        #[arg(long)]
        devices: bool,
        /// With `--devices`: longest wait for one device to open.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=120))]
        device_timeout_s: u64,
    },
    /// Load every model the configured sources need exactly as `run` does (providers in order, TensorRT
    /// engines built into the cache, warm-up, parity check), report, and exit: pre-builds the
    /// engines so that the service starts fast.
    Warm {
        /// Configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// What GPU stack is here, which execution providers load, and where each configured model
    /// runs (loaded as `run` loads it); `--unit` repeats the warm-up inside a systemd unit's
    /// sandbox and reports every difference. Exit 1 when a model does not load or the sandbox
    /// differs.
    Doctor(doctor::DoctorArgs),
    /// Run the whole pipeline on bundled recordings with the stand-in models and a local broker,
    /// and print what a subscriber receives.
    Demo {
        /// Configuration to run (default: the bundled config/demo.toml).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Write the exact model input for one file as `.npy` (float32; text: int64 token ids).
    Preprocess {
        /// Modality of the input.
        modality: ModalityArg,
        /// Input file (see the modalities), or the text itself.
        input: PathBuf,
        /// Output `.npy`.
        #[arg(short, long)]
        output: PathBuf,
        /// Preprocessing options.
        #[command(flatten)]
        options: InputOptions,
    },
    /// Preprocess one input and write the encoder's output `[N, 1024]` as float32 `.npy` (N = 1,
    /// or one row per text line).
    Embed {
        /// Modality of the input.
        modality: ModalityArg,
        /// Input file (see the modalities), or the text itself.
        input: PathBuf,
        /// The ONNX encoder.
        #[arg(long)]
        model: PathBuf,
        /// Output `.npy`.
        #[arg(short, long)]
        output: PathBuf,
        /// Preprocessing options.
        #[command(flatten)]
        options: InputOptions,
        /// Execution providers to try, in order.
        #[arg(long, value_delimiter = ',', default_value = "cpu")]
        providers: Vec<ProviderArg>,
        /// libonnxruntime to load (ORT_DYLIB_PATH wins).
        #[arg(long)]
        ort_library: Option<PathBuf>,
        /// ONNX Runtime intra-op threads.
        #[arg(long, default_value_t = 1, value_parser = limits::flags::intra_threads)]
        threads: usize,
    },
    /// Concepts as words: build a bank with the model set's text encoder, or print the
    /// concepts nearest to an input file.
    #[command(subcommand)]
    Concepts(concepts::ConceptsCommand),
    /// Trigger example sets: `remember` makes one from published embedding messages.
    #[command(subcommand)]
    Triggers(triggers::TriggersCommand),
    /// Measure what this device and model set sustain: per modality (preprocessing, inference
    /// at batch 1 and the best batch, throughput), or with --e2e the daemon end to end.
    Bench(BenchArgs),
    /// List the sensors, ONNX Runtime and GPU of this machine, each sensor with a `[[sources]]`
    /// block to paste into the configuration.
    Devices(devices::DevicesArgs),
}

/// A modality on the command line: a sensor modality of the table, or text (the concept
/// bank's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModalityArg {
    /// A sensor modality: what its files are is in the table (`ModalitySpec::file_input`).
    Sensor(Modality),
    /// Text: the text itself, a UTF-8 file (one text per line), or int64 token ids `.npy`.
    Text,
}

/// Every modality of the table, then text.
const MODALITY_ARGS: [ModalityArg; Modality::ALL.len() + 1] = {
    let mut all = [ModalityArg::Text; Modality::ALL.len() + 1];
    let mut i = 0;
    while i < Modality::ALL.len() {
        all[i] = ModalityArg::Sensor(Modality::ALL[i]);
        i += 1;
    }
    all
};

impl ModalityArg {
    /// The daemon's modality; `None` for text, which only the concept bank uses.
    #[must_use]
    pub fn sensor(self) -> Option<Modality> {
        match self {
            Self::Sensor(m) => Some(m),
            Self::Text => None,
        }
    }
}

impl ValueEnum for ModalityArg {
    fn value_variants<'a>() -> &'a [Self] {
        &MODALITY_ARGS
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(match self {
            Self::Sensor(m) => {
                clap::builder::PossibleValue::new(m.as_str()).help(m.spec().file_input)
            }
            Self::Text => clap::builder::PossibleValue::new("text").help(
                "Text: the text itself, a UTF-8 file (one text per line), or int64 token ids `.npy`",
            ),
        })
    }
}

/// Preprocessing options of the `preprocess` and `embed` commands.
#[derive(Debug, Clone, clap::Args)]
pub struct InputOptions {
    /// Sample rate of an IMU input.
    #[arg(long, value_parser = limits::flags::imu_rate_hz)]
    pub rate_hz: Option<f64>,
    /// Audio: ImageBind clips taken from the file (its file loader uses 3).
    #[arg(long, default_value_t = 3, value_parser = limits::flags::clips)]
    pub clips: usize,
    /// Thermal: map this temperature (°C) to black instead of the per-frame minimum.
    #[arg(long, requires = "agc_max_c", allow_negative_numbers = true, value_parser = limits::flags::celsius)]
    pub agc_min_c: Option<f64>,
    /// Thermal: map this temperature (°C) to white instead of the per-frame maximum.
    #[arg(long, requires = "agc_min_c", allow_negative_numbers = true, value_parser = limits::flags::celsius)]
    pub agc_max_c: Option<f64>,
    /// Thermal: how 16-bit pixels encode temperature (with --agc-min-c/--agc-max-c).
    #[arg(long, value_enum, default_value = "centi-kelvin")]
    pub radiometric: RadiometricArg,
    /// Depth: focal length of the depth camera, pixels (default: the reference 518.857901).
    #[arg(long, value_parser = limits::flags::focal_px)]
    pub focal_px: Option<f64>,
    /// Depth: stereo baseline, metres (default: the reference 0.075).
    #[arg(long, value_parser = limits::flags::baseline_m)]
    pub baseline_m: Option<f64>,
    /// Depth: metres per raw unit (default 0.001, millimetres).
    #[arg(long, value_parser = limits::flags::depth_units_m)]
    pub depth_units_m: Option<f64>,
    /// Depth: skip the final standardisation `(x - 0.0418) / 0.0295` (Omnivore's inference
    /// transform), as Omnivore's training configuration does.
    #[arg(long)]
    pub no_normalize: bool,
    /// Depth: fill holes (0) from the nearest valid pixel of the row instead of the spec's
    /// maximal disparity.
    #[arg(long)]
    pub fill_holes: bool,
    /// Text: CLIP BPE vocabulary (default: `bpe_simple_vocab_16e6.txt.gz` next to the model).
    #[arg(long)]
    pub vocab: Option<PathBuf>,
}

/// Radiometric encodings on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RadiometricArg {
    /// Kelvin × 100 (FLIR Lepton TLinear).
    CentiKelvin,
    /// Kelvin × 64 (InfiRay P2 Pro).
    Infiray64,
}

/// Execution providers on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ProviderArg {
    /// NVIDIA TensorRT.
    Tensorrt,
    /// NVIDIA CUDA.
    Cuda,
    /// CPU.
    Cpu,
}

impl From<ProviderArg> for ExecutionProviderKind {
    fn from(p: ProviderArg) -> Self {
        match p {
            ProviderArg::Tensorrt => Self::Tensorrt,
            ProviderArg::Cuda => Self::Cuda,
            ProviderArg::Cpu => Self::Cpu,
        }
    }
}

/// Parses the arguments, runs the command and returns the process exit code.
#[must_use]
pub fn main() -> i32 {
    let cli = Cli::parse();
    let default_filter = match cli.command {
        Command::Check { .. } => "error",
        _ => "info",
    };
    let filter = std::env::var("RUST_LOG")
        .ok()
        .or_else(|| cli.log.clone())
        .unwrap_or_else(|| default_filter.to_string());
    init_logging(&filter);
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            if let Some(ce) = e.downcast_ref::<ConfigError>() {
                eprintln!("error: {ce}");
                return EX_CONFIG;
            }
            eprintln!("error: {}", one_line(&e));
            1
        }
    }
}

/// An error and its causes on one line, each said once: a cause whose text is already part of
/// the message (a `thiserror` message that quotes its `source`) is not repeated.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("edgebind-rt")
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn dispatch(command: Command) -> Result<i32> {
    match command {
        Command::Run {
            config,
            shutdown_timeout_s,
        } => {
            let cfg = load_checked(&config)?;
            let options = RunOptions {
                shutdown_timeout: Duration::from_secs(shutdown_timeout_s),
            };
            let report = runtime()?.block_on(app::run(cfg, options))?;
            tracing::info!(
                delivered = report.publisher.delivered,
                undelivered = report.publisher.undelivered,
                pipeline_drained = report.pipeline_drained,
                "stopped"
            );
            Ok(i32::from(
                report.publisher.undelivered > 0 || !report.pipeline_drained,
            ))
        }
        Command::Check {
            config,
            devices,
            device_timeout_s,
        } => check::run(
            &config,
            devices.then(|| Duration::from_secs(device_timeout_s)),
        ),
        Command::Warm { config } => warm(&config),
        Command::Doctor(args) => doctor::run(&args),
        Command::Demo { config } => demo::run(config.as_deref()),
        Command::Bench(args) => bench::run(args),
        Command::Concepts(command) => concepts::run(command),
        Command::Triggers(command) => triggers::run(command),
        Command::Devices(args) => devices::run(args),
        Command::Preprocess {
            modality,
            input,
            output,
            options,
        } => embed::preprocess(modality, &input, &output, &options),
        Command::Embed {
            modality,
            input,
            model,
            output,
            options,
            providers,
            ort_library,
            threads,
        } => embed::embed(&embed::EmbedArgs {
            modality,
            input,
            model,
            output,
            options,
            providers,
            ort_library,
            threads,
        }),
    }
}

/// The configuration `run` uses, with every problem `run` would find in it before it loads a
/// model: those of the file, and the windows at the rates of the recordings.
fn load_checked(path: &Path) -> Result<config::Config, ConfigError> {
    let cfg = config::load(path)?;
    let problems = app::recording_problems(&cfg);
    if problems.is_empty() {
        Ok(cfg)
    } else {
        Err(cfg.invalid(problems))
    }
}

#[allow(clippy::print_stdout, reason = "warm reports to the terminal")]
fn warm(path: &Path) -> Result<i32> {
    let cfg = config::load(path)?;
    let models = app::warm(&cfg)?;
    for m in &models {
        let parity = m.parity.map_or("no parity reference".to_string(), |p| {
            match p.threshold_source {
                crate::inference::ThresholdSource::Configuration => {
                    format!("parity cosine {:.6}", p.min_cosine)
                }
                crate::inference::ThresholdSource::Manifest(precision) => format!(
                    "parity cosine {:.6} to fp32 ({} model; accepted from {} on, by its manifest)",
                    p.min_cosine,
                    precision.as_str(),
                    p.threshold
                ),
            }
        });
        println!(
            "{}: {} on {} (step {}, ONNX Runtime {}; nodes: {}), {parity}",
            m.modality,
            m.path.display(),
            m.provider,
            m.step,
            m.ort_version,
            m.nodes
        );
    }
    let total_s = models.first().map_or(0.0, |m| m.load_s);
    println!("{} model(s) warm in {total_s:.1} s", models.len());
    Ok(0)
}
