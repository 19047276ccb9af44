//! Concept sets in the running daemon, end to end with the real binary, a real mosquitto, the
//! real ONNX Runtime and the tiny model set given the tiny text encoder: a set from the
//! configuration labels its sensor's windows; a set sent over MQTT labels the next windows, is
//! answered retained on `<prefix>/concepts/<set>` and kept across a restart (read back from the
//! embedding cache, not embedded again); bad commands are answered on `<prefix>/concepts/error`
//! with the old set still in use; the broker's ACL lets only the admin client change a set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use edgebind::inference::manifest::sha256_file;

/// Generous: CI shares two cores between several builds.
const WAIT: Duration = Duration::from_secs(90);

/// models/tiny plus the tiny text encoder and CLIP's vocabulary, with a manifest `text` entry.
fn model_set(dir: &Path) -> PathBuf {
    let m = dir.join("models");
    std::fs::create_dir_all(&m).unwrap();
    for e in std::fs::read_dir(repo().join("models/tiny")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), m.join(e.file_name())).unwrap();
    }
    std::fs::copy(fixture("models/text_tiny.onnx"), m.join("text.onnx")).unwrap();
    let bpe = repo().join(".bpe/bpe_simple_vocab_16e6.txt.gz");
    assert!(
        bpe.is_file(),
        "{} missing: run tools/fetch_clip_bpe.sh",
        bpe.display()
    );
    std::fs::copy(&bpe, m.join("bpe_simple_vocab_16e6.txt.gz")).unwrap();
    let path = m.join("manifest.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v["text"] = serde_json::json!({
        "file": "text.onnx", "sha256": sha256_file(&m.join("text.onnx")).unwrap(),
        "input": "text", "output": "embedding",
        "tokenizer": "bpe_simple_vocab_16e6.txt.gz",
        "tokenizer_sha256": sha256_file(&m.join("bpe_simple_vocab_16e6.txt.gz")).unwrap(),
    });
    std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    m
}

const MOTION: [&str; 2] = ["walking", "sitting"];

/// A daemon with the set `motion` (words) for the looping IMU sensor `wrist`, control on.
fn config(dir: &Path, device: &str, port: u16, mqtt_extra: &str) -> PathBuf {
    let models = model_set(dir);
    write_config(
        dir,
        &format!(
            r#"[device]
id = "{device}"
[runtime]
execution_providers = ["cpu"]
[models]
dir = "{models}"
when_full = "block"
[concepts]
top_k = 2
min_score = -1.0
state_dir = "{state}"
[concepts.control]
enabled = true
[concepts.sets.motion]
sensors = ["wrist"]
labels = ["walking", "sitting"]
template = "a person {{}}"
[mqtt]
url = "mqtt://127.0.0.1:{port}"
stats_interval_s = 0
{mqtt_extra}
[[sources]]
type = "imu_replay"
name = "wrist"
path = "{rec}"
speed = "realtime"
hop_ms = 500
loop = true
"#,
            models = models.display(),
            state = dir.join("state").display(),
            rec = fixture("recordings/imu_demo_200hz.csv").display(),
        ),
    )
}

/// Publishes `body` on `topic` at QoS 1 with mosquitto's own client (waits for the PUBACK).
fn publish(port: u16, topic: &str, body: &[u8], auth: Option<(&str, &str)>) {
    publish_with(port, topic, body, auth, &[]);
}

/// [`publish`] with more `mosquitto_pub` arguments.
fn publish_with(port: u16, topic: &str, body: &[u8], auth: Option<(&str, &str)>, extra: &[&str]) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), body).unwrap();
    let mut cmd = Command::new("mosquitto_pub");
    cmd.args(extra)
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
        .arg(file.path());
    if let Some((u, p)) = auth {
        cmd.args(["-u", u, "-P", p]);
    }
    let out = cmd.output().expect("mosquitto_pub runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Labels of every labels message of `seen` from index `from` on.
fn labels_from(seen: &[Seen], from: usize) -> Vec<Vec<String>> {
    seen.get(from..)
        .unwrap_or_default()
        .iter()
        .filter(|m| m.topic.ends_with("/wrist/labels"))
        .map(|m| {
            m.json()["labels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["label"].as_str().unwrap().to_string())
                .collect()
        })
        .collect()
}

/// Index of the first message of `seen` on a topic ending in `suffix` whose JSON satisfies
/// `pred`.
fn index_of(
    seen: &[Seen],
    suffix: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> Option<usize> {
    seen.iter()
        .position(|m| m.topic.ends_with(suffix) && pred(&m.json()))
}

fn wait_index(
    sub: &Subscriber,
    suffix: &str,
    pred: impl Fn(&serde_json::Value) -> bool + Copy,
) -> usize {
    let found = sub.wait_for(WAIT, |seen| index_of(seen, suffix, pred).is_some());
    let seen = sub.seen.lock().unwrap();
    assert!(
        found,
        "no message on *{suffix} as expected; seen: {:?}",
        seen.iter()
            .filter(|m| m.topic.contains("/concepts"))
            .map(|m| {
                let text = String::from_utf8_lossy(&m.payload);
                (m.topic.clone(), text.chars().take(300).collect::<String>())
            })
            .collect::<Vec<_>>()
    );
    index_of(&seen, suffix, pred).unwrap()
}

fn labels_are(v: &serde_json::Value, want: &[&str]) -> bool {
    v["labels"].as_array().is_some_and(|a| {
        a.iter()
            .map(|l| l.as_str().unwrap_or(""))
            .collect::<Vec<_>>()
            == want
    })
}

/// Waits until a labels message from index `from` on names only labels of `set`, then checks
/// that every later one does too (a window matched before the swap may still arrive first).
fn windows_switch_to(sub: &Subscriber, from: usize, set: &[&str]) {
    let of_set = |ls: &Vec<String>| ls.iter().all(|l| set.contains(&l.as_str()));
    let switched = sub.wait_for(WAIT, |seen| {
        let all = labels_from(seen, from);
        all.iter()
            .position(of_set)
            .is_some_and(|i| all.len() > i + 2)
    });
    let all = labels_from(&sub.seen.lock().unwrap(), from);
    assert!(switched, "windows never labelled from {set:?}: {all:?}");
    let first = all.iter().position(of_set).unwrap();
    for ls in &all[first..] {
        assert!(
            of_set(ls),
            "a window after the switch is labelled {ls:?}, not from {set:?}"
        );
        assert!(!ls.is_empty());
    }
}

#[test]
fn a_set_sent_over_mqtt_labels_the_next_windows_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = LocalBroker::start(&[]).unwrap();
    let port = broker.port();
    let sub = Subscriber::start(port, "edgebind/cc1/#");
    let path = config(dir.path(), "cc1", port, "");
    let log = dir.path().join("daemon.log");
    let mut daemon = spawn_daemon(&path, &log, &[]);

    // The configuration's set, answered retained, labels the windows.
    let at = wait_index(&sub, "/concepts/motion", |v| {
        labels_are(v, &MOTION) && v["origin"] == "config" && v["template"] == "a person {}"
    });
    // Retained: a client subscribing now is handed it at once, with the retain flag.
    let late = Subscriber::start(port, "edgebind/cc1/concepts/motion");
    assert!(late.wait_for(WAIT, |seen| !seen.is_empty()));
    let answer = late.on("/concepts/motion")[0].clone();
    assert!(answer.retain);
    drop(late);
    let v = answer.json();
    assert_eq!(v["sensors"], serde_json::json!(["wrist"]));
    assert_eq!(v["text_model"]["file"], "text.onnx");
    assert_eq!(v["sha256"].as_str().unwrap().len(), 64);
    assert_schema("concept_set", &v);
    windows_switch_to(&sub, at, &MOTION);

    // A new set over MQTT.
    let new = ["a dog barking", "a smoke alarm", "rain"];
    let before = sub.seen.lock().unwrap().len();
    publish(
        port,
        "edgebind/cc1/concepts/motion/set",
        br#"{"labels":["a dog barking","a smoke alarm","rain"],"template":"a sound of {}"}"#,
        None,
    );
    let at = wait_index(&sub, "/concepts/motion", |v| {
        labels_are(v, &new) && v["origin"] == "control"
    });
    assert!(at >= before);
    assert_schema("concept_set", &sub.seen.lock().unwrap()[at].json());
    windows_switch_to(&sub, at, &new);
    let state = dir.path().join("state/sets/motion.json");
    let persisted: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert!(labels_are(&persisted, &new), "{persisted}");

    // A restart keeps it, from the cache.
    sigterm(&daemon);
    let exit = wait_with_timeout(&mut daemon, WAIT).expect("daemon stops");
    assert!(exit.success(), "{}", std::fs::read_to_string(&log).unwrap());
    let sub2 = Subscriber::start(port, "edgebind/cc1/#");
    let log2 = dir.path().join("daemon2.log");
    let mut daemon2 = spawn_daemon(&path, &log2, &[]);
    let from = sub2.seen.lock().unwrap().len();
    let at = wait_index(&sub2, "/concepts/motion", |v| {
        labels_are(v, &new) && v["origin"] == "control"
    });
    windows_switch_to(&sub2, at.max(from), &new);
    assert!(labels_from(&sub2.seen.lock().unwrap(), from)
        .iter()
        .all(|ls| ls.iter().all(|l| new.contains(&l.as_str()))));
    let text = std::fs::read_to_string(&log2).unwrap();
    assert!(text.contains("concept set read from the cache"), "{text}");

    // Words edited in the configuration since the change win over it at the next start.
    sigterm(&daemon2);
    let exit = wait_with_timeout(&mut daemon2, WAIT).expect("daemon stops");
    assert!(
        exit.success(),
        "{}",
        std::fs::read_to_string(&log2).unwrap()
    );
    let edited = std::fs::read_to_string(&path).unwrap().replace(
        r#"labels = ["walking", "sitting"]"#,
        r#"labels = ["standing", "lying"]"#,
    );
    std::fs::write(&path, edited).unwrap();
    let sub3 = Subscriber::start(port, "edgebind/cc1/#");
    let _daemon3 = spawn_daemon(&path, &dir.path().join("daemon3.log"), &[]);
    let at = wait_index(&sub3, "/concepts/motion", |v| {
        labels_are(v, &["standing", "lying"]) && v["origin"] == "config"
    });
    windows_switch_to(&sub3, at, &["standing", "lying"]);
}

#[test]
fn bad_commands_are_answered_on_the_error_topic_and_the_set_stays() {
    let dir = tempfile::tempdir().unwrap();
    let broker = LocalBroker::start(&[]).unwrap();
    let port = broker.port();
    let sub = Subscriber::start(port, "edgebind/cc2/#");
    let path = config(dir.path(), "cc2", port, "");
    let log = dir.path().join("daemon.log");
    let _daemon = spawn_daemon(&path, &log, &[]);
    wait_index(&sub, "/concepts/motion", |v| labels_are(v, &MOTION));
    let bank_sha = sub.on("/concepts/motion")[0].json()["bank_sha256"].clone();

    let cases: [(&str, &[u8], &str, Option<&str>); 5] = [
        (
            "motion/add",
            br#"{"labels":["walking",""]}"#,
            "invalid_set",
            Some("labels[2]"),
        ),
        ("motion/set", b"\xff\xfe{}", "not_utf8", None),
        (
            "motion/set",
            br#"{"labels":["a"],"colour":1}"#,
            "bad_json",
            None,
        ),
        (
            "motion/remove",
            br#"{"labels":["walking","sitting"]}"#,
            "invalid_set",
            Some("labels"),
        ),
        ("nosuch/set", br#"{"labels":["a"]}"#, "unknown_set", None),
    ];
    for (i, (topic, body, code, field)) in cases.iter().enumerate() {
        publish(port, &format!("edgebind/cc2/concepts/{topic}"), body, None);
        assert!(
            sub.wait_for(WAIT, |seen| {
                seen.iter()
                    .filter(|m| m.topic.ends_with("/concepts/error"))
                    .count()
                    > i
            }),
            "no error answer for {topic}"
        );
        let e = sub.on("/concepts/error")[i].clone();
        assert!(!e.retain);
        let v = e.json();
        assert_eq!(v["code"], *code, "{topic}: {v}");
        assert_eq!(v["command"], topic.split('/').nth(1).unwrap());
        if let Some(f) = field {
            assert_eq!(v["field"], *f, "{v}");
        }
        assert!(!v["message"].as_str().unwrap().is_empty());
        assert_schema("concept_error", &v);
        if *code != "unknown_set" {
            assert_eq!(v["active_bank_sha256"], bank_sha, "{v}");
        }
    }
    // A body larger than mqtt.max_packet_bytes (1 MiB) is refused by the MQTT client itself,
    // which closes the connection: the daemon reconnects and subscribes again.
    let big = format!(r#"{{"labels":["{}"]}}"#, "x".repeat(1_200_000));
    publish(
        port,
        "edgebind/cc2/concepts/motion/set",
        big.as_bytes(),
        None,
    );
    assert!(wait_for_log(&log, "payload size limit exceeded", WAIT));
    // Still the old set: no new answer, and a good command applies to it as it was. A command
    // sent before the daemon has subscribed again is lost (clean session), so it is repeated
    // until answered (`remove` is idempotent).
    assert_eq!(sub.on("/concepts/motion").len(), 1);
    let removed = |seen: &[Seen]| {
        index_of(seen, "/concepts/motion", |v| labels_are(v, &["walking"])).is_some()
    };
    let deadline = std::time::Instant::now() + WAIT;
    while !sub.wait_for(Duration::from_secs(2), removed) && std::time::Instant::now() < deadline {
        publish(
            port,
            "edgebind/cc2/concepts/motion/remove",
            br#"{"labels":["sitting","never there"]}"#,
            None,
        );
    }
    let at = wait_index(&sub, "/concepts/motion", |v| labels_are(v, &["walking"]));
    windows_switch_to(&sub, at, &["walking"]);
    assert!(!dir.path().join("state/sets/nosuch.json").exists());
}

#[test]
fn only_the_admin_client_may_change_a_set_under_the_documented_acl() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("passwd");
    for (i, (user, pass)) in [("edgebind", "device-pw"), ("admin", "admin-pw")]
        .iter()
        .enumerate()
    {
        let mut cmd = Command::new("mosquitto_passwd");
        cmd.arg("-b");
        if i == 0 {
            cmd.arg("-c");
        }
        let out = cmd
            .arg(&pw)
            .args([user, pass])
            .output()
            .expect("mosquitto_passwd");
        assert!(out.status.success());
    }
    // The ACL of docs/mqtt.md: anonymous clients read, the device writes its own topics, only
    // `admin` writes the control topics.
    let acl = dir.path().join("acl");
    std::fs::write(
        &acl,
        "topic read edgebind/#\n\
         user edgebind\ntopic readwrite edgebind/#\n\
         user admin\ntopic read edgebind/#\n\
         topic write edgebind/+/concepts/+/set\n\
         topic write edgebind/+/concepts/+/add\n\
         topic write edgebind/+/concepts/+/remove\n",
    )
    .unwrap();
    let broker = LocalBroker::start(&[
        &format!("password_file {}", pw.display()),
        &format!("acl_file {}", acl.display()),
    ])
    .unwrap();
    let port = broker.port();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "device-pw\n").unwrap();
    let sub = Subscriber::start(port, "edgebind/cc3/#");
    let path = config(
        dir.path(),
        "cc3",
        port,
        &format!(
            "username = \"edgebind\"\npassword_file = \"{}\"",
            secret.display()
        ),
    );
    let log = dir.path().join("daemon.log");
    let _daemon = spawn_daemon(&path, &log, &[]);
    wait_index(&sub, "/concepts/motion", |v| labels_are(v, &MOTION));

    // Anonymous: mosquitto acknowledges and drops it (MQTT 3.1.1 has no negative PUBACK).
    publish(
        port,
        "edgebind/cc3/concepts/motion/set",
        br#"{"labels":["intruder"]}"#,
        None,
    );
    // The admin's command comes after it through the same broker, so once its answer is here
    // the anonymous one would have been answered before.
    publish(
        port,
        "edgebind/cc3/concepts/motion/add",
        br#"{"labels":["running"]}"#,
        Some(("admin", "admin-pw")),
    );
    wait_index(&sub, "/concepts/motion", |v| {
        labels_are(v, &["walking", "sitting", "running"])
    });
    let answers: Vec<serde_json::Value> =
        sub.on("/concepts/motion").iter().map(Seen::json).collect();
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert!(sub.on("/concepts/error").is_empty());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("intruder"), "{text}");
}

/// `edgebind check` on `text` (written to `dir`): exit code and stderr.
fn check(dir: &Path, text: &str) -> (Option<i32>, String) {
    let path = write_config(dir, text);
    let out = run(edgebind().arg("check").arg("--config").arg(&path));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_names_every_problem_of_the_concept_sets() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(config(dir.path(), "cc4", 1883, "")).unwrap();
    let (code, err) = check(dir.path(), &good);
    assert_eq!(code, Some(0), "{err}");

    let sets = r#"[concepts.sets.motion]
sensors = ["wrist", "ghost"]
labels = ["walking", "walking"]
[concepts.sets.error]
sensors = ["wrist"]
labels = ["x"]
template = "no slot"
[concepts.sets.Bad]
sensors = []
labels = ["a\u0007b"]
[concepts.sets.bank]
sensors = ["other"]
precomputed = { labels = "missing.txt", embeddings = "missing.npy" }
[mqtt]"#;
    let start = good.find("[concepts.sets.motion]").unwrap();
    let end = good.find("[mqtt]").unwrap();
    let hostile = format!("{}{sets}{}", &good[..start], &good[end + "[mqtt]".len()..]);
    let (code, err) = check(dir.path(), &hostile);
    assert_eq!(code, Some(78), "{err}");
    for want in [
        "concepts.sets.motion.sensors[1]: \"ghost\" is not a configured sensor",
        "concepts.sets.motion.labels[1]: \"walking\" appears twice",
        "concepts.sets.error: \"error\" is reserved",
        "concepts.sets.motion.sensors[0]: \"wrist\" is in set \"error\" already",
        "concepts.sets.error.template: \"no slot\" must hold exactly one {}",
        "concepts.sets.Bad: \"Bad\" is not a set name",
        "concepts.sets.Bad.sensors: names no sensor",
        "concepts.sets.Bad.labels[0]: holds the control character U+0007",
        "concepts.sets.bank.precomputed:",
        "missing.txt",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert!(!err.contains("panicked"), "{err}");

    // Words need the model set's text encoder: models/tiny has none.
    let no_text = good.replace(
        &format!("dir = \"{}\"", dir.path().join("models").display()),
        &format!("dir = \"{}\"", repo().join("models/tiny").display()),
    );
    let (code, err) = check(dir.path(), &no_text);
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains("concepts.sets.motion.labels: the model set has no text encoder"),
        "{err}"
    );
}

#[test]
fn with_mqtt_5_a_command_is_also_answered_on_its_response_topic() {
    let dir = tempfile::tempdir().unwrap();
    let broker = LocalBroker::start(&[]).unwrap();
    let port = broker.port();
    let sub = Subscriber::start(port, "replies/cc5");
    let all = Subscriber::start(port, "edgebind/cc5/#");
    let path = config(dir.path(), "cc5", port, "protocol = \"5\"");
    let log = dir.path().join("daemon.log");
    let _daemon = spawn_daemon(&path, &log, &[]);
    wait_index(&all, "/concepts/motion", |v| labels_are(v, &MOTION));
    let v5 = ["-V", "5", "-D", "publish", "response-topic", "replies/cc5"];
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
        .args(["-q", "1", "-t", "replies/cc5", "-C", "1", "-W", "90"])
        .args(["-F", "correlation=%D payload=%p"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(reader.stdout.take().unwrap()));
    // Subscribed before the command goes out (the answer is not retained).
    assert!(
        lines.by_ref().any(|l| l.unwrap().contains("SUBACK")),
        "mosquitto_sub did not subscribe"
    );
    let mut with_correlation = v5.to_vec();
    with_correlation.extend(["-D", "publish", "correlation-data", "req-42"]);
    publish_with(
        port,
        "edgebind/cc5/concepts/motion/add",
        br#"{"labels":["running"]}"#,
        None,
        &with_correlation,
    );
    let at = wait_index(&sub, "replies/cc5", |v| {
        labels_are(v, &["walking", "sitting", "running"])
    });
    assert!(!sub.seen.lock().unwrap()[at].retain);
    let seen: Vec<String> = lines.map(Result::unwrap).collect();
    let answer = seen
        .iter()
        .find(|l| l.starts_with("correlation="))
        .unwrap_or_else(|| panic!("no answer on the response topic: {seen:?}"));
    assert!(
        answer.starts_with("correlation=req-42 payload={"),
        "{answer}"
    );
    reader.wait().unwrap();
    publish_with(port, "edgebind/cc5/concepts/motion/set", b"{", None, &v5);
    wait_index(&sub, "replies/cc5", |v| v["code"] == "bad_json");
    // The usual answers go out as well.
    wait_index(&all, "/concepts/error", |v| v["code"] == "bad_json");
    wait_index(&all, "/concepts/motion", |v| {
        labels_are(v, &["walking", "sitting", "running"])
    });
}

#[test]
fn a_damaged_persisted_set_stops_the_start_naming_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "cc6", 1, "");
    let state = dir.path().join("state/sets");
    std::fs::create_dir_all(&state).unwrap();
    let file = state.join("motion.json");
    std::fs::write(&file, "{\"format\": 1, \"set\": \"motion\"").unwrap();
    let out = run(edgebind()
        .arg("run")
        .arg("--config")
        .arg(&path)
        .args(["--shutdown-timeout-s", "3"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&file.display().to_string()), "{err}");
    assert!(
        err.contains("delete the file to start from the configuration's set"),
        "{err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("edgebind running"),
        "{err}"
    );
}
