//! A small real filesystem for tests: a tmpfs mounted on a temporary directory (needs root or
//! CAP_SYS_ADMIN), unmounted when dropped.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::Command;

/// A tmpfs of a fixed size, unmounted when dropped.
pub struct SmallFs {
    /// Where it is mounted.
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallFs {
    /// Mounts a tmpfs of `kib` KiB, or says on stderr (not captured by the test harness) why
    /// the calling test is skipped.
    pub fn mount(kib: u64, test: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={kib}k,mode=0755"))
            .arg("edgebind-test")
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Self {
                path: dir.path().to_path_buf(),
                _dir: dir,
            }),
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
                    Err(e) => e.to_string(),
                };
                // Straight to the process's stderr: `cargo test` shows it even when passing.
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED {test}: cannot mount a tmpfs (needs root or CAP_SYS_ADMIN): {why}"
                );
                None
            }
        }
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}
