//! The daemon's TOML configuration: strict types (unknown fields rejected), sources as a tagged
//! enum, units in field names. [`load`] parses a file; [`validate`] reports every problem at once.

mod file_checks;
mod validate;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use validate::{validate, Problem};

/// Exit code for a configuration error (`EX_CONFIG` from sysexits.h).
pub const EX_CONFIG: i32 = 78;

/// Errors reading or parsing a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the schema.
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// The file parsed but failed validation.
    #[error("{path}: {} problem(s):\n{}", problems.len(), problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This device.
    pub device: DeviceConfig,
    /// ONNX Runtime: where the library is and which execution providers to try.
    #[serde(default)]
    pub runtime: RuntimeConfig,
    /// The model set (ImageBind encoders + concept bank) and the inference queue.
    pub models: ModelsConfig,
    /// Nearest-concept matching.
    #[serde(default)]
    pub concepts: ConceptsConfig,
    /// The MQTT broker and what is published.
    pub mqtt: MqttConfig,
    /// The on-disk outbox between the pipeline and the broker.
    #[serde(default)]
    pub outbox: OutboxConfig,
    /// The Prometheus metrics endpoint (off when absent).
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
    /// The sensors.
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    /// Directory that relative paths are resolved against (the config file's directory).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// Identity of this device.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// Device id used in topics and payloads: letters, digits, `-`, `_`.
    pub id: String,
}

/// ONNX Runtime settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
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
    /// Threads ONNX Runtime may use inside one operator (per session).
    #[serde(default = "default_intra_threads")]
    pub intra_threads: usize,
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
            intra_threads: default_intra_threads(),
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
    /// Workspace TensorRT may use while building an engine (default: ONNX Runtime's).
    #[serde(default)]
    pub max_workspace_bytes: Option<ByteSize>,
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
}

impl Default for TensorrtConfig {
    fn default() -> Self {
        Self {
            fp16: true,
            int8: false,
            cache_dir: None,
            max_workspace_bytes: None,
            device_id: 0,
            dla_core: None,
            builder_optimization_level: default_builder_optimization_level(),
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

fn default_true() -> bool {
    true
}

fn default_builder_optimization_level() -> u8 {
    3
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

fn default_parity_min_cosine() -> f64 {
    0.99
}

fn default_parity_failure() -> ParityFailure {
    ParityFailure::NextProvider
}

fn default_providers() -> Vec<ExecutionProviderKind> {
    vec![
        ExecutionProviderKind::Tensorrt,
        ExecutionProviderKind::Cuda,
        ExecutionProviderKind::Cpu,
    ]
}

fn default_intra_threads() -> usize {
    1
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
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsConfig {
    /// Directory holding `manifest.json`, the encoders and the concept bank.
    pub dir: PathBuf,
    /// Windows waiting for each model's inference worker.
    #[serde(default = "default_inference_queue")]
    pub queue_capacity: usize,
    /// Policy of the inference queue when the model cannot keep up.
    #[serde(default = "default_drop_oldest")]
    pub when_full: WhenFull,
    /// Most windows one session run embeds: windows already waiting are batched up to this.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// How long a worker may wait for more windows to fill a batch (0: only those waiting).
    #[serde(default)]
    pub max_batch_wait_ms: u64,
}

fn default_max_batch() -> usize {
    4
}

fn default_inference_queue() -> usize {
    8
}

fn default_drop_oldest() -> WhenFull {
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
}

impl Default for ConceptsConfig {
    fn default() -> Self {
        Self {
            top_k: default_top_k(),
            min_score: default_min_score(),
        }
    }
}

fn default_top_k() -> usize {
    3
}

fn default_min_score() -> f32 {
    0.1
}

/// MQTT quality of service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Qos {
    /// At most once.
    #[serde(rename = "0")]
    AtMostOnce,
    /// At least once (acknowledged by PUBACK).
    #[serde(rename = "1")]
    AtLeastOnce,
}

/// MQTT protocol version spoken to the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
pub enum MqttProtocol {
    /// MQTT 3.1.1 (every broker speaks it).
    #[default]
    #[serde(rename = "3.1.1")]
    V311,
    /// MQTT 5: messages also carry a content type and user properties (device, sensor,
    /// modality, schema version).
    #[serde(rename = "5")]
    V5,
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
#[derive(Debug, Clone, Deserialize, Serialize)]
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
    #[serde(default = "default_publish_queue")]
    pub queue_capacity: usize,
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

/// A size in bytes: an integer, or a string with a unit (`"1GiB"`, `"512MiB"`, `"64KiB"`,
/// `"10MB"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses `"<number>[B|KiB|MiB|GiB|TiB|kB|KB|MB|GB|TB]"`.
    ///
    /// # Errors
    /// A message saying what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let num: f64 = num
            .parse()
            .map_err(|_| format!("{text:?} is not a size like \"1GiB\" or \"512MiB\""))?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "TiB" => 1 << 40,
            "kB" | "KB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            other => {
                return Err(format!(
                    "unknown size unit {other:?} (use B, KiB, MiB, GiB, TiB, kB, MB, GB, TB)"
                ))
            }
        };
        let bytes = num * mult as f64;
        if !bytes.is_finite() || bytes > u64::MAX as f64 {
            return Err(format!("{text:?} is too large"));
        }
        Ok(Self(bytes as u64))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Self(n)),
            Raw::S(s) => Self::parse(&s).map_err(serde::de::Error::custom),
        }
    }
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

fn default_outbox_dir() -> PathBuf {
    PathBuf::from("outbox")
}
fn default_outbox_max_bytes() -> ByteSize {
    ByteSize(1 << 30)
}
fn default_fsync() -> FsyncPolicy {
    FsyncPolicy::Interval
}
fn default_fsync_interval_ms() -> u64 {
    100
}

/// The Prometheus endpoint.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address to serve `GET /metrics` on, e.g. `127.0.0.1:9464`.
    pub listen: String,
}

fn default_qos() -> Qos {
    Qos::AtLeastOnce
}
fn default_keep_alive_s() -> u64 {
    30
}
fn default_max_packet_bytes() -> usize {
    1024 * 1024
}
fn default_encoding() -> EmbeddingEncoding {
    EmbeddingEncoding::Json
}
fn default_publish_queue() -> usize {
    256
}
fn default_stats_interval_s() -> u64 {
    10
}
fn default_max_backoff_ms() -> u64 {
    10_000
}

/// How fast a replay source plays its recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplaySpeed {
    /// Paced by the recording's sample rate, as a live sensor would deliver it.
    Realtime,
    /// As fast as the pipeline accepts it.
    Max,
}

/// File format of an IMU recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImuFileFormat {
    /// Decide by the file extension (`.csv` or `.npy`).
    Auto,
    /// Text with a header naming the columns `acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z` (any order,
    /// other columns ignored; an optional `t_s` column gives the rate).
    Csv,
    /// NumPy float32 `[6, N]` (rows acc xyz, gyro xyz), with `sample_rate_hz`.
    Npy,
}

/// One sensor. `type` selects the source.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// Replays an IMU recording (CSV or `.npy`) as if it were a live sensor.
    ImuReplay(ImuReplayConfig),
    /// Replays a stack of thermal frames (`.npy` uint8 or uint16) as if it were a camera.
    ThermalReplay(ThermalReplayConfig),
    /// Replays a stack of depth frames (`.npy` uint16 depth units) as if it were a camera.
    DepthReplay(DepthReplayConfig),
    /// Replays a WAV file as if it were a microphone.
    AudioReplay(AudioReplayConfig),
    /// An IMU on a serial port (USB-UART, on-board UART) speaking CSV lines or WitMotion frames.
    ImuSerial(ImuSerialConfig),
    /// A thermal camera through V4L2 (FLIR Lepton on PureThermal, InfiRay P2 Pro / Topdon
    /// TC001); needs the `v4l2` Cargo feature at run time.
    V4l2Thermal(V4l2ThermalConfig),
    /// An Intel RealSense depth camera, or a RealSense recording played back (needs a build
    /// with the `realsense` feature).
    Realsense(RealsenseConfig),
    /// A microphone through ALSA (cpal); needs the `alsa` Cargo feature at run time.
    AlsaAudio(AlsaAudioConfig),
}

impl SourceConfig {
    /// The sensor name used in topics and metrics.
    #[must_use]
    pub fn name(&self) -> &str {
        match self {
            Self::ImuReplay(c) => &c.name,
            Self::ThermalReplay(c) => &c.name,
            Self::DepthReplay(c) => &c.name,
            Self::AudioReplay(c) => &c.name,
            Self::ImuSerial(c) => &c.name,
            Self::V4l2Thermal(c) => &c.name,
            Self::Realsense(c) => &c.name,
            Self::AlsaAudio(c) => &c.name,
        }
    }

    /// The modality this source feeds.
    #[must_use]
    pub fn modality(&self) -> crate::Modality {
        match self {
            Self::ImuReplay(_) | Self::ImuSerial(_) => crate::Modality::Imu,
            Self::ThermalReplay(_) | Self::V4l2Thermal(_) => crate::Modality::Thermal,
            Self::DepthReplay(_) | Self::Realsense(_) => crate::Modality::Depth,
            Self::AudioReplay(_) | Self::AlsaAudio(_) => crate::Modality::Audio,
        }
    }

    /// ImageBind clips per window of an audio source (`None` for other modalities): the
    /// model's second input dimension.
    #[must_use]
    pub fn audio_clips(&self) -> Option<usize> {
        match self {
            Self::AudioReplay(c) => Some(c.clips),
            Self::AlsaAudio(c) => Some(c.clips),
            _ => None,
        }
    }

    /// Capacity and policy of the queue between the source and its windower.
    #[must_use]
    pub fn queue(&self) -> (usize, WhenFull) {
        match self {
            Self::ImuReplay(c) => (c.queue_capacity, c.when_full),
            Self::ThermalReplay(c) => (c.queue_capacity, c.when_full),
            Self::DepthReplay(c) => (c.queue_capacity, c.when_full),
            Self::AudioReplay(c) => (c.queue_capacity, c.when_full),
            Self::ImuSerial(c) => (c.queue_capacity, c.when_full),
            Self::V4l2Thermal(c) => (c.queue_capacity, c.when_full),
            Self::Realsense(c) => (c.queue_capacity, c.when_full),
            Self::AlsaAudio(c) => (c.queue_capacity, c.when_full),
        }
    }
}

/// How 16-bit thermal frames become 8-bit images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ThermalAgc {
    /// Per-frame min/max stretch (the reference convention; any scene gets full contrast).
    MinMax,
    /// A fixed temperature window `agc_min_c..agc_max_c` (radiometric cameras: a cold scene
    /// stays dark).
    FixedCelsius,
}

/// How a radiometric camera encodes temperature in 16-bit pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Radiometric {
    /// Kelvin × 100 (FLIR Lepton TLinear).
    CentiKelvin,
    /// Kelvin × 64 (InfiRay P2 Pro / Topdon TC001 temperature plane).
    Infiray64,
}

/// Thermal preprocessing options (SPEC.md §4; UNVERIFIED parameters are configurable).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ThermalPreprocessConfig {
    /// 16-bit → 8-bit mapping.
    #[serde(default = "default_agc")]
    pub agc: ThermalAgc,
    /// Temperature mapped to black with `fixed_celsius`.
    #[serde(default)]
    pub agc_min_c: Option<f64>,
    /// Temperature mapped to white with `fixed_celsius`.
    #[serde(default)]
    pub agc_max_c: Option<f64>,
    /// Pixel encoding for `fixed_celsius`.
    #[serde(default = "default_radiometric")]
    pub radiometric: Radiometric,
    /// Optional `Normalize` mean after `/255` (none by default, as ImageBind PR #73).
    #[serde(default)]
    pub normalize_mean: Option<f32>,
    /// Optional `Normalize` std.
    #[serde(default)]
    pub normalize_std: Option<f32>,
}

impl Default for ThermalPreprocessConfig {
    fn default() -> Self {
        Self {
            agc: default_agc(),
            agc_min_c: None,
            agc_max_c: None,
            radiometric: default_radiometric(),
            normalize_mean: None,
            normalize_std: None,
        }
    }
}

fn default_agc() -> ThermalAgc {
    ThermalAgc::MinMax
}
fn default_radiometric() -> Radiometric {
    Radiometric::CentiKelvin
}

/// A stack of camera frames replayed as a camera (`thermal_replay`, `depth_replay`): the same
/// options for both, with the preprocessing of the modality (`P`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(
    deny_unknown_fields,
    bound(
        deserialize = "P: Deserialize<'de> + Default + FrameReplayKind",
        serialize = "P: Serialize"
    )
)]
pub struct FrameReplayConfig<P> {
    /// Sensor name (topic segment).
    pub name: String,
    /// `.npy` `[N, H, W]` (or one `[H, W]` frame): uint8 or uint16 thermal, uint16 depth units.
    pub path: PathBuf,
    /// Frame rate of the recording (thermal 9, depth 30 by default).
    #[serde(default = "P::default_fps")]
    pub fps: f64,
    /// Replay pace.
    #[serde(default = "default_speed")]
    pub speed: ReplaySpeed,
    /// Start again at the end.
    #[serde(default, rename = "loop")]
    pub looping: bool,
    /// One frame is embedded per interval (the others are counted as skipped); 0 = every frame.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// Frames waiting for preprocessing.
    #[serde(default = "default_frame_queue")]
    pub queue_capacity: usize,
    /// Queue policy (`drop_oldest` keeps the latest frame, as a live camera would).
    #[serde(default = "default_block")]
    pub when_full: WhenFull,
    /// Preprocessing options (and, for depth, calibration).
    #[serde(default)]
    pub preprocess: P,
}

/// What differs between replayed frame kinds besides their preprocessing.
pub trait FrameReplayKind {
    /// Frame rate of a recording that does not say.
    fn default_fps() -> f64;
}

impl FrameReplayKind for ThermalPreprocessConfig {
    fn default_fps() -> f64 {
        9.0
    }
}

impl FrameReplayKind for DepthPreprocessConfig {
    fn default_fps() -> f64 {
        30.0
    }
}

/// A stack of thermal frames replayed as a camera.
pub type ThermalReplayConfig = FrameReplayConfig<ThermalPreprocessConfig>;

/// A V4L2 pixel format a thermal camera delivers (the FourCC, space included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum V4l2PixelFormat {
    /// `"Y16 "`: 16-bit little-endian (Lepton raw counts, or centi-kelvin with radiometry on).
    #[serde(rename = "Y16 ", alias = "Y16")]
    Y16,
    /// `"GREY"`: 8-bit greyscale.
    #[serde(rename = "GREY")]
    Grey,
    /// `"YUYV"`: packed 4:2:2, the luma is used (InfiRay P2 Pro / TC001).
    #[serde(rename = "YUYV")]
    Yuyv,
    /// `"UYVY"`: packed 4:2:2, the luma is used (PureThermal's colourised default).
    #[serde(rename = "UYVY")]
    Uyvy,
}

/// How the rows of a thermal camera's buffer are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ThermalLayout {
    /// Every row is image.
    Plain,
    /// FLIR Lepton: a 4:3 image, optionally followed by `telemetry_rows` rows that are stripped.
    Lepton,
    /// InfiRay P2 Pro / TC001 256x384 `YUYV` mode: top half image, bottom half temperature
    /// (little-endian u16, kelvin × 64); the temperature half is used.
    InfiraySplit,
}

/// A thermal camera through V4L2, captured with memory-mapped streaming. The device need not
/// exist when the daemon starts; while it is missing or after it disappears the source logs
/// once, publishes `connected: false` and reopens it with exponential backoff.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct V4l2ThermalConfig {
    /// Sensor name (topic segment).
    pub name: String,
    /// `/dev/video0` (better a stable `/dev/v4l/by-id/…` link), or `card:<name>` for the first
    /// `/dev/video*` capture device whose card name contains `<name>` (`card:PureThermal`).
    pub device: String,
    /// Format to request; default: the best the camera offers (`Y16 `, `GREY`, `YUYV`, `UYVY`
    /// in that order; `YUYV` for `infiray_split`).
    #[serde(default)]
    pub pixel_format: Option<V4l2PixelFormat>,
    /// How the buffer's rows are used.
    #[serde(default = "default_thermal_layout")]
    pub layout: ThermalLayout,
    /// `lepton`: telemetry rows after the image when telemetry is on (default 2, Lepton 3.x).
    #[serde(default)]
    pub telemetry_rows: Option<u32>,
    /// Buffer width to request (with `height_px`); default: the largest size offered.
    #[serde(default)]
    pub width_px: Option<u32>,
    /// Buffer height to request, telemetry rows or both halves of a split frame included.
    #[serde(default)]
    pub height_px: Option<u32>,
    /// One frame is embedded per interval (the latest; the others are counted as skipped);
    /// 0 = every frame.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// Frames waiting for preprocessing.
    #[serde(default = "default_frame_queue")]
    pub queue_capacity: usize,
    /// Queue policy; `drop_oldest` (default): the latest frame wins, the camera never waits.
    #[serde(default = "default_drop_oldest")]
    pub when_full: WhenFull,
    /// Longest wait between attempts to reopen a missing or failed camera (exponential backoff
    /// from 100 ms).
    #[serde(default = "default_camera_max_backoff_ms")]
    pub reconnect_max_backoff_ms: u64,
    /// Preprocessing options (`infiray_split` frames are kelvin × 64: `radiometric =
    /// "infiray64"` with `fixed_celsius`).
    #[serde(default)]
    pub preprocess: ThermalPreprocessConfig,
}

/// Telemetry rows of a Lepton 3.x with telemetry on (160x122 for 160x120).
pub const DEFAULT_LEPTON_TELEMETRY_ROWS: u32 = 2;

fn default_thermal_layout() -> ThermalLayout {
    ThermalLayout::Plain
}
fn default_camera_max_backoff_ms() -> u64 {
    5_000
}

/// Depth standardisation after resizing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DepthNormalizeKind {
    /// `(x - normalize_mean) / normalize_std` (Omnivore's inference transform; the default).
    Standardize,
    /// No standardisation (Omnivore's training config; the reference `prenorm` tensor).
    None,
}

/// What happens to invalid (0) depth pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DepthHoles {
    /// As the spec: 0 → nearest possible depth → maximal disparity.
    Spec,
    /// Each hole takes the nearest valid pixel of its row.
    NearestInRow,
}

/// Depth preprocessing options (SPEC.md §3; the parameters are UNVERIFIED upstream, so all are
/// settable). Calibration left unset comes from the camera, or (for recordings) the reference
/// values: focal 518.857901 px, baseline 0.075 m, 1 mm depth units.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DepthPreprocessConfig {
    /// Horizontal focal length of the depth stream, in pixels.
    #[serde(default)]
    pub focal_px: Option<f64>,
    /// Stereo baseline, in metres.
    #[serde(default)]
    pub baseline_m: Option<f64>,
    /// Metres per raw depth unit.
    #[serde(default)]
    pub depth_units_m: Option<f64>,
    /// Depths are clipped to at least this before the disparity conversion.
    #[serde(default = "default_min_depth_m")]
    pub min_depth_m: f64,
    /// Depths are clipped to at most this before the disparity conversion.
    #[serde(default = "default_max_depth_m")]
    pub max_depth_m: f64,
    /// DepthNorm: disparities are clamped to this and divided by it.
    #[serde(default = "default_norm_max")]
    pub norm_max: f64,
    /// DepthNorm: disparities are clamped to at least this.
    #[serde(default = "default_norm_min")]
    pub norm_min: f64,
    /// Final standardisation.
    #[serde(default = "default_depth_normalize")]
    pub normalize: DepthNormalizeKind,
    /// Mean of `standardize`.
    #[serde(default = "default_depth_mean")]
    pub normalize_mean: f64,
    /// Std of `standardize`.
    #[serde(default = "default_depth_std")]
    pub normalize_std: f64,
    /// Treatment of invalid (0) pixels.
    #[serde(default = "default_holes")]
    pub holes: DepthHoles,
}

impl Default for DepthPreprocessConfig {
    fn default() -> Self {
        Self {
            focal_px: None,
            baseline_m: None,
            depth_units_m: None,
            min_depth_m: default_min_depth_m(),
            max_depth_m: default_max_depth_m(),
            norm_max: default_norm_max(),
            norm_min: default_norm_min(),
            normalize: default_depth_normalize(),
            normalize_mean: default_depth_mean(),
            normalize_std: default_depth_std(),
            holes: default_holes(),
        }
    }
}

fn default_min_depth_m() -> f64 {
    0.01
}
fn default_max_depth_m() -> f64 {
    50.0
}
fn default_norm_max() -> f64 {
    75.0
}
fn default_norm_min() -> f64 {
    0.01
}
fn default_depth_normalize() -> DepthNormalizeKind {
    DepthNormalizeKind::Standardize
}
fn default_depth_mean() -> f64 {
    0.0418
}
fn default_depth_std() -> f64 {
    0.0295
}
fn default_holes() -> DepthHoles {
    DepthHoles::Spec
}

/// A stack of depth frames replayed as a camera.
pub type DepthReplayConfig = FrameReplayConfig<DepthPreprocessConfig>;

/// A WAV file replayed as a microphone.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AudioReplayConfig {
    /// Sensor name (topic segment).
    pub name: String,
    /// WAV file: any rate and channel count; 8/16/24/32-bit integer or 32-bit float.
    pub path: PathBuf,
    /// Replay pace.
    #[serde(default = "default_speed")]
    pub speed: ReplaySpeed,
    /// Start again at the end (capture times keep increasing).
    #[serde(default, rename = "loop")]
    pub looping: bool,
    /// Window length (ImageBind's clip is 2 s).
    #[serde(default = "default_audio_window_ms")]
    pub window_ms: u64,
    /// Step between window starts.
    #[serde(default = "default_audio_hop_ms")]
    pub hop_ms: u64,
    /// ImageBind clips per window (`[S, 1, 128, 204]`); a 2 s window's clips are identical, so
    /// 1 gives the same embedding at a third of the encoder cost.
    #[serde(default = "default_clips")]
    pub clips: usize,
    /// Sample blocks (~20 ms each) waiting for the windower.
    #[serde(default = "default_sample_queue")]
    pub queue_capacity: usize,
    /// Queue policy; `block` is right for replays.
    #[serde(default = "default_block")]
    pub when_full: WhenFull,
}

/// A sample format an ALSA device can deliver (converted to f32 in [-1, 1] on capture).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AudioSampleFormat {
    /// Signed 16-bit (divided by 32768, as torchaudio).
    I16,
    /// Signed 32-bit (divided by 2^31).
    I32,
    /// 32-bit float.
    F32,
}

/// A microphone through ALSA, captured with cpal. Rate, channels and format left unset are
/// negotiated from what the device supports (its default configuration first). The device is
/// opened when the daemon starts (a name that does not exist stops the start with the list of
/// devices); a device that disappears later is reopened with exponential backoff.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlsaAudioConfig {
    /// Sensor name (topic segment).
    pub name: String,
    /// ALSA PCM name: `default`, `hw:1,0`, `plughw:CARD=Device,DEV=0`, or a PCM defined in an
    /// asoundrc (it must carry a `hint { show on }` block to be listed).
    #[serde(default = "default_alsa_device")]
    pub device: String,
    /// Sample rate to request; default: the device's default rate.
    #[serde(default)]
    pub sample_rate_hz: Option<u32>,
    /// Channels to request (channel 0 is embedded); default: the device's default.
    #[serde(default)]
    pub channels: Option<u16>,
    /// Sample format to request: `i16`, `i32` or `f32`; default: the device's default.
    #[serde(default)]
    pub sample_format: Option<AudioSampleFormat>,
    /// Window length (ImageBind's clip is 2 s).
    #[serde(default = "default_audio_window_ms")]
    pub window_ms: u64,
    /// Step between window starts.
    #[serde(default = "default_audio_hop_ms")]
    pub hop_ms: u64,
    /// ImageBind clips per window.
    #[serde(default = "default_clips")]
    pub clips: usize,
    /// Sample blocks (one capture period each, ~10-20 ms) waiting for the windower.
    #[serde(default = "default_sample_queue")]
    pub queue_capacity: usize,
    /// Queue policy; `drop_oldest` (default): capture never waits for the pipeline.
    #[serde(default = "default_drop_oldest")]
    pub when_full: WhenFull,
    /// Longest wait between attempts to reopen a device that disappeared (exponential backoff
    /// from 100 ms).
    #[serde(default = "default_serial_max_backoff_ms")]
    pub reconnect_max_backoff_ms: u64,
    /// Test/diagnostic option: stop after this many frames (the source then ends like a finished
    /// replay). The ALSA `file` plugin repeats its last period forever at end of file, so tests
    /// feeding a known signal through it need this. Leave unset on a real microphone.
    #[serde(default)]
    pub max_frames: Option<u64>,
}

fn default_alsa_device() -> String {
    "default".to_string()
}

fn default_audio_window_ms() -> u64 {
    2_000
}
fn default_audio_hop_ms() -> u64 {
    1_000
}
fn default_clips() -> usize {
    1
}

/// An Intel RealSense depth camera (D400 family), or a recording of one played back.
/// Calibration comes from the camera (or the recording); `preprocess` values override it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RealsenseConfig {
    /// Sensor name (topic segment).
    pub name: String,
    /// Serial number of the camera to use; the first camera found when omitted.
    #[serde(default)]
    pub serial: Option<String>,
    /// A RealSense recording (`.bag`, or `.db3` from librealsense 2.57+) to play back instead of
    /// a live camera; librealsense paces playback in real time.
    #[serde(default)]
    pub recording: Option<PathBuf>,
    /// With `recording`: start again at the end.
    #[serde(default, rename = "loop")]
    pub looping: bool,
    /// Depth stream width.
    #[serde(default = "default_realsense_width_px")]
    pub width_px: u32,
    /// Depth stream height.
    #[serde(default = "default_realsense_height_px")]
    pub height_px: u32,
    /// Depth stream frame rate (a mode the camera offers: 6, 15, 30, 60, 90).
    #[serde(default = "default_realsense_fps")]
    pub fps: u32,
    /// One frame is embedded per interval (the others are counted as skipped); 0 = every frame.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// Frames waiting for preprocessing.
    #[serde(default = "default_realsense_queue")]
    pub queue_capacity: usize,
    /// Queue policy (`drop_oldest`, the default, keeps the latest frame).
    #[serde(default = "default_drop_oldest")]
    pub when_full: WhenFull,
    /// Longest wait between attempts to reopen a missing or failed camera (exponential backoff
    /// from 100 ms).
    #[serde(default = "default_serial_max_backoff_ms")]
    pub reconnect_max_backoff_ms: u64,
    /// Preprocessing options; calibration set here overrides the camera's.
    #[serde(default)]
    pub preprocess: DepthPreprocessConfig,
}

fn default_realsense_width_px() -> u32 {
    640
}
fn default_realsense_height_px() -> u32 {
    480
}
fn default_realsense_fps() -> u32 {
    30
}
fn default_realsense_queue() -> usize {
    2
}

fn default_interval_ms() -> u64 {
    1000
}
fn default_frame_queue() -> usize {
    4
}

/// An IMU recording replayed as a sensor.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImuReplayConfig {
    /// Sensor name (topic segment): letters, digits, `-`, `_`.
    pub name: String,
    /// The recording (relative paths are relative to the config file).
    pub path: PathBuf,
    /// File format.
    #[serde(default = "default_imu_format")]
    pub format: ImuFileFormat,
    /// Sample rate of the recording; required for `.npy`, optional for CSV with a `t_s` column.
    #[serde(default)]
    pub sample_rate_hz: Option<f64>,
    /// Replay pace.
    #[serde(default = "default_speed")]
    pub speed: ReplaySpeed,
    /// Start again at the end (timestamps keep increasing).
    #[serde(default, rename = "loop")]
    pub looping: bool,
    /// Window length.
    #[serde(default = "default_imu_window_ms")]
    pub window_ms: u64,
    /// Step between window starts.
    #[serde(default = "default_imu_hop_ms")]
    pub hop_ms: u64,
    /// Sample blocks waiting for the windower.
    #[serde(default = "default_sample_queue")]
    pub queue_capacity: usize,
    /// Policy of the sample queue; `block` is the right choice for replays (nothing is lost).
    #[serde(default = "default_block")]
    pub when_full: WhenFull,
}

fn default_imu_format() -> ImuFileFormat {
    ImuFileFormat::Auto
}
fn default_speed() -> ReplaySpeed {
    ReplaySpeed::Realtime
}
fn default_imu_window_ms() -> u64 {
    5_000
}
fn default_imu_hop_ms() -> u64 {
    1_000
}
fn default_sample_queue() -> usize {
    64
}
fn default_block() -> WhenFull {
    WhenFull::Block
}

/// Parity bit of a serial line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SerialParity {
    /// No parity bit (the usual `8N1`).
    None,
    /// Odd parity.
    Odd,
    /// Even parity.
    Even,
}

/// Flow control of a serial line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SerialFlowControl {
    /// None (IMUs stream without it).
    None,
    /// XON/XOFF in the data stream (unusable with binary protocols such as WitMotion).
    Software,
    /// RTS/CTS lines.
    Hardware,
}

/// What the IMU sends on its serial line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SerialImuProtocol {
    /// One sample per text line, columns as in `csv_columns`.
    Csv,
    /// WitMotion WT901-family binary frames (0x51 acceleration + 0x52 angular velocity; the
    /// 0x50 time frame, when enabled on the sensor, gives the device timestamp).
    Witmotion,
}

/// What one column of a CSV line holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum CsvColumn {
    /// Acceleration x (unit: `acc_unit`).
    #[serde(rename = "acc_x")]
    AccX,
    /// Acceleration y.
    #[serde(rename = "acc_y")]
    AccY,
    /// Acceleration z.
    #[serde(rename = "acc_z")]
    AccZ,
    /// Angular velocity x (unit: `gyro_unit`).
    #[serde(rename = "gyro_x")]
    GyroX,
    /// Angular velocity y.
    #[serde(rename = "gyro_y")]
    GyroY,
    /// Angular velocity z.
    #[serde(rename = "gyro_z")]
    GyroZ,
    /// Device timestamp in seconds (fractions allowed).
    #[serde(rename = "t_s")]
    TimeS,
    /// Device timestamp in milliseconds.
    #[serde(rename = "t_ms")]
    TimeMs,
    /// Device timestamp in microseconds.
    #[serde(rename = "t_us")]
    TimeUs,
    /// Device timestamp in nanoseconds.
    #[serde(rename = "t_ns")]
    TimeNs,
    /// A column that is not used.
    #[serde(rename = "_")]
    Ignored,
}

impl CsvColumn {
    /// The six axes in output order: acc xyz, gyro xyz.
    pub const AXES: [CsvColumn; 6] = [
        Self::AccX,
        Self::AccY,
        Self::AccZ,
        Self::GyroX,
        Self::GyroY,
        Self::GyroZ,
    ];

    /// The name used in the config file.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AccX => "acc_x",
            Self::AccY => "acc_y",
            Self::AccZ => "acc_z",
            Self::GyroX => "gyro_x",
            Self::GyroY => "gyro_y",
            Self::GyroZ => "gyro_z",
            Self::TimeS => "t_s",
            Self::TimeMs => "t_ms",
            Self::TimeUs => "t_us",
            Self::TimeNs => "t_ns",
            Self::Ignored => "_",
        }
    }

    /// Whether this is a device timestamp column.
    #[must_use]
    pub fn is_time(self) -> bool {
        matches!(
            self,
            Self::TimeS | Self::TimeMs | Self::TimeUs | Self::TimeNs
        )
    }
}

/// Column separator of CSV lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CsvDelimiter {
    /// `,`
    Comma,
    /// `;`
    Semicolon,
    /// A tab.
    Tab,
    /// Runs of spaces or tabs.
    Whitespace,
}

/// Unit of the acceleration columns of CSV lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum AccUnit {
    /// Standard gravity (9.80665 m/s²).
    #[serde(rename = "g")]
    G,
    /// Metres per second squared.
    #[serde(rename = "m/s^2")]
    MetersPerSecond2,
}

/// Unit of the angular velocity columns of CSV lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum GyroUnit {
    /// Degrees per second.
    #[serde(rename = "deg/s")]
    DegPerSec,
    /// Radians per second.
    #[serde(rename = "rad/s")]
    RadPerSec,
}

/// An IMU on a serial port. The port may be absent at start (a USB device plugged in later) and
/// may disappear: it is reopened with exponential backoff, and the sensor's `state` says whether
/// it is connected.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImuSerialConfig {
    /// Sensor name (topic segment): letters, digits, `-`, `_`.
    pub name: String,
    /// The port: `/dev/ttyUSB0`, `/dev/ttyTHS1`, or better a stable `/dev/serial/by-id/…` link.
    pub path: PathBuf,
    /// Line speed in bits per second.
    #[serde(default = "default_baud_rate")]
    pub baud_rate: u32,
    /// Data bits per character, 5 to 8.
    #[serde(default = "default_data_bits")]
    pub data_bits: u8,
    /// Parity bit.
    #[serde(default = "default_parity")]
    pub parity: SerialParity,
    /// Stop bits, 1 or 2.
    #[serde(default = "default_stop_bits")]
    pub stop_bits: u8,
    /// Flow control.
    #[serde(default = "default_flow_control")]
    pub flow_control: SerialFlowControl,
    /// What the device sends.
    pub protocol: SerialImuProtocol,
    /// `csv`: what each column holds, in order (`acc_x` … `gyro_z` once each, at most one
    /// device timestamp `t_s`/`t_ms`/`t_us`/`t_ns`, `_` for a column to ignore). Extra columns
    /// after the last listed one are ignored.
    #[serde(default)]
    pub csv_columns: Option<Vec<CsvColumn>>,
    /// `csv`: column separator (default `comma`).
    #[serde(default)]
    pub csv_delimiter: Option<CsvDelimiter>,
    /// `csv`: unit of the acceleration columns, `"g"` or `"m/s^2"` (required for csv).
    #[serde(default)]
    pub acc_unit: Option<AccUnit>,
    /// `csv`: unit of the angular velocity columns, `"deg/s"` or `"rad/s"` (required for csv).
    #[serde(default)]
    pub gyro_unit: Option<GyroUnit>,
    /// `witmotion`: accelerometer full scale configured on the sensor, in g (default 16).
    #[serde(default)]
    pub witmotion_acc_range_g: Option<f32>,
    /// `witmotion`: gyroscope full scale configured on the sensor, in deg/s (default 2000).
    #[serde(default)]
    pub witmotion_gyro_range_dps: Option<f32>,
    /// Nominal output rate of the device: the sample clock when the protocol carries no
    /// timestamp, and the rate windows are cut at.
    pub sample_rate_hz: f64,
    /// Window length.
    #[serde(default = "default_imu_window_ms")]
    pub window_ms: u64,
    /// Step between window starts.
    #[serde(default = "default_imu_hop_ms")]
    pub hop_ms: u64,
    /// Sample blocks (~20 ms each) waiting for the windower.
    #[serde(default = "default_sample_queue")]
    pub queue_capacity: usize,
    /// Policy of the sample queue. `drop_oldest` (default): a live sensor never waits for the
    /// pipeline, since the serial line cannot be paused.
    #[serde(default = "default_drop_oldest")]
    pub when_full: WhenFull,
    /// Longest wait between attempts to reopen a missing or failed port (exponential backoff
    /// from 100 ms).
    #[serde(default = "default_serial_max_backoff_ms")]
    pub reconnect_max_backoff_ms: u64,
}

/// Default accelerometer full scale of WitMotion sensors.
pub const DEFAULT_WITMOTION_ACC_RANGE_G: f32 = 16.0;
/// Default gyroscope full scale of WitMotion sensors.
pub const DEFAULT_WITMOTION_GYRO_RANGE_DPS: f32 = 2000.0;

fn default_baud_rate() -> u32 {
    115_200
}
fn default_data_bits() -> u8 {
    8
}
fn default_parity() -> SerialParity {
    SerialParity::None
}
fn default_stop_bits() -> u8 {
    1
}
fn default_flow_control() -> SerialFlowControl {
    SerialFlowControl::None
}
fn default_serial_max_backoff_ms() -> u64 {
    5_000
}

impl Config {
    /// Parses TOML text; `path` is used for messages and as the base of relative paths.
    ///
    /// # Errors
    /// [`ConfigError::Parse`] with the line and column of the first syntax or schema error.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map(|s| line_column(text, s.start))
                .unwrap_or((1, 1));
            ConfigError::Parse {
                path: path.to_path_buf(),
                line,
                column,
                message: e.message().trim().to_string(),
            }
        })?;
        config.base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        if config.base_dir.as_os_str().is_empty() {
            config.base_dir = PathBuf::from(".");
        }
        Ok(config)
    }

    /// A path from the file, resolved against the config file's directory.
    #[must_use]
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// The topic prefix in effect.
    #[must_use]
    pub fn topic_prefix(&self) -> String {
        self.mqtt
            .topic_prefix
            .clone()
            .unwrap_or_else(|| format!("edgebind/{}", self.device.id))
    }
}

/// Reads, parses and validates a configuration file.
///
/// # Errors
/// Any [`ConfigError`]; validation problems are all reported together.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let config = Config::parse(&text, path)?;
    let problems = validate(&config);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            problems,
        })
    }
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
    (line, column)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_units() {
        assert_eq!(ByteSize::parse("1GiB"), Ok(ByteSize(1 << 30)));
        assert_eq!(ByteSize::parse("512 MiB"), Ok(ByteSize(512 << 20)));
        assert_eq!(ByteSize::parse("10MB"), Ok(ByteSize(10_000_000)));
        assert_eq!(ByteSize::parse("4096"), Ok(ByteSize(4096)));
        assert!(ByteSize::parse("1 gigabyte").is_err());
        assert!(ByteSize::parse("lots").is_err());
    }

    #[test]
    fn line_column_counts_from_one() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
    }

    #[test]
    fn unknown_field_names_line_and_column() {
        let text = "[device]\nid = \"a\"\nidd = 3\n";
        let err = Config::parse(text, Path::new("x.toml")).unwrap_err();
        match err {
            ConfigError::Parse { line, message, .. } => {
                assert_eq!(line, 3);
                assert!(message.contains("unknown field"), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
