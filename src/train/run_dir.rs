//! The run directory: which config a run uses and where it lives (a new run, `--resume DIR`,
//! or `--force` over an old run), the effective config.toml, and the JSONL logs in it.
//!
//! Nothing is written until [`RunDir::create`], which the caller runs once the model, the data
//! and the trainer have been checked: a start that fails leaves no stub behind. A run directory
//! is marked by [`MARKER`]; `--force` only replaces a marked one, and only the entries rlvr
//! writes ([`RUN_ENTRIES`]), so a project directory given as `--out` is never emptied.
//!
//! Owns paths and files only: it must not know the model, the trainer or what a checkpoint
//! holds (the trainer writes those under `checkpoints()`).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::config_keys::Override;
use super::{RunConfig, TrainArgs};

/// The file that marks a directory as an rlvr run.
pub const MARKER: &str = ".rlvr-run";

/// Everything rlvr writes in a run directory: what `--force` removes.
const RUN_ENTRIES: [&str; 7] = [
    MARKER,
    "config.toml",
    "metrics.jsonl",
    "eval.jsonl",
    "checkpoints",
    "final",
    "plots",
];

pub struct RunDir {
    pub root: PathBuf,
    /// `--resume`: continue the run already in `root`.
    pub resuming: bool,
    /// `--force` over an old run: its entries go at `create`.
    replaces: bool,
}

impl RunDir {
    /// The run's config (defaults ← the config file, or the resumed run's own config.toml ←
    /// flags) and its directory, checked but not written. A new run refuses a directory that
    /// holds another unless `--force`, and one that rlvr did not make even with it.
    pub fn check(args: &TrainArgs) -> Result<(RunConfig, RunDir)> {
        let overrides = args.overrides()?;
        match &args.resume {
            Some(root) => Ok((resumed_config(root, &overrides)?, Self::resume(root))),
            None => {
                let cfg = RunConfig::build(args.config.as_deref(), &overrides)?;
                let root = args.out.clone().unwrap_or_else(default_root);
                Ok((cfg, Self::new_run(root, args.force)?))
            }
        }
    }

    fn resume(root: &Path) -> RunDir {
        RunDir {
            root: root.to_path_buf(),
            resuming: true,
            replaces: false,
        }
    }

    /// A new run in `root`: an old run there is an error, or replaced with `force`; a directory
    /// with files of rlvr's names but no marker is not rlvr's and is refused.
    fn new_run(root: PathBuf, force: bool) -> Result<RunDir> {
        let shown = root.display();
        if root.exists() && !root.is_dir() {
            bail!("--out {shown} exists and is not a directory");
        }
        let marked = root.join(MARKER).is_file();
        if marked && !force {
            bail!(
                "{shown} already holds a run: continue it with `rlvr train --resume {shown}`, or pass --force to replace it"
            );
        }
        let taken: Vec<&str> = RUN_ENTRIES
            .into_iter()
            .filter(|entry| root.join(entry).exists())
            .collect();
        if !marked && !taken.is_empty() {
            bail!(
                "{shown} is not an rlvr run directory (no {MARKER} marker) but holds {}: rlvr does not write over it, with or without --force. Choose another --out; if it is a run of an older rlvr, continue it with `rlvr train --resume {shown}` or remove it yourself",
                taken.join(", ")
            );
        }
        Ok(RunDir {
            root,
            resuming: false,
            replaces: marked,
        })
    }

    /// Write the directory: remove the replaced run's entries (`--force`), then the marker
    /// and the effective config.
    pub fn create(&self, cfg: &RunConfig) -> Result<()> {
        if self.replaces {
            for entry in RUN_ENTRIES {
                remove_entry(&self.root.join(entry))?;
            }
        }
        std::fs::create_dir_all(&self.root)
            .with_context(|| format!("creating {}", self.root.display()))?;
        // The config first: a process killed in between leaves a directory `--resume` takes.
        write_atomically(&self.config_file(), cfg.to_toml()?.as_bytes())?;
        write_atomically(
            &self.root.join(MARKER),
            b"An rlvr run directory: `rlvr train --force` replaces what rlvr wrote here.\n",
        )
    }

    pub fn config_file(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }

    fn metrics_file(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }

    fn eval_file(&self) -> PathBuf {
        self.root.join("eval.jsonl")
    }

    /// One step's line in metrics.jsonl.
    pub fn append_metrics(&self, line: &Value) -> Result<()> {
        append_jsonl(&self.metrics_file(), line)
    }

    /// One evaluation's line in eval.jsonl.
    pub fn append_eval(&self, line: &Value) -> Result<()> {
        append_jsonl(&self.eval_file(), line)
    }

    /// Drop the log lines after `step` (and the evaluation at `step` when `reevaluated`): a
    /// resumed run rewrites what came after its checkpoint.
    pub fn truncate_logs(&self, step: u64, reevaluated: bool) -> Result<()> {
        truncate_jsonl(&self.metrics_file(), |s| s <= step)?;
        truncate_jsonl(&self.eval_file(), |s| {
            s < step || (s == step && !reevaluated)
        })
    }
}

fn resumed_config(root: &Path, overrides: &[Override]) -> Result<RunConfig> {
    let file = root.join("config.toml");
    if !file.is_file() {
        bail!("{} holds no run (no config.toml) to resume", root.display());
    }
    RunConfig::build(Some(&file), overrides)
}

/// Remove a file or directory if it exists.
fn remove_entry(path: &Path) -> Result<()> {
    let removed = match std::fs::symlink_metadata(path) {
        Err(_) => return Ok(()),
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
    };
    removed.with_context(|| format!("removing {}", path.display()))
}

/// `runs/run-<unix time>`.
fn default_root() -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    PathBuf::from("runs").join(format!("run-{secs}"))
}

/// Append one JSON line to a file.
fn append_jsonl(path: &Path, line: &Value) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(file, "{line}").with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Keep only the lines whose `step` is kept.
fn truncate_jsonl(path: &Path, keep: impl Fn(u64) -> bool) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: Vec<&str> = text
        .lines()
        .filter(|line| {
            serde_json::from_str::<Value>(line)
                .ok()
                .and_then(|v| v.get("step").and_then(Value::as_u64))
                .is_some_and(&keep)
        })
        .collect();
    let mut out = kept.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    write_atomically(path, out.as_bytes())
}

/// Write `path` through a temporary file renamed over it: a process killed meanwhile leaves
/// the old file or the new one, never a part (a leftover `.NAME.tmp` is harmless).
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let written = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.with_context(|| format!("writing {}", path.display()))
}
