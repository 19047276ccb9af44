//! `edgebind demo`: the whole pipeline on bundled recordings with the stand-in models, a local
//! broker, and a subscriber printing what it receives.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use serde_json::Value;

use crate::app::{self, Broker, RunOptions};
use crate::config;

fn default_config() -> Option<PathBuf> {
    let mut candidates = vec![PathBuf::from("config/demo.toml")];
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            candidates.push(dir.join("../../config/demo.toml"));
            candidates.push(dir.join("../share/edgebind/demo.toml"));
        }
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.toml"));
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .map(|p| std::fs::canonicalize(&p).unwrap_or(p))
}

/// `HH:MM:SS.mmm` (UTC) of a nanosecond timestamp.
fn clock_time(utc_ns: i64) -> String {
    let ms = utc_ns.div_euclid(1_000_000);
    let day_ms = ms.rem_euclid(86_400_000);
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        day_ms / 3_600_000,
        day_ms / 60_000 % 60,
        day_ms / 1000 % 60,
        day_ms % 1000
    )
}

/// One line per embedding message, for a person.
#[must_use]
pub fn describe_embedding(v: &Value) -> String {
    let labels: Vec<String> = v["labels"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|l| {
                    format!(
                        "{} {:.2}",
                        l["label"].as_str().unwrap_or("?"),
                        l["score"].as_f64().unwrap_or(0.0)
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let dim = v["embedding"].as_array().map_or(0, Vec::len);
    format!(
        "{:<12} #{:<3} {}→{}  {:<40}  [{}-d, norm {:.2}, {}, {:.2} ms inference]",
        v["sensor"].as_str().unwrap_or("?"),
        v["seq"].as_u64().unwrap_or(0),
        clock_time(v["window"]["start_utc_ns"].as_i64().unwrap_or(0)),
        clock_time(v["window"]["end_utc_ns"].as_i64().unwrap_or(0)),
        if labels.is_empty() {
            "(no concept above the threshold)".to_string()
        } else {
            labels.join(" | ")
        },
        dim,
        v["embedding_norm"].as_f64().unwrap_or(0.0),
        v["model"]["provider"].as_str().unwrap_or("?"),
        v["latency"]["inference_ms"].as_f64().unwrap_or(0.0),
    )
}

/// Subscribes to everything under `prefix` on the demo's broker and waits for the SUBACK, so
/// that no message of the run is missed.
async fn subscribe(broker: &Broker, prefix: &str) -> Result<(AsyncClient, EventLoop)> {
    let mut options =
        MqttOptions::new("edgebind-demo-subscriber", broker.host.clone(), broker.port);
    options.set_max_packet_size(4 << 20, 4 << 20);
    let (client, mut events) = AsyncClient::new(options, 16);
    client
        .subscribe(format!("{prefix}/#"), QoS::AtLeastOnce)
        .await
        .context("subscribing")?;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => return Ok((client, events)),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => anyhow::bail!("demo subscriber cannot reach the broker: {e}"),
            Err(_) => anyhow::bail!("demo subscriber got no SUBACK within 10 s"),
        }
    }
}

/// What the demo's subscriber prints, message by message.
#[derive(Debug, Default)]
struct Printer {
    embeddings: u64,
    shown_example: bool,
    online: bool,
}

#[allow(
    clippy::print_stdout,
    reason = "the demo shows what a subscriber receives"
)]
impl Printer {
    /// Prints one message; `false` once the daemon said it went offline (the run is over).
    fn show(&mut self, topic: &str, payload: &[u8]) -> bool {
        if topic.ends_with("/status") {
            println!("[{topic}] {}", String::from_utf8_lossy(payload));
            match payload {
                b"online" => self.online = true,
                b"offline" if self.online => return false,
                _ => {}
            }
        } else if topic.ends_with("/embedding") {
            let Ok(v) = serde_json::from_slice::<Value>(payload) else {
                println!("[{topic}] (unparsable payload)");
                return true;
            };
            if !self.shown_example {
                self.shown_example = true;
                println!(
                    "First message on {topic} ({} bytes), embedding shortened:\n{}\n",
                    payload.len(),
                    serde_json::to_string_pretty(&shortened(&v)).unwrap_or_default()
                );
            }
            self.embeddings += 1;
            println!("{}", describe_embedding(&v));
        } else if topic.ends_with("/state") {
            if let Ok(v) = serde_json::from_slice::<Value>(payload) {
                println!(
                    "[{topic}] {}, samples={} windows={}",
                    state_word(&v),
                    v["samples_total"],
                    v["windows_total"]
                );
            }
        }
        true
    }
}

/// An embedding message with its vector cut to its first four numbers.
fn shortened(v: &Value) -> Value {
    let mut short = v.clone();
    if let Some(e) = short["embedding"].as_array() {
        let head: Vec<String> = e.iter().take(4).map(ToString::to_string).collect();
        short["embedding"] = Value::String(format!(
            "[{} … {} numbers in all]",
            head.join(", "),
            e.len()
        ));
    }
    short
}

/// A `state` message in one word: a replay that played to its end is finished, not a lost
/// device.
fn state_word(v: &Value) -> &'static str {
    if v["finished"] == true {
        "finished"
    } else if v["connected"] == true {
        "connected"
    } else {
        "disconnected"
    }
}

#[allow(
    clippy::print_stdout,
    reason = "the demo shows what a subscriber receives"
)]
pub(super) fn run(config_path: Option<&Path>) -> Result<i32> {
    let path = match config_path {
        Some(p) => p.to_path_buf(),
        None => default_config()
            .context("config/demo.toml not found; run from the repository or pass --config")?,
    };
    let mut cfg = config::load(&path)?;
    let rt = super::runtime()?;
    rt.block_on(async move {
        // Start the broker here so the subscriber is listening before the first message.
        let broker = Broker::from_url(&cfg.mqtt.url)?;
        cfg.mqtt.url = format!("mqtt://{}:{}", broker.host, broker.port);
        let prefix = cfg.topic_prefix();
        let (client, mut events) = subscribe(&broker, &prefix).await?;
        println!(
            "edgebind demo: {} → mqtt://{}:{}, subscribed to {prefix}/#",
            path.display(),
            broker.host,
            broker.port
        );
        println!("(Ctrl-C stops early)\n");

        let printer = tokio::spawn(async move {
            let mut printer = Printer::default();
            while let Ok(ev) = events.poll().await {
                if let Event::Incoming(Packet::Publish(p)) = ev {
                    if !printer.show(&p.topic, &p.payload) {
                        break;
                    }
                }
            }
            printer.embeddings
        });

        let report = app::run(cfg, RunOptions::default()).await?;
        let received = match tokio::time::timeout(Duration::from_secs(5), printer).await {
            Ok(Ok(n)) => n,
            _ => 0,
        };
        let _ = client.disconnect().await;
        println!(
            "\n{received} embedding message(s) received; {} delivered in all ({} undelivered).",
            report.publisher.delivered, report.publisher.undelivered
        );
        drop(broker);
        Ok(0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_time_formats_utc() {
        assert_eq!(clock_time(3_723_004_000_000), "01:02:03.004");
    }
}
