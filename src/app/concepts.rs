//! Concept sets in the running daemon: the retained answer of every set at start, and (when
//! `concepts.control.enabled`) the control thread, which owns the sets and the text encoder,
//! takes the commands the MQTT output routes to it (`<prefix>/concepts/<set>/{set,add,remove}`,
//! a bounded queue dropping the newest when full, counted), applies each one between windows and
//! answers it: the set in use retained on `<prefix>/concepts/<set>`, or the refusal on
//! `<prefix>/concepts/error` (and, with MQTT 5, on the request's response topic).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

use crate::concepts::live::{LiveSets, Outcome};
use crate::output::{ConceptsAnswer, ConceptsNotice, Emitter, Event};
use crate::publish::mqtt::{Inbound, InboundMessage, InboundRoute};
use crate::publish::payload::Topics;
use crate::telemetry::Telemetry;

/// Commands waiting for the control thread; more are dropped (`drop_newest`, counted as
/// `edgebind_mqtt_inbound_dropped_total{route="concepts"}`): a sender that floods the topic
/// must not hold memory or delay the connection.
pub const CONTROL_QUEUE: usize = 16;

/// How often the control thread looks at the cancellation token while idle.
const CANCEL_POLL: Duration = Duration::from_millis(200);

/// The control topics' route and its receiving end (none when control is off).
pub(super) fn control_route(
    enabled: bool,
    topics: &Topics,
    telemetry: &Telemetry,
) -> (Inbound, Option<crossbeam_channel::Receiver<InboundMessage>>) {
    if !enabled {
        return (Inbound::default(), None);
    }
    let (tx, rx) = crossbeam_channel::bounded(CONTROL_QUEUE);
    let filters = ["set", "add", "remove"]
        .iter()
        .map(|v| topics.concept_command_filter(v))
        .collect();
    let route = InboundRoute::new("concepts", filters, tx, telemetry);
    (Inbound::new(vec![route]), Some(rx))
}

/// The set in use of every configured set, as retained answers.
pub(super) async fn announce(live: &LiveSets, events: &Emitter) {
    for name in live.names() {
        if let Some(info) = live.info(name) {
            let notice = ConceptsNotice {
                what: ConceptsAnswer::Active(info),
                reply: None,
            };
            if events
                .emit(&Event::Concepts(Arc::new(notice)))
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

/// Starts the control thread (`concepts-control`); it ends at `cancel` (dropping its emitter,
/// so the outputs can close) or when the route is gone.
pub(super) fn spawn_control(
    live: LiveSets,
    rx: crossbeam_channel::Receiver<InboundMessage>,
    topics: Topics,
    events: Emitter,
    telemetry: Arc<Telemetry>,
    cancel: CancellationToken,
) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("concepts-control".into())
        .spawn(move || {
            let mut control = Control {
                live,
                topics,
                events,
                telemetry,
            };
            while !cancel.is_cancelled() {
                match rx.recv_timeout(CANCEL_POLL) {
                    Ok(m) => control.handle(m),
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
                }
            }
        })
        .context("cannot start the concept control thread")
}

struct Control {
    live: LiveSets,
    topics: Topics,
    events: Emitter,
    telemetry: Arc<Telemetry>,
}

impl Control {
    fn handle(&mut self, m: InboundMessage) {
        let Some((set, verb)) = self.topics.concept_command(&m.topic) else {
            return;
        };
        let (set, verb) = (set.to_string(), verb.to_string());
        let stats = &self.telemetry.concepts;
        let what = match self.live.apply(&set, &verb, &m.payload) {
            Outcome::Applied { info, unchanged } => {
                stats.commands_applied.fetch_add(1, Ordering::Relaxed);
                tracing::info!(set = %set, command = %verb, labels = info.labels.len(),
                    sha256 = %info.bank_sha256, unchanged = unchanged.len(),
                    "concept set changed over MQTT; the next windows are matched against it");
                ConceptsAnswer::Active(info)
            }
            Outcome::Refused(r) => {
                stats.commands_refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(set = %set, command = %verb, code = %r.code, error = %r.message,
                    "concept set command refused; the set in use is unchanged");
                ConceptsAnswer::Refused(r)
            }
        };
        let notice = ConceptsNotice {
            what,
            reply: m.response_topic.map(|t| (t, m.correlation_data)),
        };
        // Closed only while the daemon stops: nobody is left to answer.
        let _ = self
            .events
            .emit_blocking(&Event::Concepts(Arc::new(notice)));
    }
}
