//! Building the pipeline: everything a run needs, made and checked from a validated
//! configuration before anything runs — ONNX Runtime and the models (loaded, warmed up and
//! parity-checked), the sources and their processors, the broker's address and credentials, the
//! metrics listener. Nothing is spawned here; [`Pipeline::run`](super::Pipeline) does that.
//!
//! The model load is the slow part (a TensorRT engine build takes minutes on a Jetson), so it
//! runs on a thread of its own while the caller watches the cancellation token: a stop asked for
//! meanwhile is obeyed at once and the loading thread is abandoned (ONNX Runtime gives no way to
//! interrupt a session build; the process exits without waiting for it).

use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

use super::open::build_sources;
use super::{Broker, RunOptions};
use crate::concepts::live::LiveSets;
use crate::config::Config;
use crate::inference::{load_model_set, LoadOptions, ModelSet, OrtRuntime};
use crate::publish::connection::Security;
use crate::sources::kind::BuiltSource;
use crate::telemetry::Telemetry;
use crate::time::Clock;

/// How often a wait for the loading thread looks at the cancellation token.
const CANCEL_POLL: Duration = Duration::from_millis(50);

/// Start-up was stopped (SIGTERM/SIGINT) before the pipeline was built.
#[derive(Debug, thiserror::Error)]
#[error("start-up stopped before the pipeline was built")]
pub struct Cancelled;

/// ONNX Runtime and the configuration's models, loaded and warm.
#[derive(Debug)]
pub struct Models {
    /// The runtime.
    pub runtime: OrtRuntime,
    /// The model set's directory (the concept bank is reloaded from it).
    pub dir: PathBuf,
    /// The encoders, the manifest and the concept bank.
    pub set: ModelSet,
}

/// Loads ONNX Runtime and every model the configuration's sources need (TensorRT engines built
/// into the cache, each model warmed up and parity-checked) on a thread of its own, unless
/// `cancel` fires first.
///
/// # Errors
/// [`Cancelled`] when `cancel` fired; else the runtime, cache directory, model, provider or
/// parity problem, with context.
pub fn load_models(config: &Config, cancel: &CancellationToken) -> Result<Models> {
    let library = config
        .runtime
        .library_path
        .as_ref()
        .map(|p| config.resolve(p));
    let dir = config.resolve(&config.models.dir);
    let modalities = config.modalities();
    let options = LoadOptions::from_config(config);
    let (done_tx, done) = mpsc::sync_channel(1);
    let load_dir = dir.clone();
    std::thread::Builder::new()
        .name("load-models".into())
        .spawn(move || {
            let loaded = load(library.as_deref(), &load_dir, &modalities, &options);
            // The receiver is gone when start-up was cancelled: nobody wants the models.
            let _ = done_tx.send(loaded);
        })
        .context("cannot start a thread to load the models")?;
    loop {
        match done.recv_timeout(CANCEL_POLL) {
            Ok(loaded) => {
                let (runtime, set) = loaded?;
                return Ok(Models { runtime, dir, set });
            }
            Err(RecvTimeoutError::Timeout) if cancel.is_cancelled() => {
                tracing::info!("stop requested while the models load; not waiting for them");
                return Err(Cancelled.into());
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                anyhow::bail!("the model loading thread ended without a result")
            }
        }
    }
}

/// The loading thread's work.
fn load(
    library: Option<&std::path::Path>,
    dir: &std::path::Path,
    modalities: &[crate::Modality],
    options: &LoadOptions,
) -> Result<(OrtRuntime, ModelSet)> {
    let runtime = OrtRuntime::load(library)?;
    tracing::info!(
        library = %runtime.library.display(),
        version = %runtime.version,
        api = crate::inference::runtime::REQUIRED_MINOR,
        "ONNX Runtime loaded"
    );
    let set = load_model_set(&runtime, dir, modalities, options)?;
    Ok((runtime, set))
}

/// Everything a run needs, built and checked; nothing running yet.
#[derive(Debug)]
pub struct Pipeline {
    /// The configuration it was built from.
    pub(super) config: Config,
    /// The run's flags.
    pub(super) options: RunOptions,
    /// The capture clock every source stamps with.
    pub(super) clock: Clock,
    /// Counters of every stream, queue, model and the publisher.
    pub(super) telemetry: Arc<Telemetry>,
    /// The runtime and the models, warm.
    pub(super) models: Models,
    /// One per configured source, in order, with its stream's processor.
    pub(super) sources: Vec<BuiltSource>,
    /// Where the broker is (a local one runs as long as this lives).
    pub(super) broker: Broker,
    /// Credentials and TLS for it.
    pub(super) security: Security,
    /// The Prometheus endpoint's socket, bound.
    pub(super) metrics_listener: Option<std::net::TcpListener>,
    /// The configured concept sets, embedded (or read from the cache) and in use.
    pub(super) concept_sets: LiveSets,
}

impl Pipeline {
    /// Builds the pipeline of `config`: loads the runtime and the models (abandoned at once when
    /// `cancel` fires meanwhile), opens the sources, resolves the broker, binds the metrics
    /// endpoint. Blocking; nothing is spawned.
    ///
    /// # Errors
    /// [`Cancelled`] when `cancel` fired during the model load; anything that prevents starting
    /// (runtime, models, sources, broker URL, credentials, metrics address), with context.
    pub fn build(config: Config, options: RunOptions, cancel: &CancellationToken) -> Result<Self> {
        let telemetry = Arc::new(Telemetry::new(
            config.streams().iter().map(|(_, s)| s.name.as_str()),
        ));
        crate::service::status("starting: loading ONNX Runtime and the models");
        let models = load_models(&config, cancel)?;
        if !config.concepts.sets.is_empty() {
            crate::service::status("starting: embedding the concept sets");
        }
        let concept_sets =
            LiveSets::start(&config, &models.runtime, &models.set.manifest, &models.dir)
                .context("concept sets")?;
        crate::service::status("starting: models warm; opening the sources");
        let sources = build_sources(&config)?;
        let broker = Broker::from_url(&config.mqtt.url)?;
        let security = crate::publish::connection::build(&config, broker.tls)?;
        let metrics_listener = match &config.metrics {
            Some(m) => Some(bind_metrics(&m.listen)?),
            None => None,
        };
        Ok(Self {
            config,
            options,
            clock: Clock::new(),
            telemetry,
            models,
            sources,
            broker,
            security,
            metrics_listener,
            concept_sets,
        })
    }
}

/// The metrics endpoint's socket, bound now so that a taken port is a start-up error; the
/// runtime takes it over when the pipeline runs.
fn bind_metrics(listen: &str) -> Result<std::net::TcpListener> {
    let listener =
        std::net::TcpListener::bind(listen).with_context(|| format!("metrics.listen {listen}"))?;
    listener
        .set_nonblocking(true)
        .with_context(|| format!("metrics.listen {listen}"))?;
    Ok(listener)
}
