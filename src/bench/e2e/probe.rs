//! A subscriber on the bench's broker: for every embedding received, window end → receipt
//! minus the window's inference time (exact per window, not bucketed).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::super::prom::Latency;
use super::super::stats::nearest_rank;
use super::super::BenchError;

/// Now, UTC nanoseconds.
#[must_use]
pub fn utc_now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// Receives embeddings and records, per window, window end → receipt minus inference.
pub struct DeliveryProbe {
    samples_ms: Arc<Mutex<Vec<(i128, f64)>>>,
    stop: Arc<AtomicBool>,
    client: rumqttc::Client,
}

impl DeliveryProbe {
    /// Subscribes to `<prefix>/+/embedding` on the broker at `port`.
    ///
    /// # Errors
    /// [`BenchError::Broker`] when the subscription is not acknowledged.
    pub fn start(port: u16, prefix: &str) -> Result<Self, BenchError> {
        let mut opts = rumqttc::MqttOptions::new(
            // One probe per prefix at a time; a shared id would make the broker take the
            // session from one to the other.
            format!(
                "edgebind-bench-probe-{}-{}",
                std::process::id(),
                prefix.replace('/', "-")
            ),
            "127.0.0.1",
            port,
        );
        opts.set_max_packet_size(4 << 20, 4 << 20);
        let (client, mut connection) = rumqttc::Client::new(opts, 64);
        client
            .subscribe(format!("{prefix}/+/embedding"), rumqttc::QoS::AtMostOnce)
            .map_err(|e| BenchError::Broker(format!("subscribing: {e}")))?;
        let samples_ms: Arc<Mutex<Vec<(i128, f64)>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
        {
            let samples = Arc::clone(&samples_ms);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("bench-probe".into())
                .spawn(move || {
                    for event in connection.iter() {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        match event {
                            Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                                let _ = ready_tx.try_send(());
                            }
                            Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                                let now = utc_now_ns();
                                let Ok(v) = serde_json::from_slice::<serde_json::Value>(&p.payload)
                                else {
                                    continue;
                                };
                                // A camera window is one frame whose "end" is capture + frame
                                // period; its data is complete at capture (`start`).
                                let frame = v["window"]["sample_count"].as_u64() == Some(1)
                                    && matches!(v["modality"].as_str(), Some("depth" | "thermal"));
                                let key = if frame { "start_utc_ns" } else { "end_utc_ns" };
                                let end = v["window"][key].as_i64();
                                let inference = v["latency"]["inference_ms"].as_f64();
                                if let (Some(end), Some(inf)) = (end, inference) {
                                    let ms = (now - i128::from(end)) as f64 / 1e6 - inf;
                                    if let Ok(mut s) = samples.lock() {
                                        s.push((now, ms));
                                    }
                                }
                            }
                            Ok(_) => {}
                            Err(_) => std::thread::sleep(Duration::from_millis(100)),
                        }
                    }
                })
                .map_err(|e| BenchError::Broker(format!("probe thread: {e}")))?;
        }
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| BenchError::Broker("no SUBACK from the local broker in 10 s".into()))?;
        Ok(Self {
            samples_ms,
            stop,
            client,
        })
    }

    /// Latency of the windows received between `from` and `to` (UTC ns).
    #[must_use]
    pub fn between(&self, from: i128, to: i128) -> Option<Latency> {
        let mut v: Vec<f64> = self
            .samples_ms
            .lock()
            .ok()?
            .iter()
            .filter(|(t, _)| *t >= from && *t <= to)
            .map(|(_, ms)| *ms)
            .collect();
        v.sort_by(f64::total_cmp);
        Some(Latency {
            count: v.len() as u64,
            p50_ms: nearest_rank(&v, 0.5)?,
            p99_ms: nearest_rank(&v, 0.99)?,
            mean_ms: v.iter().sum::<f64>() / v.len() as f64,
        })
    }
}

impl std::fmt::Debug for DeliveryProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryProbe").finish_non_exhaustive()
    }
}

impl Drop for DeliveryProbe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.client.disconnect();
    }
}
