//! The supervisor: builds everything from a validated config ([`Pipeline::build`]: runtime,
//! models, sources, broker; stoppable while the models load), then runs sources → windows →
//! inference → publisher ([`Pipeline::run`]), and stops in order on SIGTERM/SIGINT or when every
//! (finite) source has ended: sources stop, windows flush, inference drains, the publisher
//! delivers what it was handed, the connection closes. SIGHUP reloads the concept bank.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::concepts::reload::{reload, ReloadError, ReloadOutcome};
use crate::concepts::SharedConcepts;
use crate::config::Config;
use crate::publish::{BrokerUrl, LocalBroker, PublisherReport};
use crate::telemetry::Telemetry;
use crate::Modality;

mod build;
mod concepts;
mod open;
pub mod probe;
mod run;

pub use build::{load_models, Cancelled, Models, Pipeline};
pub use open::recording_problems;

/// Knobs of one run that are flags, not config.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// How long a clean stop may take before what is left is abandoned.
    pub shutdown_timeout: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// What the publisher delivered.
    pub publisher: PublisherReport,
    /// Windows cut per sensor.
    pub windows: BTreeMap<String, u64>,
    /// Whether the run stopped because of a signal (otherwise every source ended).
    pub stopped_by_signal: bool,
    /// Whether every window cut was processed before the stop (false: the pipeline was still
    /// busy, or hung, when the shutdown timeout ran out, and what it held is lost).
    pub pipeline_drained: bool,
}

/// Where the broker of a run is; keeps a local broker alive for the run's duration.
#[derive(Debug)]
pub struct Broker {
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// `mqtts://`.
    pub tls: bool,
    _local: Option<LocalBroker>,
}

impl Broker {
    /// Resolves `url`, starting a local mosquitto for `local`.
    ///
    /// # Errors
    /// A bad URL or a local broker that cannot start.
    pub fn from_url(url: &str) -> Result<Self> {
        match BrokerUrl::parse(url)? {
            BrokerUrl::Tcp { host, port } => Ok(Self {
                host,
                port,
                tls: false,
                _local: None,
            }),
            BrokerUrl::Tls { host, port } => Ok(Self {
                host,
                port,
                tls: true,
                _local: None,
            }),
            BrokerUrl::Local => {
                let local = LocalBroker::start(&[]).context("starting the local MQTT broker")?;
                tracing::info!(url = %local.url(), "started a local mosquitto");
                Ok(Self {
                    host: "127.0.0.1".into(),
                    port: local.port(),
                    tls: false,
                    _local: Some(local),
                })
            }
        }
    }
}

/// One model as `edgebind warm` loaded it.
#[derive(Debug, Clone)]
pub struct WarmedModel {
    /// The modality.
    pub modality: Modality,
    /// The model file.
    pub path: std::path::PathBuf,
    /// The provider in use.
    pub provider: &'static str,
    /// The load step in use.
    pub step: &'static str,
    /// Nodes per provider (`tensorrt 3, cuda 41, cpu 2`).
    pub nodes: String,
    /// ONNX Runtime version.
    pub ort_version: String,
    /// The parity check's result (`None`: no reference).
    pub parity: Option<crate::inference::ParityReport>,
    /// Seconds from the start of the command until every model was warm.
    pub load_s: f64,
}

/// Loads ONNX Runtime and every model the configuration's sources need exactly as [`run`] does
/// ([`load_models`]): TensorRT engines are built into the cache, each model is warmed up and parity-checked. Nothing else starts.
///
/// # Errors
/// As the start of [`run`]: runtime, cache directory, models, providers, parity.
pub fn warm(config: &Config) -> Result<Vec<WarmedModel>> {
    let started = std::time::Instant::now();
    // `warm` has no signal handler: SIGTERM ends it the default way, at once.
    let models = load_models(config, &CancellationToken::new())?;
    let load_s = started.elapsed().as_secs_f64();
    let ort_version = models.runtime.version;
    Ok(models
        .set
        .encoders
        .into_iter()
        .map(|(modality, loaded)| WarmedModel {
            modality,
            path: loaded.encoder.path.clone(),
            provider: loaded.encoder.provider.as_str(),
            step: loaded.encoder.step,
            nodes: loaded.encoder.placement.describe(),
            ort_version: ort_version.clone(),
            parity: loaded.parity,
            load_s,
        })
        .collect())
}

/// Runs the daemon until a signal or until every source has ended.
///
/// # Errors
/// Anything that prevents starting (runtime, models, sources, broker URL), with context.
pub async fn run(config: Config, options: RunOptions) -> Result<RunReport> {
    let cancel = CancellationToken::new();
    let reload = Arc::new(Notify::new());
    let signal_task = {
        let cancel = cancel.clone();
        let reload = Arc::clone(&reload);
        tokio::spawn(async move {
            let stopped = wait_for_signal(&cancel, &reload).await;
            if stopped {
                tracing::info!("stop requested; shutting down in order");
                cancel.cancel();
            }
            stopped
        })
    };
    let result = build_and_run(config, options, cancel.clone(), reload).await;
    cancel.cancel();
    let by_signal = signal_task.await.unwrap_or(false);
    result.map(|mut r| {
        r.stopped_by_signal = by_signal;
        r
    })
}

/// Builds the pipeline off the runtime (the model load blocks for seconds, or minutes for a
/// TensorRT engine, while the signal task must go on running), then runs it. A stop asked for
/// during the build ends the run at once, with nothing delivered and nothing lost.
///
/// # Errors
/// As [`Pipeline::build`] and [`Pipeline::run`].
pub async fn build_and_run(
    config: Config,
    options: RunOptions,
    cancel: CancellationToken,
    reload_concepts: Arc<Notify>,
) -> Result<RunReport> {
    let (built_tx, built) = tokio::sync::oneshot::channel();
    {
        let cancel = cancel.clone();
        std::thread::Builder::new()
            .name("build".into())
            .spawn(move || {
                // The receiver is gone only if the run itself was dropped.
                let _ = built_tx.send(Pipeline::build(config, options, &cancel));
            })
            .context("cannot start a thread to build the pipeline")?;
    }
    let pipeline = match built
        .await
        .context("the build thread ended without a result")?
    {
        Ok(p) => p,
        Err(e) if e.is::<Cancelled>() => {
            tracing::info!("stopped during start-up; nothing was running");
            return Ok(RunReport {
                publisher: PublisherReport {
                    delivered: 0,
                    undelivered: 0,
                },
                windows: BTreeMap::new(),
                stopped_by_signal: false,
                pipeline_drained: true,
            });
        }
        Err(e) => return Err(e),
    };
    pipeline.run(cancel, reload_concepts).await
}

/// Waits for SIGTERM/SIGINT (true) or `cancel` (false); each SIGHUP in between asks for a
/// concept reload (installed first thing, so that an early SIGHUP never kills the daemon).
async fn wait_for_signal(cancel: &CancellationToken, reload: &Notify) -> bool {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        cancel.cancelled().await;
        return false;
    };
    let mut hup = signal(SignalKind::hangup()).ok();
    loop {
        tokio::select! {
            _ = term.recv() => return true,
            _ = int.recv() => return true,
            () = cancel.cancelled() => return false,
            Some(()) = async {
                match hup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                tracing::info!("SIGHUP: reloading the concept bank");
                // A permit is kept if the pipeline is still starting: the reload runs then.
                reload.notify_one();
            }
        }
    }
}

/// Reloads the concept bank of the model set in `dir` each time `reload` is notified, until
/// `cancel`. A bank that fails any check is refused with a logged error and the old one stays.
async fn reload_concepts_on_request(
    shared: SharedConcepts,
    dir: std::path::PathBuf,
    dim: usize,
    reload_requests: Arc<Notify>,
    telemetry: Arc<Telemetry>,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = reload_requests.notified() => {}
        }
        let (s, d) = (shared.clone(), dir.clone());
        let outcome = tokio::task::spawn_blocking(move || reload(&s, &d, dim))
            .await
            .unwrap_or_else(|e| {
                Err(ReloadError::Task {
                    dir: dir.clone(),
                    message: e.to_string(),
                })
            });
        let stats = &telemetry.concepts;
        match outcome {
            Ok(ReloadOutcome::Replaced {
                count,
                sha256,
                previous_sha256,
            }) => {
                stats.set_active(count, &sha256);
                stats
                    .reloads
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(concepts = count, %sha256, previous_sha256 = %previous_sha256,
                    "concept bank reloaded; new windows are matched against it");
            }
            Ok(ReloadOutcome::Unchanged { sha256 }) => {
                tracing::info!(%sha256, "concept bank unchanged on disk; still in use");
            }
            Err(e) => {
                stats
                    .reload_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let active = shared.current();
                tracing::error!(error = %e, concepts = active.len(), sha256 = %active.sha256(),
                    "new concept bank refused; the previous one stays in use");
            }
        }
    }
}
