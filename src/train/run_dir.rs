//! The run directory: which config a run uses and where it lives (a new run, `--resume DIR`,
//! or `--force` over an old run), the effective config.toml, and the JSONL logs in it.
//!
//! Owns paths and files only: it must not know the model, the trainer or what a checkpoint
//! holds (the trainer writes those under `checkpoints()`).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::{RunConfig, TrainArgs};

pub struct RunDir {
    pub root: PathBuf,
    /// `--resume`: continue the run already in `root`.
    pub resuming: bool,
}

impl RunDir {
    /// The run's config (defaults ← the config file, or the resumed run's own config.toml ←
    /// flags) and its directory, created, with the effective config written into it. A new run
    /// refuses a directory that holds another unless `--force`, which removes it first.
    pub fn open(args: &TrainArgs) -> Result<(RunConfig, RunDir)> {
        let overrides = args.overrides()?;
        let (cfg, dir) = match &args.resume {
            Some(root) => (resumed_config(root, &overrides)?, Self::resume(root)),
            None => {
                let cfg = RunConfig::build(args.config.as_deref(), &overrides)?;
                let root = args.out.clone().unwrap_or_else(default_root);
                (cfg, Self::create(root, args.force)?)
            }
        };
        std::fs::create_dir_all(&dir.root)
            .with_context(|| format!("creating {}", dir.root.display()))?;
        std::fs::write(dir.config_file(), cfg.to_toml()?).context("writing config.toml")?;
        Ok((cfg, dir))
    }

    fn resume(root: &Path) -> RunDir {
        RunDir {
            root: root.to_path_buf(),
            resuming: true,
        }
    }

    /// A new run in `root`; an old run there is an error, or removed with `force`.
    fn create(root: PathBuf, force: bool) -> Result<RunDir> {
        if root.join("config.toml").exists() {
            if !force {
                bail!(
                    "{} already holds a run: continue it with `rlvr train --resume {}`, or pass --force to overwrite it",
                    root.display(),
                    root.display()
                );
            }
            std::fs::remove_dir_all(&root)
                .with_context(|| format!("removing {}", root.display()))?;
        }
        Ok(RunDir {
            root,
            resuming: false,
        })
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

fn resumed_config(root: &Path, overrides: &[Value]) -> Result<RunConfig> {
    let file = root.join("config.toml");
    if !file.is_file() {
        bail!("{} holds no run (no config.toml) to resume", root.display());
    }
    RunConfig::build(Some(&file), overrides)
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
    std::fs::write(path, out).with_context(|| format!("rewriting {}", path.display()))
}
