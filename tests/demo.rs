//! The README's first command: `edgebind demo` replays the bundled recordings through the
//! stand-in models to a private mosquitto and shows what a subscriber receives.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

#[test]
fn the_demo_runs_every_bundled_sensor_to_the_end_and_delivers_everything() {
    let out = run(edgebind().arg("demo"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    for sensor in [
        "imu-wrist",
        "imu-table",
        "thermal-door",
        "depth-front",
        "camera-garden",
    ] {
        let last = stdout
            .lines()
            .rfind(|l| l.starts_with(&format!("[edgebind/demo/{sensor}/state]")))
            .unwrap_or_else(|| panic!("no state line for {sensor}:\n{stdout}"));
        assert!(last.contains("] finished, samples="), "{last}");
    }
    assert!(stdout.contains("device shaking"), "{stdout}");
    assert!(stdout.contains(" (0 undelivered)"), "{stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
