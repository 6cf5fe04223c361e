//! Free disk space: is there room for a checkpoint before it is written, and how much it needs
//! said in a way a person reads.
//!
//! Owns the free-space query (statvfs on Unix; elsewhere the check is skipped). Must not know
//! what is being written: the caller says how many bytes.

use std::path::Path;

use crate::error::{Result, TrainerError};

/// Bytes available to this user on the file system holding `dir`, when it can be asked.
#[cfg(unix)]
pub fn available_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: `path` is a valid NUL-terminated string and `stat` a zeroed, writable statvfs
    // that the call fills in; nothing is kept past the call.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut stat) };
    if rc != 0 {
        return None;
    }
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    Some(stat.f_bavail as u64 * stat.f_frsize as u64)
}

#[cfg(not(unix))]
pub fn available_bytes(_dir: &Path) -> Option<u64> {
    None
}

/// An error unless `dir`'s file system has `needed` bytes free.
pub fn ensure_free(dir: &Path, needed: u64) -> Result<()> {
    match available_bytes(dir) {
        Some(available) if available < needed => Err(TrainerError::NoSpace {
            path: dir.to_path_buf(),
            needed: human_bytes(needed),
            available: human_bytes(available),
        }),
        _ => Ok(()),
    }
}

/// `1.6 GB`, `340.2 MB`, `12.0 kB`, `512 B` (powers of 1000, as `df -H`).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [(&str, f64); 4] = [("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)];
    for (unit, size) in UNITS {
        if bytes as f64 >= size {
            return format!("{:.1} {unit}", bytes as f64 / size);
        }
    }
    format!("{bytes} B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_df() {
        assert_eq!(human_bytes(1_600_000_000), "1.6 GB");
        assert_eq!(human_bytes(340_200_000), "340.2 MB");
        assert_eq!(human_bytes(999), "999 B");
    }

    #[cfg(unix)]
    #[test]
    fn a_checkpoint_larger_than_the_free_space_is_refused_up_front() {
        let dir = tempfile::tempdir().unwrap();
        let free = available_bytes(dir.path()).expect("statvfs");
        assert!(free > 0);
        ensure_free(dir.path(), 1).unwrap();
        let e = ensure_free(dir.path(), free.saturating_mul(2).max(1 << 40))
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs") && e.contains("free"), "{e}");
        assert!(e.contains(&dir.path().display().to_string()), "{e}");
    }
}
