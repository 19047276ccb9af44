//! The daemon-wide sections of the configuration: device, ONNX Runtime, models, concepts,
//! MQTT, outbox, metrics.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::values::{ByteSize, MqttProtocol, Qos};

use super::ranged::{InferenceQueue, IntraThreads, MaxBatch, PublishQueue};

/// Identity of this device.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// Device id used in topics and payloads: letters, digits, `-`, `_`.
    pub id: String,
}

/// ONNX Runtime settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Path of `libonnxruntime.so`. `ORT_DYLIB_PATH` overrides it; when neither is set the
    /// places `tools/fetch_onnxruntime.sh` and the Debian package use are searched.
    #[serde(default)]
    pub library_path: Option<PathBuf>,
    /// Execution providers in order of preference; the first that registers is used.
    #[serde(default = "default_providers")]
    pub execution_providers: Vec<ExecutionProviderKind>,
    /// Refuse to start when only the CPU provider is available.
    #[serde(default)]
    pub require_gpu: bool,
    /// Set ONNX Runtime's `session.disable_cpu_ep_fallback` on the GPU steps: a session in which
    /// any node would run on the CPU is refused (and the next step tried). Stricter than
    /// `require_gpu`, which only refuses the CPU provider as a whole.
    #[serde(default)]
    pub disable_cpu_fallback: bool,
    /// Threads ONNX Runtime may use inside one operator (per session).
    #[serde(default)]
    pub intra_threads: IntraThreads,
    /// TensorRT provider options (used when `tensorrt` is listed).
    #[serde(default)]
    pub tensorrt: TensorrtConfig,
    /// CUDA provider options (used when `cuda` is listed).
    #[serde(default)]
    pub cuda: CudaConfig,
    /// The check of each model's output against its manifest reference after warm-up.
    #[serde(default)]
    pub parity: ParityConfig,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            library_path: None,
            execution_providers: default_providers(),
            require_gpu: false,
            disable_cpu_fallback: false,
            intra_threads: IntraThreads::default(),
            tensorrt: TensorrtConfig::default(),
            cuda: CudaConfig::default(),
            parity: ParityConfig::default(),
        }
    }
}

/// TensorRT execution provider options.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TensorrtConfig {
    /// Let TensorRT pick FP16 kernels (about twice as fast on Jetson; the parity check guards
    /// against a model that FP16 breaks).
    #[serde(default = "default_true")]
    pub fp16: bool,
    /// INT8 kernels (needs a calibration table in the cache directory; off by default).
    #[serde(default)]
    pub int8: bool,
    /// Directory of the engine and timing caches, created at start and checked writable.
    /// Default: `$CACHE_DIRECTORY/tensorrt` (systemd's `CacheDirectory=`), else
    /// `$XDG_CACHE_HOME/edgebind/tensorrt`, else `~/.cache/edgebind/tensorrt`.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// Most scratch memory a TensorRT tactic may use (`trt_max_workspace_size`). Unset, ONNX
    /// Runtime >= 1.19 lets TensorRT use up to all device memory, which on a Jetson is the system
    /// RAM the weights and everything else share; a bound can exclude the fastest tactics.
    #[serde(default = "default_trt_workspace")]
    pub max_workspace_bytes: ByteSize,
    /// GPU to run on.
    #[serde(default)]
    pub device_id: u32,
    /// Deep Learning Accelerator core to run on (Jetson AGX/NX Orin have 0 and 1); layers the
    /// DLA cannot run fall back to the GPU. Default: no DLA.
    #[serde(default)]
    pub dla_core: Option<u32>,
    /// TensorRT builder optimisation level, 0 (fast build) to 5 (slowest build, best engine).
    #[serde(default = "default_builder_optimization_level")]
    pub builder_optimization_level: u8,
    /// ONNX op types the second FP16 step leaves to CUDA (`trt_op_types_to_exclude`) when the
    /// parity check refuses the plain FP16 engine; empty: no such step.
    #[serde(default = "default_fp16_excluded_op_types")]
    pub fp16_excluded_op_types: Vec<OpType>,
    /// Pass TensorRT's detailed build log (`trt_detailed_build_log`) to the log (target
    /// `onnxruntime`, debug level) and its latest line to systemd's `STATUS=` during a build.
    #[serde(default = "default_true")]
    pub detailed_build_log: bool,
}

impl Default for TensorrtConfig {
    fn default() -> Self {
        Self {
            fp16: true,
            int8: false,
            cache_dir: None,
            max_workspace_bytes: default_trt_workspace(),
            device_id: 0,
            dla_core: None,
            builder_optimization_level: default_builder_optimization_level(),
            fp16_excluded_op_types: default_fp16_excluded_op_types(),
            detailed_build_log: true,
        }
    }
}

impl TensorrtConfig {
    /// The cache directory in effect: the configured one (relative to `base_dir`), else the
    /// default described on [`cache_dir`](Self::cache_dir).
    #[must_use]
    pub fn resolved_cache_dir(&self, base_dir: &Path) -> PathBuf {
        if let Some(dir) = &self.cache_dir {
            return if dir.is_absolute() {
                dir.clone()
            } else {
                base_dir.join(dir)
            };
        }
        let env_dir = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        if let Some(systemd) = env_dir("CACHE_DIRECTORY") {
            // systemd may list several directories separated by ':'; the first is ours.
            let first = systemd
                .to_string_lossy()
                .split(':')
                .next()
                .map(PathBuf::from)
                .unwrap_or(systemd);
            return first.join("tensorrt");
        }
        if let Some(xdg) = env_dir("XDG_CACHE_HOME") {
            return xdg.join("edgebind/tensorrt");
        }
        if let Some(home) = env_dir("HOME") {
            return home.join(".cache/edgebind/tensorrt");
        }
        base_dir.join("tensorrt-cache")
    }

    /// The precision name used in logs and cache keys: `fp32`, `fp16`, `int8` or `int8-fp16`.
    #[must_use]
    pub fn precision(&self) -> &'static str {
        match (self.int8, self.fp16) {
            (true, true) => "int8-fp16",
            (true, false) => "int8",
            (false, true) => "fp16",
            (false, false) => "fp32",
        }
    }
}

pub(super) fn default_true() -> bool {
    true
}

pub(super) fn default_builder_optimization_level() -> u8 {
    3
}

/// 1 GiB: ONNX Runtime's own default before 1.19, a quarter of the smallest Orin's memory.
pub(super) fn default_trt_workspace() -> ByteSize {
    ByteSize(1 << 30)
}

/// Softmax: leaving it out of TensorRT breaks the fused multi-head-attention kernel that has
/// been reported to lose FP16 accuracy (docs/inference.md).
pub(super) fn default_fp16_excluded_op_types() -> Vec<OpType> {
    vec![OpType("Softmax".to_string())]
}

/// An ONNX operator type (`Softmax`, `LayerNormalization`): letters, digits and `_`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct OpType(pub String);

impl OpType {
    /// Checks `text` is an op type name.
    ///
    /// # Errors
    /// A message saying what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let ok = text.len() <= 64
            && text.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if ok {
            Ok(Self(text.to_string()))
        } else {
            Err(format!(
                "{text:?} is not an ONNX op type (a name such as \"Softmax\": a letter, then letters, digits or '_', at most 64)"
            ))
        }
    }
}

impl<'de> Deserialize<'de> for OpType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        OpType::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// CUDA execution provider options.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CudaConfig {
    /// GPU to run on.
    #[serde(default)]
    pub device_id: u32,
}

/// What happens when a provider's output disagrees with the manifest reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ParityFailure {
    /// The provider is refused and the next one in `execution_providers` is tried.
    NextProvider,
    /// Start-up fails.
    Fail,
}

/// The parity check run after warm-up when the manifest carries a reference input and output.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ParityConfig {
    /// Run the check (when the manifest has references).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Lowest accepted cosine similarity between the model's output and the reference output,
    /// per reference row.
    #[serde(default = "default_parity_min_cosine")]
    pub min_cosine: f64,
    /// `next_provider` (default) or `fail`.
    #[serde(default = "default_parity_failure")]
    pub on_failure: ParityFailure,
}

impl Default for ParityConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            min_cosine: default_parity_min_cosine(),
            on_failure: default_parity_failure(),
        }
    }
}

pub(super) fn default_parity_min_cosine() -> f64 {
    0.99
}

pub(super) fn default_parity_failure() -> ParityFailure {
    ParityFailure::NextProvider
}

pub(super) fn default_providers() -> Vec<ExecutionProviderKind> {
    vec![
        ExecutionProviderKind::Tensorrt,
        ExecutionProviderKind::Cuda,
        ExecutionProviderKind::Cpu,
    ]
}

/// An ONNX Runtime execution provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionProviderKind {
    /// NVIDIA TensorRT.
    Tensorrt,
    /// NVIDIA CUDA.
    Cuda,
    /// The default CPU provider (always available).
    Cpu,
}

impl ExecutionProviderKind {
    /// The name used in logs, metrics and payloads.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tensorrt => "tensorrt",
            Self::Cuda => "cuda",
            Self::Cpu => "cpu",
        }
    }
}

/// What a bounded queue does when it is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// The producer waits (back-pressure); nothing is dropped.
    Block,
    /// The oldest queued item is dropped (and counted) to make room.
    DropOldest,
    /// The new item is dropped (and counted).
    DropNewest,
}

/// The model set and its inference queue.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsConfig {
    /// Directory holding `manifest.json`, the encoders and the concept bank.
    pub dir: PathBuf,
    /// Windows waiting for each model's inference worker.
    #[serde(default)]
    pub queue_capacity: InferenceQueue,
    /// Policy of the inference queue when the model cannot keep up.
    #[serde(default = "default_drop_oldest")]
    pub when_full: WhenFull,
    /// Most windows one session run embeds: windows already waiting are batched up to this.
    #[serde(default)]
    pub max_batch: MaxBatch,
    /// How long a worker may wait for more windows to fill a batch (0: only those waiting).
    #[serde(default)]
    pub max_batch_wait_ms: u64,
}

pub(super) fn default_drop_oldest() -> WhenFull {
    WhenFull::DropOldest
}

/// Nearest-concept matching.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConceptsConfig {
    /// How many concepts to publish per window.
    #[serde(default = "default_top_k")]
    pub top_k: usize,
    /// Concepts with a cosine similarity below this are not published.
    #[serde(default = "default_min_score")]
    pub min_score: f32,
    /// Named concept sets, each matched against its sensors' windows (`concept_sets.rs`).
    #[serde(default)]
    pub sets: std::collections::BTreeMap<String, super::ConceptSetConfig>,
    /// The text encoder that embeds sets of words.
    #[serde(default)]
    pub text: super::TextEncoderConfig,
    /// Changing sets over MQTT (off unless enabled).
    #[serde(default)]
    pub control: super::ConceptControlConfig,
    /// Where the active sets and the embedded banks are kept (relative to the config file).
    #[serde(default = "super::concept_sets::default_state_dir")]
    pub state_dir: PathBuf,
}

impl Default for ConceptsConfig {
    fn default() -> Self {
        Self {
            top_k: default_top_k(),
            min_score: default_min_score(),
            sets: std::collections::BTreeMap::new(),
            text: super::TextEncoderConfig::default(),
            control: super::ConceptControlConfig::default(),
            state_dir: super::concept_sets::default_state_dir(),
        }
    }
}

pub(super) fn default_top_k() -> usize {
    3
}

pub(super) fn default_min_score() -> f32 {
    0.1
}

/// How the embedding vector is written in the JSON envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EmbeddingEncoding {
    /// A JSON array of numbers.
    Json,
    /// Base64 of little-endian float32.
    Base64F32,
    /// Base64 of little-endian float16 (half the size; ~3 significant digits).
    Base64F16,
}

/// The MQTT broker and the published topics.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// Broker address `mqtt://host:port`, or `local` to start a private mosquitto on a free
    /// loopback port (what `edgebind demo` does).
    pub url: String,
    /// Protocol version: `"3.1.1"` (default) or `"5"`.
    #[serde(default)]
    pub protocol: MqttProtocol,
    /// MQTT client id (default `edgebind-<device id>`).
    #[serde(default)]
    pub client_id: Option<String>,
    /// Topic prefix (default `edgebind/<device id>`).
    #[serde(default)]
    pub topic_prefix: Option<String>,
    /// QoS of embedding, labels and state messages: `"0"` or `"1"`.
    #[serde(default = "default_qos")]
    pub qos: Qos,
    /// Keep-alive interval.
    #[serde(default = "default_keep_alive_s")]
    pub keep_alive_s: u64,
    /// Largest MQTT packet sent or accepted (embedding messages are ~20 KiB as JSON).
    #[serde(default = "default_max_packet_bytes")]
    pub max_packet_bytes: usize,
    /// Encoding of the embedding vector.
    #[serde(default = "default_encoding")]
    pub embedding_encoding: EmbeddingEncoding,
    /// Messages waiting for the publisher; producers wait when it is full (nothing is dropped).
    #[serde(default)]
    pub queue_capacity: PublishQueue,
    /// Interval of the `<prefix>/stats` message and of sensor `state` updates (0 = off).
    #[serde(default = "default_stats_interval_s")]
    pub stats_interval_s: u64,
    /// Longest wait between reconnection attempts (exponential backoff from 100 ms).
    #[serde(default = "default_max_backoff_ms")]
    pub reconnect_max_backoff_ms: u64,
    /// User name sent in CONNECT (none: anonymous).
    #[serde(default)]
    pub username: Option<String>,
    /// File holding the password (first line; never put the password in this file).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the password (alternative to `password_file`).
    #[serde(default)]
    pub password_env: Option<String>,
    /// TLS settings for `mqtts://` URLs.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

/// TLS to the broker (`mqtts://`). The server name is always verified.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the CA certificate(s) to trust; the system roots when absent.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) for mutual TLS.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate.
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
}

/// When outbox appends are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// fsync every `fsync_interval_ms` (a power loss loses at most that much).
    Interval,
    /// fsync before each message is sent (slowest, nothing lost).
    EveryMessage,
}

/// The on-disk outbox: every message for the broker is written here first and deleted after its
/// PUBACK.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxConfig {
    /// Directory of the outbox (created if missing; relative to the config file).
    #[serde(default = "default_outbox_dir")]
    pub dir: PathBuf,
    /// Most disk space the outbox may use.
    #[serde(default = "default_outbox_max_bytes")]
    pub max_bytes: ByteSize,
    /// When full: `drop_oldest` (default, counted as `outbox_full`), `drop_newest` (counted), or
    /// `block` (the publisher stops taking messages; the pipeline's own queue policies apply).
    #[serde(default = "default_drop_oldest")]
    pub when_full: WhenFull,
    /// When appends are made durable.
    #[serde(default = "default_fsync")]
    pub fsync: FsyncPolicy,
    /// Period of the fsync with `fsync = "interval"`.
    #[serde(default = "default_fsync_interval_ms")]
    pub fsync_interval_ms: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            dir: default_outbox_dir(),
            max_bytes: default_outbox_max_bytes(),
            when_full: default_drop_oldest(),
            fsync: default_fsync(),
            fsync_interval_ms: default_fsync_interval_ms(),
        }
    }
}

pub(super) fn default_outbox_dir() -> PathBuf {
    PathBuf::from("outbox")
}
pub(super) fn default_outbox_max_bytes() -> ByteSize {
    ByteSize(1 << 30)
}
pub(super) fn default_fsync() -> FsyncPolicy {
    FsyncPolicy::Interval
}
pub(super) fn default_fsync_interval_ms() -> u64 {
    100
}

/// The metrics listener: Prometheus text, the status page and its JSON (`crate::status`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address to serve `GET /metrics`, `GET /` and `GET /api/status` on, e.g.
    /// `127.0.0.1:9464` (loopback: nothing there is authenticated).
    pub listen: String,
}

pub(super) fn default_qos() -> Qos {
    Qos::AtLeastOnce
}
pub(super) fn default_keep_alive_s() -> u64 {
    30
}
pub(super) fn default_max_packet_bytes() -> usize {
    1024 * 1024
}
pub(super) fn default_encoding() -> EmbeddingEncoding {
    EmbeddingEncoding::Json
}
pub(super) fn default_stats_interval_s() -> u64 {
    10
}
pub(super) fn default_max_backoff_ms() -> u64 {
    10_000
}
