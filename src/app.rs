//! The supervisor: builds everything from a validated config (runtime, models, sources, broker),
//! then runs sources → windows → inference → publisher, and stops in order on SIGTERM/SIGINT or
//! when every (finite) source has ended: sources stop, windows flush, inference drains, the
//! publisher delivers what it was handed, the connection closes. SIGHUP reloads the concept bank.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::concepts::reload::{reload, ReloadError, ReloadOutcome};
use crate::concepts::SharedConcepts;
use crate::config::{Config, SourceConfig};
use crate::inference::worker::{spawn_worker, Batching, Job, WorkerContext};
use crate::inference::{load_model_set, LoadOptions, OrtRuntime};
use crate::pipeline::stream::spawn_stream;
use crate::pipeline::{bounded, QueueSender};
use crate::publish::payload::Topics;
use crate::publish::{run_publisher, BrokerUrl, LocalBroker, PublisherConfig, PublisherReport};
use crate::sources::{self, SourceContext, SourceMessage};
use crate::telemetry::{DropReason, ModelStats, QueueKind, Telemetry};
use crate::time::Clock;
use crate::Modality;

mod open;

use open::build_sources;
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
    /// The load step in use and how many nodes each provider got.
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

/// Loads ONNX Runtime and every model the configuration's sources need exactly as [`run`] does: TensorRT engines are built
/// into the cache, each model is warmed up and parity-checked. Nothing else starts.
///
/// # Errors
/// As the start of [`run`]: runtime, cache directory, models, providers, parity.
pub fn warm(config: &Config) -> Result<Vec<WarmedModel>> {
    let started = std::time::Instant::now();
    let runtime = OrtRuntime::load(
        config
            .runtime
            .library_path
            .as_ref()
            .map(|p| config.resolve(p))
            .as_deref(),
    )?;
    let models_dir = config.resolve(&config.models.dir);
    let mut modalities: Vec<Modality> = config.sources.iter().map(SourceConfig::modality).collect();
    modalities.sort();
    modalities.dedup();
    let set = load_model_set(
        &runtime,
        &models_dir,
        &modalities,
        &LoadOptions::from_config(config),
    )?;
    let load_s = started.elapsed().as_secs_f64();
    Ok(set
        .encoders
        .into_iter()
        .map(|(modality, loaded)| WarmedModel {
            modality,
            path: loaded.encoder.path.clone(),
            provider: loaded.encoder.provider.as_str(),
            step: loaded.encoder.step,
            nodes: loaded.encoder.placement.describe(),
            ort_version: runtime.version.clone(),
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
    let result = run_until(config, options, cancel.clone(), reload).await;
    cancel.cancel();
    let by_signal = signal_task.await.unwrap_or(false);
    result.map(|mut r| {
        r.stopped_by_signal = by_signal;
        r
    })
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

/// Runs the daemon until `cancel` fires or every source has ended; a notification of
/// `reload_concepts` reloads the concept bank.
///
/// # Errors
/// As [`run`].
pub async fn run_until(
    config: Config,
    options: RunOptions,
    cancel: CancellationToken,
    reload_concepts: Arc<Notify>,
) -> Result<RunReport> {
    let clock = Clock::new();
    let telemetry = Arc::new(Telemetry::new(config.sources.iter().map(|s| s.name())));

    // Build and check everything before anything runs.
    crate::service::status("starting: loading ONNX Runtime and the models");
    let runtime = OrtRuntime::load(
        config
            .runtime
            .library_path
            .as_ref()
            .map(|p| config.resolve(p))
            .as_deref(),
    )?;
    tracing::info!(
        library = %runtime.library.display(),
        version = %runtime.version,
        api = crate::inference::runtime::REQUIRED_MINOR,
        "ONNX Runtime loaded"
    );
    let mut modalities: Vec<Modality> = config.sources.iter().map(SourceConfig::modality).collect();
    modalities.sort();
    modalities.dedup();
    let models_dir = config.resolve(&config.models.dir);
    let model_set = load_model_set(
        &runtime,
        &models_dir,
        &modalities,
        &LoadOptions::from_config(&config),
    )?;
    crate::service::status("starting: models warm; opening the sources");
    let built = build_sources(&config)?;
    let broker = Broker::from_url(&config.mqtt.url)?;
    let connection = crate::publish::connection::build(&config, broker.tls)?;
    let outbox = crate::publish::connection::open_outbox(&config, &telemetry).await?;
    let metrics_listener = match &config.metrics {
        Some(m) => Some(
            tokio::net::TcpListener::bind(&m.listen)
                .await
                .with_context(|| format!("metrics.listen {}", m.listen))?,
        ),
        None => None,
    };

    // Publisher.
    let topics = Topics::new(config.topic_prefix());
    let (out_tx, out_rx) = mpsc::channel(config.mqtt.queue_capacity.max(1));
    {
        // A weak handle: the probe must not keep the channel open after the workers are done.
        let weak = out_tx.downgrade();
        telemetry.register_queue(
            QueueKind::Publisher,
            "mqtt",
            out_tx.max_capacity(),
            Box::new(move || {
                weak.upgrade()
                    .map_or(0, |tx| tx.max_capacity() - tx.capacity())
            }),
        );
    }
    let publisher_cfg = PublisherConfig {
        protocol: config.mqtt.protocol,
        device: config.device.id.clone(),
        host: broker.host.clone(),
        port: broker.port,
        tls: connection.tls,
        credentials: connection.credentials,
        fsync: config.outbox.fsync,
        fsync_interval: Duration::from_millis(config.outbox.fsync_interval_ms),
        client_id: config
            .mqtt
            .client_id
            .clone()
            .unwrap_or_else(|| format!("edgebind-{}", config.device.id)),
        keep_alive: Duration::from_secs(config.mqtt.keep_alive_s),
        max_packet_bytes: config.mqtt.max_packet_bytes,
        topics: topics.clone(),
        sensors: config
            .sources
            .iter()
            .map(|s| (s.name().to_string(), s.modality()))
            .collect(),
        qos: config.mqtt.qos,
        stats_interval: Duration::from_secs(config.mqtt.stats_interval_s),
        max_backoff: Duration::from_millis(config.mqtt.reconnect_max_backoff_ms),
        drain_timeout: options.shutdown_timeout,
    };
    let publisher = tokio::spawn(run_publisher(
        publisher_cfg,
        outbox,
        out_rx,
        Arc::clone(&telemetry),
        cancel.child_token(),
    ));

    // The concept bank, shared by the workers and replaced on SIGHUP.
    let concepts = SharedConcepts::new(Arc::unwrap_or_clone(model_set.concepts));
    {
        let bank = concepts.current();
        telemetry.concepts.set_active(bank.len(), bank.sha256());
        tracing::info!(concepts = bank.len(), sha256 = %bank.sha256(), "concept bank in use");
    }
    tokio::spawn(reload_concepts_on_request(
        concepts.clone(),
        models_dir.clone(),
        model_set.manifest.embedding_dim,
        reload_concepts,
        Arc::clone(&telemetry),
        cancel.child_token(),
    ));

    // Inference workers, one per modality.
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    let mut job_queues: BTreeMap<Modality, QueueSender<Job>> = BTreeMap::new();
    let detached = telemetry.stream("");
    let batching = Batching {
        max_batch: config.models.max_batch.max(1),
        max_wait: Duration::from_millis(config.models.max_batch_wait_ms),
    };
    for (modality, loaded) in model_set.encoders {
        let model_stats = Arc::new(
            ModelStats::new(
                modality,
                loaded.encoder.provider.as_str(),
                &runtime.version,
                &loaded.sha256,
            )
            .with_step(loaded.encoder.step),
        );
        telemetry.add_model(Arc::clone(&model_stats));
        for source in config.sources.iter().filter(|s| s.modality() == modality) {
            telemetry
                .stream(source.name())
                .set_model(Arc::clone(&model_stats));
        }
        let (tx, rx) = bounded::<Job>(
            config.models.queue_capacity,
            config.models.when_full,
            DropReason::InferenceBacklog,
            Arc::clone(&detached),
        );
        telemetry.register_queue(
            QueueKind::Inference,
            modality.as_str(),
            tx.capacity(),
            Box::new(tx.depth_probe()),
        );
        let ctx = WorkerContext {
            device: config.device.id.clone(),
            model_name: model_set.manifest.name.clone(),
            model_sha256: loaded.sha256,
            ort_version: runtime.version.clone(),
            concepts: concepts.clone(),
            top_k: config.concepts.top_k,
            min_score: config.concepts.min_score,
            topics: topics.clone(),
            qos: config.mqtt.qos,
            encoding: config.mqtt.embedding_encoding,
            clock,
            batching,
            model_stats,
        };
        threads.push(spawn_worker(loaded.encoder, ctx, rx, out_tx.clone())?);
        job_queues.insert(modality, tx);
    }
    drop(out_tx);

    // Streams and sources.
    let mut source_threads = JoinSet::new();
    for (source_cfg, source, processor) in built {
        let name: Arc<str> = Arc::from(source_cfg.name());
        let stats = telemetry.stream(&name);
        let jobs = job_queues
            .get(&source_cfg.modality())
            .with_context(|| format!("no inference worker for {}", source_cfg.modality()))?
            .with_stats(Arc::clone(&stats));
        let (capacity, policy) = source_cfg.queue();
        let (sample_tx, sample_rx) = bounded::<SourceMessage>(
            capacity,
            policy,
            DropReason::SampleQueueFull,
            Arc::clone(&stats),
        );
        telemetry.register_queue(
            QueueKind::Sample,
            &name,
            sample_tx.capacity(),
            Box::new(sample_tx.depth_probe()),
        );
        threads.push(spawn_stream(
            Arc::clone(&name),
            processor,
            sample_rx,
            jobs,
            Arc::clone(&stats),
        )?);
        let handle = sources::spawn(
            source,
            SourceContext {
                name: name.to_string(),
                clock,
                cancel: cancel.child_token(),
                stats,
                out: sample_tx,
            },
        )?;
        source_threads.spawn_blocking(move || handle.join());
    }
    drop(job_queues);
    tracing::info!(
        sensors = config.sources.len(),
        broker = %format!("{}:{}", broker.host, broker.port),
        "edgebind running"
    );
    let status = format!("running: {} sensor(s)", config.sources.len());
    crate::service::notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&status),
    ]);
    let watchdog = crate::service::spawn_watchdog(Arc::clone(&telemetry), cancel.child_token());
    // The endpoint outlives the pipeline's cancellation until the publisher is done.
    let metrics_stop = CancellationToken::new();
    if let Some(listener) = metrics_listener {
        tracing::info!(address = ?listener.local_addr().ok(), "serving Prometheus metrics at /metrics");
        tokio::spawn(crate::telemetry::http::serve(
            listener,
            Arc::clone(&telemetry),
            metrics_stop.clone(),
        ));
    }

    // Run until a stop is requested or every source has ended.
    let mut sources_left = source_threads.len();
    while sources_left > 0 {
        tokio::select! {
            joined = source_threads.join_next() => match joined {
                Some(Ok(Ok(()))) => sources_left -= 1,
                Some(_) => {
                    tracing::error!("a source thread panicked");
                    sources_left -= 1;
                }
                None => break,
            },
            () = cancel.cancelled() => break,
        }
    }
    if !cancel.is_cancelled() {
        tracing::info!("every source has ended; finishing the queued windows");
    }
    cancel.cancel();
    crate::service::notify(&[
        sd_notify::NotifyState::Stopping,
        sd_notify::NotifyState::Status("stopping: draining the pipeline and the outbox"),
    ]);
    if let Some(w) = watchdog {
        w.abort();
    }

    // Ordered shutdown: sources have been told; when they return, their queues close and the
    // streams, then the workers, drain and finish; the publisher drains last.
    let deadline = tokio::time::Instant::now() + options.shutdown_timeout;
    while let Ok(Some(_)) = tokio::time::timeout_at(deadline, source_threads.join_next()).await {}
    // Joined on a plain thread, not the runtime's blocking pool: a thread that never ends (a
    // hung model) must not keep the runtime, and so the process, from shutting down.
    let (joined_tx, joined) = tokio::sync::oneshot::channel();
    let joiner = std::thread::Builder::new()
        .name("join-pipeline".into())
        .spawn(move || {
            for t in threads {
                let _ = t.join();
            }
            let _ = joined_tx.send(());
        });
    let pipeline_drained = match joiner {
        Ok(_) => matches!(tokio::time::timeout_at(deadline, joined).await, Ok(Ok(()))),
        Err(e) => {
            tracing::error!(error = %e, "cannot start a thread to join the pipeline");
            false
        }
    };
    if !pipeline_drained {
        tracing::error!("pipeline threads did not finish within the shutdown timeout");
    }
    // The publisher's own drain ends at `deadline` (it started counting at the cancellation);
    // then come its fsync, `offline` (up to 2 s for the PUBACK) and DISCONNECT (0.5 s).
    let report = match tokio::time::timeout_at(deadline + Duration::from_secs(5), publisher).await {
        Ok(Ok(r)) => r,
        _ => {
            // Not a clean stop: what it held is unknown, so it must not look delivered.
            let pending = telemetry
                .publish
                .outbox_messages
                .load(std::sync::atomic::Ordering::Relaxed);
            tracing::error!(
                outbox_pending = pending,
                "publisher did not finish within the shutdown timeout"
            );
            PublisherReport {
                delivered: telemetry
                    .publish
                    .delivered
                    .load(std::sync::atomic::Ordering::Relaxed),
                undelivered: pending.max(1),
            }
        }
    };
    if report.undelivered > 0 {
        tracing::warn!(
            undelivered = report.undelivered,
            "messages not acknowledged by the broker at shutdown (kept in the outbox)"
        );
    }
    let windows = telemetry
        .stream_names()
        .map(|n| (n.to_string(), telemetry.stream(n).windows()))
        .collect();
    metrics_stop.cancel();
    drop(broker);
    Ok(RunReport {
        publisher: report,
        windows,
        stopped_by_signal: false,
        pipeline_drained,
    })
}
