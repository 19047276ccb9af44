//! Loading ONNX Runtime at run time (`ort` with `load-dynamic`) from an explicit path, with a
//! clear error instead of ort's panic when the library is missing or too old.

use std::path::{Path, PathBuf};

/// Environment variable that overrides the library path for every subcommand.
pub const ORT_DYLIB_ENV: &str = "ORT_DYLIB_PATH";

/// Errors loading ONNX Runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// No library at any of the searched places.
    #[error("libonnxruntime not found (searched: {}); run tools/fetch_onnxruntime.sh, set runtime.library_path, or set ORT_DYLIB_PATH", searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    NotFound {
        /// Every place looked at.
        searched: Vec<PathBuf>,
    },
    /// The file exists but could not be loaded (wrong architecture, too old, not ONNX Runtime).
    #[error("{path}: cannot load ONNX Runtime: {message}")]
    Load {
        /// The library.
        path: PathBuf,
        /// ort's explanation (includes the version for a too-old library).
        message: String,
    },
    /// The library is older than the ONNX Runtime API this binary was built against.
    #[error("{path}: ONNX Runtime {version} is older than this edgebind build supports: it was built with ort's api-{required_minor} and needs libonnxruntime >= 1.{required_minor}. The library was refused before any session was created (an older library with a newer API level can abort the process). Install ONNX Runtime >= 1.{required_minor} (CPU: tools/fetch_onnxruntime.sh; Jetson: docs/inference.md) and point runtime.library_path or ORT_DYLIB_PATH at it")]
    TooOld {
        /// The library.
        path: PathBuf,
        /// Its version (from its file name, or as ONNX Runtime reported it).
        version: String,
        /// The minor version the binary needs (`ort` `api-N`).
        required_minor: u32,
    },
    /// The ONNX Runtime environment could not be created.
    #[error("ONNX Runtime environment: {0}")]
    Environment(String),
}

/// A loaded ONNX Runtime.
#[derive(Debug, Clone)]
pub struct OrtRuntime {
    /// The environment sessions are created in.
    pub env: ort::environment::Environment,
    /// The library file.
    pub library: PathBuf,
    /// The library's version (`1.31.1`), or `unknown`.
    pub version: String,
}

/// Places searched when neither `ORT_DYLIB_PATH` nor the config names the library.
#[must_use]
pub fn default_library_paths() -> Vec<PathBuf> {
    let mut paths = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            // Installed layout (Debian package): /usr/lib/edgebind next to /usr/bin.
            paths.push(dir.join("../lib/edgebind/libonnxruntime.so"));
            // Development layout: target/{debug,release}/edgebind → <repo>/.ort/lib.
            paths.push(dir.join("../../.ort/lib/libonnxruntime.so"));
            paths.push(dir.join("../../../.ort/lib/libonnxruntime.so"));
        }
    }
    paths.push(PathBuf::from(".ort/lib/libonnxruntime.so"));
    paths.push(Path::new(env!("CARGO_MANIFEST_DIR")).join(".ort/lib/libonnxruntime.so"));
    paths.push(PathBuf::from("/usr/lib/edgebind/libonnxruntime.so"));
    paths
}

/// Which library to load: `ORT_DYLIB_PATH` if set, else `configured`, else the first default
/// that exists.
///
/// # Errors
/// [`RuntimeError::NotFound`] listing what was searched.
pub fn resolve_library(configured: Option<&Path>) -> Result<PathBuf, RuntimeError> {
    let candidates: Vec<PathBuf> = match (std::env::var_os(ORT_DYLIB_ENV), configured) {
        (Some(env), _) if !env.is_empty() => vec![PathBuf::from(env)],
        (_, Some(p)) => vec![p.to_path_buf()],
        _ => default_library_paths(),
    };
    // The real file, so that logs and reports name it without `target/release/../..`.
    candidates
        .iter()
        .find(|p| p.is_file())
        .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
        .ok_or(RuntimeError::NotFound {
            searched: candidates,
        })
}

impl OrtRuntime {
    /// Loads ONNX Runtime (see [`resolve_library`]) and creates the environment. Loading happens
    /// once per process; later calls return the same library.
    ///
    /// # Errors
    /// [`RuntimeError`] with the path and reason.
    pub fn load(configured: Option<&Path>) -> Result<Self, RuntimeError> {
        let library = resolve_library(configured)?;
        // First guard, before the library is even opened: the version in its file name.
        if let Some(version) = version_from_file_name(&library) {
            check_version(&library, &version)?;
        }
        // Second guard: ort asks the opened library (`OrtGetApiBase()->GetVersionString()`) and
        // refuses an older one before any API call; that refusal gets the same explanation.
        // ort panics on some bad paths inside `init_from`; keep that from taking the process down.
        let builder = std::panic::catch_unwind(|| ort::init_from(&library))
            .map_err(|_| RuntimeError::Load {
                path: library.clone(),
                message: "ONNX Runtime loader panicked".into(),
            })?
            .map_err(|e| match e {
                ort::LoadDynamicError::BadVersion { version_str, .. } => RuntimeError::TooOld {
                    path: library.clone(),
                    version: version_str,
                    required_minor: REQUIRED_MINOR,
                },
                other => RuntimeError::Load {
                    path: library.clone(),
                    message: other.to_string(),
                },
            })?;
        // ONNX Runtime's own log goes to ours (target `onnxruntime`); at WARNING except while
        // a TensorRT engine build is watched (`ort_log::watch_build`).
        let env = builder
            .with_name("edgebind")
            .with_logger(super::ort_log::env_logger())
            .build()
            .map_err(|e| RuntimeError::Environment(e.to_string()))?;
        env.set_log_level(ort::logging::LogLevel::Warning);
        let version = version_from_file_name(&library)
            .or_else(|| parse_version(ort::info()))
            .unwrap_or_else(|| "unknown".into());
        Ok(Self {
            env,
            library,
            version,
        })
    }
}

/// The ONNX Runtime minor version this binary needs: the API level `ort` was built with
/// (`api-31` → ONNX Runtime 1.31).
pub const REQUIRED_MINOR: u32 = ort::MINOR_VERSION;

/// The minor number of a version string (`1.22.0` → 22).
#[must_use]
pub fn minor_version(version: &str) -> Option<u32> {
    let minor = version.split('.').nth(1)?;
    let digits: String = minor.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Refuses a library whose `version` is older than [`REQUIRED_MINOR`].
///
/// # Errors
/// [`RuntimeError::TooOld`] explaining what to install.
pub fn check_version(library: &Path, version: &str) -> Result<(), RuntimeError> {
    match minor_version(version) {
        Some(minor) if version.starts_with("1.") && minor < REQUIRED_MINOR => {
            Err(RuntimeError::TooOld {
                path: library.to_path_buf(),
                version: version.to_string(),
                required_minor: REQUIRED_MINOR,
            })
        }
        _ => Ok(()),
    }
}

/// The version from the library's real file name (`libonnxruntime.so.1.31.1`), which both the
/// PyPI wheels and NVIDIA's Jetson builds carry; the build info often says only `git-branch=HEAD`.
fn version_from_file_name(library: &Path) -> Option<String> {
    let real = std::fs::canonicalize(library).ok()?;
    let name = real.file_name()?.to_str()?;
    let v = name.split_once(".so.")?.1;
    let ok = !v.is_empty()
        && v.split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    ok.then(|| v.to_string())
}

/// The version from ONNX Runtime's build info (`git-branch=rel-1.31.1, …`).
fn parse_version(info: &str) -> Option<String> {
    let start = info.find("rel-")? + 4;
    let rest = &info[start..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let v = rest[..end].trim_end_matches('.');
    (!v.is_empty()).then(|| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_read_from_the_library_file_name() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let real = dir.path().join("libonnxruntime.so.1.22.0");
        std::fs::write(&real, b"").unwrap_or_else(|e| panic!("{e}"));
        let link = dir.path().join("libonnxruntime.so");
        std::os::unix::fs::symlink(&real, &link).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(version_from_file_name(&link).as_deref(), Some("1.22.0"));
        assert_eq!(version_from_file_name(&dir.path().join("missing.so")), None);
    }

    #[test]
    fn a_library_older_than_the_api_level_is_refused_with_an_explanation() {
        // One minor version below what this build asks for (API 31 by default, 21 on aarch64).
        let old = format!("1.{}.0", REQUIRED_MINOR - 1);
        let lib = PathBuf::from(format!("/opt/ort/libonnxruntime.so.{old}"));
        let lib = lib.as_path();
        let err = match check_version(lib, &old) {
            Err(e) => e.to_string(),
            Ok(()) => panic!("{old} accepted"),
        };
        assert!(err.contains(&old), "{err}");
        assert!(err.contains(&format!("api-{REQUIRED_MINOR}")), "{err}");
        assert!(err.contains(&format!(">= 1.{REQUIRED_MINOR}")), "{err}");
        assert!(check_version(lib, &format!("1.{REQUIRED_MINOR}.0")).is_ok());
        assert!(check_version(lib, "1.40.2").is_ok());
        assert_eq!(minor_version("1.9.1"), Some(9));
        assert_eq!(minor_version("garbage"), None);
    }

    #[test]
    fn version_is_read_from_build_info() {
        assert_eq!(
            parse_version("ORT Build Info: git-branch=rel-1.31.1, git-commit-id=abc").as_deref(),
            Some("1.31.1")
        );
        assert_eq!(parse_version("nothing here"), None);
    }
}
