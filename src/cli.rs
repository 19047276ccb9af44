//! The command line: `run`, `check`, `demo`, `preprocess`, `embed`. Errors are reported here,
//! once, with their context; configuration errors exit with 78 (EX_CONFIG).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use ndarray::{Array2, ArrayD};

use crate::app::{self, RunOptions};
use crate::config::{
    self, ConfigError, DepthHoles, DepthNormalizeKind, DepthPreprocessConfig,
    ExecutionProviderKind, Radiometric, ThermalAgc, ThermalPreprocessConfig, EX_CONFIG,
};
use crate::inference::{Encoder, OrtRuntime};
use crate::pipeline::stream::{depth_params, thermal_params};
use crate::preprocess::audio::{AudioParams, AudioPreprocessor};
use crate::preprocess::depth::DepthPreprocessor;
use crate::preprocess::imu::ImuPreprocessor;
use crate::preprocess::thermal::ThermalPreprocessor;
use crate::sources::audio_replay::load_wav;
use crate::sources::frame_replay::load_stack;
use crate::sources::FrameImage;
use crate::telemetry::init_logging;
use crate::Modality;

mod demo;

/// Sensor-edge embedding daemon: sensors → ImageBind embeddings → MQTT.
#[derive(Debug, Parser)]
#[command(name = "edgebind", version, about)]
pub struct Cli {
    /// Log filter (`error`, `warn`, `info`, `debug`, or `edgebind=debug,…`); RUST_LOG wins.
    #[arg(long, global = true, default_value = "info")]
    pub log: String,
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
        #[arg(long, default_value_t = 10)]
        shutdown_timeout_s: u64,
    },
    /// Validate a configuration file and report every problem (exit 78 if any).
    Check {
        /// Configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the whole pipeline on bundled recordings with the stand-in models and a local broker,
    /// and print what a subscriber receives.
    Demo {
        /// Configuration to run (default: the bundled config/demo.toml).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Write the exact model input for one file as float32 `.npy`.
    Preprocess {
        /// Modality of the input.
        modality: ModalityArg,
        /// Input file (IMU: float32 `.npy` `[6, N]`, rows acc xyz, gyro xyz).
        input: PathBuf,
        /// Output `.npy`.
        #[arg(short, long)]
        output: PathBuf,
        /// Preprocessing options.
        #[command(flatten)]
        options: InputOptions,
    },
    /// Preprocess one file and write the encoder's output `[1, 1024]` as float32 `.npy`.
    Embed {
        /// Modality of the input.
        modality: ModalityArg,
        /// Input file.
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
    },
}

/// Modalities on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModalityArg {
    /// IMU (`.npy` float32 `[6, N]`, with `--rate-hz`).
    Imu,
    /// Thermal (`.npy` uint8 or uint16 `[H, W]`).
    Thermal,
    /// Depth (`.npy` uint16 `[H, W]` in depth units, millimetres by default).
    Depth,
    /// Audio (WAV: any rate and channels; 8/16/24/32-bit integer or 32-bit float).
    Audio,
}

impl From<ModalityArg> for Modality {
    fn from(m: ModalityArg) -> Self {
        match m {
            ModalityArg::Imu => Modality::Imu,
            ModalityArg::Thermal => Modality::Thermal,
            ModalityArg::Depth => Modality::Depth,
            ModalityArg::Audio => Modality::Audio,
        }
    }
}

/// Preprocessing options of the `preprocess` and `embed` commands.
#[derive(Debug, Clone, clap::Args)]
pub struct InputOptions {
    /// Sample rate of an IMU input.
    #[arg(long)]
    pub rate_hz: Option<f64>,
    /// Audio: ImageBind clips taken from the file (its file loader uses 3).
    #[arg(long, default_value_t = 3)]
    pub clips: usize,
    /// Thermal: map this temperature (°C) to black instead of the per-frame minimum.
    #[arg(long, requires = "agc_max_c")]
    pub agc_min_c: Option<f64>,
    /// Thermal: map this temperature (°C) to white instead of the per-frame maximum.
    #[arg(long, requires = "agc_min_c")]
    pub agc_max_c: Option<f64>,
    /// Thermal: how 16-bit pixels encode temperature (with --agc-min-c/--agc-max-c).
    #[arg(long, value_enum, default_value = "centi-kelvin")]
    pub radiometric: RadiometricArg,
    /// Depth: focal length of the depth camera, pixels (default: the reference 518.857901).
    #[arg(long)]
    pub focal_px: Option<f64>,
    /// Depth: stereo baseline, metres (default: the reference 0.075).
    #[arg(long)]
    pub baseline_m: Option<f64>,
    /// Depth: metres per raw unit (default 0.001, millimetres).
    #[arg(long)]
    pub depth_units_m: Option<f64>,
    /// Depth: skip the final standardisation (the `prenorm` alternative of SPEC.md §3).
    #[arg(long)]
    pub no_normalize: bool,
    /// Depth: fill holes (0) from the nearest valid pixel of the row instead of the spec's
    /// maximal disparity.
    #[arg(long)]
    pub fill_holes: bool,
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
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| cli.log.clone());
    init_logging(&filter);
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            if let Some(ce) = e.downcast_ref::<ConfigError>() {
                eprintln!("error: {ce}");
                return EX_CONFIG;
            }
            eprintln!("error: {e:#}");
            1
        }
    }
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
            let cfg = config::load(&config)?;
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
        Command::Check { config } => check(&config),
        Command::Demo { config } => demo::run(config.as_deref()),
        Command::Preprocess {
            modality,
            input,
            output,
            options,
        } => {
            let tensor = preprocess_file(modality.into(), &input, &options)?;
            ndarray_npy::write_npy(&output, &tensor)
                .with_context(|| format!("writing {}", output.display()))?;
            tracing::info!(output = %output.display(), shape = ?tensor.shape(), "model input written");
            Ok(0)
        }
        Command::Embed {
            modality,
            input,
            model,
            output,
            options,
            providers,
            ort_library,
        } => {
            let modality: Modality = modality.into();
            let tensor = preprocess_file(modality, &input, &options)?;
            let runtime = OrtRuntime::load(ort_library.as_deref())?;
            let providers: Vec<ExecutionProviderKind> =
                providers.into_iter().map(Into::into).collect();
            let mut encoder = Encoder::load(&runtime, modality, &model, &providers, false, 1)?;
            let embedding = encoder.run_one(&tensor)?;
            let out = Array2::from_shape_vec((1, embedding.len()), embedding)
                .context("shaping the embedding")?;
            ndarray_npy::write_npy(&output, &out)
                .with_context(|| format!("writing {}", output.display()))?;
            tracing::info!(output = %output.display(), provider = encoder.provider.as_str(), "embedding written");
            Ok(0)
        }
    }
}

#[allow(clippy::print_stdout, reason = "check reports to the terminal")]
fn check(path: &Path) -> Result<i32> {
    match config::load(path) {
        Ok(cfg) => {
            println!(
                "{}: OK ({} source(s), models in {})",
                path.display(),
                cfg.sources.len(),
                cfg.resolve(&cfg.models.dir).display()
            );
            Ok(0)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(EX_CONFIG)
        }
    }
}

/// ImageBind's default IMU window.
const IMU_WINDOW_MS: f64 = 5000.0;

fn preprocess_file(
    modality: Modality,
    input: &Path,
    options: &InputOptions,
) -> Result<ArrayD<f32>> {
    match modality {
        Modality::Imu => {
            let Some(rate) = options.rate_hz else {
                bail!("--rate-hz is required for IMU input");
            };
            if !(rate.is_finite() && rate > 0.0) {
                bail!("--rate-hz must be a positive number");
            }
            let x: Array2<f32> = ndarray_npy::read_npy(input)
                .with_context(|| format!("{}: not a float32 [6, N] .npy file", input.display()))?;
            let window = (rate * IMU_WINDOW_MS / 1000.0).round() as usize;
            let x = if x.ncols() > window {
                tracing::info!(
                    samples = x.ncols(),
                    used = window,
                    "input is longer than one 5 s window; using the first window"
                );
                x.slice(ndarray::s![.., ..window]).to_owned()
            } else {
                if x.ncols() < window {
                    tracing::warn!(
                        samples = x.ncols(),
                        expected = window,
                        "input is shorter than ImageBind's 5 s window; resampling it whole"
                    );
                }
                x
            };
            Ok(ImuPreprocessor::new()
                .tensor_from_array(&x)
                .with_context(|| format!("{}", input.display()))?
                .into_dyn())
        }
        Modality::Thermal => {
            let stack = load_stack(input)?;
            if stack.len() > 1 {
                tracing::info!(
                    frames = stack.len(),
                    "input holds several frames; using the first"
                );
            }
            let cfg = ThermalPreprocessConfig {
                agc: if options.agc_min_c.is_some() {
                    ThermalAgc::FixedCelsius
                } else {
                    ThermalAgc::MinMax
                },
                agc_min_c: options.agc_min_c,
                agc_max_c: options.agc_max_c,
                radiometric: match options.radiometric {
                    RadiometricArg::CentiKelvin => Radiometric::CentiKelvin,
                    RadiometricArg::Infiray64 => Radiometric::Infiray64,
                },
                ..ThermalPreprocessConfig::default()
            };
            let mut pre = ThermalPreprocessor::new(thermal_params(&cfg))
                .with_context(|| "thermal preprocessing options")?;
            let tensor = match stack.frame(0) {
                Some(FrameImage::U8(a)) => pre.tensor_u8(a.view()),
                Some(FrameImage::U16(a)) => pre.tensor_u16(a.view()),
                None => bail!("{}: no frame", input.display()),
            }
            .with_context(|| format!("{}", input.display()))?;
            Ok(tensor.into_dyn())
        }
        Modality::Depth => {
            let stack = load_stack(input)?;
            let Some(FrameImage::U16(raw)) = stack.frame(0) else {
                bail!("{}: depth input must be uint16 [H, W]", input.display());
            };
            if stack.len() > 1 {
                tracing::info!(
                    frames = stack.len(),
                    "input holds several frames; using the first"
                );
            }
            let cfg = DepthPreprocessConfig {
                focal_px: options.focal_px,
                baseline_m: options.baseline_m,
                depth_units_m: options.depth_units_m,
                normalize: if options.no_normalize {
                    DepthNormalizeKind::None
                } else {
                    DepthNormalizeKind::Standardize
                },
                holes: if options.fill_holes {
                    DepthHoles::NearestInRow
                } else {
                    DepthHoles::Spec
                },
                ..DepthPreprocessConfig::default()
            };
            let mut pre = DepthPreprocessor::new(depth_params(&cfg, None))
                .with_context(|| "depth preprocessing options")?;
            Ok(pre
                .tensor(raw.view())
                .with_context(|| format!("{}", input.display()))?
                .into_dyn())
        }
        Modality::Audio => {
            let audio = load_wav(input)?;
            let mut pre = AudioPreprocessor::new(AudioParams::default())
                .with_context(|| "audio preprocessing options")?;
            Ok(pre
                .file_tensor(&audio.planar, audio.sample_rate_hz, options.clips)
                .with_context(|| format!("{}", input.display()))?
                .into_dyn())
        }
    }
}
