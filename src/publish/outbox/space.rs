//! Disk space as the outbox sees it: a full filesystem (`ENOSPC`, or `EDQUOT` for a quota) is an
//! expected state, not an error, and segments are sized to the room there really is, so that a
//! small filesystem still has several segments to reclaim or drop.

use std::io;
use std::path::Path;

/// Smallest segment the outbox starts when the filesystem is small.
pub const MIN_SEGMENT_BYTES: u64 = 4 * 1024;

/// Whether `e` says the filesystem (or the user's quota) is full.
#[must_use]
pub fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// Bytes an unprivileged writer may still use on the filesystem holding `path` (or, when `path`
/// does not exist yet, its nearest existing ancestor).
///
/// # Errors
/// The OS error of `statvfs`.
pub fn available_bytes(path: &Path) -> io::Result<u64> {
    let mut existing = path;
    while !existing.exists() {
        match existing.parent() {
            Some(p) if !p.as_os_str().is_empty() => existing = p,
            _ => {
                existing = Path::new(".");
                break;
            }
        }
    }
    let st = nix::sys::statvfs::statvfs(existing).map_err(io::Error::from)?;
    // Both fields are u64 on Linux but u32 on some targets; widen either way.
    #[allow(clippy::useless_conversion)]
    let (blocks, size) = (
        u64::from(st.blocks_available()),
        u64::from(st.fragment_size()),
    );
    Ok(blocks.saturating_mul(size))
}

/// The size at which the active segment is sealed: an eighth of the room the outbox can have —
/// `max_bytes`, or less when the filesystem has less (`used` by the outbox plus `available`) —
/// so that dropping or reclaiming one segment frees a small part of it; at least
/// [`MIN_SEGMENT_BYTES`], at most `largest` (from the options).
#[must_use]
pub fn segment_target(max_bytes: u64, largest: u64, used: u64, available: Option<u64>) -> u64 {
    let room = available.map_or(max_bytes, |a| max_bytes.min(used.saturating_add(a)));
    (room / 8).max(MIN_SEGMENT_BYTES).min(largest)
}

/// The `edgebind check` warning for an outbox allowed more than its filesystem has free, or
/// `None` when it fits (or the free space cannot be read).
#[must_use]
pub fn space_warning(dir: &Path, max_bytes: u64) -> Option<String> {
    let available = available_bytes(dir).ok()?;
    (max_bytes > available).then(|| {
        format!(
            "{} may use up to {}, but its filesystem has {} free; when the disk fills, \
             outbox.when_full applies to disk space (drops are counted as outbox_full)",
            dir.display(),
            human_bytes(max_bytes),
            human_bytes(available)
        )
    })
}

/// `1.0 GiB`, `512 KiB`, `300 B`.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_follow_max_bytes_on_a_large_disk_and_the_room_on_a_small_one() {
        let gib = 1 << 30;
        // A roomy disk: the configured size.
        assert_eq!(segment_target(gib, 64 << 20, 0, Some(100 * gib)), 64 << 20);
        // A 2 MiB filesystem under a 1 GiB limit: an eighth of 2 MiB.
        assert_eq!(segment_target(gib, 64 << 20, 0, Some(2 << 20)), 256 << 10);
        // What the outbox already uses counts as room.
        assert_eq!(
            segment_target(gib, 64 << 20, 1 << 20, Some(1 << 20)),
            256 << 10
        );
        // Never below the minimum, never above the configured size, statvfs or not.
        assert_eq!(segment_target(gib, 64 << 20, 0, Some(0)), MIN_SEGMENT_BYTES);
        assert_eq!(segment_target(gib, 200, 0, Some(2 << 20)), 200);
        assert_eq!(segment_target(64 << 10, 1 << 20, 0, None), 8 << 10);
    }

    #[test]
    fn enospc_and_edquot_are_a_full_disk_and_other_errors_are_not() {
        for errno in [28, 122] {
            assert!(
                is_disk_full(&io::Error::from_raw_os_error(errno)),
                "{errno}"
            );
        }
        assert!(!is_disk_full(&io::Error::from_raw_os_error(5)));
        assert!(!is_disk_full(&io::Error::other("x")));
    }

    #[test]
    fn the_free_space_of_a_path_not_yet_created_is_its_parents() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let here = available_bytes(dir.path()).unwrap_or(0);
        let below = available_bytes(&dir.path().join("a/b/c")).unwrap_or(0);
        assert!(here > 0);
        // Both read the same filesystem a moment apart.
        assert!(here.abs_diff(below) < 64 << 20, "{here} vs {below}");
        assert!(space_warning(dir.path(), u64::MAX).is_some());
        assert_eq!(space_warning(dir.path(), 1), None);
    }

    #[test]
    fn sizes_are_printed_in_binary_units() {
        assert_eq!(human_bytes(300), "300 B");
        assert_eq!(human_bytes(512 << 10), "512.0 KiB");
        assert_eq!(human_bytes(1 << 30), "1.0 GiB");
    }
}
