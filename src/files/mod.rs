//! Files named by the configuration or the command line are untrusted input: they are opened
//! with one precise reason when they cannot be (missing, a directory, not readable by the user
//! the daemon runs as), and every size read from them is checked against the file's real length
//! and a per-use maximum before anything is allocated ([`npy`] for `.npy` arrays; WAV, CSV and
//! concept-bank readers use [`open`] and [`read_to_string`]).

pub mod npy;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// `path` absolute and without `.` and `..` (`target/release/../../.ort` → `/repo/.ort`), for
/// people to read in logs and reports; links are kept (a by-id link is the stable name).
#[must_use]
pub fn tidy(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for c in absolute.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Largest recording (IMU CSV or `.npy`, WAV, frame stack) a replay or `preprocess`/`embed`
/// loads: replays hold the whole recording in memory.
pub const MAX_RECORDING_BYTES: u64 = 1 << 30;
/// Largest concept-bank embeddings file (`[K, 1024]` float32: 65 536 concepts in 256 MiB).
pub const MAX_CONCEPT_EMBEDDINGS_BYTES: u64 = 256 << 20;
/// Largest text file read whole: concept labels, manifests, `embed text` input files.
pub const MAX_TEXT_BYTES: u64 = 16 << 20;
/// Largest parity-reference array of a manifest.
pub const MAX_REFERENCE_BYTES: u64 = 256 << 20;

/// Why a file cannot be used. Every message is one line that starts with the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    /// Nothing at that path.
    #[error("{path}: does not exist")]
    NotFound {
        /// The file.
        path: PathBuf,
    },
    /// A directory where a file is expected.
    #[error("{path}: is a directory, not a file")]
    Directory {
        /// The path.
        path: PathBuf,
    },
    /// A device, FIFO or socket where a file is expected (reading one could block or never end).
    #[error("{path}: is not a regular file (a device, FIFO or socket)")]
    NotRegular {
        /// The path.
        path: PathBuf,
    },
    /// The user the process runs as may not read it (or may not enter a directory on the way).
    #[error("{path}: cannot be read by user {user}: permission denied")]
    NotReadable {
        /// The file.
        path: PathBuf,
        /// The user, `name (uid N)`.
        user: String,
    },
    /// Any other I/O failure (the OS's message, once).
    #[error("{path}: cannot read: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS's message.
        message: String,
    },
    /// Larger than what this use accepts.
    #[error("{path}: {size} is more than the {limit} accepted for {what}")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// What the file holds or declares, rounded (`1.5 GiB`).
        size: String,
        /// The limit, rounded.
        limit: String,
        /// What the file is used as.
        what: &'static str,
    },
    /// The content is not what this use needs (format, type, shape, declared sizes).
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl FileError {
    /// The file the error is about.
    #[must_use]
    pub fn path(&self) -> &Path {
        match self {
            Self::NotFound { path }
            | Self::Directory { path }
            | Self::NotRegular { path }
            | Self::NotReadable { path, .. }
            | Self::Io { path, .. }
            | Self::TooLarge { path, .. }
            | Self::Format { path, .. } => path,
        }
    }

    /// A [`FileError::Format`] for `path`.
    pub fn format(path: &Path, message: impl Into<String>) -> Self {
        Self::Format {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }

    /// The error for an I/O failure on `path`, with the precise variant for the usual causes.
    #[must_use]
    pub fn io(path: &Path, e: &std::io::Error) -> Self {
        let path = path.to_path_buf();
        match e.kind() {
            std::io::ErrorKind::NotFound => Self::NotFound { path },
            std::io::ErrorKind::PermissionDenied => Self::NotReadable {
                path,
                user: current_user(),
            },
            std::io::ErrorKind::IsADirectory => Self::Directory { path },
            _ => Self::Io {
                path,
                message: io_message(e),
            },
        }
    }
}

/// An OS error's message without Rust's ` (os error N)` suffix.
fn io_message(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// The user this process runs as: `name (uid N)`, or `uid N` without a passwd entry.
#[must_use]
pub fn current_user() -> String {
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(u)) => format!("{} (uid {uid})", u.name),
        _ => format!("uid {uid}"),
    }
}

/// A byte count rounded for people: `512 B`, `3.0 KiB`, `1.5 GiB`, `21.8 TiB`.
#[must_use]
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Opens a regular file for reading and returns it with its length. A directory, device, FIFO
/// or socket is refused before it is opened (opening a FIFO would block).
///
/// # Errors
/// [`FileError`] with the precise reason.
pub fn open(path: &Path) -> Result<(File, u64), FileError> {
    let meta = std::fs::metadata(path).map_err(|e| FileError::io(path, &e))?;
    if meta.is_dir() {
        return Err(FileError::Directory {
            path: path.to_path_buf(),
        });
    }
    if !meta.is_file() {
        return Err(FileError::NotRegular {
            path: path.to_path_buf(),
        });
    }
    let file = File::open(path).map_err(|e| FileError::io(path, &e))?;
    Ok((file, meta.len()))
}

/// Opens `path` as [`open`] does and refuses a file longer than `limit` bytes.
///
/// # Errors
/// [`FileError`]; [`FileError::TooLarge`] names `what` the file is used as.
pub fn open_limited(path: &Path, limit: u64, what: &'static str) -> Result<(File, u64), FileError> {
    let (file, len) = open(path)?;
    check_size(path, len, limit, what)?;
    Ok((file, len))
}

/// [`FileError::TooLarge`] when `size` exceeds `limit`.
///
/// # Errors
/// As said.
pub fn check_size(path: &Path, size: u64, limit: u64, what: &'static str) -> Result<(), FileError> {
    if size > limit {
        return Err(FileError::TooLarge {
            path: path.to_path_buf(),
            size: human_bytes(size),
            limit: human_bytes(limit),
            what,
        });
    }
    Ok(())
}

/// Whether `path` can be opened and read by this process: opens it and reads one byte (so
/// that a file the user may not read is found by `check`, not by `run`).
///
/// # Errors
/// [`FileError`].
pub fn readable(path: &Path) -> Result<(), FileError> {
    let (mut file, _) = open(path)?;
    let mut byte = [0u8; 1];
    file.read(&mut byte).map_err(|e| FileError::io(path, &e))?;
    Ok(())
}

/// Reads a file of at most `limit` bytes.
///
/// # Errors
/// [`FileError`].
pub fn read_bytes(path: &Path, limit: u64, what: &'static str) -> Result<Vec<u8>, FileError> {
    let (file, len) = open_limited(path, limit, what)?;
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    // `take`: a file that grows while it is read still stops at the limit.
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| FileError::io(path, &e))?;
    check_size(path, bytes.len() as u64, limit, what)?;
    Ok(bytes)
}

/// Reads a UTF-8 text file of at most `limit` bytes.
///
/// # Errors
/// [`FileError`], also for text that is not UTF-8 (with the byte offset).
pub fn read_to_string(path: &Path, limit: u64, what: &'static str) -> Result<String, FileError> {
    String::from_utf8(read_bytes(path, limit, what)?).map_err(|e| {
        FileError::format(
            path,
            format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
        )
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_a_missing_file_and_a_fifo_each_get_their_own_reason() {
        let dir = tempfile::tempdir().unwrap();
        let e = open(dir.path()).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{}: is a directory, not a file", dir.path().display())
        );
        let missing = dir.path().join("missing.npy");
        assert_eq!(
            open(&missing).unwrap_err().to_string(),
            format!("{}: does not exist", missing.display())
        );
        let null = Path::new("/dev/null");
        assert!(matches!(open(null), Err(FileError::NotRegular { .. })));
    }

    #[test]
    fn sizes_are_rounded_for_people() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 << 10), "3.0 KiB");
        assert_eq!(human_bytes(24_000_000_000_000), "21.8 TiB");
    }

    #[test]
    fn text_beyond_its_limit_or_not_utf8_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.txt");
        std::fs::write(&p, "abcdef").unwrap();
        assert!(matches!(
            read_to_string(&p, 4, "a test"),
            Err(FileError::TooLarge { .. })
        ));
        assert_eq!(read_to_string(&p, 6, "a test").unwrap(), "abcdef");
        std::fs::write(&p, b"ab\xffcd").unwrap();
        let e = read_to_string(&p, 64, "a test").unwrap_err().to_string();
        assert!(e.ends_with("not UTF-8 text (byte 2)"), "{e}");
    }
}
