//! # edgebind
//!
//! A sensor-edge daemon that places every sensor of a device in ImageBind's shared embedding
//! space and publishes the embeddings and their nearest text concepts over MQTT.
//!
//! # Layout
//! - [`cli`]: the command line (`run`, `check`, `warm`, `doctor`, `devices`, `demo`, `preprocess`,
//!   `embed`, `concepts`, `triggers`, `bench`).
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
//!   reloads; concept sets as words, embedded with the text encoder, cached on disk, changed by
//!   `set`/`add`/`remove` commands and persisted; the configured sets live per sensor (`live`).
//! - [`output`]: the output seam: typed events (a window embedded, a sensor's state, the
//!   daemon's stats, trigger events and scenes), the fan-out to every output's bounded queue,
//!   the reporter, the trigger stage (engines per sensor, scene, saved state, example files).
//! - [`publish`]: the MQTT output: payloads and encoding (pure), the outbox, the publisher
//!   owning the event loop (MQTT 3.1.1 or 5) and routing the messages it subscribes to
//!   (`mqtt::inbound`), a local broker.
//! - [`pipeline`]: bounded queues with named policies, the processors (one per family of
//!   modalities) and the per-stream thread that runs one.
//! - [`telemetry`]: counters, drops by reason, handled errors, the one table of metrics (stats
//!   payload and Prometheus endpoint), logging set-up and rate-limited logging.
//! - [`status`]: the metrics listener (axum on hyper, with limits): `/metrics`, the live status
//!   page and `/api/status`, fed by the status output's bounded view.
//! - [`service`]: systemd notifications (READY, STATUS, STOPPING) and the watchdog heartbeat.
//! - [`time`]: capture timestamps (monotonic + UTC from one offset).
//! - [`modality`]: the modality table: per modality its name, model input shape and dtype, how
//!   its stream is cut (with the default window) and its preprocessing; the one place shapes
//!   and names are written.
//! - [`triggers`]: semantic events (pure): concept/example/novelty/stuck triggers, scene fusion.

pub mod app;
pub mod bench;
pub mod cli;
pub mod concepts;
pub mod config;
pub mod devices;
pub mod files;
pub mod inference;
pub mod modality;
pub mod output;
pub mod pipeline;
pub mod preprocess;
pub mod publish;
pub mod service;
pub mod sources;
pub mod status;
pub mod telemetry;
pub mod time;
pub mod triggers;
pub mod window;

pub use modality::{Modality, ModalitySpec};
