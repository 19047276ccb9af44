//! What `edgebind doctor` says about the machine: the Jetson Linux release and the JetPack it
//! belongs to (with whether edgebind's GPU path supports it), and which GPU device nodes exist.
//! Pure apart from [`GpuNodes::present`]; the version table is docs/deployment.md's.

use std::path::Path;

/// A Jetson Linux (L4T) release read from `/etc/nv_tegra_release`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L4t {
    /// `R36` → 36.
    pub major: u32,
    /// `REVISION: 4.3` → 4.
    pub minor: u32,
    /// `REVISION: 4.3` → 3.
    pub patch: u32,
}

impl L4t {
    /// Parses the first line, `# R36 (release), REVISION: 4.3, GCID: …`.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        let line = text.lines().next()?;
        let major = line
            .trim_start_matches(['#', ' '])
            .strip_prefix('R')?
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()?;
        let revision = line.split("REVISION:").nth(1)?.trim();
        let revision = revision.split(',').next()?.trim();
        let mut parts = revision.split('.').map(str::parse::<u32>);
        let minor = parts.next()?.ok()?;
        let patch = parts.next().and_then(Result::ok).unwrap_or(0);
        Some(Self {
            major,
            minor,
            patch,
        })
    }

    /// `36.4.3`.
    #[must_use]
    pub fn version(self) -> String {
        format!("{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Whether edgebind's GPU path (ONNX Runtime built for CUDA 12.6, TensorRT 10, cuDNN 9) fits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Support {
    /// JetPack 6.1 / 6.2.x.
    Supported,
    /// Known not to work, and why.
    Unsupported(&'static str),
    /// Not tested, and why.
    Untested(&'static str),
}

/// The JetPack of `l4t` and what it means for edgebind.
#[must_use]
pub fn jetpack(l4t: L4t) -> (&'static str, Support) {
    const JP60: &str = "CUDA 12.2, cuDNN 8.9, TensorRT 8.6: the cu126 ONNX Runtime builds need \
                        TensorRT 10 and cuDNN 9 (upgrade to JetPack 6.1 or 6.2)";
    const JP7: &str = "CUDA 13 on Ubuntu 24.04: needs an ONNX Runtime built for CUDA 13; no \
                       such build has been tested with edgebind";
    match (l4t.major, l4t.minor, l4t.patch) {
        (36, 4, 0 | 1) => ("6.1", Support::Supported),
        (36, 4, 2) => ("6.1.1", Support::Supported),
        (36, 4, 3) => ("6.2", Support::Supported),
        (36, 4, _) => ("6.2.1", Support::Supported),
        (36, 5, _) => ("6.2.2", Support::Supported),
        (36, 3, _) => ("6.0", Support::Unsupported(JP60)),
        (36, _, _) => ("6.0 developer preview", Support::Unsupported(JP60)),
        (35, _, _) => (
            "5.x",
            Support::Unsupported("CUDA 11.4, TensorRT 8.5: too old"),
        ),
        (38, _, _) => (
            "7.0/7.1",
            Support::Untested("Jetson Thor only; CUDA 13 on Ubuntu 24.04"),
        ),
        (39, _, _) => ("7.2", Support::Untested(JP7)),
        (m, _, _) if m > 39 => ("newer than 7.2", Support::Untested(JP7)),
        _ => ("older than 5", Support::Unsupported("too old")),
    }
}

/// The device nodes CUDA opens on a Jetson (and the desktop driver's, for a discrete GPU).
pub const GPU_NODES: &[&str] = &[
    "/dev/nvmap",
    "/dev/nvhost-ctrl",
    "/dev/nvhost-ctrl-gpu",
    "/dev/nvhost-gpu",
    "/dev/nvhost-as-gpu",
    "/dev/nvhost-tsg-gpu",
    "/dev/nvhost-prof-gpu",
    "/dev/nvhost-dbg-gpu",
    "/dev/nvgpu/igpu0/ctrl",
    "/dev/nvgpu/igpu0/as",
    "/dev/nvgpu/igpu0/prof",
    "/dev/nvidiactl",
    "/dev/nvidia0",
    "/dev/nvidia-uvm",
];

/// Which of [`GPU_NODES`] exist under `root` (`/` on the machine).
#[must_use]
pub fn present_gpu_nodes(root: &Path) -> Vec<&'static str> {
    GPU_NODES
        .iter()
        .copied()
        .filter(|n| root.join(n.trim_start_matches('/')).exists())
        .collect()
}

/// `1.5 GiB`, `512 MiB`: a byte count rounded for people.
#[must_use]
pub fn human_bytes(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    #[allow(clippy::cast_precision_loss, reason = "display only")]
    let b = bytes as f64;
    if b >= 1024.0 * MIB {
        let gib = b / (1024.0 * MIB);
        if (gib - gib.round()).abs() < 0.05 {
            format!("{gib:.0} GiB")
        } else {
            format!("{gib:.1} GiB")
        }
    } else {
        format!("{:.0} MiB", b / MIB)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn nv_tegra_release_names_the_l4t_and_the_jetpack() {
        let jp62 = "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8 01:49:37 UTC 2025\n# KERNEL_VARIANT: oot\n";
        let l4t = L4t::parse(jp62).unwrap();
        assert_eq!(l4t.version(), "36.4.3");
        assert_eq!(jetpack(l4t), ("6.2", Support::Supported));
        let jp60 = L4t::parse("# R36 (release), REVISION: 3.0, GCID: 36923193").unwrap();
        let (name, support) = jetpack(jp60);
        assert_eq!(name, "6.0");
        assert!(matches!(support, Support::Unsupported(s) if s.contains("TensorRT 8.6")));
        let jp61 = L4t::parse("# R36 (release), REVISION: 4, GCID: 1").unwrap();
        assert_eq!(jetpack(jp61), ("6.1", Support::Supported));
        let jp72 = L4t::parse("# R39 (release), REVISION: 1.0").unwrap();
        assert!(matches!(jetpack(jp72), ("7.2", Support::Untested(_))));
        let jp5 = L4t::parse("# R35 (release), REVISION: 5.0").unwrap();
        assert!(matches!(jetpack(jp5).1, Support::Unsupported(_)));
        assert_eq!(L4t::parse("garbage"), None);
        assert_eq!(L4t::parse(""), None);
        assert_eq!(L4t::parse("# R36 (release)"), None);
    }

    #[test]
    fn gpu_nodes_are_found_under_a_root() {
        let root = tempfile::tempdir().unwrap();
        assert!(present_gpu_nodes(root.path()).is_empty());
        std::fs::create_dir_all(root.path().join("dev/nvgpu/igpu0")).unwrap();
        std::fs::write(root.path().join("dev/nvmap"), b"").unwrap();
        std::fs::write(root.path().join("dev/nvgpu/igpu0/ctrl"), b"").unwrap();
        assert_eq!(
            present_gpu_nodes(root.path()),
            ["/dev/nvmap", "/dev/nvgpu/igpu0/ctrl"]
        );
    }

    #[test]
    fn byte_counts_are_rounded_for_people() {
        assert_eq!(human_bytes(1 << 30), "1 GiB");
        assert_eq!(human_bytes(3 << 29), "1.5 GiB");
        assert_eq!(human_bytes(512 << 20), "512 MiB");
    }
}
