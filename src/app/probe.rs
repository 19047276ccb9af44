//! `check --devices`: every configured source opened briefly, exactly as `run` opens it (the
//! same build and the same device loop, on its own thread), and what happened reported — the
//! device opened and at which rate, or why not, in the words the daemon's log would use. The
//! source is stopped as soon as it has answered; nothing is windowed, embedded or published.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio_util::sync::CancellationToken;

use super::open::build_sources;
use crate::config::{Config, WhenFull};
use crate::pipeline::queue::bounded;
use crate::sources::{self, SourceContext, StreamPort};
use crate::telemetry::{DropReason, StreamStats};
use crate::time::Clock;

/// How often a probe looks at the source's state.
const POLL: Duration = Duration::from_millis(20);

/// How long a stopped source may take to let its device go before the probe stops waiting.
const RELEASE: Duration = Duration::from_secs(2);

/// What opening one source did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// It opened and delivers (or plays) at this rate.
    Opened {
        /// The rate the device (or recording) reported, in hertz.
        rate_hz: f64,
    },
    /// It could not be opened: `run` would wait for it, retrying with backoff.
    Failed(String),
    /// No answer within the probe's time limit.
    NoAnswer,
}

/// One configured source and what opening it did.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// Its sensor name.
    pub name: String,
    /// Its `type`.
    pub kind: &'static str,
    /// What happened.
    pub outcome: Outcome,
}

/// Opens every source of `config` in turn, waiting at most `limit` for each to open or fail.
///
/// # Errors
/// What `run` would refuse before opening anything: configuration problems only found by
/// building the sources (exit 78), a recording that cannot be read.
pub fn probe_sources(config: &Config, limit: Duration) -> Result<Vec<Probe>> {
    let built = build_sources(config)?;
    let mut probes = Vec::with_capacity(built.len());
    for (source, config) in built.into_iter().zip(&config.sources) {
        let name = config.name().to_string();
        let streams = config.kind().streams().len();
        let outcome = probe_one(source.source, &name, streams, limit)?;
        probes.push(Probe {
            name,
            kind: config.kind().type_name(),
            outcome,
        });
    }
    Ok(probes)
}

/// Runs one source feeding `streams` streams until it opens, fails or `limit` passes, then
/// stops it.
fn probe_one(
    source: Box<dyn sources::Source>,
    name: &str,
    streams: usize,
    limit: Duration,
) -> Result<Outcome> {
    let stats = Arc::new(StreamStats::default());
    // Nobody reads what the source captures: each queue keeps only the newest item (its
    // receiver kept until the source has stopped).
    let mut captured = Vec::new();
    let mut queue = |stats: &Arc<StreamStats>| {
        let (tx, rx) = bounded(
            1,
            WhenFull::DropOldest,
            DropReason::SampleQueueFull,
            Arc::clone(stats),
        );
        captured.push(rx);
        tx
    };
    let out = queue(&stats);
    // A source's further streams (a RealSense's colour) must have somewhere to go too.
    let others: Vec<StreamPort> = (1..streams)
        .map(|_| {
            let stats = Arc::new(StreamStats::default());
            StreamPort {
                name: name.to_string(),
                out: queue(&stats),
                stats,
            }
        })
        .collect();
    let cancel = CancellationToken::new();
    let handle = sources::spawn(
        source,
        SourceContext {
            name: name.to_string(),
            clock: Clock::new(),
            cancel: cancel.clone(),
            stats: Arc::clone(&stats),
            out,
            others,
        },
    )?;
    let outcome = watch(&stats, &handle, limit);
    cancel.cancel();
    release(handle);
    drop(captured);
    Ok(outcome)
}

/// Waits for the source's first answer.
fn watch(stats: &StreamStats, handle: &JoinHandle<()>, limit: Duration) -> Outcome {
    let deadline = Instant::now() + limit;
    loop {
        let state = stats.snapshot();
        if state.connected || state.finished {
            return Outcome::Opened {
                rate_hz: state.sample_rate_hz,
            };
        }
        if let Some(error) = stats.device_error() {
            return Outcome::Failed(error);
        }
        if handle.is_finished() {
            return Outcome::Failed("the source stopped without opening".into());
        }
        if Instant::now() >= deadline {
            return Outcome::NoAnswer;
        }
        std::thread::sleep(POLL);
    }
}

/// Joins a stopped source, or leaves it behind when its device does not let go in time (the
/// process is about to exit).
fn release(handle: JoinHandle<()>) {
    let deadline = Instant::now() + RELEASE;
    while !handle.is_finished() {
        if Instant::now() >= deadline {
            tracing::debug!("a probed source is still stopping; not waiting for it");
            return;
        }
        std::thread::sleep(POLL);
    }
    // A panic in the source thread was already reported by its hook; the outcome stands.
    let _ = handle.join();
}
