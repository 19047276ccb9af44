//! `edgebind demo`: the whole pipeline on bundled recordings with the stand-in models, a local
//! broker, and a subscriber printing what it receives.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
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
    candidates.into_iter().find(|p| p.is_file())
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
        let mut options =
            MqttOptions::new("edgebind-demo-subscriber", broker.host.clone(), broker.port);
        options.set_max_packet_size(4 << 20, 4 << 20);
        let (client, mut events) = AsyncClient::new(options, 16);
        client
            .subscribe(format!("{prefix}/#"), QoS::AtLeastOnce)
            .await
            .context("subscribing")?;
        let subscribed = loop {
            match tokio::time::timeout(Duration::from_secs(10), events.poll()).await {
                Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => break true,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => anyhow::bail!("demo subscriber cannot reach the broker: {e}"),
                Err(_) => break false,
            }
        };
        anyhow::ensure!(subscribed, "demo subscriber got no SUBACK within 10 s");
        println!(
            "edgebind demo: {} → mqtt://{}:{}, subscribed to {prefix}/#",
            path.display(),
            broker.host,
            broker.port
        );
        println!("(Ctrl-C stops early)\n");

        let printer = tokio::spawn(async move {
            let mut embeddings = 0u64;
            let mut shown_example = false;
            let mut online = false;
            loop {
                let ev = match events.poll().await {
                    Ok(ev) => ev,
                    Err(_) => break,
                };
                let Event::Incoming(Packet::Publish(p)) = ev else {
                    continue;
                };
                let topic = p.topic.as_str();
                if topic.ends_with("/status") {
                    println!("[{topic}] {}", String::from_utf8_lossy(&p.payload));
                    match p.payload.as_ref() {
                        b"online" => online = true,
                        b"offline" if online => break,
                        _ => {}
                    }
                } else if topic.ends_with("/embedding") {
                    let Ok(v) = serde_json::from_slice::<Value>(&p.payload) else {
                        println!("[{topic}] (unparsable payload)");
                        continue;
                    };
                    if !shown_example {
                        shown_example = true;
                        let mut short = v.clone();
                        if let Some(e) = short["embedding"].as_array() {
                            let head: Vec<Value> = e.iter().take(4).cloned().collect();
                            short["embedding"] = Value::String(format!(
                                "[{} … {} numbers in all]",
                                head.iter()
                                    .map(ToString::to_string)
                                    .collect::<Vec<_>>()
                                    .join(", "),
                                e.len()
                            ));
                        }
                        println!(
                            "First message on {topic} ({} bytes), embedding shortened:\n{}\n",
                            p.payload.len(),
                            serde_json::to_string_pretty(&short).unwrap_or_default()
                        );
                    }
                    embeddings += 1;
                    println!("{}", describe_embedding(&v));
                } else if topic.ends_with("/state") {
                    if let Ok(v) = serde_json::from_slice::<Value>(&p.payload) {
                        // A replay that played to its end is finished, not a lost device.
                        let state = if v["finished"] == true {
                            "finished"
                        } else if v["connected"] == true {
                            "connected"
                        } else {
                            "disconnected"
                        };
                        println!(
                            "[{topic}] {state}, samples={} windows={}",
                            v["samples_total"], v["windows_total"]
                        );
                    }
                }
            }
            embeddings
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
