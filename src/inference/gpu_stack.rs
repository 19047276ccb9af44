//! What a TensorRT engine depends on besides the model: the TensorRT, CUDA and cuDNN libraries
//! the dynamic loader will pick, and the module it is built on. ONNX Runtime's own engine file
//! names only carry the TensorRT version of the headers ONNX Runtime was compiled with, so a
//! JetPack upgrade under the same ONNX Runtime build would otherwise reuse engines the new
//! TensorRT cannot deserialize, and engines built on one Orin module would be reused on another
//! (not portable between module types even at the same `sm87`).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The GPU libraries and the module, as found on this machine (`None`: not found).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GpuStack {
    /// `libnvinfer.so.<version>` (e.g. `10.3.0`).
    pub tensorrt: Option<String>,
    /// `libcudart.so.<version>` (e.g. `12.6.68`).
    pub cuda: Option<String>,
    /// `libcudnn.so.<version>` (e.g. `9.3.0`).
    pub cudnn: Option<String>,
    /// The board (`/proc/device-tree/model`, e.g. `NVIDIA Jetson AGX Orin Developer Kit`).
    pub module: Option<String>,
}

impl GpuStack {
    /// The stack the dynamic loader would use next to `ort_library`.
    #[must_use]
    pub fn detect(ort_library: &Path) -> Self {
        Self::detect_in(
            &library_dirs(ort_library),
            Path::new("/proc/device-tree/model"),
        )
    }

    /// The stack found in `dirs` (searched in order, like the loader) and the board named in
    /// `model_file`.
    #[must_use]
    pub fn detect_in(dirs: &[PathBuf], model_file: &Path) -> Self {
        let module = std::fs::read(model_file).ok().and_then(|raw| {
            let text = String::from_utf8_lossy(&raw)
                .trim_matches(|c: char| c == '\0' || c.is_whitespace())
                .to_string();
            (!text.is_empty()).then_some(text)
        });
        Self {
            tensorrt: library_version(dirs, "libnvinfer.so"),
            cuda: library_version(dirs, "libcudart.so"),
            cudnn: library_version(dirs, "libcudnn.so"),
            module,
        }
    }

    /// The TensorRT version for a cache key (`none` when not found).
    #[must_use]
    pub fn tensorrt_key(&self) -> String {
        self.tensorrt
            .as_deref()
            .map_or_else(|| "none".to_string(), sanitize)
    }

    /// Eight hex digits naming CUDA, cuDNN and the module (they make the key directory's name
    /// too long spelled out; the key file in the directory spells them out).
    #[must_use]
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        for part in [&self.cuda, &self.cudnn, &self.module] {
            h.update(part.as_deref().unwrap_or("none").as_bytes());
            h.update([0]);
        }
        h.finalize()
            .iter()
            .take(4)
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// `TensorRT 10.3.0, CUDA 12.6.68, cuDNN 9.3.0, module NVIDIA Jetson AGX Orin` (`none` for
    /// what is missing).
    #[must_use]
    pub fn describe(&self) -> String {
        let v = |o: &Option<String>| o.clone().unwrap_or_else(|| "none".into());
        format!(
            "TensorRT {}, CUDA {}, cuDNN {}, module {}",
            v(&self.tensorrt),
            v(&self.cuda),
            v(&self.cudnn),
            self.module.clone().unwrap_or_else(|| "unknown".into())
        )
    }
}

fn sanitize(v: &str) -> String {
    v.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
        .collect()
}

/// Where the loader looks, in its order: the ONNX Runtime library's folder (its provider
/// libraries load from there), `LD_LIBRARY_PATH`, the folders of `/etc/ld.so.conf`, the CUDA
/// toolkit folder and the system folders.
#[must_use]
pub fn library_dirs(ort_library: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = ort_library.parent() {
        dirs.push(dir.to_path_buf());
    }
    if let Some(paths) = std::env::var_os("LD_LIBRARY_PATH") {
        dirs.extend(std::env::split_paths(&paths).filter(|p| !p.as_os_str().is_empty()));
    }
    dirs.extend(ld_so_conf_dirs(Path::new("/etc/ld.so.conf"), 0));
    let triplet = format!("{}-linux-gnu", std::env::consts::ARCH);
    for d in [
        "/usr/local/cuda/lib64".to_string(),
        format!("/lib/{triplet}"),
        format!("/usr/lib/{triplet}"),
        "/lib".into(),
        "/usr/lib".into(),
    ] {
        dirs.push(PathBuf::from(d));
    }
    dirs
}

/// The folders listed by an `ld.so.conf` file, following `include` lines (globs) a few levels.
fn ld_so_conf_dirs(file: &Path, depth: usize) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string(file) else {
        return Vec::new();
    };
    let mut dirs = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if let Some(pattern) = line.strip_prefix("include") {
            if depth > 3 {
                continue;
            }
            let pattern = pattern.trim();
            let base = file.parent().unwrap_or(Path::new("/"));
            let full = if Path::new(pattern).is_absolute() {
                PathBuf::from(pattern)
            } else {
                base.join(pattern)
            };
            let Ok(paths) = glob::glob(&full.to_string_lossy()) else {
                continue;
            };
            let mut found: Vec<PathBuf> = paths.flatten().collect();
            found.sort();
            for f in found {
                dirs.extend(ld_so_conf_dirs(&f, depth + 1));
            }
        } else if line.starts_with('/') {
            dirs.push(PathBuf::from(line));
        }
    }
    dirs
}

/// The version of the `stem` library the loader would pick: in the first folder that has one,
/// the file its highest `stem.<major>` name leads to (`libnvinfer.so.10` →
/// `libnvinfer.so.10.3.0` → `10.3.0`), else the highest versioned file there.
#[must_use]
pub fn library_version(dirs: &[PathBuf], stem: &str) -> Option<String> {
    let prefix = format!("{stem}.");
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut versions: Vec<(Vec<u64>, PathBuf)> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let v = name.strip_prefix(&prefix)?;
                Some((parse_version(v)?, e.path()))
            })
            .collect();
        if versions.is_empty() {
            continue;
        }
        versions.sort();
        // The soname link (one number) the loader opens, highest major first.
        let soname = versions.iter().rev().find(|(v, _)| v.len() == 1);
        if let Some((_, link)) = soname {
            if let Some(v) = std::fs::canonicalize(link)
                .ok()
                .and_then(|real| version_of(&real, &prefix))
            {
                return Some(v);
            }
        }
        return versions.last().map(|(v, _)| join(v));
    }
    None
}

fn version_of(path: &Path, prefix: &str) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let v = name.strip_prefix(prefix)?;
    parse_version(v).map(|v| join(&v))
}

fn parse_version(v: &str) -> Option<Vec<u64>> {
    v.split('.').map(|p| p.parse().ok()).collect()
}

fn join(v: &[u64]) -> String {
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn touch(p: &Path) {
        std::fs::write(p, b"").unwrap();
    }

    #[test]
    fn versions_follow_the_soname_link_in_the_first_folder_that_has_the_library() {
        let tmp = tempfile::tempdir().unwrap();
        let (first, second) = (tmp.path().join("a"), tmp.path().join("b"));
        std::fs::create_dir_all(&first).unwrap();
        std::fs::create_dir_all(&second).unwrap();
        // JetPack 6.2 layout: the soname link and the real file.
        touch(&first.join("libnvinfer.so.10.3.0"));
        symlink("libnvinfer.so.10.3.0", first.join("libnvinfer.so.10")).unwrap();
        symlink("libnvinfer.so.10", first.join("libnvinfer.so")).unwrap();
        // A later folder with another version is not what the loader picks.
        touch(&second.join("libnvinfer.so.10.7.0"));
        symlink("libnvinfer.so.10.7.0", second.join("libnvinfer.so.10")).unwrap();
        // cuDNN without a soname link: the highest versioned file.
        touch(&second.join("libcudnn.so.9.3.0"));
        touch(&second.join("libcudnn.so.8.9.4"));
        touch(&second.join("libcudnn.so.9.3.0.bak"));
        let model = tmp.path().join("model");
        std::fs::write(&model, b"NVIDIA Jetson AGX Orin Developer Kit\0").unwrap();
        let dirs = [first.clone(), second.clone()];
        let stack = GpuStack::detect_in(&dirs, &model);
        assert_eq!(stack.tensorrt.as_deref(), Some("10.3.0"));
        assert_eq!(stack.cudnn.as_deref(), Some("9.3.0"));
        assert_eq!(stack.cuda, None);
        assert_eq!(
            stack.module.as_deref(),
            Some("NVIDIA Jetson AGX Orin Developer Kit")
        );
        assert_eq!(stack.tensorrt_key(), "10.3.0");
        assert_eq!(
            stack.describe(),
            "TensorRT 10.3.0, CUDA none, cuDNN 9.3.0, module NVIDIA Jetson AGX Orin Developer Kit"
        );
        // The other module, or another cuDNN, changes the fingerprint; TensorRT is spelled out.
        let nano = GpuStack {
            module: Some("NVIDIA Jetson Orin Nano Developer Kit".into()),
            ..stack.clone()
        };
        let cudnn = GpuStack {
            cudnn: Some("9.4.0".into()),
            ..stack.clone()
        };
        assert_ne!(stack.fingerprint(), nano.fingerprint());
        assert_ne!(stack.fingerprint(), cudnn.fingerprint());
        assert_eq!(stack.fingerprint().len(), 8);
        // Nothing anywhere (this x86 machine has no TensorRT).
        let empty = GpuStack::detect_in(&[tmp.path().join("none")], &tmp.path().join("x"));
        assert_eq!(empty, GpuStack::default());
        assert_eq!(empty.tensorrt_key(), "none");
    }

    #[test]
    fn ld_so_conf_includes_are_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("ld.so.conf.d");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            tmp.path().join("ld.so.conf"),
            "include ld.so.conf.d/*.conf\n/opt/x # comment\n",
        )
        .unwrap();
        std::fs::write(d.join("cuda.conf"), "/usr/local/cuda-12.6/lib64\n").unwrap();
        std::fs::write(
            d.join("aarch64.conf"),
            "# multiarch\n/usr/lib/aarch64-linux-gnu\n",
        )
        .unwrap();
        assert_eq!(
            ld_so_conf_dirs(&tmp.path().join("ld.so.conf"), 0),
            [
                PathBuf::from("/usr/lib/aarch64-linux-gnu"),
                PathBuf::from("/usr/local/cuda-12.6/lib64"),
                PathBuf::from("/opt/x")
            ]
        );
    }
}
