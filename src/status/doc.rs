//! The `/api/status` document (pure): the [`StatusBoard`] at one moment, with ages and rates
//! rounded for people. Its fields are listed in `docs/operations.md` (Status page).

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use serde::Serialize;

use super::board::{HistoryPoint, LabelScore, SensorView, StatusBoard};
use crate::telemetry::metrics::Value;

/// Version of the document (`v`).
pub const STATUS_VERSION: u32 = 1;

/// `stats` keys shown under `broker`.
const BROKER_KEYS: [&str; 4] = [
    "broker_connected",
    "broker_reconnects_total",
    "messages_delivered_total",
    "messages_unacked",
];
/// `stats` keys shown under `outbox`.
const OUTBOX_KEYS: [&str; 4] = [
    "outbox_messages",
    "outbox_bytes",
    "outbox_dropped_total",
    "outbox_disk_full_total",
];

/// The whole document.
#[derive(Debug, Serialize)]
pub struct StatusDoc<'a> {
    /// [`STATUS_VERSION`].
    pub v: u32,
    /// `device.id`.
    pub device: &'a str,
    /// Seconds since the daemon started.
    pub uptime_s: u64,
    /// Seconds since the newest statistics report (`null` before the first; reports come every
    /// `mqtt.stats_interval_s`).
    pub stats_age_s: Option<f64>,
    /// Broker connection, from the newest statistics report.
    pub broker: BTreeMap<&'static str, Value>,
    /// The on-disk outbox, from the newest statistics report.
    pub outbox: BTreeMap<&'static str, Value>,
    /// Execution provider per loaded model, by modality.
    pub providers: BTreeMap<&'a str, Provider<'a>>,
    /// Each configured sensor, in configuration order.
    pub sensors: Vec<SensorDoc<'a>>,
    /// Trigger states, by sensor then trigger name (the retained MQTT trigger state's body).
    pub triggers: Vec<&'a serde_json::Value>,
    /// Trigger states not shown because the page keeps a bounded number.
    pub triggers_dropped: u64,
}

/// The model of one modality.
#[derive(Debug, Serialize)]
pub struct Provider<'a> {
    /// Execution provider in use.
    pub provider: &'a str,
    /// Load step in use (a TensorRT precision or the provider fallen back to).
    pub step: &'a str,
    /// ONNX Runtime version.
    pub ort_version: &'a str,
}

/// One sensor.
#[derive(Debug, Serialize)]
pub struct SensorDoc<'a> {
    /// Sensor name.
    pub name: &'a str,
    /// Its modality.
    pub modality: &'static str,
    /// `starting` (no report yet), `connected` or `disconnected`.
    pub state: &'static str,
    /// Nominal sample rate of the device.
    pub sample_rate_hz: Option<f64>,
    /// Windows cut per second between the last two reports.
    pub windows_per_s: Option<f64>,
    /// Windows cut.
    pub windows_total: Option<u64>,
    /// Samples missing inside windows.
    pub gap_samples_total: Option<u64>,
    /// Items dropped, all reasons.
    pub drops_total: Option<u64>,
    /// Items dropped by reason (reasons with drops only).
    pub drops: BTreeMap<&'static str, u64>,
    /// Seconds since the newest state report.
    pub report_age_s: Option<f64>,
    /// The newest window.
    pub last: Option<LastDoc<'a>>,
    /// Chart points, oldest first.
    pub history: &'a VecDeque<HistoryPoint>,
}

/// The newest window of a sensor.
#[derive(Debug, Serialize)]
pub struct LastDoc<'a> {
    /// Window number.
    pub seq: u64,
    /// Window end, UTC milliseconds.
    pub window_end_utc_ms: i64,
    /// Seconds since it was embedded.
    pub age_s: f64,
    /// Samples missing inside it.
    pub gaps: u64,
    /// Execution provider that embedded it.
    pub provider: &'a str,
    /// Labels, best first.
    pub labels: &'a [LabelScore],
}

/// `x` rounded to `decimals` places (JSON for people: no 0.30000000000000004).
fn round(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

fn age_s(then: Instant, now: Instant) -> f64 {
    round(now.saturating_duration_since(then).as_secs_f64(), 1)
}

impl<'a> StatusDoc<'a> {
    /// The document of `board` at `now`.
    #[must_use]
    pub fn new(board: &'a StatusBoard, now: Instant) -> Self {
        let stats = board.stats.as_ref();
        let pick = |keys: &[&'static str]| -> BTreeMap<&'static str, Value> {
            stats
                .map(|(s, _)| {
                    s.values
                        .iter()
                        .filter(|(k, _)| keys.contains(k))
                        .map(|(k, v)| (*k, *v))
                        .collect()
                })
                .unwrap_or_default()
        };
        let providers = stats
            .map(|(s, _)| {
                s.inference
                    .iter()
                    .map(|(modality, m)| {
                        let p = Provider {
                            provider: &m.provider,
                            step: &m.step,
                            ort_version: &m.ort_version,
                        };
                        (*modality, p)
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            v: STATUS_VERSION,
            device: &board.device,
            uptime_s: now.saturating_duration_since(board.started).as_secs(),
            stats_age_s: stats.map(|(_, at)| age_s(*at, now)),
            broker: pick(&BROKER_KEYS),
            outbox: pick(&OUTBOX_KEYS),
            providers,
            sensors: board.sensors.iter().map(|s| sensor(s, now)).collect(),
            triggers: board.triggers.values().collect(),
            triggers_dropped: board.triggers_dropped,
        }
    }
}

fn sensor(s: &SensorView, now: Instant) -> SensorDoc<'_> {
    let snapshot = s.report.as_ref().map(|r| &r.state.snapshot);
    let state = match snapshot {
        None => "starting",
        Some(snap) if snap.connected => "connected",
        Some(_) => "disconnected",
    };
    SensorDoc {
        name: &s.name,
        modality: s.modality.as_str(),
        state,
        sample_rate_hz: snapshot.map(|snap| round(snap.sample_rate_hz, 3)),
        windows_per_s: s
            .report
            .as_ref()
            .and_then(|r| r.windows_per_s)
            .map(|w| round(w, 2)),
        windows_total: snapshot.map(|snap| snap.windows_total),
        gap_samples_total: snapshot.map(|snap| snap.gap_samples_total),
        drops_total: snapshot.map(|snap| snap.drops_total.values().sum()),
        drops: snapshot
            .map(|snap| {
                snap.drops_total
                    .iter()
                    .filter(|(_, n)| **n > 0)
                    .map(|(k, n)| (*k, *n))
                    .collect()
            })
            .unwrap_or_default(),
        report_age_s: s.report.as_ref().map(|r| age_s(r.received, now)),
        last: s.last.as_ref().map(|l| LastDoc {
            seq: l.seq,
            window_end_utc_ms: l.end_utc_ms,
            age_s: age_s(l.received, now),
            gaps: l.gaps,
            provider: &l.provider,
            labels: &l.labels,
        }),
        history: &s.history,
    }
}
