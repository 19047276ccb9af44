//! Running a built pipeline: the publisher, the inference workers, the stream threads and the
//! sources are started in that order (each stage's consumer before its producer), supervised
//! until a stop is asked for or every finite source has ended, then stopped in order
//! (ARCHITECTURE.md, Shutdown).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::build::{Models, Pipeline};
use super::{reload_concepts_on_request, Broker, RunOptions, RunReport};
use crate::concepts::live::SensorConcepts;
use crate::concepts::SharedConcepts;
use crate::config::Config;
use crate::inference::worker::{spawn_worker, Batching, Job, WorkerContext};
use crate::output::triggers::TriggerStage;
use crate::output::Emitter;
use crate::pipeline::stream::spawn_stream;
use crate::pipeline::{bounded, QueueSender};
use crate::publish::connection::Security;
use crate::publish::{PublisherConfig, PublisherReport};
use crate::sources::kind::{BuiltSource, StreamDecl};
use crate::sources::{self, SourceContext, SourceMessage, StreamPort};
use crate::telemetry::{DropReason, ModelStats, QueueKind, Telemetry};
use crate::time::Clock;
use crate::Modality;

/// The inference workers' inputs, one per modality.
type JobQueues = BTreeMap<Modality, QueueSender<Job>>;

/// What every start step reads.
struct Wiring<'a> {
    config: &'a Config,
    telemetry: &'a Arc<Telemetry>,
    clock: Clock,
    cancel: &'a CancellationToken,
}

impl Pipeline {
    /// Runs the pipeline until `cancel` fires or every source has ended; a notification of
    /// `reload_concepts` reloads the concept bank.
    ///
    /// # Errors
    /// The outbox cannot be opened, or a thread cannot be started.
    pub async fn run(
        self,
        cancel: CancellationToken,
        reload_concepts: Arc<Notify>,
    ) -> Result<RunReport> {
        let Pipeline {
            config,
            options,
            clock,
            telemetry,
            models,
            sources,
            broker,
            security,
            metrics_listener,
            concept_sets,
        } = self;
        let w = Wiring {
            config: &config,
            telemetry: &telemetry,
            clock,
            cancel: &cancel,
        };
        let topics = crate::publish::payload::Topics::new(config.topic_prefix());
        // Concept triggers score against the model set's bank (docs/triggers.md).
        let shared = share_concepts(&w, &models, reload_concepts);
        let (inbound, commands, stage) =
            control_and_triggers(&w, &topics, &shared, models.set.manifest.embedding_dim)?;
        let started = start_outputs(&w, &options, &broker, security, stage, inbound).await?;
        let (events, publisher) = (started.emitter, started.mqtt);
        let concepts = concept_sets.router(shared);
        super::concepts::announce(&concept_sets, &events).await;
        let mut threads = Vec::new();
        if let Some(rx) = commands {
            // Not joined at shutdown: it ends at the cancellation, an embedding under way aside.
            drop(super::concepts::spawn_control(
                concept_sets,
                rx,
                topics,
                events.clone(),
                Arc::clone(&telemetry),
                cancel.child_token(),
            )?);
        }
        let (worker_threads, job_queues) = start_workers(&w, models, &concepts, &events)?;
        threads.extend(worker_threads);
        drop(events);
        // Joined after the workers: it ends once their windows are all through it.
        threads.extend(started.triggers);
        let mut source_threads = start_sources(&w, sources, job_queues, &mut threads)?;
        announce_running(&config, &broker);
        let watchdog = crate::service::spawn_watchdog(Arc::clone(&telemetry), cancel.child_token());
        // The endpoint outlives the pipeline's cancellation until the publisher is done.
        let metrics_stop = CancellationToken::new();
        if let (Some(listener), Some(board)) = (metrics_listener, started.status) {
            serve_metrics(listener, &telemetry, board, &metrics_stop)?;
        }

        supervise(&mut source_threads, &cancel).await;
        crate::service::notify(&[
            sd_notify::NotifyState::Stopping,
            sd_notify::NotifyState::Status("stopping: draining the pipeline and the outbox"),
        ]);
        if let Some(w) = watchdog {
            w.abort();
        }
        let deadline = tokio::time::Instant::now() + options.shutdown_timeout;
        let pipeline_drained = drain(source_threads, threads, deadline).await;
        let report = publisher_report(publisher, deadline, &telemetry).await;
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
}

/// The inbound routes of the connection (concept control, when enabled, then trigger
/// control), the concept-command queue, and the trigger stage (none when no trigger, scene or
/// control is configured). Trigger control shares the `concepts.control` switch.
#[allow(
    clippy::type_complexity,
    reason = "three parts handed to different owners"
)]
fn control_and_triggers(
    w: &Wiring<'_>,
    topics: &crate::publish::payload::Topics,
    shared: &SharedConcepts,
    embedding_dim: usize,
) -> Result<(
    crate::publish::mqtt::inbound::Inbound,
    Option<crossbeam_channel::Receiver<crate::publish::mqtt::inbound::InboundMessage>>,
    Option<TriggerStage>,
)> {
    let (mut inbound, commands) =
        super::concepts::control_route(w.config.concepts.control.enabled, topics, w.telemetry);
    let mut stage = TriggerStage::build(w.config, shared, embedding_dim, w.clock, w.telemetry)?;
    if let Some(route) = stage.as_mut().and_then(TriggerStage::take_route) {
        inbound.push(route);
    }
    Ok((inbound, commands, stage))
}

/// Says the daemon is running: the log line, and READY with a status for systemd.
fn announce_running(config: &Config, broker: &Broker) {
    let sensors = config.streams().len();
    tracing::info!(
        sensors,
        broker = %format!("{}:{}", broker.host, broker.port),
        "edgebind running"
    );
    let status = format!("running: {sensors} sensor(s)");
    crate::service::notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&status),
    ]);
}

/// Opens the outbox and starts the outputs (the status page's view, MQTT, the trigger stage,
/// and the reporter of stats and sensor states): the emitter the workers hand their events to,
/// the tasks and the status view.
async fn start_outputs(
    w: &Wiring<'_>,
    options: &RunOptions,
    broker: &Broker,
    security: Security,
    stage: Option<TriggerStage>,
    inbound: crate::publish::mqtt::Inbound,
) -> Result<crate::output::Started> {
    let (config, telemetry) = (w.config, w.telemetry);
    let outbox = crate::publish::connection::open_outbox(config, telemetry).await?;
    let mut publisher = PublisherConfig::new(
        config,
        &broker.host,
        broker.port,
        security,
        options.shutdown_timeout,
    );
    publisher.discovery = crate::publish::discovery::prepare(
        config,
        &publisher.sensors,
        &trigger_pairs(config, stage.as_ref()),
    )?;
    crate::output::start(
        config, publisher, outbox, stage, telemetry, w.cancel, inbound,
    )
    .context("cannot start the trigger stage's thread")
}

/// The triggers Home Assistant discovery announces: the stage's (edits over MQTT kept from an
/// earlier run included), else the configuration's.
fn trigger_pairs(config: &Config, stage: Option<&TriggerStage>) -> Vec<(String, String)> {
    stage.map_or_else(|| config.triggers.pairs(), TriggerStage::pairs)
}

/// The concept bank, shared by the workers and replaced on SIGHUP.
fn share_concepts(w: &Wiring<'_>, models: &Models, reload: Arc<Notify>) -> SharedConcepts {
    let concepts = SharedConcepts::new(Arc::unwrap_or_clone(Arc::clone(&models.set.concepts)));
    let bank = concepts.current();
    w.telemetry.concepts.set_active(bank.len(), bank.sha256());
    tracing::info!(concepts = bank.len(), sha256 = %bank.sha256(), "concept bank in use");
    tokio::spawn(reload_concepts_on_request(
        concepts.clone(),
        models.dir.clone(),
        models.set.manifest.embedding_dim,
        reload,
        Arc::clone(w.telemetry),
        w.cancel.child_token(),
    ));
    concepts
}

/// Starts one inference worker per modality; returns their threads and job queues.
fn start_workers(
    w: &Wiring<'_>,
    models: Models,
    concepts: &SensorConcepts,
    events: &Emitter,
) -> Result<(Vec<JoinHandle<()>>, JobQueues)> {
    let (config, telemetry) = (w.config, w.telemetry);
    let mut threads = Vec::new();
    let mut job_queues = BTreeMap::new();
    let detached = telemetry.stream("");
    let batching = Batching {
        max_batch: config.models.max_batch.n(),
        max_wait: Duration::from_millis(config.models.max_batch_wait_ms),
    };
    let Models { runtime, set, .. } = models;
    let input_stats_for = Arc::new(crate::output::triggers::stuck_sensors(config));
    for (modality, loaded) in set.encoders {
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
        for (_, stream) in config.streams() {
            if stream.modality == modality {
                telemetry
                    .stream(stream.name.as_str())
                    .set_model(Arc::clone(&model_stats));
            }
        }
        let (tx, rx) = bounded::<Job>(
            config.models.queue_capacity.n(),
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
            model_name: set.manifest.name.clone(),
            model_sha256: loaded.sha256,
            ort_version: runtime.version.clone(),
            concepts: concepts.clone(),
            top_k: config.concepts.top_k,
            min_score: config.concepts.min_score,
            clock: w.clock,
            batching,
            model_stats,
            input_stats_for: Arc::clone(&input_stats_for),
        };
        threads.push(spawn_worker(loaded.encoder, ctx, rx, events.clone())?);
        job_queues.insert(modality, tx);
    }
    Ok((threads, job_queues))
}

/// Starts each source's stream threads (appended to `threads`), one per stream it feeds, and
/// the source itself; returns the source threads' joins.
fn start_sources(
    w: &Wiring<'_>,
    built: Vec<BuiltSource>,
    job_queues: JobQueues,
    threads: &mut Vec<JoinHandle<()>>,
) -> Result<JoinSet<std::thread::Result<()>>> {
    let mut source_threads = JoinSet::new();
    for (source_cfg, built) in w.config.sources.iter().zip(built) {
        let decls = source_cfg.kind().streams();
        anyhow::ensure!(
            decls.len() == built.processors.len(),
            "source {}: {} stream(s) but {} processor(s)",
            source_cfg.name(),
            decls.len(),
            built.processors.len()
        );
        let mut ports = Vec::new();
        for (stream, processor) in decls.iter().zip(built.processors) {
            ports.push(start_stream(w, stream, processor, &job_queues, threads)?);
        }
        let mut ports = ports.into_iter();
        let first = ports.next().context("a source without a stream")?;
        let handle = sources::spawn(
            built.source,
            SourceContext {
                name: first.name,
                clock: w.clock,
                cancel: w.cancel.child_token(),
                stats: first.stats,
                out: first.out,
                others: ports.collect(),
            },
        )?;
        source_threads.spawn_blocking(move || handle.join());
    }
    Ok(source_threads)
}

/// Starts the stream thread of one stream (appended to `threads`); returns where its source
/// hands it frames or samples.
fn start_stream(
    w: &Wiring<'_>,
    stream: &StreamDecl<'_>,
    processor: Box<dyn crate::pipeline::processor::Processor>,
    job_queues: &JobQueues,
    threads: &mut Vec<JoinHandle<()>>,
) -> Result<StreamPort> {
    let telemetry = w.telemetry;
    let name: Arc<str> = Arc::from(stream.name.as_str());
    let stats = telemetry.stream(&name);
    let jobs = job_queues
        .get(&stream.modality)
        .with_context(|| format!("no inference worker for {}", stream.modality))?
        .with_stats(Arc::clone(&stats));
    let (sample_tx, sample_rx) = bounded::<SourceMessage>(
        stream.queue.capacity.get().get(),
        stream.queue.when_full,
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
        stream.skip_unchanged,
    )?);
    Ok(StreamPort {
        name: name.to_string(),
        stats,
        out: sample_tx,
    })
}

/// Serves Prometheus metrics, the status page and its JSON on `listener` until `stop`.
fn serve_metrics(
    listener: std::net::TcpListener,
    telemetry: &Arc<Telemetry>,
    board: crate::status::SharedBoard,
    stop: &CancellationToken,
) -> Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener).context("metrics.listen")?;
    let address = listener
        .local_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    tracing::info!(
        "serving Prometheus metrics at /metrics and the status page at http://{address}/"
    );
    crate::status::spawn_listener(listener, telemetry, board, stop.clone());
    Ok(())
}

/// Waits until a stop is asked for or every source has ended, then cancels the pipeline.
async fn supervise(
    source_threads: &mut JoinSet<std::thread::Result<()>>,
    cancel: &CancellationToken,
) {
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
}

/// Ordered shutdown of the pipeline: sources have been told; when they return, their queues
/// close and the streams, then the workers, drain and finish. `true` when all of it ended
/// before `deadline`.
async fn drain(
    mut source_threads: JoinSet<std::thread::Result<()>>,
    threads: Vec<JoinHandle<()>>,
    deadline: tokio::time::Instant,
) -> bool {
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
    let drained = match joiner {
        Ok(_) => matches!(tokio::time::timeout_at(deadline, joined).await, Ok(Ok(()))),
        Err(e) => {
            tracing::error!(error = %e, "cannot start a thread to join the pipeline");
            false
        }
    };
    if !drained {
        tracing::error!("pipeline threads did not finish within the shutdown timeout");
    }
    drained
}

/// What the publisher delivered, once it has drained (last, after the pipeline).
async fn publisher_report(
    publisher: tokio::task::JoinHandle<PublisherReport>,
    deadline: tokio::time::Instant,
    telemetry: &Telemetry,
) -> PublisherReport {
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
    report
}
