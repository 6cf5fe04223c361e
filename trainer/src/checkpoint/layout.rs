//! The layout of a checkpoint root: `step-<T>` directories, how a written one is published (a
//! rename, replacing one of the same step) and the old ones pruned, damaged ones set aside as
//! `damaged-step-<T>`, and the temporaries an interrupted write leaves (`.tmp-…`, `.old-…`).
//!
//! Owns directory names and moves. Must not know what a checkpoint's files hold.

use std::fs;
use std::path::{Path, PathBuf};

use super::STATE_FILE;
use crate::error::{io_err, Result};

pub(super) const PREFIX: &str = "step-";
/// A checkpoint being written: `.tmp-step-<T>-<pid>`.
pub(super) const TMP_PREFIX: &str = ".tmp-";
/// A checkpoint being replaced by one of the same step: `.old-step-<T>-<pid>`.
const OLD_PREFIX: &str = ".old-";
/// What a damaged checkpoint is renamed to: `damaged-step-<T>`.
const DAMAGED_PREFIX: &str = "damaged-";

pub(super) fn fsync_dir(path: &Path) -> Result<()> {
    // Directories can be opened read-only and synced on Unix; elsewhere this is best effort.
    match fs::File::open(path) {
        Ok(f) => {
            let _ = f.sync_all();
            Ok(())
        }
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Checkpoint directories under `root`, oldest first, as (train step, path).
pub fn list_checkpoints(root: &Path) -> Result<Vec<(u64, PathBuf)>> {
    if !root.exists() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for e in fs::read_dir(root).map_err(io_err(root))? {
        let e = e.map_err(io_err(root))?;
        let name = e.file_name();
        let Some(step) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        if e.path().join(STATE_FILE).is_file() {
            out.push((step, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// The newest complete checkpoint under `root`, if any.
pub fn latest_checkpoint(root: &Path) -> Result<Option<PathBuf>> {
    Ok(list_checkpoints(root)?.pop().map(|(_, p)| p))
}

/// Rename a damaged checkpoint `<root>/step-T` to `<root>/damaged-step-T` (numbered if that
/// exists), out of the way of listing and pruning but kept for inspection; returns the new path.
pub fn set_aside_damaged(dir: &Path) -> Result<PathBuf> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parent = dir.parent().unwrap_or(Path::new("."));
    let mut target = parent.join(format!("{DAMAGED_PREFIX}{name}"));
    let mut n = 1;
    while target.exists() {
        n += 1;
        target = parent.join(format!("{DAMAGED_PREFIX}{name}.{n}"));
    }
    fs::rename(dir, &target).map_err(io_err(dir))?;
    Ok(target)
}

/// Remove what an interrupted write left under `root` (a process killed, or a machine that
/// lost power): temporary checkpoint directories, and a replaced checkpoint's old copy, which is
/// put back instead when its replacement was never published. Returns what was removed.
pub fn remove_stale_temporaries(root: &Path) -> Result<Vec<PathBuf>> {
    let mut removed = vec![];
    let Ok(entries) = fs::read_dir(root) else {
        return Ok(removed);
    };
    for e in entries {
        let path = e.map_err(io_err(root))?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with(TMP_PREFIX) {
            fs::remove_dir_all(&path).map_err(io_err(&path))?;
            removed.push(path);
        } else if let Some(rest) = name.strip_prefix(OLD_PREFIX) {
            // `.old-step-<T>-<pid>`: the checkpoint `step-<T>` it was replaced by.
            let step_dir = rest
                .rsplit_once('-')
                .map(|(step_name, _)| root.join(step_name));
            match step_dir {
                Some(step_dir) if !step_dir.exists() => {
                    fs::rename(&path, &step_dir).map_err(io_err(&path))?;
                }
                _ => {
                    fs::remove_dir_all(&path).map_err(io_err(&path))?;
                    removed.push(path);
                }
            }
        }
    }
    Ok(removed)
}

/// Move the checked temporary directory `tmp` to `<root>/<name>`, replacing a checkpoint of the
/// same step.
pub(super) fn publish(root: &Path, tmp: &Path, name: &str) -> Result<PathBuf> {
    let final_dir = root.join(name);
    if final_dir.exists() {
        // Re-saving the same step: move the old one aside first (rename cannot replace a
        // non-empty directory).
        let old = root.join(format!("{OLD_PREFIX}{name}-{}", std::process::id()));
        fs::rename(&final_dir, &old).map_err(io_err(&final_dir))?;
        fs::rename(tmp, &final_dir).map_err(io_err(&final_dir))?;
        fs::remove_dir_all(&old).map_err(io_err(&old))?;
    } else {
        fs::rename(tmp, &final_dir).map_err(io_err(&final_dir))?;
    }
    fsync_dir(root)?;
    Ok(final_dir)
}

/// Remove all but the newest `keep_last` (≥ 1) checkpoints.
pub(super) fn prune(root: &Path, keep_last: usize) -> Result<()> {
    let all = list_checkpoints(root)?;
    let keep = keep_last.max(1);
    if all.len() > keep {
        for (_, p) in &all[..all.len() - keep] {
            fs::remove_dir_all(p).map_err(io_err(p))?;
        }
    }
    Ok(())
}
