//! RealSense recordings made at test time by `tools/make_realsense_recording.py` (pyrealsense2's
//! software device; `tools/setup_realsense.sh`, or `EDGEBIND_REALSENSE_PYTHONPATH`), and the
//! configuration of a `realsense` source named `depth`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;

/// Writes a recording; `extra` are options of the script. Returns its JSON summary.
pub fn make_recording(path: &Path, extra: &[&str]) -> serde_json::Value {
    let pythonpath = std::env::var("EDGEBIND_REALSENSE_PYTHONPATH")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join(".realsense/python"));
    let out = Command::new("python3")
        .arg(repo().join("tools/make_realsense_recording.py"))
        .arg(path)
        .args(extra)
        .env("PYTHONPATH", pythonpath)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "make_realsense_recording.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(out.stdout.trim_ascii()).unwrap()
}

pub fn realsense_config(port: u16, device: &str, source: &str) -> String {
    format!(
        "{base}\n[[sources]]\ntype = \"realsense\"\nname = \"depth\"\n{source}",
        base = base_config(device, port)
    )
}

pub fn embeddings(sub: &Subscriber) -> Vec<serde_json::Value> {
    sub.on("/depth/embedding").iter().map(Seen::json).collect()
}
