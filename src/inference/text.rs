//! The text encoder of an exported model set (`text.onnx`: `text` int64 `[B, 77]` →
//! `embedding` float32 `[B, 1024]`). Only `edgebind embed text` uses it: the daemon's concept
//! bank is computed at export time.

use std::path::{Path, PathBuf};

use ndarray::Array2;
use ort::session::Session;
use ort::value::{TensorElementType, TensorRef, ValueType};

use super::runtime::OrtRuntime;
use super::session::{create_in_order, SessionSettings};
use crate::config::ExecutionProviderKind;
use crate::preprocess::text::CONTEXT_LEN;

/// Errors creating or running the text encoder.
#[derive(Debug, thiserror::Error)]
pub enum TextEncoderError {
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
    /// The model is not a text encoder.
    #[error("{path}: not a valid text encoder: {message}")]
    Contract {
        /// The file.
        path: PathBuf,
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

/// A loaded, contract-checked text encoder.
#[derive(Debug)]
pub struct TextEncoder {
    session: Session,
    /// The model file.
    pub path: PathBuf,
    /// The provider that loaded it.
    pub provider: ExecutionProviderKind,
    output_name: String,
    embedding_dim: usize,
}

impl TextEncoder {
    /// Loads `path`, trying `providers` in order (each failure logged with its reason).
    ///
    /// # Errors
    /// [`TextEncoderError`] naming the file.
    pub fn load(
        runtime: &OrtRuntime,
        path: &Path,
        providers: &[ExecutionProviderKind],
        intra_threads: usize,
    ) -> Result<Self, TextEncoderError> {
        if !path.is_file() {
            return Err(TextEncoderError::Missing {
                path: path.to_path_buf(),
            });
        }
        let settings = SessionSettings::defaults(intra_threads.max(1));
        let (created, reasons) = create_in_order(runtime, path, providers, &settings, false);
        if let Some((session, provider)) = created {
            let (output_name, embedding_dim) = check_contract(&session, path)?;
            return Ok(Self {
                session,
                path: path.to_path_buf(),
                provider,
                output_name,
                embedding_dim,
            });
        }
        Err(TextEncoderError::NoProvider {
            path: path.to_path_buf(),
            reasons,
        })
    }

    /// Embeds token-id rows `[B, 77]`.
    ///
    /// # Errors
    /// [`TextEncoderError::Run`] with ONNX Runtime's message or a malformed output.
    pub fn run(&mut self, ids: &Array2<i64>) -> Result<Array2<f32>, TextEncoderError> {
        let run_err = |message: String| TextEncoderError::Run {
            path: self.path.clone(),
            message,
        };
        if ids.ncols() != CONTEXT_LEN {
            return Err(run_err(format!(
                "token ids are [{}, {}], expected [B, {CONTEXT_LEN}]",
                ids.nrows(),
                ids.ncols()
            )));
        }
        let input = TensorRef::from_array_view(ids.view()).map_err(|e| run_err(e.to_string()))?;
        let outputs = self
            .session
            .run(ort::inputs!["text" => input])
            .map_err(|e| run_err(e.to_string()))?;
        let out = outputs
            .get(self.output_name.as_str())
            .ok_or_else(|| run_err(format!("no output named {:?}", self.output_name)))?;
        let view = out
            .try_extract_array::<f32>()
            .map_err(|e| run_err(e.to_string()))?;
        if view.shape() != [ids.nrows(), self.embedding_dim] {
            return Err(run_err(format!(
                "output has shape {:?}, expected [{}, {}]",
                view.shape(),
                ids.nrows(),
                self.embedding_dim
            )));
        }
        if let Some(i) = view.iter().position(|v| !v.is_finite()) {
            return Err(run_err(format!("output element {i} is not finite")));
        }
        view.into_dimensionality::<ndarray::Ix2>()
            .map(|v| v.to_owned())
            .map_err(|e| run_err(e.to_string()))
    }
}

fn check_contract(session: &Session, path: &Path) -> Result<(String, usize), TextEncoderError> {
    let err = |message: String| TextEncoderError::Contract {
        path: path.to_path_buf(),
        message,
    };
    let [input] = session.inputs() else {
        return Err(err(format!(
            "expected one input `text` int64 [B, {CONTEXT_LEN}], found {}",
            session.inputs().len()
        )));
    };
    let fits = match input.dtype() {
        ValueType::Tensor { ty, shape, .. } => {
            *ty == TensorElementType::Int64
                && shape.len() == 2
                && (shape[1] == CONTEXT_LEN as i64 || shape[1] < 0)
        }
        _ => false,
    };
    if input.name() != "text" || !fits {
        return Err(err(format!(
            "input is `{}` {}, expected `text` int64 [B, {CONTEXT_LEN}]",
            input.name(),
            super::session::value_text(input.dtype())
        )));
    }
    let [output] = session.outputs() else {
        return Err(err("expected one output [B, 1024]".into()));
    };
    let dim = match output.dtype() {
        ValueType::Tensor { ty, shape, .. } if *ty == TensorElementType::Float32 => {
            match shape.as_ref() {
                [_, d] if *d > 0 => usize::try_from(*d).unwrap_or(0),
                _ => 0,
            }
        }
        _ => 0,
    };
    if dim == 0 {
        return Err(err(format!(
            "output `{}` is {}, expected float32 [B, 1024]",
            output.name(),
            super::session::value_text(output.dtype())
        )));
    }
    Ok((output.name().to_string(), dim))
}
