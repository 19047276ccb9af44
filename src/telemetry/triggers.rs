//! Counters of the trigger stage: events published per sensor, trigger and type, scene slots by
//! outcome, trigger control commands by command and outcome; and their rows of the metrics
//! table.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::metrics::{Kind, Labels, Metric, Read, Value};

/// The trigger stage's counters.
#[derive(Debug, Default)]
pub struct TriggerStats {
    /// `(sensor, trigger, type)` → events handed to the outputs.
    events: Mutex<BTreeMap<(String, String, &'static str), u64>>,
    /// Scene slots published.
    pub scene_published: AtomicU64,
    /// Scene slots closed with fewer than `min_members` members (not published).
    pub scene_sparse: AtomicU64,
    /// Scene slots evicted (more than 64 open at once; not published).
    pub scene_evicted: AtomicU64,
    /// `(command, outcome)` → trigger control commands.
    commands: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

impl TriggerStats {
    /// Counts one event of `sensor`'s `trigger` (`kind`: `start`, `update`, `end`).
    pub fn event(&self, sensor: &str, trigger: &str, kind: &'static str) {
        let mut m = super::lock(&self.events);
        *m.entry((sensor.to_string(), trigger.to_string(), kind))
            .or_insert(0) += 1;
    }

    /// Counts one control command (`set`, `remove`, `remember`) by outcome (`applied`,
    /// `refused`).
    pub fn command(&self, command: &'static str, outcome: &'static str) {
        *super::lock(&self.commands)
            .entry((command, outcome))
            .or_insert(0) += 1;
    }

    /// Sets the scene's counters of slots not published to the fuser's totals.
    pub fn set_scene_dropped(&self, sparse: u64, evicted: u64) {
        self.scene_sparse.store(sparse, Ordering::Relaxed);
        self.scene_evicted.store(evicted, Ordering::Relaxed);
    }

    fn events(&self) -> Vec<(Labels, Value)> {
        super::lock(&self.events)
            .iter()
            .map(|((sensor, trigger, kind), n)| {
                let labels = vec![
                    ("sensor", sensor.clone()),
                    ("trigger", trigger.clone()),
                    ("type", (*kind).to_string()),
                ];
                (labels, Value::Count(*n))
            })
            .collect()
    }

    fn commands(&self) -> Vec<(Labels, Value)> {
        super::lock(&self.commands)
            .iter()
            .map(|((command, outcome), n)| {
                let labels = vec![
                    ("command", (*command).to_string()),
                    ("outcome", (*outcome).to_string()),
                ];
                (labels, Value::Count(*n))
            })
            .collect()
    }
}

/// `edgebind_trigger_events_total{sensor, trigger, type}`.
pub const EVENTS: Metric = Metric {
    name: "edgebind_trigger_events_total",
    help: "Trigger events handed to the outputs, by sensor (or scene), trigger and type \
           (start, update, end).",
    kind: Kind::Counter,
    stats: None,
    read: Read::Series(|t| t.triggers.events()),
};

/// `edgebind_scene_slots_total{outcome}`; `scene_slots` in `stats`.
pub const SCENE_SLOTS: Metric = Metric {
    name: "edgebind_scene_slots_total",
    help: "Scene slots closed, by outcome: published, sparse (fewer than min_members members; \
           not published) or evicted (more than 64 open at once; not published).",
    kind: Kind::Counter,
    stats: Some("scene_slots"),
    read: Read::Series(|t| {
        let s = &t.triggers;
        [
            ("published", &s.scene_published),
            ("sparse", &s.scene_sparse),
            ("evicted", &s.scene_evicted),
        ]
        .into_iter()
        .map(|(o, n)| {
            (
                vec![("outcome", o.to_string())],
                Value::Count(n.load(Ordering::Relaxed)),
            )
        })
        .collect()
    }),
};

/// `edgebind_trigger_commands_total{command, outcome}`.
pub const COMMANDS: Metric = Metric {
    name: "edgebind_trigger_commands_total",
    help: "Trigger control commands (MQTT) by command (set, remove, remember) and outcome \
           (applied, refused).",
    kind: Kind::Counter,
    stats: None,
    read: Read::Series(|t| t.triggers.commands()),
};

#[cfg(test)]
mod tests {
    use super::super::metrics::{Exposition, StatsSnapshot};
    use super::super::Telemetry;

    #[test]
    fn trigger_events_scene_slots_and_commands_reach_metrics_and_stats() {
        let t = Telemetry::new(["imu0"]);
        t.triggers.event("imu0", "shaking", "start");
        t.triggers.event("imu0", "shaking", "end");
        t.triggers.event("imu0", "shaking", "start");
        t.triggers
            .scene_published
            .fetch_add(5, std::sync::atomic::Ordering::Relaxed);
        t.triggers.set_scene_dropped(2, 1);
        t.triggers.command("set", "refused");
        let text = Exposition::read(&t).render();
        for line in [
            "edgebind_trigger_events_total{sensor=\"imu0\",trigger=\"shaking\",type=\"start\"} 2",
            "edgebind_trigger_events_total{sensor=\"imu0\",trigger=\"shaking\",type=\"end\"} 1",
            "edgebind_scene_slots_total{outcome=\"published\"} 5",
            "edgebind_scene_slots_total{outcome=\"sparse\"} 2",
            "edgebind_scene_slots_total{outcome=\"evicted\"} 1",
            "edgebind_trigger_commands_total{command=\"set\",outcome=\"refused\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        let stats = serde_json::to_value(StatsSnapshot::read(&t)).unwrap_or_default();
        assert_eq!(
            stats["scene_slots"],
            serde_json::json!({"published": 5, "sparse": 2, "evicted": 1})
        );
    }
}
