//! Outbox throughput: messages per second through edgebind's publisher (every message appended
//! to the on-disk outbox, fsync every 100 ms, deleted at its PUBACK) to a local mosquitto at
//! QoS 1 with 4 KiB payloads, against rumqttc publishing the same messages directly (no outbox)
//! in the same run. Rounds alternate the two so that machine load hits both alike.
//!
//! `cargo bench --bench outbox` (release profile). Environment: `EDGEBIND_BENCH_MESSAGES`
//! (per round, default 20000), `EDGEBIND_BENCH_ROUNDS` (default 5). Under `cargo test` it runs
//! one round of 2000 as a smoke test. Prints a table; CPU time is
//! this process's (user + system, from /proc/self/stat), which machine load does not inflate
//! the way it inflates wall-clock time. The broker's CPU is not included.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgebind::config::{FsyncPolicy, Qos, WhenFull};
use edgebind::publish::payload::Topics;
use edgebind::publish::{
    run_publisher, LocalBroker, OutMessage, Outbox, OutboxOptions, PublisherConfig,
};
use edgebind::telemetry::Telemetry;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

const PAYLOAD_BYTES: usize = 4096;
/// The same window rumqttc gets inside the publisher.
const INFLIGHT: u16 = 256;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// User + system CPU time of this process.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the state field.
    let hz = 100; // USER_HZ on Linux
    Duration::from_millis((ticks(11) + ticks(12)) * 1000 / hz)
}

#[derive(Debug, Clone, Copy)]
struct Run {
    wall: Duration,
    cpu: Duration,
}

fn payload(i: usize) -> Vec<u8> {
    let mut p = vec![b'x'; PAYLOAD_BYTES];
    p[..8].copy_from_slice(&(i as u64).to_le_bytes());
    p
}

async fn direct(port: u16, n: usize, round: usize) -> Run {
    let mut opts = MqttOptions::new(format!("bench-direct-{round}"), "127.0.0.1", port);
    opts.set_max_packet_size(1 << 20, 1 << 20)
        .set_inflight(INFLIGHT)
        .set_keep_alive(Duration::from_secs(30))
        .set_clean_session(true);
    let (client, mut eventloop) = AsyncClient::new(opts, 256);
    loop {
        if let Event::Incoming(Packet::ConnAck(_)) = eventloop.poll().await.unwrap() {
            break;
        }
    }
    eprintln!("  connected");
    let (t0, c0) = (Instant::now(), cpu_time());
    let producer = tokio::spawn({
        let client = client.clone();
        async move {
            for i in 0..n {
                client
                    .publish(
                        "bench/direct/s/embedding",
                        QoS::AtLeastOnce,
                        false,
                        payload(i),
                    )
                    .await
                    .unwrap();
            }
        }
    });
    let mut acked = 0;
    while acked < n {
        if let Event::Incoming(Packet::PubAck(_)) = eventloop.poll().await.unwrap() {
            acked += 1;
        }
    }
    let run = Run {
        wall: t0.elapsed(),
        cpu: cpu_time().saturating_sub(c0),
    };
    producer.await.unwrap();
    client.disconnect().await.unwrap();
    while !matches!(
        eventloop.poll().await,
        Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_)
    ) {}
    run
}

async fn through_outbox(port: u16, n: usize, round: usize, dir: &std::path::Path) -> Run {
    let telemetry = Arc::new(Telemetry::new(std::iter::empty::<&str>()));
    let (outbox, _) = Outbox::open(OutboxOptions::new(
        dir.join(format!("outbox-{round}")),
        1 << 30,
        WhenFull::DropOldest,
    ))
    .unwrap();
    let topics = Topics::new("bench/outbox");
    let cfg = PublisherConfig {
        protocol: edgebind::config::MqttProtocol::V311,
        host: "127.0.0.1".into(),
        port,
        tls: None,
        credentials: None,
        client_id: format!("bench-outbox-{round}"),
        keep_alive: Duration::from_secs(30),
        max_packet_bytes: 1 << 20,
        codec: edgebind::publish::Codec {
            device: "bench".into(),
            topics: topics.clone(),
            qos: Qos::AtLeastOnce,
            encoding: edgebind::config::EmbeddingEncoding::Json,
        },
        sensors: Vec::new(),
        max_backoff: Duration::from_secs(1),
        drain_timeout: Duration::from_secs(60),
        fsync: FsyncPolicy::Interval,
        fsync_interval: Duration::from_millis(100),
        discovery: None,
    };
    let (tx, rx) = mpsc::channel(256);
    let publisher = tokio::spawn(run_publisher(
        cfg,
        outbox,
        rx,
        Arc::clone(&telemetry),
        tokio_util::sync::CancellationToken::new(),
    ));
    // Connected, and its `online` acknowledged: from here on only bench messages are counted.
    let stats = &telemetry.publish;
    while stats.delivered.load(Ordering::Relaxed) < 1 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let base = stats.delivered.load(Ordering::Relaxed);
    let topic = topics.embedding("s");
    let (t0, c0) = (Instant::now(), cpu_time());
    let producer = tokio::spawn(async move {
        for i in 0..n {
            let m = OutMessage {
                topic: topic.clone(),
                sensor: None,
                payload: payload(i),
                retain: false,
                qos: Qos::AtLeastOnce,
                timing: None,
                stored: None,
                correlation_data: None,
            };
            if tx.send(m).await.is_err() {
                break;
            }
        }
    });
    let mut last_report = Instant::now();
    while stats.delivered.load(Ordering::Relaxed) < base + n as u64 {
        tokio::time::sleep(Duration::from_millis(1)).await;
        // Far beyond any plausible run: something is stuck (a message never acknowledged).
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "outbox path stuck: {} of {n} acknowledged",
            stats.delivered.load(Ordering::Relaxed) - base
        );
        if last_report.elapsed() > Duration::from_secs(5) {
            last_report = Instant::now();
            eprintln!(
                "  delivered {} of {n}, outbox {} messages, connected {}",
                stats.delivered.load(Ordering::Relaxed) - base,
                stats.outbox_messages.load(Ordering::Relaxed),
                stats.connected.load(Ordering::Relaxed)
            );
        }
    }
    let run = Run {
        wall: t0.elapsed(),
        cpu: cpu_time().saturating_sub(c0),
    };
    producer.await.unwrap();
    let report = publisher.await.unwrap();
    assert_eq!(report.undelivered, 0);
    run
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` (CI) runs this binary without
    // it: then one short round checks that both paths deliver everything.
    let measuring = std::env::args().any(|a| a == "--bench");
    let n = env_usize(
        "EDGEBIND_BENCH_MESSAGES",
        if measuring { 20_000 } else { 2_000 },
    );
    let rounds = env_usize("EDGEBIND_BENCH_ROUNDS", if measuring { 5 } else { 1 }).max(1);
    let broker = LocalBroker::start(&[]).expect("mosquitto");
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut runs: Vec<(Run, Run)> = Vec::new();
    for round in 0..rounds {
        eprintln!("round {round}: rumqttc direct");
        let d = rt.block_on(direct(broker.port(), n, round));
        eprintln!("round {round}: through the outbox");
        let o = rt.block_on(through_outbox(broker.port(), n, round, dir.path()));
        println!(
            "round {round}: direct {:>8.0} msg/s, outbox {:>8.0} msg/s",
            n as f64 / d.wall.as_secs_f64(),
            n as f64 / o.wall.as_secs_f64()
        );
        runs.push((d, o));
    }
    let rate = |f: fn(&(Run, Run)) -> Run| -> Vec<f64> {
        runs.iter()
            .map(|r| n as f64 / f(r).wall.as_secs_f64())
            .collect()
    };
    let cpu_us = |f: fn(&(Run, Run)) -> Run| -> Vec<f64> {
        runs.iter()
            .map(|r| f(r).cpu.as_secs_f64() * 1e6 / n as f64)
            .collect()
    };
    let (dr, or) = (rate(|r| r.0), rate(|r| r.1));
    let ratios: Vec<f64> = or.iter().zip(&dr).map(|(o, d)| o / d).collect();
    let mib = |r: f64| r * PAYLOAD_BYTES as f64 / (1 << 20) as f64;
    println!();
    println!("{n} messages x {PAYLOAD_BYTES} B, QoS 1, {rounds} rounds (median; min-max of msg/s)");
    println!("| path | msg/s | MiB/s | min-max msg/s | CPU us/msg (this process) |");
    println!("|---|---|---|---|---|");
    for (name, r, c) in [
        ("rumqttc direct, no outbox", &dr, cpu_us(|r| r.0)),
        (
            "edgebind publisher + outbox (fsync 100 ms)",
            &or,
            cpu_us(|r| r.1),
        ),
    ] {
        let lo = r.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = r.iter().copied().fold(0.0, f64::max);
        println!(
            "| {name} | {:.0} | {:.1} | {lo:.0}-{hi:.0} | {:.1} |",
            median(r.clone()),
            mib(median(r.clone())),
            median(c)
        );
    }
    println!(
        "outbox / direct, per round: median {:.2} (min {:.2})",
        median(ratios.clone()),
        ratios.iter().copied().fold(f64::INFINITY, f64::min)
    );
}
