//! One ONNX encoder session: created with the configured execution providers in order (each
//! registered so that a failure is an error we log, not a silent CPU fallback), checked against
//! its modality's ImageBind contract, then run on batches.

use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayD, IxDyn};
use ort::session::Session;
use ort::value::{TensorElementType, TensorRef, ValueType};

use super::runtime::OrtRuntime;
use super::tensorrt::{CacheDirs, Profile};
use crate::config::{CudaConfig, ExecutionProviderKind, TensorrtConfig};
use crate::Modality;

/// Errors creating or running an encoder.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The model file is missing.
    #[error("{path}: model file does not exist")]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// No configured provider could create the session.
    #[error("{path}: no execution provider could load the model: {}", reasons.join("; "))]
    NoProvider {
        /// The file.
        path: PathBuf,
        /// Why each provider failed.
        reasons: Vec<String>,
    },
    /// `require_gpu` is set but only the CPU provider worked.
    #[error("{path}: require_gpu is set but no GPU provider is usable: {}", reasons.join("; "))]
    GpuRequired {
        /// The file.
        path: PathBuf,
        /// Why each GPU provider failed.
        reasons: Vec<String>,
    },
    /// The model does not have the modality's input/output contract.
    #[error("{path}: not a valid {modality} encoder: {message}")]
    Contract {
        /// The file.
        path: PathBuf,
        /// The modality it should encode.
        modality: Modality,
        /// Expected vs actual.
        message: String,
    },
    /// A run failed.
    #[error("{path}: inference failed: {message}")]
    Run {
        /// The file.
        path: PathBuf,
        /// ONNX Runtime's message.
        message: String,
    },
}

/// The input contract of each modality (from the modality table): `None` is a free (batch or
/// clip) dimension.
#[must_use]
pub fn input_contract(modality: Modality) -> Vec<Option<i64>> {
    modality.contract()
}

fn describe(dims: &[Option<i64>]) -> String {
    let parts: Vec<String> = dims
        .iter()
        .enumerate()
        .map(|(i, d)| match (i, d) {
            (0, None) => "B".to_string(),
            (_, None) => "S".to_string(),
            (_, Some(v)) => v.to_string(),
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

fn shape_text(shape: &[i64]) -> String {
    let parts: Vec<String> = shape
        .iter()
        .map(|d| {
            if *d < 0 {
                "?".to_string()
            } else {
                d.to_string()
            }
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

/// A loaded, contract-checked encoder.
#[derive(Debug)]
pub struct Encoder {
    session: Session,
    /// The modality it encodes.
    pub modality: Modality,
    /// The model file.
    pub path: PathBuf,
    /// The provider that loaded it.
    pub provider: ExecutionProviderKind,
    /// Why the providers before it failed.
    pub fallback_reasons: Vec<String>,
    input_name: String,
    output_name: String,
    embedding_dim: usize,
}

/// TensorRT options for one model's session.
#[derive(Debug, Clone)]
pub struct TensorrtSettings {
    /// The configured options.
    pub config: TensorrtConfig,
    /// The model's engine and timing cache directories (created).
    pub cache: CacheDirs,
    /// The optimisation profile.
    pub profile: Profile,
}

/// How a session is created, besides the provider order.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// Threads inside one operator.
    pub intra_threads: usize,
    /// TensorRT options; `None`: ONNX Runtime's defaults (no engine cache).
    pub tensorrt: Option<TensorrtSettings>,
    /// CUDA options.
    pub cuda: CudaConfig,
}

impl SessionSettings {
    /// ONNX Runtime's defaults with `intra_threads` threads.
    #[must_use]
    pub fn defaults(intra_threads: usize) -> Self {
        Self {
            intra_threads,
            tensorrt: None,
            cuda: CudaConfig::default(),
        }
    }
}

fn tensorrt_dispatch(settings: Option<&TensorrtSettings>) -> ort::ep::ExecutionProviderDispatch {
    let Some(s) = settings else {
        return ort::ep::TensorRT::default().build().error_on_failure();
    };
    let c = &s.config;
    let (min, opt, max) = s.profile.shapes();
    let mut ep = ort::ep::TensorRT::default()
        .with_device_id(i32::try_from(c.device_id).unwrap_or(0))
        .with_fp16(c.fp16)
        .with_int8(c.int8)
        .with_engine_cache(true)
        .with_engine_cache_path(s.cache.engine_dir.display())
        .with_timing_cache(true)
        .with_timing_cache_path(s.cache.timing_dir.display())
        .with_builder_optimization_level(c.builder_optimization_level)
        .with_profile_min_shapes(min)
        .with_profile_opt_shapes(opt)
        .with_profile_max_shapes(max);
    if let Some(bytes) = c.max_workspace_bytes {
        ep = ep.with_max_workspace_size(usize::try_from(bytes.0).unwrap_or(usize::MAX));
    }
    if let Some(core) = c.dla_core {
        ep = ep.with_dla(true).with_dla_core(core);
    }
    ep.build().error_on_failure()
}

fn provider_dispatch(
    kind: ExecutionProviderKind,
    settings: &SessionSettings,
) -> Option<ort::ep::ExecutionProviderDispatch> {
    match kind {
        ExecutionProviderKind::Tensorrt => Some(tensorrt_dispatch(settings.tensorrt.as_ref())),
        ExecutionProviderKind::Cuda => Some(
            ort::ep::CUDA::default()
                .with_device_id(i32::try_from(settings.cuda.device_id).unwrap_or(0))
                .build()
                .error_on_failure(),
        ),
        ExecutionProviderKind::Cpu => None,
    }
}

/// One session with one provider.
fn try_create(
    runtime: &OrtRuntime,
    path: &Path,
    kind: ExecutionProviderKind,
    settings: &SessionSettings,
) -> Result<Session, String> {
    let builder = Session::builder(&runtime.env).map_err(|e| e.to_string())?;
    let builder = builder
        .with_intra_threads(settings.intra_threads.max(1))
        .map_err(|e| e.to_string())?;
    let mut builder = match provider_dispatch(kind, settings) {
        Some(ep) => builder
            .with_execution_providers([ep])
            .map_err(|e| e.to_string())?,
        None => builder
            .with_no_environment_execution_providers()
            .map_err(|e| e.to_string())?,
    };
    builder.commit_from_file(path).map_err(|e| e.to_string())
}

/// Tries `providers` in order and returns the first session that could be created, with its
/// provider, and why each earlier provider failed (each failure is logged). `skip_cpu` leaves the
/// CPU provider out (`require_gpu`).
pub(super) fn create_in_order(
    runtime: &OrtRuntime,
    path: &Path,
    providers: &[ExecutionProviderKind],
    settings: &SessionSettings,
    skip_cpu: bool,
) -> (Option<(Session, ExecutionProviderKind)>, Vec<String>) {
    let mut reasons = Vec::new();
    for &kind in providers {
        if skip_cpu && kind == ExecutionProviderKind::Cpu {
            continue;
        }
        match try_create(runtime, path, kind, settings) {
            Ok(session) => return (Some((session, kind)), reasons),
            Err(reason) => {
                tracing::warn!(
                    model = %path.display(),
                    provider = kind.as_str(),
                    %reason,
                    "execution provider unavailable; trying the next"
                );
                reasons.push(format!("{}: {reason}", kind.as_str()));
            }
        }
    }
    (None, reasons)
}

impl Encoder {
    /// Loads `path` as the `modality` encoder, trying `providers` in order.
    ///
    /// # Errors
    /// [`SessionError`] naming the file: missing, no provider, GPU required, or a contract
    /// mismatch (expected and actual shapes).
    pub fn load(
        runtime: &OrtRuntime,
        modality: Modality,
        path: &Path,
        providers: &[ExecutionProviderKind],
        require_gpu: bool,
        intra_threads: usize,
    ) -> Result<Self, SessionError> {
        Self::load_with(
            runtime,
            modality,
            path,
            providers,
            require_gpu,
            &SessionSettings::defaults(intra_threads),
        )
    }

    /// Like [`load`](Self::load), with the providers' options.
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub fn load_with(
        runtime: &OrtRuntime,
        modality: Modality,
        path: &Path,
        providers: &[ExecutionProviderKind],
        require_gpu: bool,
        settings: &SessionSettings,
    ) -> Result<Self, SessionError> {
        if !path.is_file() {
            return Err(SessionError::Missing {
                path: path.to_path_buf(),
            });
        }
        let (created, reasons) = create_in_order(runtime, path, providers, settings, require_gpu);
        let Some((session, provider)) = created else {
            return Err(if require_gpu {
                SessionError::GpuRequired {
                    path: path.to_path_buf(),
                    reasons,
                }
            } else {
                SessionError::NoProvider {
                    path: path.to_path_buf(),
                    reasons,
                }
            });
        };
        let (input_name, output_name, embedding_dim) = check_contract(&session, modality, path)?;
        Ok(Self {
            session,
            modality,
            path: path.to_path_buf(),
            provider,
            fallback_reasons: reasons,
            input_name,
            output_name,
            embedding_dim,
        })
    }

    /// Width of the embedding.
    #[must_use]
    pub fn embedding_dim(&self) -> usize {
        self.embedding_dim
    }

    /// Runs a batch (`[B, …]` in the modality's input shape) and returns `[B, dim]`.
    ///
    /// # Errors
    /// [`SessionError::Run`] with ONNX Runtime's message, or when the output is malformed or
    /// not finite.
    pub fn run(&mut self, batch: &ArrayD<f32>) -> Result<Array2<f32>, SessionError> {
        let out = self.run_unchecked(batch)?;
        if let Some(i) = out.iter().position(|v| !v.is_finite()) {
            return Err(SessionError::Run {
                path: self.path.clone(),
                message: format!("output element {i} is not finite"),
            });
        }
        Ok(out)
    }

    /// Like [`run`](Self::run), but leaves non-finite values for the caller to judge per row
    /// (one broken window must not take the rest of its batch with it).
    ///
    /// # Errors
    /// [`SessionError::Run`] with ONNX Runtime's message, or when the output shape is wrong.
    pub fn run_unchecked(&mut self, batch: &ArrayD<f32>) -> Result<Array2<f32>, SessionError> {
        let run_err = |message: String| SessionError::Run {
            path: self.path.clone(),
            message,
        };
        let input = TensorRef::from_array_view(batch.view()).map_err(|e| run_err(e.to_string()))?;
        let outputs = self
            .session
            .run(ort::inputs![self.input_name.as_str() => input])
            .map_err(|e| run_err(e.to_string()))?;
        let out = outputs
            .get(self.output_name.as_str())
            .ok_or_else(|| run_err(format!("no output named {:?}", self.output_name)))?;
        let view = out
            .try_extract_array::<f32>()
            .map_err(|e| run_err(e.to_string()))?;
        let b = batch.shape().first().copied().unwrap_or(0);
        if view.shape() != [b, self.embedding_dim] {
            return Err(run_err(format!(
                "output has shape {:?}, expected [{b}, {}]",
                view.shape(),
                self.embedding_dim
            )));
        }
        view.into_dimensionality::<ndarray::Ix2>()
            .map(|v| v.to_owned())
            .map_err(|e| run_err(e.to_string()))
    }

    /// Runs one input (without the batch dimension) and returns its embedding.
    ///
    /// # Errors
    /// As [`run`](Self::run).
    pub fn run_one(&mut self, input: &ArrayD<f32>) -> Result<Vec<f32>, SessionError> {
        let mut shape = vec![1];
        shape.extend_from_slice(input.shape());
        let batch = input
            .view()
            .into_shape_with_order(IxDyn(&shape))
            .map_err(|e| SessionError::Run {
                path: self.path.clone(),
                message: e.to_string(),
            })?
            .to_owned();
        let out = self.run(&batch)?;
        Ok(out.row(0).to_vec())
    }
}

fn check_contract(
    session: &Session,
    modality: Modality,
    path: &Path,
) -> Result<(String, String, usize), SessionError> {
    let err = |message: String| SessionError::Contract {
        path: path.to_path_buf(),
        modality,
        message,
    };
    let expected = input_contract(modality);
    let expected = expected.as_slice();
    let inputs = session.inputs();
    let [input] = inputs else {
        return Err(err(format!(
            "expected one input `{modality}` {}, found {} inputs",
            describe(expected),
            inputs.len()
        )));
    };
    if input.name() != modality.as_str() {
        return Err(err(format!(
            "input is named `{}`, expected `{modality}`",
            input.name()
        )));
    }
    let ValueType::Tensor { ty, shape, .. } = input.dtype() else {
        return Err(err(format!("input `{}` is not a tensor", input.name())));
    };
    let fits = shape.len() == expected.len()
        && shape
            .iter()
            .zip(expected)
            .all(|(actual, want)| want.is_none_or(|w| *actual == w || *actual < 0));
    if *ty != TensorElementType::Float32 || !fits {
        return Err(err(format!(
            "input `{}` is {:?} {}, expected float32 {}",
            input.name(),
            ty,
            shape_text(shape),
            describe(expected)
        )));
    }
    let outputs = session.outputs();
    let [output] = outputs else {
        return Err(err(format!(
            "expected one output [B, 1024], found {} outputs",
            outputs.len()
        )));
    };
    let ValueType::Tensor { ty, shape, .. } = output.dtype() else {
        return Err(err(format!("output `{}` is not a tensor", output.name())));
    };
    let dim = match shape.as_ref() {
        [_, d] if *d > 0 => usize::try_from(*d).unwrap_or(0),
        _ => 0,
    };
    if *ty != TensorElementType::Float32 || dim == 0 {
        return Err(err(format!(
            "output `{}` is {:?} {}, expected float32 [B, 1024]",
            output.name(),
            ty,
            shape_text(shape)
        )));
    }
    Ok((input.name().to_string(), output.name().to_string(), dim))
}
