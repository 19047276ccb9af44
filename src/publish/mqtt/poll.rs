//! The task that owns rumqttc's event loop. `EventLoop::poll` is not cancel-safe while it
//! connects (a dropped poll leaves a half-open connection, and the broker then fires the Last
//! Will of the abandoned one), so it is polled here without interruption and its events are
//! forwarded to the publisher. After a connection error this task waits until the publisher has
//! stopped handing it messages, then empties rumqttc's request queue before reconnecting: every
//! `Outgoing::Publish` after a ConnAck is then one the publisher handed after that ConnAck,
//! which keeps the packet-id → outbox-id pairing exact. Reconnects back off exponentially with
//! jitter.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};

use super::inbound::Inbound;
use crate::publish::client::{Client, EventLoop, NetError, NetEvent};
use crate::telemetry::Telemetry;

/// Owns the rumqttc event loop: polls it without interruption, forwards every event, and backs
/// off exponentially (with jitter, capped) after a connection error. Incoming messages go to
/// their `inbound` route, whose subscriptions are asked for after every ConnAck. Ends when the
/// receiver is gone.
pub(super) async fn poll_forever(
    mut eventloop: EventLoop,
    events: mpsc::Sender<Result<NetEvent, ()>>,
    resume: Arc<Notify>,
    max_backoff: Duration,
    broker: String,
    telemetry: Arc<Telemetry>,
    (client, inbound): (Client, Inbound),
) {
    let mut backoff = Duration::from_millis(100);
    let mut logged_down = false;
    loop {
        match eventloop.poll().await {
            // What no route takes is the publisher's own (Home Assistant's birth message).
            Ok(NetEvent::Message(m)) => {
                if let Some(m) = inbound.route(m) {
                    if events.send(Ok(NetEvent::Message(m))).await.is_err() {
                        return;
                    }
                }
            }
            Ok(ev) => {
                if ev == NetEvent::Connected {
                    backoff = Duration::from_millis(100);
                    logged_down = false;
                    inbound.subscribe(&client);
                }
                // After our DISCONNECT the broker closes the socket: that is no outage.
                let done = ev == NetEvent::Disconnected;
                if events.send(Ok(ev)).await.is_err() || done {
                    return;
                }
            }
            Err(e) => {
                if let NetError::Refused(code) = &e {
                    telemetry.publish.refused.fetch_add(1, Ordering::Relaxed);
                    // Refused credentials do not fix themselves quickly: say so clearly, once
                    // per outage, and keep backing off (never a crash loop).
                    if !logged_down {
                        tracing::error!(%broker, reason = %code, retry_in_ms = backoff.as_millis() as u64,
                            "MQTT broker refused the connection (check mqtt.username and the password, or the broker's ACL); retrying with backoff");
                        logged_down = true;
                    }
                } else if !logged_down {
                    tracing::warn!(%broker, error = %e, "MQTT broker unreachable; retrying with backoff");
                    logged_down = true;
                } else {
                    tracing::debug!(%broker, error = %e, retry_in_ms = backoff.as_millis() as u64, "MQTT reconnect failed");
                }
                if events.send(Err(())).await.is_err() {
                    return;
                }
                // Wait until the publisher has stopped handing messages, then drop whatever it
                // handed meanwhile (rumqttc would send those after the ConnAck, out of step
                // with the publisher's bookkeeping; the outbox sends them again).
                resume.notified().await;
                tokio::time::sleep(jitter(backoff)).await;
                eventloop.forget_queued();
                backoff = (backoff * 2).min(max_backoff);
            }
        }
    }
}

/// Up to +25 % of `d`, so that many devices do not reconnect in lockstep.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos());
    d + d.mul_f64(f64::from(nanos % 1000) / 4000.0)
}
