//! Running a sweep's cells one after another, each as its own `rlvr train` process, and the
//! sweep's state file (`sweep.json`): which cells finished and how long they took. A killed sweep
//! started again skips finished cells and resumes an interrupted one from its last checkpoint.
//!
//! Owns the state file and the child processes. Must not know what the runs compute.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::grid::Setting;

/// One run of the sweep: a configuration and a seed, in its own directory.
#[derive(Debug, Clone)]
pub struct Cell {
    pub setting: Setting,
    pub seed: u64,
    pub dir: PathBuf,
}

impl Cell {
    pub fn new(out: &Path, setting: &Setting, seed: u64) -> Cell {
        Cell {
            dir: out
                .join("runs")
                .join(setting.dir_name())
                .join(format!("seed-{seed}")),
            setting: setting.clone(),
            seed,
        }
    }

    fn key(&self) -> String {
        format!("{} seed={}", self.setting.label(), self.seed)
    }
}

/// What the state file records of a cell.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CellRecord {
    pub key: String,
    pub done: bool,
    /// Wall time over all attempts.
    pub wall_s: f64,
}

/// `sweep.json`: the records of the cells run so far.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SweepState {
    pub cells: Vec<CellRecord>,
}

impl SweepState {
    fn file(out: &Path) -> PathBuf {
        out.join("sweep.json")
    }

    pub fn load(out: &Path) -> Result<SweepState> {
        let path = Self::file(out);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .with_context(|| format!("{} is not a sweep state file", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SweepState::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    fn save(&self, out: &Path) -> Result<()> {
        let path = Self::file(out);
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
    }

    pub fn record(&self, cell: &Cell) -> Option<&CellRecord> {
        let key = cell.key();
        self.cells.iter().find(|r| r.key == key)
    }

    fn record_mut(&mut self, cell: &Cell) -> &mut CellRecord {
        let key = cell.key();
        if let Some(i) = self.cells.iter().position(|r| r.key == key) {
            return &mut self.cells[i];
        }
        self.cells.push(CellRecord {
            key,
            ..Default::default()
        });
        self.cells.last_mut().expect("just pushed")
    }
}

/// A finished cell's checkpoints served only its resume: they go (each is the size of the
/// weights and the optimizer state, ~1.6 GB for the default model; the first ablation sweep's 15 runs
/// filled 56 GB of disk before this), while its metrics, evaluations, plots and final export stay.
fn drop_checkpoints(cell: &Cell) -> Result<()> {
    let dir = cell.dir.join("checkpoints");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("removing the finished run's {}", dir.display()))?;
    }
    Ok(())
}

/// How a cell's runs are started: the binary and the arguments every run shares.
pub struct Runner {
    pub exe: PathBuf,
    /// `--set key=value` overrides for every run (before the cell's own).
    pub common_sets: Vec<String>,
    pub out: PathBuf,
}

impl Runner {
    /// Run `cell` unless it finished before; returns its wall time over all attempts.
    pub fn run(&self, state: &mut SweepState, cell: &Cell) -> Result<f64> {
        if let Some(r) = state.record(cell).filter(|r| r.done) {
            eprintln!("sweep: {} finished before; skipped", cell.key());
            return Ok(r.wall_s);
        }
        let resume = cell.dir.join("config.toml").exists();
        eprintln!(
            "sweep: {} {} in {}",
            if resume { "resuming" } else { "running" },
            cell.key(),
            cell.dir.display()
        );
        let timer = Instant::now();
        let status = self
            .command(cell, resume)
            .status()
            .with_context(|| format!("starting {}", self.exe.display()))?;
        let record = state.record_mut(cell);
        record.wall_s += timer.elapsed().as_secs_f64();
        record.done = status.success();
        let wall = record.wall_s;
        state.save(&self.out)?;
        if !status.success() {
            bail!(
                "the run {} failed ({status}); see its output above. Run the same sweep command again to resume it",
                cell.key()
            );
        }
        drop_checkpoints(cell)?;
        Ok(wall)
    }

    fn command(&self, cell: &Cell, resume: bool) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.arg("train");
        if resume {
            cmd.arg("--resume").arg(&cell.dir);
            return cmd;
        }
        cmd.arg("--out").arg(&cell.dir);
        let sets = self
            .common_sets
            .iter()
            .cloned()
            .chain(cell.setting.overrides())
            .chain([format!("seed={}", cell.seed)]);
        for set in sets {
            cmd.arg("--set").arg(set);
        }
        cmd
    }
}
