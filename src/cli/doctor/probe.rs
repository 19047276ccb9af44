//! The warm-up as a probe (`doctor --probe` prints one JSON line) and `doctor --unit`: the probe
//! run plainly and inside the unit's sandbox (`systemd-run --wait --pipe` with the unit's
//! `[Service]` settings), compared, and the unit's device allow-list checked against the GPU
//! device nodes of this machine the way systemd resolves it (`/proc/devices`).

use std::fmt::Write as _;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use super::sandbox::{self, DeviceGroups, DeviceNode, ProbeReport, ProbedModel, Run};
use super::{load_runtime, stack};
use crate::config::Config;
use crate::inference::{load_model_set, LoadOptions};

/// glibc's `gnu_dev_major`/`gnu_dev_minor`.
fn major_minor(rdev: u64) -> (u32, u32) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & 0xffff_f000);
    let minor = (rdev & 0xff) | ((rdev >> 12) & 0xffff_ff00);
    (
        u32::try_from(major).unwrap_or(u32::MAX),
        u32::try_from(minor).unwrap_or(u32::MAX),
    )
}

fn node_of(path: &Path) -> Option<DeviceNode> {
    let meta = std::fs::metadata(path).ok()?;
    let t = meta.file_type();
    if !t.is_char_device() && !t.is_block_device() {
        return None;
    }
    let (major, minor) = major_minor(meta.rdev());
    Some(DeviceNode {
        path: path.display().to_string(),
        block: t.is_block_device(),
        major,
        minor,
    })
}

/// The device nodes this process holds open.
fn open_devices() -> Vec<DeviceNode> {
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    let mut nodes: Vec<DeviceNode> = fds
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.starts_with("/dev/"))
        .filter_map(|target| node_of(&target))
        .collect();
    nodes.sort();
    nodes.dedup();
    nodes
}

fn user_name() -> String {
    let uid = nix::unistd::geteuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| format!("uid {uid}"), |u| u.name)
}

/// Loads the configured models as `run` does and reports what happened (never fails: a failure
/// is part of the report).
#[must_use]
pub fn probe(cfg: &Config) -> ProbeReport {
    let mut report = ProbeReport {
        user: user_name(),
        ..ProbeReport::default()
    };
    let runtime = match load_runtime(cfg) {
        Ok(rt) => rt,
        Err(e) => {
            report.error = Some(e);
            return report;
        }
    };
    report.library = runtime.library.display().to_string();
    report.ort_version.clone_from(&runtime.version);
    let opts = LoadOptions::from_config(cfg);
    match load_model_set(
        &runtime,
        &cfg.resolve(&cfg.models.dir),
        &cfg.modalities(),
        &opts,
    ) {
        Ok(set) => {
            report.models = set
                .encoders
                .iter()
                .map(|(m, l)| ProbedModel {
                    modality: m.to_string(),
                    provider: l.encoder.provider.as_str().to_string(),
                    step: l.encoder.step.to_string(),
                    nodes: l.encoder.placement.describe(),
                    parity_cosine: l.parity.map(|p| p.min_cosine),
                })
                .collect();
            // While the sessions are alive: the GPU's nodes are open now.
            report.devices = open_devices();
        }
        Err(e) => report.error = Some(e.to_string()),
    }
    report
}

fn probe_args(exe: &Path, config: &Path) -> Vec<String> {
    vec![
        exe.display().to_string(),
        "doctor".into(),
        "--probe".into(),
        "--config".into(),
        config.display().to_string(),
    ]
}

fn output_of(cmd: &mut Command, what: &str) -> Run {
    match cmd.output() {
        Ok(out) => Run::from_output(
            &String::from_utf8_lossy(&out.stdout),
            &String::from_utf8_lossy(&out.stderr),
        ),
        Err(e) => Run {
            report: None,
            stderr: format!("cannot start {what}: {e}"),
        },
    }
}

/// Runs the probe plainly and under `unit`'s sandbox, and checks the unit's device allow-list:
/// the text to print and whether the two runs agree.
///
/// # Errors
/// The unit file or the configuration path cannot be read.
pub fn compare_with_unit(config: &Path, unit: &Path) -> Result<(String, bool)> {
    let text = std::fs::read_to_string(unit)
        .with_context(|| format!("{}: cannot read the unit file", unit.display()))?;
    let properties = sandbox::sandbox_properties(&text);
    // The sandboxed process starts in `/`: every path it gets must be absolute.
    let config = std::fs::canonicalize(config)
        .with_context(|| format!("{}: cannot resolve the path", config.display()))?;
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let args = probe_args(&exe, &config);
    crate::service::status("doctor: warm-up, plain run");
    let plain = output_of(Command::new(&args[0]).args(&args[1..]), "the plain run");
    crate::service::status("doctor: warm-up inside the unit's sandbox");
    let mut sandboxed = Command::new("systemd-run");
    sandboxed.args([
        "--wait",
        "--pipe",
        "--quiet",
        "--collect",
        "--service-type=exec",
    ]);
    for (k, v) in &properties {
        sandboxed.arg("-p").arg(format!("{k}={v}"));
    }
    sandboxed.args(&args);
    let sandboxed = output_of(&mut sandboxed, "systemd-run");

    let mut o = format!(
        "\nSandbox of {} ({} settings; warm-up via systemd-run)\n",
        unit.display(),
        properties.len()
    );
    let differences = sandbox::differences(&plain, &sandboxed);
    if differences.is_empty() {
        o.push_str("  the warm-up runs the same inside the sandbox as plainly\n");
    }
    for d in &differences {
        let _ = writeln!(o, "  {d}");
    }
    o.push_str(&device_check(&properties));
    Ok((o, differences.is_empty()))
}

/// The unit's verdict on every GPU device node of this machine.
fn device_check(properties: &[(String, String)]) -> String {
    let groups = DeviceGroups::parse(&std::fs::read_to_string("/proc/devices").unwrap_or_default());
    let rdev_of = |p: &str| node_of(Path::new(p)).map(|n| (n.block, n.major, n.minor));
    let nodes: Vec<DeviceNode> = stack::present_gpu_nodes(Path::new("/"))
        .into_iter()
        .filter_map(|p| node_of(Path::new(p)))
        .collect();
    if nodes.is_empty() {
        return "  device allow-list: no GPU device node on this machine to check\n".into();
    }
    let mut o = String::new();
    for node in &nodes {
        match sandbox::allowed_by(properties, &groups, node, &rdev_of) {
            Some(rule) => {
                let _ = writeln!(o, "  {} allowed by {rule}", node.path);
            }
            None => {
                let _ = writeln!(
                    o,
                    "  {} is DENIED by the unit; add {}",
                    node.path,
                    sandbox::suggestion(&groups, node)
                );
            }
        }
    }
    o
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_are_split_like_glibc_does() {
        // glibc's makedev, the inverse.
        let makedev = |major: u64, minor: u64| {
            ((major & 0xfff) << 8)
                | ((major & !0xfff) << 32)
                | (minor & 0xff)
                | ((minor & !0xff) << 12)
        };
        assert_eq!(major_minor(makedev(1, 3)), (1, 3));
        assert_eq!(major_minor(makedev(492, 1)), (492, 1));
        assert_eq!(major_minor(makedev(4097, 300_000)), (4097, 300_000));
        let null = node_of(Path::new("/dev/null")).unwrap();
        assert_eq!((null.block, null.major, null.minor), (false, 1, 3));
        assert!(node_of(Path::new("/etc/hostname")).is_none());
    }

    #[test]
    fn the_probe_lists_device_nodes_held_open() {
        let f = std::fs::File::open("/dev/null").unwrap();
        let open = open_devices();
        assert!(
            open.iter()
                .any(|n| n.path == "/dev/null" && n.major == 1 && n.minor == 3),
            "{open:?}"
        );
        drop(f);
    }
}
