//! Repeated problems do not flood the log: a source that produces the same problem hundreds of
//! times gives a bounded number of lines, and the count is still in the sensor's counters.
//! (The full-disk flood is in `tests/disk.rs`; the rate limiter itself is unit-tested in
//! `telemetry::log_limit`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;

#[test]
fn a_recording_with_700_malformed_rows_logs_one_line_and_counts_every_row() {
    let broker = LocalBroker::start(&[]).unwrap();
    let sub = Subscriber::start(broker.port(), "edgebind/flood/#");
    let dir = tempfile::tempdir().unwrap();
    // Every other row of the 7 s still recording gets an acc_x that is not a number.
    let text = std::fs::read_to_string(fixture("recordings/imu_still_200hz.csv")).unwrap();
    let mut lines = text.lines();
    let mut csv = format!("{}\n", lines.next().unwrap());
    let mut bad = 0;
    for (i, line) in lines.enumerate() {
        if i % 2 == 1 {
            let (t, rest) = line.split_once(',').unwrap();
            let (_, rest) = rest.split_once(',').unwrap();
            csv.push_str(&format!("{t},oops,{rest}\n"));
            bad += 1;
        } else {
            csv.push_str(&format!("{line}\n"));
        }
    }
    assert_eq!(bad, 700);
    let recording = dir.path().join("flood.csv");
    std::fs::write(&recording, csv).unwrap();
    let config = format!(
        "{}\n[[sources]]\ntype = \"imu_replay\"\nname = \"imu\"\npath = \"{}\"\nspeed = \"max\"\n",
        base_config("flood", broker.port()),
        recording.display()
    );
    let path = write_config(dir.path(), &config);
    let out = run(edgebind().arg("run").arg("--config").arg(&path));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains("skipped_rows=700"), "{log}");
    assert!(warnings[0].contains("first_line=3"), "{log}");
    assert!(sub.wait_for(Duration::from_secs(5), |m| m
        .iter()
        .any(|s| s.topic.ends_with("/status") && s.payload == b"offline")));
    let state = sub.on("/imu/state").last().unwrap().json();
    assert_eq!(state["drops_total"]["bad_input"], 700, "{state}");
}
