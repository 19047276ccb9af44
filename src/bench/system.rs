//! What machine a benchmark ran on: CPU and GPU model, cores, kernel and, on a Jetson, the
//! power mode. Readers of `/proc`, `/sys` and `/etc` files are split from their pure parsers.

use std::path::Path;
use std::process::Command;

use serde::Serialize;

/// Written where a property does not apply to this machine (power mode off a Jetson).
pub const NOT_APPLICABLE: &str = "n/a";

/// The machine a benchmark ran on.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SystemInfo {
    /// CPU model (`model name` of /proc/cpuinfo; on ARM boards the board and CPU part).
    pub cpu_model: String,
    /// CPUs this process may use.
    pub cpu_cores: usize,
    /// GPU model, or `none`.
    pub gpu_model: String,
    /// Jetson power mode (`nvpmodel -q`, else /etc/nvpmodel.conf + its status file), or `n/a`.
    pub power_mode: String,
    /// Kernel release.
    pub kernel: String,
    /// CPU architecture of this build.
    pub arch: String,
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// The device-tree model (`NVIDIA Jetson Orin Nano Developer Kit`), NUL-terminated in the file.
fn board_model() -> Option<String> {
    let m = read("/proc/device-tree/model")?;
    let m = m.trim_end_matches('\0').trim().to_string();
    (!m.is_empty()).then_some(m)
}

/// Whether this is an NVIDIA Jetson (L4T).
#[must_use]
pub fn is_jetson() -> bool {
    Path::new("/etc/nv_tegra_release").exists()
        || board_model().is_some_and(|m| m.contains("Jetson"))
}

impl SystemInfo {
    /// Reads everything; what cannot be read is `unknown` (or `n/a` where it does not apply).
    #[must_use]
    pub fn detect() -> Self {
        let cpuinfo = read("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpu_model(&cpuinfo, board_model().as_deref());
        let jetson = is_jetson();
        Self {
            cpu_model,
            cpu_cores: std::thread::available_parallelism().map_or(1, usize::from),
            gpu_model: gpu_model(jetson),
            power_mode: if jetson {
                power_mode()
            } else {
                NOT_APPLICABLE.to_string()
            },
            kernel: read("/proc/sys/kernel/osrelease")
                .map_or_else(|| "unknown".into(), |k| k.trim().to_string()),
            arch: std::env::consts::ARCH.to_string(),
        }
    }
}

/// ARM core names by `CPU part` (implementer 0x41, Arm Ltd.) for the boards edgebind targets.
fn arm_core(part: &str) -> Option<&'static str> {
    Some(match part.trim().to_ascii_lowercase().as_str() {
        "0xd42" => "Cortex-A78AE",
        "0xd41" => "Cortex-A78",
        "0xd08" => "Cortex-A72",
        "0xd07" => "Cortex-A57",
        "0xd05" => "Cortex-A55",
        "0xd03" => "Cortex-A53",
        _ => return None,
    })
}

/// The CPU model from /proc/cpuinfo text: x86 `model name`; on ARM (no `model name` on
/// Jetsons) the board model and the core named from `CPU part`.
#[must_use]
pub fn cpu_model(cpuinfo: &str, board: Option<&str>) -> String {
    let field = |name: &str| {
        cpuinfo.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name && !v.trim().is_empty()).then(|| v.trim().to_string())
        })
    };
    if let Some(m) = field("model name") {
        return m;
    }
    let core = field("CPU part").map(|p| {
        arm_core(&p).map_or_else(|| format!("CPU part {p}"), std::string::ToString::to_string)
    });
    match (board.or(field("Hardware").as_deref()), core) {
        (Some(b), Some(c)) => format!("{b} ({c})"),
        (Some(b), None) => b.to_string(),
        (None, Some(c)) => c,
        (None, None) => "unknown".into(),
    }
}

fn gpu_model(jetson: bool) -> String {
    if jetson {
        // Jetson GPUs are integrated; the board names the module (Orin Nano, AGX Orin, …).
        return board_model().map_or_else(
            || "NVIDIA Jetson integrated GPU".into(),
            |m| format!("{m} (integrated GPU)"),
        );
    }
    let names = Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty());
    names.map_or_else(
        || "none".into(),
        |n| n.lines().collect::<Vec<_>>().join(", "),
    )
}

fn power_mode() -> String {
    if let Some(q) = Command::new("nvpmodel")
        .arg("-q")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| parse_nvpmodel_query(&String::from_utf8_lossy(&o.stdout)))
    {
        return q;
    }
    let conf = read("/etc/nvpmodel.conf");
    let status = read("/var/lib/nvpmodel/status");
    match (conf, status) {
        (Some(conf), Some(status)) => {
            mode_from_conf(&conf, &status).unwrap_or_else(|| "unknown".into())
        }
        _ => "unknown (nvpmodel not found)".into(),
    }
}

/// `NV Power Mode: 15W` and the id on the next line → `15W (mode 0)`.
#[must_use]
pub fn parse_nvpmodel_query(out: &str) -> Option<String> {
    let mut lines = out.lines().map(str::trim).filter(|l| !l.is_empty());
    let name = lines
        .by_ref()
        .find_map(|l| l.strip_prefix("NV Power Mode:"))?
        .trim()
        .to_string();
    match lines
        .next()
        .filter(|id| id.bytes().all(|b| b.is_ascii_digit()))
    {
        Some(id) => Some(format!("{name} (mode {id})")),
        None => Some(name),
    }
}

/// The mode named in /etc/nvpmodel.conf (`< POWER_MODEL ID=0 NAME=15W >`) for the id in the
/// status file (`pmode:0000 fmode:…`).
#[must_use]
pub fn mode_from_conf(conf: &str, status: &str) -> Option<String> {
    let id: u32 = status
        .split_whitespace()
        .find_map(|w| w.strip_prefix("pmode:"))?
        .parse()
        .ok()?;
    conf.lines().find_map(|l| {
        let l = l.trim();
        if !l.starts_with("< POWER_MODEL") {
            return None;
        }
        let value = |key: &str| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .map(|v| v.trim_end_matches('>').to_string())
        };
        let this: u32 = value("ID=")?.parse().ok()?;
        (this == id).then(|| format!("{} (mode {id})", value("NAME=").unwrap_or_default()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x86_cpu_model_comes_from_model_name() {
        let info = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n";
        assert_eq!(cpu_model(info, None), "Intel(R) Xeon(R) CPU @ 2.20GHz");
    }

    #[test]
    fn jetson_cpu_model_names_the_board_and_core() {
        let info =
            "processor\t: 0\nBogoMIPS\t: 62.50\nCPU implementer\t: 0x41\nCPU part\t: 0xd42\n";
        assert_eq!(
            cpu_model(info, Some("NVIDIA Jetson Orin Nano Developer Kit")),
            "NVIDIA Jetson Orin Nano Developer Kit (Cortex-A78AE)"
        );
        assert_eq!(cpu_model("", None), "unknown");
    }

    #[test]
    fn nvpmodel_query_gives_name_and_id() {
        let out = "NVPM WARN: fan mode is not set!\nNV Power Mode: 15W\n0\n";
        assert_eq!(parse_nvpmodel_query(out).as_deref(), Some("15W (mode 0)"));
        assert_eq!(parse_nvpmodel_query("nothing"), None);
    }

    #[test]
    fn power_mode_is_looked_up_in_the_conf_by_the_status_id() {
        let conf = "< PARAM TYPE=FILE NAME=CPU_ONLINE >\n< POWER_MODEL ID=0 NAME=15W >\nCPU_ONLINE CORE_0 1\n< POWER_MODEL ID=1 NAME=7W >\n";
        assert_eq!(
            mode_from_conf(conf, "pmode:0001 fmode:quiet").as_deref(),
            Some("7W (mode 1)")
        );
        assert_eq!(mode_from_conf(conf, "pmode:0009"), None);
    }
}
