//! The GPU side of the machine: the Jetson module (or a desktop NVIDIA GPU), its L4T release,
//! power mode and the TensorRT library the loader would pick. Each is read from a file or a
//! tool's output; the parsers are pure.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

/// What was found; `None` is "not present".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PlatformInfo {
    /// `NVIDIA Jetson AGX Orin Developer Kit` (`/proc/device-tree/model`), or a desktop GPU's
    /// model (`/proc/driver/nvidia/gpus/*/information`).
    pub gpu: Option<String>,
    /// Whether this is a Jetson (an NVIDIA device tree or `/etc/nv_tegra_release`).
    pub jetson: bool,
    /// L4T release (`R36.4.3`, from `/etc/nv_tegra_release`).
    pub l4t: Option<String>,
    /// Power mode (`nvpmodel -q`: `MAXN (mode 0)`).
    pub power_mode: Option<String>,
    /// TensorRT version (`libnvinfer.so.10.3.0` → `10.3.0`).
    pub tensorrt: Option<String>,
}

/// Reads the machine.
#[must_use]
pub fn probe() -> PlatformInfo {
    let model = std::fs::read(Path::new("/proc/device-tree/model"))
        .ok()
        .and_then(|raw| device_tree_string(&raw));
    let l4t = std::fs::read_to_string("/etc/nv_tegra_release")
        .ok()
        .and_then(|t| parse_tegra_release(&t));
    let jetson = l4t.is_some() || model.as_deref().is_some_and(|m| m.contains("Jetson"));
    let gpu = if jetson { model } else { desktop_gpu() };
    let power_mode = Command::new("nvpmodel")
        .arg("-q")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| parse_nvpmodel(&String::from_utf8_lossy(&o.stdout)));
    PlatformInfo {
        gpu,
        jetson,
        l4t,
        power_mode,
        tensorrt: tensorrt_version(),
    }
}

/// A device-tree string: NUL-terminated.
fn device_tree_string(raw: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let text = text.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    (!text.is_empty()).then(|| text.to_string())
}

/// `# R36 (release), REVISION: 4.3, GCID: …` → `R36.4.3`.
#[must_use]
pub fn parse_tegra_release(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.contains("(release)"))?;
    let major = line
        .trim_start_matches(['#', ' '])
        .split_whitespace()
        .next()?;
    let revision = line
        .split(',')
        .find_map(|p| p.trim().strip_prefix("REVISION:"))?
        .trim();
    Some(format!("{major}.{revision}"))
}

/// `nvpmodel -q`: `NV Power Mode: MAXN` then the mode number → `MAXN (mode 0)`.
#[must_use]
pub fn parse_nvpmodel(text: &str) -> Option<String> {
    let name = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("NV Power Mode:"))?
        .trim();
    let number = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()));
    Some(match number {
        Some(n) => format!("{name} (mode {n})"),
        None => name.to_string(),
    })
}

/// The first NVIDIA GPU the desktop driver lists.
fn desktop_gpu() -> Option<String> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/proc/driver/nvidia/gpus")
        .ok()?
        .flatten()
        .map(|e| e.path())
        .collect();
    dirs.sort();
    dirs.iter().find_map(|d| {
        std::fs::read_to_string(d.join("information"))
            .ok()
            .and_then(|t| parse_nvidia_information(&t))
    })
}

/// `Model: \t NVIDIA GeForce RTX 3080` → the model.
#[must_use]
pub fn parse_nvidia_information(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("Model:"))
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
}

/// The TensorRT the dynamic loader would pick: `libnvinfer.so.N` from the loader's cache
/// (`ldconfig -p`), its real file's version.
fn tensorrt_version() -> Option<String> {
    let out = ["/sbin/ldconfig", "/usr/sbin/ldconfig", "ldconfig"]
        .iter()
        .find_map(|tool| Command::new(tool).arg("-p").output().ok())?;
    let link = parse_ldconfig(&String::from_utf8_lossy(&out.stdout), "libnvinfer.so")?;
    let real = std::fs::canonicalize(&link).unwrap_or(link);
    version_of(&real, "libnvinfer.so").or(Some("unknown version".into()))
}

/// The path `ldconfig -p` gives for the highest `stem.N` of this machine's architecture.
#[must_use]
pub fn parse_ldconfig(text: &str, stem: &str) -> Option<PathBuf> {
    let prefix = format!("{stem}.");
    text.lines()
        .filter_map(|l| {
            let (name, path) = l.trim().split_once(" => ")?;
            let soname = name.split_whitespace().next()?;
            let major: u32 = soname.strip_prefix(&prefix)?.parse().ok()?;
            Some((major, PathBuf::from(path.trim())))
        })
        .max_by_key(|(major, _)| *major)
        .map(|(_, p)| p)
}

fn version_of(path: &Path, stem: &str) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let v = name.strip_prefix(stem)?.strip_prefix('.')?;
    (!v.is_empty()
        && v.split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())))
    .then(|| v.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn jetson_files_and_tools_are_read() {
        assert_eq!(
            parse_tegra_release("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8 01:49:37 UTC 2025\n# KERNEL_VARIANT: oot\n"),
            Some("R36.4.3".into())
        );
        assert_eq!(parse_tegra_release("garbage"), None);
        assert_eq!(
            parse_nvpmodel("NV Power Mode: MAXN\n0\n"),
            Some("MAXN (mode 0)".into())
        );
        assert_eq!(parse_nvpmodel("NV Power Mode: 15W\n"), Some("15W".into()));
        assert_eq!(parse_nvpmodel("nvpmodel: command failed\n"), None);
        assert_eq!(
            device_tree_string(b"NVIDIA Jetson Orin Nano Developer Kit\0"),
            Some("NVIDIA Jetson Orin Nano Developer Kit".into())
        );
        assert_eq!(device_tree_string(b"\0"), None);
        assert_eq!(
            parse_nvidia_information("Model: \t\t NVIDIA GeForce RTX 3080\nIRQ:   130\n"),
            Some("NVIDIA GeForce RTX 3080".into())
        );
    }

    #[test]
    fn tensorrt_is_the_highest_soname_in_the_loader_cache() {
        let cache = "1234 libs found in cache `/etc/ld.so.cache'\n\
            \tlibnvinfer_plugin.so.10 (libc6,AArch64) => /usr/lib/aarch64-linux-gnu/libnvinfer_plugin.so.10\n\
            \tlibnvinfer.so.8 (libc6,AArch64) => /usr/lib/aarch64-linux-gnu/libnvinfer.so.8\n\
            \tlibnvinfer.so.10 (libc6,AArch64) => /usr/lib/aarch64-linux-gnu/libnvinfer.so.10\n\
            \tlibnvinfer.so (libc6,AArch64) => /usr/lib/aarch64-linux-gnu/libnvinfer.so\n";
        assert_eq!(
            parse_ldconfig(cache, "libnvinfer.so"),
            Some(PathBuf::from("/usr/lib/aarch64-linux-gnu/libnvinfer.so.10"))
        );
        assert_eq!(
            parse_ldconfig(
                "\tlibc.so.6 (libc6,x86-64) => /lib/libc.so.6\n",
                "libnvinfer.so"
            ),
            None
        );
        assert_eq!(
            version_of(Path::new("/x/libnvinfer.so.10.3.0"), "libnvinfer.so"),
            Some("10.3.0".into())
        );
        assert_eq!(
            version_of(Path::new("/x/libnvinfer.so"), "libnvinfer.so"),
            None
        );
    }
}
