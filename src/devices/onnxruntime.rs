//! The ONNX Runtime library `run` would load, its version, and which of the execution providers
//! edgebind can use were compiled into it.

use std::path::Path;

use ort::ep::ExecutionProvider;
use serde::Serialize;

use crate::inference::runtime::{resolve_library, OrtRuntime};

/// An execution provider and whether the library has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Provider {
    /// The name in `runtime.execution_providers` (`tensorrt`, `cuda`, `cpu`).
    pub name: &'static str,
    /// Compiled into the library (whether it loads also depends on the GPU libraries; `edgebind
    /// warm` tries).
    pub available: bool,
}

/// The library found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OnnxRuntimeInfo {
    /// The library file (`None`: not found).
    pub library: Option<String>,
    /// Its version.
    pub version: Option<String>,
    /// Providers, in edgebind's default order.
    pub providers: Vec<Provider>,
    /// Why it was not found or could not be loaded.
    pub note: Option<String>,
}

/// Finds and loads the library as `run` does (`ORT_DYLIB_PATH`, then `configured`, then the
/// default places) and asks it for its providers.
#[must_use]
pub fn probe(configured: Option<&Path>) -> OnnxRuntimeInfo {
    let missing = |library: Option<String>, note: String| OnnxRuntimeInfo {
        library,
        version: None,
        providers: Vec::new(),
        note: Some(note),
    };
    let library = match resolve_library(configured) {
        Ok(p) => p,
        Err(e) => return missing(None, e.to_string()),
    };
    let shown = super::normalise(&library);
    let runtime = match OrtRuntime::load(Some(&library)) {
        Ok(r) => r,
        Err(e) => return missing(Some(shown), e.to_string()),
    };
    let available = |r: ort::Result<bool>| r.unwrap_or(false);
    OnnxRuntimeInfo {
        library: Some(shown),
        version: Some(runtime.version),
        providers: vec![
            Provider {
                name: "tensorrt",
                available: available(ort::ep::TensorRT::is_available()),
            },
            Provider {
                name: "cuda",
                available: available(ort::ep::CUDA::is_available()),
            },
            Provider {
                name: "cpu",
                available: available(ort::ep::CPU::is_available()),
            },
        ],
        note: None,
    }
}
