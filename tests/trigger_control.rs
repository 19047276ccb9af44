//! Triggers over MQTT (#17), end to end with the daemon binary, a real mosquitto and the tiny
//! models on the real ONNX Runtime: "remember the last N windows" stores an example set that an
//! `example` trigger then recognises on a later repeat; a trigger set over MQTT fires, survives
//! a restart and is removed (its open event ended, its retained state cleared); bad commands are
//! answered naming the field (MQTT 5: on the response topic with the correlation data); with
//! control off nothing is subscribed. The trigger metrics are read from `/metrics`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

/// Generous: CI shares two cores between several builds.
const WAIT: Duration = Duration::from_secs(90);

const CONTROL: &str = "[concepts.control]\nenabled = true\n";

/// `base_config` (with `mqtt_extra` in `[mqtt]`), then `rest`.
fn config(device: &str, port: u16, mqtt_extra: &str, rest: &str) -> String {
    format!("{}{mqtt_extra}\n{rest}\n", base_config(device, port))
}

fn imu(name: &str, path: &Path, extra: &str) -> String {
    format!(
        "[[sources]]\ntype = \"imu_replay\"\nname = \"{name}\"\npath = \"{}\"\n{extra}\n",
        path.display()
    )
}

/// Publishes `body` on `topic` at QoS 1 with mosquitto's own client; `extra`: more arguments.
fn publish(port: u16, topic: &str, body: &[u8], extra: &[&str]) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), body).unwrap();
    let out = Command::new("mosquitto_pub")
        .args(extra)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-q",
            "1",
            "-t",
            topic,
            "-f",
        ])
        .arg(file.path())
        .output()
        .expect("mosquitto_pub runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Index of the first message from `from` on, on a topic ending in `suffix`, whose JSON
/// satisfies `pred`; fails the test after [`WAIT`] naming what was seen there.
fn wait_json(
    sub: &Subscriber,
    from: usize,
    suffix: &str,
    pred: impl Fn(&serde_json::Value) -> bool + Copy,
) -> (usize, serde_json::Value) {
    let find = |seen: &[Seen]| {
        seen.iter()
            .enumerate()
            .skip(from)
            .find(|(_, m)| {
                m.topic.ends_with(suffix)
                    && !m.payload.is_empty()
                    && serde_json::from_slice::<serde_json::Value>(&m.payload)
                        .is_ok_and(|v| pred(&v))
            })
            .map(|(i, m)| (i, m.json()))
    };
    let found = sub.wait_for(WAIT, |seen| find(seen).is_some());
    let seen = sub.seen.lock().unwrap();
    assert!(
        found,
        "no message on *{suffix} as expected; seen there: {:?}",
        seen.iter()
            .filter(|m| m.topic.ends_with(suffix))
            .map(|m| String::from_utf8_lossy(&m.payload)
                .chars()
                .take(400)
                .collect::<String>())
            .collect::<Vec<_>>()
    );
    find(&seen).unwrap()
}

fn count(sub: &Subscriber) -> usize {
    sub.seen.lock().unwrap().len()
}

/// The first `seconds` (as `t_s <`) of a recording, as a CSV in `dir`.
fn head_of(dir: &Path, recording: &str, seconds: f64) -> PathBuf {
    let text = std::fs::read_to_string(fixture(&format!("recordings/{recording}"))).unwrap();
    let mut lines = text.lines();
    let mut out = format!("{}\n", lines.next().unwrap());
    for l in lines {
        let t: f64 = l.split(',').next().unwrap().parse().unwrap();
        if t < seconds {
            out.push_str(l);
            out.push('\n');
        }
    }
    let path = dir.join(format!("head_{recording}"));
    std::fs::write(&path, out).unwrap();
    path
}

/// The unit embedding the daemon published for window `seq` of `sensor`.
fn embedding_of(sub: &Subscriber, sensor_topic: &str, seq: u64) -> Vec<f32> {
    let m = sub
        .on(sensor_topic)
        .into_iter()
        .map(|s| s.json())
        .find(|j| j["seq"] == seq)
        .unwrap_or_else(|| panic!("no embedding of window {seq}"));
    m["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

fn metrics(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
}

/// The value of the metric line starting with `series` (name and labels as written).
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Sends `remember` for `sensor` of `device`: the answer, or `None` when it is refused because
/// the sensor has not had that many windows yet (any other refusal fails the test).
fn remember(
    sub: &Subscriber,
    port: u16,
    device: &str,
    sensor: &str,
    body: &str,
) -> Option<serde_json::Value> {
    let from = count(sub);
    let (error, stored) = (
        format!("edgebind/{device}/triggers/error"),
        format!("edgebind/{device}/{sensor}/examples"),
    );
    publish(port, &format!("{stored}/remember"), body.as_bytes(), &[]);
    let answer = |seen: &[Seen]| {
        seen[from..]
            .iter()
            .find(|m| m.topic == error || m.topic == stored)
            .cloned()
    };
    assert!(
        sub.wait_for(WAIT, |seen| answer(seen).is_some()),
        "remember is not answered"
    );
    let m = answer(&sub.seen.lock().unwrap()).unwrap();
    let v = m.json();
    if m.topic == error {
        assert_eq!(v["code"], "not_enough_windows", "{v}");
        return None;
    }
    Some(v)
}

fn stop(daemon: &mut KillOnDrop) {
    sigterm(daemon);
    let status = wait_with_timeout(daemon, WAIT).expect("the daemon stops");
    assert!(status.success(), "{status:?}");
}

#[test]
fn remember_over_mqtt_stores_the_last_windows_and_an_example_trigger_fires_on_later_repeats() {
    let broker = LocalBroker::start(&[]).unwrap();
    let port = broker.port();
    let sub = Subscriber::start(port, "edgebind/#");
    let dir = tempfile::tempdir().unwrap();
    let examples = dir.path().join("examples");
    // imu0 replays still 0-8 s, shaking 8-16 s and ends: its last windows (8-11, 5 s each) are
    // the ones fully inside the shaking. imu1 loops, so the daemon keeps running.
    let head = head_of(dir.path(), "imu_still_shake_still_100hz.csv", 16.5);
    let metrics_port = edgebind::publish::broker::free_port().unwrap();
    let text = config(
        "learn",
        port,
        "",
        &format!(
            "{CONTROL}[triggers]\nexamples_dir = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n{}{}",
            examples.display(),
            imu("imu0", &head, "speed = \"max\""),
            imu(
                "imu1",
                &fixture("recordings/imu_still_200hz.csv"),
                "speed = \"realtime\"\nloop = true\nhop_ms = 500"
            ),
        ),
    );
    let path = write_config(dir.path(), &text);
    let mut daemon = spawn_daemon(&path, &dir.path().join("daemon.log"), &[]);
    wait_json(&sub, 0, "learn/imu0/embedding", |v| v["seq"] == 11);
    let want: Vec<Vec<f32>> = (8..=11)
        .map(|s| embedding_of(&sub, "learn/imu0/embedding", s))
        .collect();
    // The trigger stage may still be behind the MQTT output: ask again until the ring ends at
    // window 11 (imu0 has ended, so it does, and then stays).
    let file = examples.join("imu0/shake.npy");
    let mut stored = None;
    for _ in 0..60 {
        // Too early the stage may not hold 4 windows yet: refused, asked again.
        let Some(v) = remember(
            &sub,
            port,
            "learn",
            "imu0",
            r#"{"name": "shake", "windows": 4}"#,
        ) else {
            std::thread::sleep(Duration::from_millis(500));
            continue;
        };
        assert_schema("example_set", &v);
        assert_eq!(v["windows"], 4);
        assert_eq!(v["file"], file.display().to_string());
        let set = npy_f32_2d(&file);
        assert_eq!(set.nrows(), 4);
        let same = set
            .outer_iter()
            .zip(&want)
            .all(|(row, w)| row.iter().zip(w).all(|(a, b)| (a - b).abs() < 1e-5));
        if same {
            stored = Some(v);
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(stored.is_some(), "the set stored is never windows 8-11");

    // In the same daemon: an example trigger set over MQTT on the looping sensor picks up a set
    // remembered from it and fires on the next windows.
    let from = count(&sub);
    while remember(
        &sub,
        port,
        "learn",
        "imu1",
        r#"{"name":"rest","windows":2}"#,
    )
    .is_none()
    {
        std::thread::sleep(Duration::from_millis(500));
    }
    publish(
        port,
        "edgebind/learn/imu1/triggers/rest_again/set",
        br#"{"kind":"example","example_set":"rest","on_threshold":0.5}"#,
        &[],
    );
    let (_, list) = wait_json(&sub, from, "learn/imu1/triggers", |v| {
        v["origin"] == "control"
    });
    assert_schema("trigger_list", &list);
    assert_eq!(list["triggers"][0]["name"], "rest_again");
    let (_, start) = wait_json(&sub, from, "learn/imu1/events", |v| {
        v["type"] == "start" && v["trigger"] == "rest_again"
    });
    assert_schema("trigger_event", &start);
    let m = metrics(metrics_port);
    assert!(
        metric(
            &m,
            "edgebind_trigger_events_total{sensor=\"imu1\",trigger=\"rest_again\",type=\"start\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{m}"
    );
    assert!(
        metric(
            &m,
            "edgebind_trigger_commands_total{command=\"remember\",outcome=\"applied\"}"
        )
        .is_some_and(|n| n >= 2.0),
        "{m}"
    );
    stop(&mut daemon);

    // Another recording with two shaking segments (12-20 s and 32-40 s): the example trigger
    // naming the set recognises both (the windows >= 60 % shaking: 10-17 and 30-37).
    let run_dir = tempfile::tempdir().unwrap();
    let trigger =
        format!(
        "[triggers]\nexamples_dir = \"{}\"\n\n[[triggers.sensors.imu0]]\nname = \"shake_again\"\n\
         kind = \"example\"\nexample_set = \"shake\"\non_threshold = 0.8\noff_threshold = 0.7\n\
         min_windows = 2\nend_after_windows = 2\n{}",
        examples.display(),
        imu("imu0", &fixture("recordings/imu_novelty_100hz.csv"), "speed = \"max\""),
    );
    let path = write_config(run_dir.path(), &config("recognise", port, "", &trigger));
    let out = run(edgebind().arg("run").arg("--config").arg(&path));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(sub.wait_for(WAIT, |seen| seen
        .iter()
        .any(|m| m.topic == "edgebind/recognise/status" && m.payload == b"offline")));
    let ends: Vec<(u64, u64)> = sub
        .on("recognise/imu0/events")
        .iter()
        .map(Seen::json)
        .filter(|e| e["type"] == "end")
        .map(|e| {
            (
                e["first_seq"].as_u64().unwrap(),
                e["last_seq"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ends, vec![(10, 17), (30, 37)]);
}

/// A daemon `device` on a looping still recording (`imu0`, realtime, a window every 500 ms),
/// trigger control on.
fn looping(dir: &Path, device: &str, port: u16, mqtt_extra: &str, control: &str) -> PathBuf {
    let text = config(
        device,
        port,
        mqtt_extra,
        &format!(
            "{control}[triggers]\nstate_dir = \"{}\"\n{}",
            dir.join("trigger-state").display(),
            imu(
                "imu0",
                &fixture("recordings/imu_still_200hz.csv"),
                "speed = \"realtime\"\nloop = true\nhop_ms = 500"
            )
        ),
    );
    write_config(dir, &text)
}

#[test]
fn a_trigger_set_over_mqtt_fires_survives_a_restart_and_is_removed() {
    let broker = LocalBroker::start(&[]).unwrap();
    let port = broker.port();
    let sub = Subscriber::start(port, "edgebind/tset/#");
    let dir = tempfile::tempdir().unwrap();
    let path = looping(dir.path(), "tset", port, "", CONTROL);
    let log = dir.path().join("daemon.log");
    let mut daemon = spawn_daemon(&path, &log, &[]);
    // At start: the configuration's (empty) list, retained.
    let (_, v) = wait_json(&sub, 0, "tset/imu0/triggers", |v| v["origin"] == "config");
    assert_eq!(v["triggers"], serde_json::json!([]));
    assert_schema("trigger_list", &v);

    // on_threshold -1: every window is "on", so it starts at the next window.
    let from = count(&sub);
    publish(
        port,
        "edgebind/tset/imu0/triggers/always/set",
        br#"{"kind": "concept", "labels": ["device at rest"], "on_threshold": -1.0}"#,
        &[],
    );
    let (_, list) = wait_json(&sub, from, "tset/imu0/triggers", |v| {
        v["origin"] == "control"
    });
    assert_eq!(list["triggers"][0]["name"], "always");
    assert_eq!(
        list["triggers"][0]["labels"],
        serde_json::json!(["device at rest"])
    );
    let (_, start) = wait_json(&sub, from, "tset/imu0/events", |v| {
        v["type"] == "start" && v["trigger"] == "always"
    });
    wait_json(&sub, from, "tset/imu0/triggers/always", |v| {
        v["state"] == "active"
    });
    stop(&mut daemon);
    assert!(dir
        .path()
        .join("trigger-state/imu0.triggers.json")
        .is_file());

    // After a restart the edit is still in use: the event open at the stop ends (`restart`)
    // and the trigger starts again.
    let from = count(&sub);
    let mut daemon = spawn_daemon(&path, &log, &[]);
    let (_, list) = wait_json(&sub, from, "tset/imu0/triggers", |v| {
        v["origin"] == "control"
    });
    assert_eq!(list["triggers"][0]["name"], "always");
    wait_json(&sub, from, "tset/imu0/events", |v| {
        v["type"] == "end" && v["end_reason"] == "restart" && v["event_id"] == start["event_id"]
    });
    let (at, again) = wait_json(&sub, from, "tset/imu0/events", |v| {
        v["type"] == "start" && v["trigger"] == "always"
    });

    // Removed: its open event ends (`reconfigured`), its retained state is cleared.
    publish(port, "edgebind/tset/imu0/triggers/always/remove", b"", &[]);
    let (_, end) = wait_json(&sub, at, "tset/imu0/events", |v| {
        v["type"] == "end" && v["event_id"] == again["event_id"]
    });
    assert_eq!(end["end_reason"], "reconfigured");
    let (_, list) = wait_json(&sub, at, "tset/imu0/triggers", |v| {
        v["origin"] == "control" && v["triggers"] == serde_json::json!([])
    });
    assert_schema("trigger_list", &list);
    let cleared = sub.wait_for(WAIT, |seen| {
        seen[at..]
            .iter()
            .any(|m| m.topic == "edgebind/tset/imu0/triggers/always" && m.payload.is_empty())
    });
    assert!(
        cleared,
        "the retained state of the removed trigger is not cleared"
    );
    // A subscriber arriving now is handed no state of it.
    let late = Subscriber::start(port, "edgebind/tset/imu0/triggers/#");
    late.wait_for(Duration::from_secs(2), |seen| !seen.is_empty());
    assert!(late
        .on("imu0/triggers/always")
        .iter()
        .all(|m| m.payload.is_empty()));
    // No start of it after the remove.
    let seen = sub.seen.lock().unwrap();
    let end_at = seen
        .iter()
        .position(|m| {
            m.topic.ends_with("/imu0/events")
                && m.json()["event_id"] == again["event_id"]
                && m.json()["type"] == "end"
        })
        .unwrap();
    assert!(!seen[end_at..]
        .iter()
        .any(|m| m.topic.ends_with("/imu0/events") && m.json()["type"] == "start"));
    drop(seen);
    stop(&mut daemon);
}

#[test]
fn bad_commands_are_answered_naming_the_field_and_change_nothing() {
    let broker = LocalBroker::start(&[]).unwrap();
    let port = broker.port();
    let sub = Subscriber::start(port, "edgebind/tbad/#");
    let replies = Subscriber::start(port, "replies/tbad");
    let dir = tempfile::tempdir().unwrap();
    let path = looping(dir.path(), "tbad", port, "protocol = \"5\"", CONTROL);
    let _daemon = spawn_daemon(&path, &dir.path().join("daemon.log"), &[]);
    wait_json(&sub, 0, "tbad/imu0/triggers", |v| v["origin"] == "config");
    let v5 = ["-V", "5", "-D", "publish", "response-topic", "replies/tbad"];
    let cases: [(&str, &[u8], &str, Option<&str>); 7] = [
        (
            "imu0/triggers/t/set",
            br#"{"kind":"concept","labels":["device at rest"],"on_threshold":5}"#,
            "invalid_trigger",
            Some("on_threshold"),
        ),
        (
            "imu0/triggers/t/set",
            br#"{"kind":"concept","labels":["device at rest"],"on_threshold":0.5,"colour":1}"#,
            "bad_json",
            Some("colour"),
        ),
        (
            "imu0/triggers/t/set",
            br#"{"kind":"concept","labels":["no such words"],"on_threshold":0.5}"#,
            "invalid_trigger",
            Some("labels[0]"),
        ),
        (
            "imu0/triggers/t/set",
            br#"{"kind":"stuck"}"#,
            "invalid_trigger",
            Some("kind"),
        ),
        (
            "imu0/examples/remember",
            br#"{"name":"x","windows":100000}"#,
            "not_enough_windows",
            Some("windows"),
        ),
        (
            "imu0/examples/remember",
            br#"{"name":"door opening","windows":1}"#,
            "invalid_name",
            Some("name"),
        ),
        (
            "imu9/examples/remember",
            br#"{"name":"x","windows":1}"#,
            "unknown_sensor",
            None,
        ),
    ];
    // An MQTT 5 reader of the response topic, to see the correlation data come back.
    // Line-buffered: piped, its stdout would only be flushed at exit.
    let mut reader = Command::new("stdbuf")
        .args([
            "-oL",
            "mosquitto_sub",
            "-V",
            "5",
            "-d",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .args([
            "-q",
            "1",
            "-t",
            "replies/tbad",
            "-C",
            &cases.len().to_string(),
            "-W",
            "90",
        ])
        .args(["-F", "correlation=%D payload=%p"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(reader.stdout.take().unwrap()));
    assert!(
        lines.by_ref().any(|l| l.unwrap().contains("SUBACK")),
        "mosquitto_sub did not subscribe"
    );
    for (i, (topic, body, code, field)) in cases.iter().enumerate() {
        let from = count(&sub);
        let reply_from = count(&replies);
        let correlation = format!("req-{i}");
        let mut args = v5.to_vec();
        args.extend(["-D", "publish", "correlation-data", &correlation]);
        publish(port, &format!("edgebind/tbad/{topic}"), body, &args);
        let (_, v) = wait_json(&sub, from, "tbad/triggers/error", |v| v["code"] == *code);
        assert_schema("trigger_error", &v);
        assert_eq!(v["field"].as_str(), *field, "{v}");
        let (_, answer) = wait_json(&replies, reply_from, "replies/tbad", |v| v["code"] == *code);
        assert_eq!(answer, v);
    }
    let answers: Vec<String> = lines
        .map(Result::unwrap)
        .filter(|l| l.starts_with("correlation="))
        .collect();
    reader.wait().unwrap();
    for (i, (_, _, code, _)) in cases.iter().enumerate() {
        let want = format!("correlation=req-{i} payload={{");
        assert!(
            answers
                .iter()
                .any(|a| a.starts_with(&want) && a.contains(&format!("\"code\":\"{code}\""))),
            "no answer with correlation req-{i} and code {code}: {answers:?}"
        );
    }
    // Nothing changed: no list but the configuration's was ever published.
    assert!(sub
        .on("tbad/imu0/triggers")
        .iter()
        .all(|m| m.json()["origin"] == "config"));
    assert!(!dir.path().join("trigger-state/imu0.triggers.json").exists());
}

#[test]
fn with_control_off_trigger_commands_are_not_taken() {
    let broker = LocalBroker::start(&[]).unwrap();
    let port = broker.port();
    let sub = Subscriber::start(port, "edgebind/toff/#");
    let dir = tempfile::tempdir().unwrap();
    let path = looping(dir.path(), "toff", port, "", "");
    let _daemon = spawn_daemon(&path, &dir.path().join("daemon.log"), &[]);
    let (first, _) = wait_json(&sub, 0, "toff/imu0/embedding", |_| true);
    publish(
        port,
        "edgebind/toff/imu0/triggers/always/set",
        br#"{"kind": "concept", "labels": ["device at rest"], "on_threshold": -1.0}"#,
        &[],
    );
    publish(
        port,
        "edgebind/toff/imu0/examples/remember",
        br#"{"name":"x","windows":1}"#,
        &[],
    );
    // Six more windows (3 s) after the commands: with control on the trigger would have fired.
    let (_, w) = wait_json(&sub, first, "toff/imu0/embedding", |_| true);
    let last = w["seq"].as_u64().unwrap() + 6;
    wait_json(&sub, first, "toff/imu0/embedding", |v| {
        v["seq"].as_u64() >= Some(last)
    });
    let seen = sub.seen.lock().unwrap();
    let answered: Vec<&String> = seen
        .iter()
        .map(|m| &m.topic)
        .filter(|t| t.contains("/triggers") || t.contains("/examples") || t.ends_with("/events"))
        .filter(|t| !t.ends_with("/set") && !t.ends_with("/remember"))
        .collect();
    assert!(answered.is_empty(), "{answered:?}");
}
