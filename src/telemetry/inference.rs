//! Counters and identity of each loaded model: the execution provider actually in use, the ONNX
//! Runtime version, session runs and the windows they embedded (their ratio is the mean batch).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::Modality;

/// One model's identity (fixed after start) and run counters.
#[derive(Debug)]
pub struct ModelStats {
    /// The modality it encodes (the `model` label).
    pub modality: Modality,
    /// The execution provider in use (`tensorrt`, `cuda`, `cpu`).
    pub provider: String,
    /// ONNX Runtime version.
    pub ort_version: String,
    /// sha256 of the model file.
    pub model_sha256: String,
    /// The load step in use (`tensorrt-fp16`, `tensorrt-fp32`, `cuda`, `cpu`, …; see
    /// [`with_step`](Self::with_step)).
    pub step: String,
    runs: AtomicU64,
    windows: AtomicU64,
    cpu_ns: AtomicU64,
}

/// What a sensor's `state` says about the model embedding its windows.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ModelIdentity {
    /// The execution provider in use.
    pub provider: String,
    /// The load step in use (which precision TensorRT runs at, or the provider fallen back to).
    pub step: String,
    /// ONNX Runtime version.
    pub ort_version: String,
    /// sha256 of the model file.
    pub model_sha256: String,
}

/// What the `stats` payload says about a model.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ModelSnapshot {
    /// The execution provider in use.
    pub provider: String,
    /// The load step in use.
    pub step: String,
    /// ONNX Runtime version.
    pub ort_version: String,
    /// sha256 of the model file.
    pub model_sha256: String,
    /// Session runs since start.
    pub runs_total: u64,
    /// Windows those runs embedded (more than `runs_total` when windows were batched).
    pub windows_total: u64,
}

impl ModelStats {
    /// A model that has not run yet.
    #[must_use]
    pub fn new(modality: Modality, provider: &str, ort_version: &str, model_sha256: &str) -> Self {
        Self {
            modality,
            provider: provider.to_string(),
            ort_version: ort_version.to_string(),
            model_sha256: model_sha256.to_string(),
            step: provider.to_string(),
            runs: AtomicU64::new(0),
            windows: AtomicU64::new(0),
            cpu_ns: AtomicU64::new(0),
        }
    }

    /// The load step that loaded the model (by default the provider's name, which is the step
    /// of the `cuda` and `cpu` providers).
    #[must_use]
    pub fn with_step(mut self, step: &str) -> Self {
        self.step = step.to_string();
        self
    }

    /// Counts one session run over `windows` windows that took `cpu` of the worker thread's CPU
    /// time (`None` where the thread clock is unavailable).
    pub fn add_run(&self, windows: usize, cpu: Option<Duration>) {
        self.runs.fetch_add(1, Ordering::Relaxed);
        self.windows.fetch_add(windows as u64, Ordering::Relaxed);
        if let Some(cpu) = cpu {
            let ns = u64::try_from(cpu.as_nanos()).unwrap_or(u64::MAX);
            self.cpu_ns.fetch_add(ns, Ordering::Relaxed);
        }
    }

    /// CPU time of the worker thread inside session runs so far.
    #[must_use]
    pub fn cpu(&self) -> Duration {
        Duration::from_nanos(self.cpu_ns.load(Ordering::Relaxed))
    }

    /// Session runs so far.
    #[must_use]
    pub fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    /// Windows embedded so far.
    #[must_use]
    pub fn windows(&self) -> u64 {
        self.windows.load(Ordering::Relaxed)
    }

    /// Provider, ONNX Runtime version and checksum.
    #[must_use]
    pub fn identity(&self) -> ModelIdentity {
        ModelIdentity {
            provider: self.provider.clone(),
            step: self.step.clone(),
            ort_version: self.ort_version.clone(),
            model_sha256: self.model_sha256.clone(),
        }
    }

    /// A copy for payloads.
    #[must_use]
    pub fn snapshot(&self) -> ModelSnapshot {
        ModelSnapshot {
            provider: self.provider.clone(),
            step: self.step.clone(),
            ort_version: self.ort_version.clone(),
            model_sha256: self.model_sha256.clone(),
            runs_total: self.runs(),
            windows_total: self.windows(),
        }
    }
}

/// CPU time the calling thread has used so far (`CLOCK_THREAD_CPUTIME_ID`; a vDSO read, cheap
/// enough around every session run).
#[must_use]
pub fn thread_cpu_time() -> Option<Duration> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID).ok()?;
    let secs = u64::try_from(t.tv_sec()).ok()?;
    let nanos = u32::try_from(t.tv_nsec()).ok()?;
    Some(Duration::new(secs, nanos))
}
