//! `edgebind doctor`: what GPU stack this machine has, which execution providers the ONNX
//! Runtime library can register, and where each configured model actually runs (loaded exactly
//! as `edgebind run` loads it: load steps, engine cache, warm-up, parity check). With `--unit`,
//! the same warm-up also runs inside the unit's systemd sandbox and the two are compared.

mod probe;
pub mod sandbox;
pub mod stack;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;

use crate::config::{self, Config, ExecutionProviderKind};
use crate::inference::plan::ProviderOptions;
use crate::inference::{load_model_set, GpuStack, LoadOptions, OrtRuntime};
use crate::Modality;
use stack::{L4t, Support};

/// `edgebind doctor` arguments.
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Configuration file.
    #[arg(long, short)]
    pub config: PathBuf,
    /// Also run the warm-up inside this systemd unit's sandbox (`systemd-run` with its
    /// `[Service]` settings) and report every difference from a plain run.
    #[arg(long)]
    pub unit: Option<PathBuf>,
    /// Print the warm-up as one JSON line (what `--unit` runs on both sides).
    #[arg(long, hide = true)]
    pub probe: bool,
}

/// Whether an execution provider can be registered here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderState {
    /// Registers.
    Loads,
    /// Not compiled into this ONNX Runtime library.
    NotBuilt,
    /// Compiled in, but registering it failed (its libraries are missing, …).
    Fails(String),
}

/// One model as the doctor loaded it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelLine {
    /// The modality.
    pub modality: Modality,
    /// The load step it runs at.
    pub step: String,
    /// Nodes per provider.
    pub nodes: String,
    /// The parity check's lowest cosine.
    pub parity: Option<f64>,
    /// Why earlier steps were left.
    pub left: Vec<String>,
}

/// Everything the doctor found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The ONNX Runtime library and its version (`Err`: it could not be loaded).
    pub ort: Result<(PathBuf, String), String>,
    /// The Jetson Linux release (`None`: not a Jetson).
    pub l4t: Option<L4t>,
    /// TensorRT, CUDA, cuDNN, module.
    pub gpu: GpuStack,
    /// GPU device nodes present.
    pub gpu_nodes: Vec<&'static str>,
    /// `runtime.execution_providers`.
    pub configured: Vec<ExecutionProviderKind>,
    /// Each of TensorRT, CUDA and CPU.
    pub providers: Vec<(ExecutionProviderKind, ProviderState)>,
    /// `runtime.tensorrt.max_workspace_bytes`.
    pub workspace_bytes: u64,
    /// The engine cache directory.
    pub cache_dir: PathBuf,
    /// The models (`Err`: why the model set could not be loaded).
    pub models: Result<Vec<ModelLine>, String>,
    /// How long loading the models took.
    pub load_s: f64,
}

/// Runs `edgebind doctor`; exit 0 when every model loaded (and, with `--unit`, the sandboxed
/// warm-up matched the plain one), 1 otherwise.
///
/// # Errors
/// The configuration cannot be read.
#[allow(clippy::print_stdout, reason = "doctor reports to the terminal")]
pub fn run(args: &DoctorArgs) -> Result<i32> {
    let cfg = config::load(&args.config)?;
    if args.probe {
        println!("{}", serde_json::to_string(&probe::probe(&cfg))?);
        return Ok(0);
    }
    println!("edgebind doctor: {}\n", args.config.display());
    crate::service::status("doctor: loading the models");
    let report = gather(&cfg);
    print!("{}", render(&report));
    let mut ok = report.models.is_ok();
    if let Some(unit) = &args.unit {
        let (text, same) = probe::compare_with_unit(&args.config, unit)?;
        print!("{text}");
        ok &= same;
    }
    Ok(if ok { 0 } else { 1 })
}

fn load_runtime(cfg: &Config) -> Result<OrtRuntime, String> {
    let library = cfg.runtime.library_path.as_ref().map(|p| cfg.resolve(p));
    OrtRuntime::load(library.as_deref()).map_err(|e| e.to_string())
}

/// Looks at the machine, the library and the models.
fn gather(cfg: &Config) -> Report {
    let runtime = load_runtime(cfg);
    let gpu = runtime
        .as_ref()
        .map_or_else(|_| GpuStack::default(), |r| GpuStack::detect(&r.library));
    let l4t = std::fs::read_to_string("/etc/nv_tegra_release")
        .ok()
        .and_then(|t| L4t::parse(&t));
    let opts = LoadOptions::from_config(cfg);
    let started = Instant::now();
    let (providers, models) = match &runtime {
        Ok(rt) => (
            provider_states(rt),
            load_model_set(rt, &cfg.resolve(&cfg.models.dir), &cfg.modalities(), &opts)
                .map(|set| {
                    set.encoders
                        .into_iter()
                        .map(|(modality, l)| ModelLine {
                            modality,
                            step: l.encoder.step.to_string(),
                            nodes: l.encoder.placement.describe(),
                            parity: l.parity.map(|p| p.min_cosine),
                            left: l.encoder.fallback_reasons,
                        })
                        .collect()
                })
                .map_err(|e| e.to_string()),
        ),
        Err(e) => (Vec::new(), Err(e.clone())),
    };
    Report {
        ort: runtime.map(|r| {
            let library = std::fs::canonicalize(&r.library).unwrap_or_else(|_| r.library.clone());
            (library, r.version.clone())
        }),
        l4t,
        gpu,
        gpu_nodes: stack::present_gpu_nodes(Path::new("/")),
        configured: cfg.runtime.execution_providers.clone(),
        providers,
        workspace_bytes: cfg.runtime.tensorrt.max_workspace_bytes.0,
        cache_dir: opts.tensorrt_cache_dir,
        models,
        load_s: started.elapsed().as_secs_f64(),
    }
}

/// Registers each provider alone on a session builder (no model): what fails here is the
/// provider library or what it links (libnvinfer, libcudart, libcudnn, libcublas).
fn provider_states(runtime: &OrtRuntime) -> Vec<(ExecutionProviderKind, ProviderState)> {
    use ort::ep::ExecutionProvider as _;
    [ExecutionProviderKind::Tensorrt, ExecutionProviderKind::Cuda]
        .into_iter()
        .map(|kind| {
            let built = match kind {
                ExecutionProviderKind::Tensorrt => ort::ep::TensorRT::is_available(),
                _ => ort::ep::CUDA::is_available(),
            };
            if !built.unwrap_or(false) {
                return (kind, ProviderState::NotBuilt);
            }
            let options = ProviderOptions {
                kind,
                options: vec![("device_id", "0".to_string())],
            };
            let registered = ort::session::Session::builder(&runtime.env).and_then(|b| {
                b.with_execution_providers(options.dispatch().into_iter().collect::<Vec<_>>())
                    .map(|_| ())
                    .map_err(ort::Error::from)
            });
            let state = match registered {
                Ok(()) => ProviderState::Loads,
                Err(e) => ProviderState::Fails(e.to_string()),
            };
            (kind, state)
        })
        .chain(std::iter::once((
            ExecutionProviderKind::Cpu,
            ProviderState::Loads,
        )))
        .collect()
}

fn or_not_found(v: Option<&String>) -> String {
    v.cloned().unwrap_or_else(|| "not found".into())
}

/// The report as printed.
#[must_use]
pub fn render(r: &Report) -> String {
    let mut o = String::from("GPU stack\n");
    let row = |o: &mut String, k: &str, v: &str| {
        let _ = writeln!(o, "  {k:<14}{v}");
    };
    match &r.ort {
        Ok((lib, version)) => row(
            &mut o,
            "ONNX Runtime",
            &format!("{version} ({})", lib.display()),
        ),
        Err(e) => row(&mut o, "ONNX Runtime", &format!("not loaded: {e}")),
    }
    let jetpack = r.l4t.map_or_else(
        || "not a Jetson (no /etc/nv_tegra_release)".to_string(),
        |l| {
            let (jp, support) = stack::jetpack(l);
            let verdict = match support {
                Support::Supported => "supported".to_string(),
                Support::Unsupported(why) => format!("not supported: {why}"),
                Support::Untested(why) => format!("untested: {why}"),
            };
            format!("{jp} (Jetson Linux {}): {verdict}", l.version())
        },
    );
    row(&mut o, "JetPack", &jetpack);
    row(&mut o, "Module", &or_not_found(r.gpu.module.as_ref()));
    row(&mut o, "TensorRT", &or_not_found(r.gpu.tensorrt.as_ref()));
    row(&mut o, "CUDA runtime", &or_not_found(r.gpu.cuda.as_ref()));
    row(&mut o, "cuDNN", &or_not_found(r.gpu.cudnn.as_ref()));
    let nodes = if r.gpu_nodes.is_empty() {
        "none (no /dev/nvmap, /dev/nvgpu/igpu0/*, /dev/nvidia0)".to_string()
    } else {
        r.gpu_nodes.join(", ")
    };
    row(&mut o, "GPU devices", &nodes);

    o.push_str("\nExecution providers (registered alone, no model)\n");
    for (kind, state) in &r.providers {
        let listed = if r.configured.contains(kind) {
            ""
        } else {
            " (not in runtime.execution_providers)"
        };
        let text = match state {
            ProviderState::Loads => "loads".to_string(),
            ProviderState::NotBuilt => "not in this ONNX Runtime build".to_string(),
            ProviderState::Fails(e) => format!("fails: {e}"),
        };
        let _ = writeln!(o, "  {:<10}{text}{listed}", kind.as_str());
    }
    if r.configured.contains(&ExecutionProviderKind::Tensorrt) {
        let _ = writeln!(
            o,
            "  TensorRT workspace limit {}, engine cache {}",
            stack::human_bytes(r.workspace_bytes),
            r.cache_dir.display()
        );
    }
    render_models(&mut o, r);
    o
}

fn render_models(o: &mut String, r: &Report) {
    let _ = writeln!(
        o,
        "\nModels (loaded as `edgebind run` loads them: {:.1} s)",
        r.load_s
    );
    let models = match &r.models {
        Ok(m) => m,
        Err(e) => {
            let _ = writeln!(o, "  not loaded: {e}");
            return;
        }
    };
    if models.is_empty() {
        o.push_str("  none (no source is configured)\n");
    }
    for m in models {
        let parity = m.parity.map_or("no parity reference".to_string(), |c| {
            format!("parity cosine {c:.4}")
        });
        let _ = writeln!(
            o,
            "  {:<8}step {}, nodes: {}, {parity}",
            m.modality.as_str(),
            m.step,
            m.nodes
        );
        for why in &m.left {
            let _ = writeln!(o, "  {:<8}  left {why}", "");
        }
    }
    let on_cpu: Vec<&str> = models
        .iter()
        .filter(|m| m.step == "cpu")
        .map(|m| m.modality.as_str())
        .collect();
    let wants_gpu = r
        .configured
        .iter()
        .any(|p| *p != ExecutionProviderKind::Cpu);
    if wants_gpu && !on_cpu.is_empty() {
        let _ = writeln!(
            o,
            "  On the CPU although a GPU provider is configured: {}",
            on_cpu.join(", ")
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            ort: Ok((
                PathBuf::from("/usr/lib/edgebind/libonnxruntime.so.1.23.0"),
                "1.23.0".into(),
            )),
            l4t: L4t::parse("# R36 (release), REVISION: 4.3, GCID: 1"),
            gpu: GpuStack {
                tensorrt: Some("10.3.0".into()),
                cuda: Some("12.6.68".into()),
                cudnn: Some("9.3.0".into()),
                module: Some("NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super".into()),
            },
            gpu_nodes: vec!["/dev/nvmap", "/dev/nvgpu/igpu0/ctrl"],
            configured: vec![
                ExecutionProviderKind::Tensorrt,
                ExecutionProviderKind::Cuda,
                ExecutionProviderKind::Cpu,
            ],
            providers: vec![
                (ExecutionProviderKind::Tensorrt, ProviderState::Loads),
                (
                    ExecutionProviderKind::Cuda,
                    ProviderState::Fails("libcublasLt.so.12: cannot open shared object file".into()),
                ),
                (ExecutionProviderKind::Cpu, ProviderState::Loads),
            ],
            workspace_bytes: 1 << 30,
            cache_dir: PathBuf::from("/var/cache/edgebind/tensorrt"),
            models: Ok(vec![
                ModelLine {
                    modality: Modality::Imu,
                    step: "tensorrt-fp32".into(),
                    nodes: "tensorrt 1".into(),
                    parity: Some(0.999_987),
                    left: vec![
                        "tensorrt-fp16: output disagrees with the reference imu.npy (cosine 0.9012 < 0.999)".into(),
                    ],
                },
                ModelLine {
                    modality: Modality::Audio,
                    step: "cpu".into(),
                    nodes: "cpu 412".into(),
                    parity: None,
                    left: Vec::new(),
                },
            ]),
            load_s: 83.456,
        }
    }

    #[test]
    fn the_report_names_the_stack_each_provider_and_where_each_model_runs() {
        let text = render(&report());
        let want = [
            "  ONNX Runtime  1.23.0 (/usr/lib/edgebind/libonnxruntime.so.1.23.0)",
            "  JetPack       6.2 (Jetson Linux 36.4.3): supported",
            "  TensorRT      10.3.0",
            "  cuDNN         9.3.0",
            "  GPU devices   /dev/nvmap, /dev/nvgpu/igpu0/ctrl",
            "  tensorrt  loads",
            "  cuda      fails: libcublasLt.so.12: cannot open shared object file",
            "  TensorRT workspace limit 1 GiB, engine cache /var/cache/edgebind/tensorrt",
            "Models (loaded as `edgebind run` loads them: 83.5 s)",
            "  imu     step tensorrt-fp32, nodes: tensorrt 1, parity cosine 1.0000",
            "            left tensorrt-fp16: output disagrees with the reference imu.npy (cosine 0.9012 < 0.999)",
            "  audio   step cpu, nodes: cpu 412, no parity reference",
            "  On the CPU although a GPU provider is configured: audio",
        ];
        for line in want {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
        assert!(!text.contains("{:?}") && !text.contains("Some("), "{text}");
    }

    #[test]
    fn a_machine_without_a_gpu_and_a_failed_load_are_said_plainly() {
        let r = Report {
            l4t: None,
            gpu: GpuStack::default(),
            gpu_nodes: Vec::new(),
            configured: vec![ExecutionProviderKind::Cpu],
            providers: vec![
                (ExecutionProviderKind::Tensorrt, ProviderState::NotBuilt),
                (ExecutionProviderKind::Cuda, ProviderState::NotBuilt),
                (ExecutionProviderKind::Cpu, ProviderState::Loads),
            ],
            models: Err("/m/manifest.json: cannot be read".into()),
            ..report()
        };
        let text = render(&r);
        for line in [
            "  JetPack       not a Jetson (no /etc/nv_tegra_release)",
            "  TensorRT      not found",
            "  GPU devices   none (no /dev/nvmap, /dev/nvgpu/igpu0/*, /dev/nvidia0)",
            "  tensorrt  not in this ONNX Runtime build (not in runtime.execution_providers)",
            "  not loaded: /m/manifest.json: cannot be read",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
        assert!(!text.contains("workspace"), "{text}");
    }
}
