//! What a session is created with, as data: the providers in registration order with every
//! option ONNX Runtime receives (by its own key names), and the session configuration entries.
//! The ort provider builders are made from this list and nothing else, so asserting the list
//! asserts the session options.

use std::path::Path;

use ort::ep::{ArbitrarilyConfigurableExecutionProvider as _, ExecutionProviderDispatch};

use super::steps::{Precision, Step};
use super::tensorrt::{CacheDirs, Profile};
use crate::config::{CudaConfig, ExecutionProviderKind, TensorrtConfig};

/// ONNX Runtime's session configuration key that refuses any node on the CPU provider.
pub const DISABLE_CPU_FALLBACK: &str = "session.disable_cpu_ep_fallback";

/// One provider and its options, in the order ort passes them to ONNX Runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderOptions {
    /// The provider.
    pub kind: ExecutionProviderKind,
    /// `(ONNX Runtime option key, value)`.
    pub options: Vec<(&'static str, String)>,
}

/// Everything a step's session is created with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPlan {
    /// The step's name.
    pub step: &'static str,
    /// Providers in registration order (the CPU provider is never registered: ONNX Runtime
    /// places what no registered provider takes on it, unless that is disabled).
    pub providers: Vec<ProviderOptions>,
    /// Session configuration entries.
    pub config_entries: Vec<(&'static str, String)>,
}

/// The TensorRT part of a step: the configured options with the step's cache and profile.
#[derive(Debug, Clone, Copy)]
pub struct TensorrtInputs<'a> {
    /// `[runtime.tensorrt]`.
    pub config: &'a TensorrtConfig,
    /// The step's engine and timing caches (`None`: no cache, as `edgebind embed` runs).
    pub cache: Option<&'a CacheDirs>,
    /// The explicit profile, when the step uses one.
    pub profile: Option<&'a Profile>,
}

/// Booleans as ort's own builder methods write them (`with_fp16(true)` → `"true"`).
fn flag(on: bool) -> String {
    on.to_string()
}

fn path_text(p: &Path) -> String {
    p.display().to_string()
}

/// The TensorRT options of a step with `precision` and `excluded` op types.
#[must_use]
pub fn tensorrt_options(
    trt: TensorrtInputs<'_>,
    precision: Precision,
    excluded: &[String],
) -> Vec<(&'static str, String)> {
    let c = trt.config;
    let mut o: Vec<(&'static str, String)> = vec![
        ("device_id", c.device_id.to_string()),
        (
            "trt_max_workspace_size",
            c.max_workspace_bytes.0.to_string(),
        ),
        ("trt_fp16_enable", flag(precision.fp16())),
        ("trt_int8_enable", flag(precision.int8())),
        (
            "trt_builder_optimization_level",
            c.builder_optimization_level.to_string(),
        ),
        ("trt_detailed_build_log", flag(c.detailed_build_log)),
    ];
    if let Some(cache) = trt.cache {
        o.extend([
            ("trt_engine_cache_enable", flag(true)),
            ("trt_engine_cache_path", path_text(&cache.engine_dir)),
            ("trt_timing_cache_enable", flag(true)),
            ("trt_timing_cache_path", path_text(&cache.timing_dir)),
        ]);
    }
    if let Some(core) = c.dla_core.filter(|_| precision != Precision::Fp32) {
        o.extend([
            ("trt_dla_enable", flag(true)),
            ("trt_dla_core", core.to_string()),
        ]);
    }
    if !excluded.is_empty() {
        o.push(("trt_op_types_to_exclude", excluded.join(",")));
    }
    if let Some(p) = trt.profile {
        let (min, opt, max) = p.shapes();
        o.extend([
            ("trt_profile_min_shapes", min),
            ("trt_profile_opt_shapes", opt),
            ("trt_profile_max_shapes", max),
        ]);
    }
    o
}

fn cuda_options(cuda: &CudaConfig) -> Vec<(&'static str, String)> {
    vec![("device_id", cuda.device_id.to_string())]
}

/// The plan of `step`. `disable_cpu_fallback` applies to GPU steps only (ONNX Runtime refuses
/// the option on a session that runs on the CPU provider).
#[must_use]
pub fn plan(
    step: &Step,
    trt: TensorrtInputs<'_>,
    cuda: &CudaConfig,
    disable_cpu_fallback: bool,
) -> SessionPlan {
    let mut providers = Vec::new();
    if let Step::Tensorrt {
        precision,
        excluded_op_types,
        ..
    } = step
    {
        let trt = TensorrtInputs {
            profile: trt.profile.filter(|_| {
                matches!(
                    step,
                    Step::Tensorrt {
                        explicit_profile: true,
                        ..
                    }
                )
            }),
            ..trt
        };
        providers.push(ProviderOptions {
            kind: ExecutionProviderKind::Tensorrt,
            options: tensorrt_options(trt, *precision, excluded_op_types),
        });
    }
    if step.registered().contains(&ExecutionProviderKind::Cuda) {
        providers.push(ProviderOptions {
            kind: ExecutionProviderKind::Cuda,
            options: cuda_options(cuda),
        });
    }
    let mut config_entries = Vec::new();
    if disable_cpu_fallback && step.is_gpu() {
        config_entries.push((DISABLE_CPU_FALLBACK, "1".to_string()));
    }
    SessionPlan {
        step: step.name(),
        providers,
        config_entries,
    }
}

impl SessionPlan {
    /// One line per provider and entry, as logged: `tensorrt: device_id=0, …`.
    #[must_use]
    pub fn render(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .providers
            .iter()
            .map(|p| {
                let opts: Vec<String> = p.options.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("{}: {}", p.kind.as_str(), opts.join(", "))
            })
            .collect();
        lines.extend(self.config_entries.iter().map(|(k, v)| format!("{k}={v}")));
        lines
    }
}

impl ProviderOptions {
    /// The ort provider with exactly these options, failing (not falling back) when it cannot
    /// be registered; `None` for the CPU provider.
    #[must_use]
    pub fn dispatch(&self) -> Option<ExecutionProviderDispatch> {
        match self.kind {
            ExecutionProviderKind::Tensorrt => Some(
                self.options
                    .iter()
                    .fold(ort::ep::TensorRT::default(), |ep, (k, v)| {
                        ep.with_arbitrary_config(k, v)
                    })
                    .build()
                    .error_on_failure(),
            ),
            ExecutionProviderKind::Cuda => Some(
                self.options
                    .iter()
                    .fold(ort::ep::CUDA::default(), |ep, (k, v)| {
                        ep.with_arbitrary_config(k, v)
                    })
                    .build()
                    .error_on_failure(),
            ),
            ExecutionProviderKind::Cpu => None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::ByteSize;
    use crate::inference::gpu_stack::GpuStack;
    use crate::inference::steps::ladder;
    use crate::inference::tensorrt::EngineSpec;
    use crate::Modality;
    use ExecutionProviderKind::{Cpu, Cuda, Tensorrt};

    fn options(plan: &SessionPlan, i: usize) -> Vec<(&'static str, &str)> {
        plan.providers[i]
            .options
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect()
    }

    #[test]
    fn each_step_of_the_default_ladder_registers_tensorrt_then_cuda_with_its_options() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = TensorrtConfig::default();
        let gpu = GpuStack::default();
        let profile = Profile::covering("imu", &[vec![6, 2000]], 4);
        let spec = EngineSpec {
            modality: Modality::Imu,
            sha256: "ab",
            ort_version: "1.23.0",
            gpu: &gpu,
            precision: Precision::Fp16,
            excluded_op_types: &[],
            dla_core: None,
            profile: Some(&profile),
        };
        let cache = CacheDirs::prepare(tmp.path(), &spec).unwrap();
        let inputs = TensorrtInputs {
            config: &cfg,
            cache: Some(&cache),
            profile: Some(&profile),
        };
        let cuda = CudaConfig { device_id: 0 };
        let steps = ladder(&[Tensorrt, Cuda, Cpu], &cfg, false);
        let plans: Vec<SessionPlan> = steps
            .iter()
            .map(|s| plan(s, inputs, &cuda, false))
            .collect();
        let engine_dir = cache.engine_dir.display().to_string();
        let timing_dir = cache.timing_dir.display().to_string();

        // Step 1: TensorRT FP16, explicit profile, 1 GiB workspace, build log on; CUDA second.
        let p = &plans[0];
        assert_eq!(p.step, "tensorrt-fp16");
        let kinds: Vec<_> = p.providers.iter().map(|p| p.kind).collect();
        assert_eq!(kinds, [Tensorrt, Cuda]);
        assert_eq!(
            options(p, 0),
            [
                ("device_id", "0"),
                ("trt_max_workspace_size", "1073741824"),
                ("trt_fp16_enable", "true"),
                ("trt_int8_enable", "false"),
                ("trt_builder_optimization_level", "3"),
                ("trt_detailed_build_log", "true"),
                ("trt_engine_cache_enable", "true"),
                ("trt_engine_cache_path", engine_dir.as_str()),
                ("trt_timing_cache_enable", "true"),
                ("trt_timing_cache_path", timing_dir.as_str()),
                ("trt_profile_min_shapes", "imu:1x6x2000"),
                ("trt_profile_opt_shapes", "imu:1x6x2000"),
                ("trt_profile_max_shapes", "imu:4x6x2000"),
            ]
        );
        assert_eq!(options(p, 1), [("device_id", "0")]);
        assert!(p.config_entries.is_empty());

        // Step 2: FP16 with Softmax left to CUDA and no explicit profile (the graph splits).
        let p = &plans[1];
        assert_eq!(p.step, "tensorrt-fp16-exclude-ops");
        let o = options(p, 0);
        assert!(o.contains(&("trt_op_types_to_exclude", "Softmax")), "{o:?}");
        assert!(o.contains(&("trt_fp16_enable", "true")), "{o:?}");
        assert!(
            !o.iter().any(|(k, _)| k.starts_with("trt_profile")),
            "{o:?}"
        );

        // Step 3: FP32, explicit profile again.
        let o = options(&plans[2], 0);
        assert_eq!(plans[2].step, "tensorrt-fp32");
        assert!(o.contains(&("trt_fp16_enable", "false")));
        assert!(o.contains(&("trt_profile_max_shapes", "imu:4x6x2000")));
        assert!(!o.iter().any(|(k, _)| *k == "trt_op_types_to_exclude"));

        // CUDA alone, then the CPU with nothing registered.
        assert_eq!(plans[3].step, "cuda");
        assert_eq!(plans[3].providers.len(), 1);
        assert_eq!(plans[3].providers[0].kind, Cuda);
        assert_eq!(plans[4].step, "cpu");
        assert!(plans[4].providers.is_empty() && plans[4].config_entries.is_empty());

        assert_eq!(
            plans[3].render(),
            ["cuda: device_id=0".to_string()],
            "{:?}",
            plans[3]
        );
    }

    #[test]
    fn strictness_and_device_options_reach_the_session() {
        let cfg = TensorrtConfig {
            dla_core: Some(1),
            device_id: 2,
            max_workspace_bytes: ByteSize(2 << 30),
            detailed_build_log: false,
            ..TensorrtConfig::default()
        };
        let inputs = TensorrtInputs {
            config: &cfg,
            cache: None,
            profile: None,
        };
        let cuda = CudaConfig { device_id: 2 };
        let steps = ladder(&[Tensorrt, Cuda, Cpu], &cfg, true);
        let fp16 = plan(&steps[0], inputs, &cuda, true);
        assert_eq!(
            fp16.config_entries,
            [(DISABLE_CPU_FALLBACK, "1".to_string())]
        );
        let o = options(&fp16, 0);
        for want in [
            ("device_id", "2"),
            ("trt_max_workspace_size", "2147483648"),
            ("trt_detailed_build_log", "false"),
            ("trt_dla_enable", "true"),
            ("trt_dla_core", "1"),
        ] {
            assert!(o.contains(&want), "{want:?} missing: {o:?}");
        }
        assert!(!o.iter().any(|(k, _)| k.contains("cache")), "{o:?}");
        // DLA does not apply to FP32; the CPU step never gets the strictness entry.
        let fp32 = plan(&steps[2], inputs, &cuda, true);
        assert!(!options(&fp32, 0).iter().any(|(k, _)| k.contains("dla")));
        assert!(plan(&Step::Cpu, inputs, &cuda, true)
            .config_entries
            .is_empty());
        assert_eq!(
            fp16.render().last().map(String::as_str),
            Some("session.disable_cpu_ep_fallback=1")
        );
    }

    #[test]
    fn the_ort_builders_carry_exactly_the_listed_options_under_orts_own_key_names() {
        // ort's typed builder methods name the same ONNX Runtime keys this module writes: the
        // provider made from the list equals the one made with ort's methods.
        let listed = ProviderOptions {
            kind: Tensorrt,
            options: vec![
                ("device_id", "0".into()),
                ("trt_max_workspace_size", "1073741824".into()),
                ("trt_fp16_enable", "true".into()),
                ("trt_int8_enable", "false".into()),
                ("trt_builder_optimization_level", "3".into()),
                ("trt_detailed_build_log", "true".into()),
                ("trt_engine_cache_enable", "true".into()),
                ("trt_engine_cache_path", "/c/e".into()),
                ("trt_timing_cache_enable", "true".into()),
                ("trt_timing_cache_path", "/c/t".into()),
                ("trt_dla_enable", "true".into()),
                ("trt_dla_core", "0".into()),
                ("trt_profile_min_shapes", "imu:1x6x2000".into()),
                ("trt_profile_opt_shapes", "imu:1x6x2000".into()),
                ("trt_profile_max_shapes", "imu:4x6x2000".into()),
            ],
        };
        let from_list = listed
            .options
            .iter()
            .fold(ort::ep::TensorRT::default(), |ep, (k, v)| {
                ep.with_arbitrary_config(k, v)
            });
        let typed = ort::ep::TensorRT::default()
            .with_device_id(0)
            .with_max_workspace_size(1 << 30)
            .with_fp16(true)
            .with_int8(false)
            .with_builder_optimization_level(3)
            .with_detailed_build_log(true)
            .with_engine_cache(true)
            .with_engine_cache_path("/c/e")
            .with_timing_cache(true)
            .with_timing_cache_path("/c/t")
            .with_dla(true)
            .with_dla_core(0)
            .with_profile_min_shapes("imu:1x6x2000")
            .with_profile_opt_shapes("imu:1x6x2000")
            .with_profile_max_shapes("imu:4x6x2000");
        assert_eq!(format!("{from_list:?}"), format!("{typed:?}"));
        let cuda = ort::ep::CUDA::default().with_arbitrary_config("device_id", "3");
        assert_eq!(
            format!("{cuda:?}"),
            format!("{:?}", ort::ep::CUDA::default().with_device_id(3))
        );
        assert_eq!(
            listed.dispatch().map(|d| d.name()),
            Some("TensorrtExecutionProvider")
        );
        let cpu = ProviderOptions {
            kind: Cpu,
            options: Vec::new(),
        };
        assert!(cpu.dispatch().is_none());
    }
}
