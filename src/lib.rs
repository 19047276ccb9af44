//! # edgebind
//!
//! A sensor-edge daemon that places every sensor of a device in ImageBind's shared embedding
//! space and publishes the embeddings and their nearest text concepts over MQTT.
//!
//! # Layout
//! - [`cli`]: the command line (`run`, `check`, `warm`, `demo`, `preprocess`, `embed`, `bench`,
//!   `devices`).
//! - [`app`]: the supervisor: builds the pipeline from a config, runs it, stops it in order.
//! - [`bench`]: `edgebind bench`: per-modality and end-to-end measurements, system info.
//! - [`config`]: the TOML configuration, strict parsing and whole-file validation.
//! - [`devices`]: `edgebind devices`: serial ports, V4L2/RealSense cameras, ALSA PCMs, ONNX
//!   Runtime and GPU of this machine, each sensor with a `[[sources]]` block.
//! - [`files`]: untrusted input files: precise open errors, size limits, the checked `.npy`
//!   reader.
//! - [`sources`]: one module per sensor source; each runs on its own named thread.
//! - [`window`]: pure windowing of sample streams (window length, hop, gaps, capture times).
//! - [`preprocess`]: pure, ImageBind-exact tensors per modality (SPEC.md).
//! - [`inference`]: ONNX Runtime loading, the model set and the worker owning each session.
//! - [`concepts`]: the concept bank and cosine top-k matching (pure); the shared handle SIGHUP
//!   reloads.
//! - [`publish`]: MQTT payloads (pure), the outbox, the publisher owning the event loop (MQTT
//!   3.1.1 or 5), a local broker.
//! - [`pipeline`]: bounded queues with named policies and the per-stream processing thread.
//! - [`telemetry`]: counters, drops by reason, logging set-up and rate-limited logging, the
//!   Prometheus endpoint.
//! - [`service`]: systemd notifications (READY, STATUS, STOPPING) and the watchdog heartbeat.
//! - [`time`]: capture timestamps (monotonic + UTC from one offset).

pub mod app;
pub mod bench;
pub mod cli;
pub mod concepts;
pub mod config;
pub mod devices;
pub mod files;
pub mod inference;
pub mod pipeline;
pub mod preprocess;
pub mod publish;
pub mod service;
pub mod sources;
pub mod telemetry;
pub mod time;
pub mod window;

use serde::{Deserialize, Serialize};

/// The sensor modalities ImageBind embeds that edgebind serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Modality {
    /// Accelerometer + gyroscope, `[B, 6, 2000]`.
    Imu,
    /// Log-mel spectrogram clips, `[B, S, 1, 128, 204]`.
    Audio,
    /// Disparity image, `[B, 1, 224, 224]`.
    Depth,
    /// Thermal intensity image, `[B, 1, 224, 224]`.
    Thermal,
}

impl Modality {
    /// All modalities.
    pub const ALL: [Modality; 4] = [Self::Imu, Self::Audio, Self::Depth, Self::Thermal];

    /// The lower-case name used in manifests, topics and payloads (also the ONNX input name).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Imu => "imu",
            Self::Audio => "audio",
            Self::Depth => "depth",
            Self::Thermal => "thermal",
        }
    }
}

impl std::fmt::Display for Modality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
