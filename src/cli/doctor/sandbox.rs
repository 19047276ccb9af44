//! What `edgebind doctor` knows about a unit: the `[Service]` properties a transient
//! `systemd-run` unit can take, whether its device policy lets a device node through (the way
//! systemd resolves `DeviceAllow=` against `/proc/devices`), and how two warm-up runs differ.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// `[Service]` settings that describe the daemon's lifecycle, not its sandbox: a one-shot
/// warm-up under `systemd-run --wait` leaves them out (`Type=notify` would wait for a `READY=1`
/// the probe never sends, `WatchdogSec=` would kill it, `ExecStart=` is the probe itself).
const LIFECYCLE: &[&str] = &[
    "Type",
    "NotifyAccess",
    "ExecStart",
    "ExecStartPre",
    "ExecStartPost",
    "ExecCondition",
    "ExecReload",
    "ExecStop",
    "ExecStopPost",
    "Restart",
    "RestartSec",
    "RestartPreventExitStatus",
    "RestartForceExitStatus",
    "SuccessExitStatus",
    "TimeoutSec",
    "TimeoutStartSec",
    "WatchdogSec",
    "RemainAfterExit",
    "PIDFile",
    "GuessMainPID",
    "BusName",
    "FileDescriptorStoreMax",
    "Sockets",
];

/// The `[Service]` assignments of a unit file, in order (continuation lines joined, comments
/// skipped), without the lifecycle settings.
#[must_use]
pub fn sandbox_properties(unit: &str) -> Vec<(String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    let mut pending = String::new();
    for raw in unit.lines() {
        let line = raw.trim_end();
        if let Some(start) = line.strip_suffix('\\') {
            pending.push_str(start);
            pending.push(' ');
            continue;
        }
        let full = std::mem::take(&mut pending) + line;
        let t = full.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            continue;
        }
        if t.starts_with('[') && t.ends_with(']') {
            section = t[1..t.len() - 1].to_string();
            continue;
        }
        if section != "Service" {
            continue;
        }
        if let Some((key, value)) = t.split_once('=') {
            let key = key.trim();
            if !LIFECYCLE.contains(&key) {
                out.push((key.to_string(), value.trim().to_string()));
            }
        }
    }
    out
}

/// A device node a process had open.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeviceNode {
    /// Its path.
    pub path: String,
    /// A block device (else a character device).
    pub block: bool,
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
}

/// `/proc/devices`: the group names of each major number, per kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceGroups {
    char: BTreeMap<u32, Vec<String>>,
    block: BTreeMap<u32, Vec<String>>,
}

impl DeviceGroups {
    /// Parses `/proc/devices`.
    #[must_use]
    pub fn parse(text: &str) -> Self {
        let mut groups = Self::default();
        let mut block = false;
        for line in text.lines() {
            let t = line.trim();
            if t.starts_with("Character devices") {
                block = false;
            } else if t.starts_with("Block devices") {
                block = true;
            } else if let Some((major, name)) = t.split_once(char::is_whitespace) {
                if let Ok(major) = major.parse::<u32>() {
                    let map = if block {
                        &mut groups.block
                    } else {
                        &mut groups.char
                    };
                    map.entry(major).or_default().push(name.trim().to_string());
                }
            }
        }
        groups
    }

    /// The group names of `node`'s major number.
    #[must_use]
    pub fn names(&self, node: &DeviceNode) -> &[String] {
        let map = if node.block { &self.block } else { &self.char };
        map.get(&node.major).map_or(&[], Vec::as_slice)
    }
}

/// A device number as systemd resolves a `DeviceAllow=/dev/…` path: (block device, major, minor).
pub type Rdev = (bool, u32, u32);

/// Whether the unit's `DevicePolicy=`/`DeviceAllow=` let `node` through, and by which rule
/// (`None`: denied). `rdev_of` resolves a `DeviceAllow=/dev/…` path to its node, as systemd does
/// when the unit starts.
#[must_use]
pub fn allowed_by(
    properties: &[(String, String)],
    groups: &DeviceGroups,
    node: &DeviceNode,
    rdev_of: &dyn Fn(&str) -> Option<Rdev>,
) -> Option<String> {
    let policy = properties
        .iter()
        .rev()
        .find(|(k, _)| k == "DevicePolicy")
        .map_or("auto", |(_, v)| v.as_str());
    let allows: Vec<&str> = properties
        .iter()
        .filter(|(k, _)| k == "DeviceAllow")
        .map(|(_, v)| v.as_str())
        .collect();
    if policy == "auto" && allows.is_empty() {
        return Some("DevicePolicy=auto without DeviceAllow= (every device)".into());
    }
    // systemd's "standard pseudo devices" of DevicePolicy=closed (and auto with an allow-list).
    let pseudo = !node.block
        && matches!(
            (node.major, node.minor),
            (1, 3 | 5 | 7 | 8 | 9) | (5, 0 | 2) | (136..=143, _)
        );
    if policy != "strict" && pseudo {
        return Some(format!("DevicePolicy={policy} (standard pseudo device)"));
    }
    for allow in allows {
        let spec = allow.split_whitespace().next().unwrap_or("");
        let group = if node.block {
            spec.strip_prefix("block-")
        } else {
            spec.strip_prefix("char-")
        };
        if let Some(pattern) = group {
            let Ok(pattern) = glob::Pattern::new(pattern) else {
                continue;
            };
            if groups.names(node).iter().any(|n| pattern.matches(n)) {
                return Some(format!("DeviceAllow={allow}"));
            }
        } else if spec.starts_with("/dev/")
            && rdev_of(spec) == Some((node.block, node.major, node.minor))
        {
            return Some(format!("DeviceAllow={allow}"));
        }
    }
    None
}

/// What to add for a denied node: its path (resolved when the unit starts), or its whole group
/// when that is not `misc` (which holds unrelated devices too).
#[must_use]
pub fn suggestion(groups: &DeviceGroups, node: &DeviceNode) -> String {
    let kind = if node.block { "block" } else { "char" };
    let mut s = format!("DeviceAllow={} rw", node.path);
    if let Some(name) = groups.names(node).iter().find(|n| *n != "misc") {
        s.push_str(&format!(" (or its group: DeviceAllow={kind}-{name} rw)"));
    }
    s
}

/// One model as a warm-up run loaded it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbedModel {
    /// The modality.
    pub modality: String,
    /// The provider in use.
    pub provider: String,
    /// The load step in use.
    pub step: String,
    /// Nodes per provider.
    pub nodes: String,
    /// The parity check's lowest cosine (`None`: no reference).
    pub parity_cosine: Option<f64>,
}

/// What one warm-up run (`doctor --probe`) reports on its stdout.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbeReport {
    /// The user it ran as.
    pub user: String,
    /// The ONNX Runtime library it loaded (empty: none).
    pub library: String,
    /// That library's version.
    pub ort_version: String,
    /// The models, when the warm-up succeeded.
    pub models: Vec<ProbedModel>,
    /// Device nodes held open after the warm-up (the GPU's, with a GPU provider).
    pub devices: Vec<DeviceNode>,
    /// Why the warm-up failed.
    pub error: Option<String>,
}

/// One run as the doctor saw it.
#[derive(Debug, Clone, Default)]
pub struct Run {
    /// The report (`None`: the probe never printed one).
    pub report: Option<ProbeReport>,
    /// What it printed on stderr.
    pub stderr: String,
}

impl Run {
    /// The report in `stdout` (its last JSON line).
    #[must_use]
    pub fn from_output(stdout: &str, stderr: &str) -> Self {
        let report = stdout
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with('{'))
            .and_then(|l| serde_json::from_str(l).ok());
        Self {
            report,
            stderr: stderr.to_string(),
        }
    }
}

/// The stderr lines worth comparing: warnings and errors of our log (without their time
/// stamps), and anything a native library printed by itself.
fn diagnostics(stderr: &str) -> BTreeSet<String> {
    stderr
        .lines()
        .filter_map(|line| {
            let t = line.trim();
            if t.is_empty() {
                return None;
            }
            // `2026-12-07T05:31:25.397816Z  WARN message…`
            let mut parts = t.splitn(3, char::is_whitespace);
            let first = parts.next().unwrap_or("");
            if first.len() >= 20 && first.ends_with('Z') && first.contains('T') {
                let rest = t[first.len()..].trim_start();
                let (level, message) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                return matches!(level, "WARN" | "ERROR")
                    .then(|| format!("{level} {}", message.trim()));
            }
            Some(t.to_string())
        })
        .collect()
}

/// Every way the sandboxed run differs from the plain one (empty: the same).
#[must_use]
pub fn differences(plain: &Run, sandboxed: &Run) -> Vec<String> {
    let mut out = Vec::new();
    let (Some(p), Some(s)) = (&plain.report, &sandboxed.report) else {
        if sandboxed.report.is_none() {
            let tail: Vec<&str> = sandboxed.stderr.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            out.push(format!(
                "the warm-up did not run under the sandbox: {}",
                if tail.is_empty() {
                    "no output".to_string()
                } else {
                    tail.join(" | ")
                }
            ));
        }
        if plain.report.is_none() {
            out.push("the plain run printed no report".into());
        }
        return out;
    };
    match (&p.error, &s.error) {
        (None, Some(e)) => out.push(format!("fails under the sandbox only: {e}")),
        (Some(e), None) => out.push(format!("fails in the plain run only: {e}")),
        (Some(a), Some(b)) if a != b => {
            out.push(format!(
                "fails differently: plainly \"{a}\", under the sandbox \"{b}\""
            ));
        }
        _ => {}
    }
    if p.library != s.library && !s.library.is_empty() && !p.library.is_empty() {
        out.push(format!(
            "ONNX Runtime: plainly {} ({}), under the sandbox {} ({}): the environment of your shell (ORT_DYLIB_PATH, LD_LIBRARY_PATH) does not reach the service; set it in the unit's EnvironmentFile or runtime.library_path",
            p.library, p.ort_version, s.library, s.ort_version
        ));
    }
    for pm in &p.models {
        match s.models.iter().find(|m| m.modality == pm.modality) {
            Some(sm) if sm.step != pm.step || sm.provider != pm.provider => out.push(format!(
                "{}: plainly {} (step {}), under the sandbox {} (step {})",
                pm.modality, pm.provider, pm.step, sm.provider, sm.step
            )),
            Some(_) => {}
            None if s.error.is_none() => {
                out.push(format!("{}: not loaded under the sandbox", pm.modality));
            }
            None => {}
        }
    }
    for d in &p.devices {
        if s.error.is_none()
            && !s
                .devices
                .iter()
                .any(|x| x.major == d.major && x.minor == d.minor)
        {
            out.push(format!(
                "{} ({} {}:{}) is opened plainly, not under the sandbox",
                d.path,
                if d.block { "block" } else { "char" },
                d.major,
                d.minor
            ));
        }
    }
    let before = diagnostics(&plain.stderr);
    for line in diagnostics(&sandboxed.stderr).difference(&before) {
        out.push(format!("printed under the sandbox only: {line}"));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn props(text: &str) -> Vec<(String, String)> {
        sandbox_properties(text)
    }

    #[test]
    fn the_service_section_is_read_without_lifecycle_settings() {
        let unit = "[Unit]\nDescription=x\nAfter=network.target\n[Service]\n# comment\nType=notify\n\
                    ExecStart=/usr/bin/edgebind run\nWatchdogSec=30s\nUser=edgebind\n\
                    SystemCallFilter=@system-service \\\n  @resources\nCapabilityBoundingSet=\n\
                    DeviceAllow=char-alsa rw\n; other comment\nDeviceAllow=/dev/nvmap rw\n[Install]\nWantedBy=multi-user.target\n";
        assert_eq!(
            props(unit),
            [
                ("User", "edgebind"),
                ("SystemCallFilter", "@system-service    @resources"),
                ("CapabilityBoundingSet", ""),
                ("DeviceAllow", "char-alsa rw"),
                ("DeviceAllow", "/dev/nvmap rw"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }

    /// `/proc/devices` of a Jetson Orin as the nvmap and nvgpu drivers register them (nvmap a
    /// misc device, the GPU region named after its platform device).
    const ORIN_PROC_DEVICES: &str = "Character devices:\n  1 mem\n  4 /dev/vc/0\n  4 tty\n  5 /dev/tty\n  5 /dev/console\n  5 /dev/ptmx\n 10 misc\n 13 input\n116 alsa\n136 pts\n188 ttyUSB\n189 usb_device\n226 drm\n492 17000000.gpu\n493 host1x-fence\n\nBlock devices:\n  7 loop\n259 blkext\n";

    fn orin_node(path: &str, major: u32, minor: u32) -> DeviceNode {
        DeviceNode {
            path: path.into(),
            block: false,
            major,
            minor,
        }
    }

    #[test]
    fn device_allow_groups_are_resolved_through_proc_devices_like_systemd_does() {
        let groups = DeviceGroups::parse(ORIN_PROC_DEVICES);
        let nvmap = orin_node("/dev/nvmap", 10, 120);
        let gpu = orin_node("/dev/nvhost-ctrl-gpu", 492, 1);
        let null = orin_node("/dev/null", 1, 3);
        assert_eq!(groups.names(&nvmap), ["misc"]);
        assert_eq!(groups.names(&gpu), ["17000000.gpu"]);
        let no_rdev = |_: &str| None;
        // The unit as shipped before: char-nvmap and char-nvhost match no group on an Orin.
        let old = props(
            "[Service]\nDevicePolicy=closed\nDeviceAllow=char-nvhost rw\nDeviceAllow=char-nvmap rw\nDeviceAllow=char-nvidiactl rw\n",
        );
        assert_eq!(allowed_by(&old, &groups, &nvmap, &no_rdev), None);
        assert_eq!(allowed_by(&old, &groups, &gpu, &no_rdev), None);
        assert!(allowed_by(&old, &groups, &null, &no_rdev)
            .unwrap()
            .contains("pseudo"));
        // Paths resolve to their node; globs match the platform device's group.
        let fixed = props(
            "[Service]\nDevicePolicy=closed\nDeviceAllow=/dev/nvmap rw\nDeviceAllow=char-*.gpu rw\n",
        );
        let rdev = |p: &str| (p == "/dev/nvmap").then_some((false, 10, 120));
        assert_eq!(
            allowed_by(&fixed, &groups, &nvmap, &rdev).as_deref(),
            Some("DeviceAllow=/dev/nvmap rw")
        );
        assert_eq!(
            allowed_by(&fixed, &groups, &gpu, &rdev).as_deref(),
            Some("DeviceAllow=char-*.gpu rw")
        );
        // Strict has no pseudo devices; auto without an allow-list allows everything.
        let strict = props("[Service]\nDevicePolicy=strict\n");
        assert_eq!(allowed_by(&strict, &groups, &null, &no_rdev), None);
        assert!(allowed_by(&props("[Service]\nUser=x\n"), &groups, &gpu, &no_rdev).is_some());
        // What to add: the path, and the group unless it is misc.
        assert_eq!(suggestion(&groups, &nvmap), "DeviceAllow=/dev/nvmap rw");
        assert_eq!(
            suggestion(&groups, &gpu),
            "DeviceAllow=/dev/nvhost-ctrl-gpu rw (or its group: DeviceAllow=char-17000000.gpu rw)"
        );
    }

    fn report(step: &str, devices: Vec<DeviceNode>) -> ProbeReport {
        ProbeReport {
            user: "root".into(),
            library: "/usr/lib/edgebind/libonnxruntime.so.1.23.0".into(),
            ort_version: "1.23.0".into(),
            models: vec![ProbedModel {
                modality: "imu".into(),
                provider: step.split('-').next().unwrap().into(),
                step: step.into(),
                nodes: "tensorrt 1".into(),
                parity_cosine: Some(0.9999),
            }],
            devices,
            error: None,
        }
    }

    #[test]
    fn differences_name_the_model_the_device_and_the_sandbox_only_messages() {
        let nvmap = orin_node("/dev/nvmap", 10, 120);
        let plain = Run {
            report: Some(report("tensorrt-fp16", vec![nvmap.clone()])),
            stderr: "2026-12-07T05:31:25.397816Z  INFO model 1/1 (imu): loading\n".into(),
        };
        let same = Run {
            report: Some(report("tensorrt-fp16", vec![nvmap.clone()])),
            stderr: "2026-12-07T05:32:00.000001Z  INFO model 1/1 (imu): loading\n".into(),
        };
        assert!(differences(&plain, &same).is_empty());
        let broken = Run {
            report: Some(report("cpu", Vec::new())),
            stderr: "Error in cpuinfo: failed to parse processor information from /proc/cpuinfo\n\
                     2026-12-07T05:32:00.000001Z  WARN execution provider unavailable; trying the next step reason=cudaErrorNoDevice\n"
                .into(),
        };
        let d = differences(&plain, &broken);
        assert_eq!(d.len(), 4, "{d:#?}");
        assert!(d[0].contains(
            "imu: plainly tensorrt (step tensorrt-fp16), under the sandbox cpu (step cpu)"
        ));
        assert!(d[1].starts_with("/dev/nvmap (char 10:120) is opened plainly"));
        assert!(d.iter().any(|l| l.ends_with(
            "Error in cpuinfo: failed to parse processor information from /proc/cpuinfo"
        )));
        assert!(d
            .iter()
            .any(|l| l.contains("WARN execution provider unavailable")));
        // No report at all: systemd-run itself failed.
        let none = Run {
            report: None,
            stderr: "System has not been booted with systemd as init system (PID 1). Can't operate.\nFailed to connect to bus: Host is down\n".into(),
        };
        let d = differences(&plain, &none);
        assert_eq!(d.len(), 1);
        assert!(d[0].contains("did not run under the sandbox") && d[0].contains("Host is down"));
        // A failure under the sandbox only.
        let mut failing = report("cpu", Vec::new());
        failing.models.clear();
        failing.error = Some("/m/manifest.json: cannot be read".into());
        let d = differences(
            &plain,
            &Run {
                report: Some(failing),
                stderr: String::new(),
            },
        );
        assert_eq!(
            d,
            ["fails under the sandbox only: /m/manifest.json: cannot be read"]
        );
        assert_eq!(
            Run::from_output("noise\n{\"user\":\"u\",\"library\":\"\",\"ort_version\":\"\",\"models\":[],\"devices\":[],\"error\":null}\n", "")
                .report
                .map(|r| r.user),
            Some("u".to_string())
        );
    }
}
