//! One process per outbox directory: two daemons appending to the same segments and rewriting
//! the same ack log corrupt each other, so the outbox takes an exclusive `flock` on `<dir>/lock`
//! at open and keeps it as long as it is open (the kernel releases it when the process ends,
//! however it ends). The holder writes its pid into the file, so that the refusal can name it.

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Seek as _, Write as _};
use std::os::fd::AsRawFd as _;
use std::path::Path;

use super::{io_err, OutboxError};

/// Name of the lock file in the outbox directory.
pub const LOCK_FILE: &str = "lock";

/// Takes the directory's lock; the open file holds it.
///
/// # Errors
/// [`OutboxError::Locked`] when another process holds it, [`OutboxError::Io`] when the lock
/// file cannot be opened or written.
pub(super) fn lock_dir(dir: &Path) -> Result<File, OutboxError> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_err(&path))?;
    // `flock(2)` directly: nix's `Flock` guard panics when unlocking fails on drop, and closing
    // the file releases the lock anyway.
    #[allow(deprecated)]
    let locked = nix::fcntl::flock(
        file.as_raw_fd(),
        nix::fcntl::FlockArg::LockExclusiveNonblock,
    );
    match locked {
        Ok(()) => {}
        Err(nix::errno::Errno::EWOULDBLOCK) => {
            return Err(OutboxError::Locked {
                dir: dir.to_path_buf(),
                holder: holder(&mut file),
            })
        }
        Err(e) => return Err(io_err(&path)(io::Error::from(e))),
    }
    let pid = std::process::id().to_string();
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(pid.as_bytes()))
        .map_err(io_err(&path))?;
    Ok(file)
}

/// The pid the holder wrote (at most a few bytes are read: the file is untrusted).
fn holder(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    std::io::Read::by_ref(file)
        .take(16)
        .read_to_string(&mut text)
        .ok()?;
    text.trim().parse().ok()
}
