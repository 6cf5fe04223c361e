//! Checkpoints: weights, optimizer state, trainer RNG, counters and the caller's data cursor,
//! written atomically (temporary directory, fsync, rename) with the last N kept.
//!
//! Layout: `<root>/step-<T, 8 digits>/{model.safetensors, optimizer.safetensors, trainer_state.json}`.
//!
//! Owns the directory layout, the atomic write and the retention. Must not know what the
//! optimizer's state means (it stores what [`crate::optim::Optimizer`] hands out) nor the
//! caller's data cursor (opaque JSON).

use std::collections::HashMap;
use std::fs;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use candle_core::Tensor;
use rlvr_models::Model;
use serde::{Deserialize, Serialize};

use crate::config::TrainerConfig;
use crate::error::{io_err, Result, TrainerError};
use crate::optim::OptimizerScalars;
use crate::rng::SplitMix64;
use crate::trainer::Trainer;

pub const MODEL_FILE: &str = "model.safetensors";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const STATE_FILE: &str = "trainer_state.json";
const PREFIX: &str = "step-";
const FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainerState {
    pub format: u32,
    pub train_step: u64,
    pub policy_version: u64,
    pub rng: SplitMix64,
    pub optimizer: OptimizerScalars,
    /// Opaque to the trainer: where the caller's data stream stands.
    pub data_cursor: serde_json::Value,
    pub config: TrainerConfig,
}

fn ck_err(path: &Path, msg: impl Into<String>) -> TrainerError {
    TrainerError::Checkpoint {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

fn fsync_file(path: &Path) -> Result<()> {
    fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io_err(path))
}

fn fsync_dir(path: &Path) -> Result<()> {
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

fn save_tensors(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    candle_core::safetensors::save(tensors, path).map_err(|e| ck_err(path, e.to_string()))?;
    fsync_file(path)
}

impl<M: Deref<Target = Model>> Trainer<M> {
    /// Write a checkpoint of the current state under `root` and keep only the newest
    /// `keep_last` (≥ 1) checkpoints. Returns the checkpoint directory.
    pub fn save_checkpoint(
        &self,
        root: &Path,
        data_cursor: &serde_json::Value,
        keep_last: usize,
    ) -> Result<PathBuf> {
        fs::create_dir_all(root).map_err(io_err(root))?;
        let name = format!("{PREFIX}{:08}", self.train_step);
        let final_dir = root.join(&name);
        let tmp = root.join(format!(".tmp-{name}-{}", std::process::id()));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
        }
        fs::create_dir(&tmp).map_err(io_err(&tmp))?;

        let weights: HashMap<String, Tensor> = self.model.state_dict().into_iter().collect();
        save_tensors(&weights, &tmp.join(MODEL_FILE))?;
        save_tensors(&self.optimizer.state_tensors(), &tmp.join(OPTIMIZER_FILE))?;
        let state = TrainerState {
            format: FORMAT,
            train_step: self.train_step,
            policy_version: self.policy_version.load(Ordering::SeqCst),
            rng: self.rng,
            optimizer: self.optimizer.scalars(),
            data_cursor: data_cursor.clone(),
            config: self.config.clone(),
        };
        let state_path = tmp.join(STATE_FILE);
        fs::write(&state_path, serde_json::to_vec_pretty(&state)?).map_err(io_err(&state_path))?;
        fsync_file(&state_path)?;
        fsync_dir(&tmp)?;

        if final_dir.exists() {
            // Re-saving the same step: move the old one aside first (rename cannot replace a
            // non-empty directory).
            let old = root.join(format!(".old-{name}-{}", std::process::id()));
            fs::rename(&final_dir, &old).map_err(io_err(&final_dir))?;
            fs::rename(&tmp, &final_dir).map_err(io_err(&final_dir))?;
            fs::remove_dir_all(&old).map_err(io_err(&old))?;
        } else {
            fs::rename(&tmp, &final_dir).map_err(io_err(&final_dir))?;
        }
        fsync_dir(root)?;

        let all = list_checkpoints(root)?;
        let keep = keep_last.max(1);
        if all.len() > keep {
            for (_, p) in &all[..all.len() - keep] {
                fs::remove_dir_all(p).map_err(io_err(p))?;
            }
        }
        Ok(final_dir)
    }

    /// Restore weights (into the shared `Var`s), optimizer state, RNG and counters from a
    /// checkpoint directory; returns the data cursor saved with it.
    pub fn load_checkpoint(&mut self, dir: &Path) -> Result<serde_json::Value> {
        let state_path = dir.join(STATE_FILE);
        let bytes = fs::read(&state_path).map_err(io_err(&state_path))?;
        let state: TrainerState = serde_json::from_slice(&bytes)?;
        if state.format != FORMAT {
            return Err(ck_err(dir, format!("unknown format {}", state.format)));
        }
        let device = self.model.device().clone();
        let wpath = dir.join(MODEL_FILE);
        let weights = candle_core::safetensors::load(&wpath, &device)
            .map_err(|e| ck_err(&wpath, e.to_string()))?;
        let opath = dir.join(OPTIMIZER_FILE);
        let opt = candle_core::safetensors::load(&opath, &device)
            .map_err(|e| ck_err(&opath, e.to_string()))?;
        // Check everything before touching any weight.
        for (name, var) in self.model.named_vars() {
            let t = weights
                .get(name)
                .ok_or_else(|| ck_err(&wpath, format!("missing tensor {name}")))?;
            if t.dims() != var.dims() || t.dtype() != var.dtype() {
                return Err(ck_err(
                    &wpath,
                    format!(
                        "tensor {name}: {:?} {:?}, model has {:?} {:?}",
                        t.dims(),
                        t.dtype(),
                        var.dims(),
                        var.dtype()
                    ),
                ));
            }
        }
        self.optimizer.load_state(&opt, &state.optimizer)?;
        for (name, var) in self.model.named_vars() {
            if let Some(t) = weights.get(name) {
                var.set(t)?;
            }
        }
        self.rng = state.rng;
        self.train_step = state.train_step;
        self.policy_version
            .store(state.policy_version, Ordering::SeqCst);
        Ok(state.data_cursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::*;

    #[test]
    fn atomic_write_and_keep_last_n() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ckpt");
        let model = tiny_model(1);
        let mut tr =
            Trainer::new(&model, toy_config(crate::optim::OptimizerKind::AdamW, 1e-2)).unwrap();
        let mut paths = Vec::new();
        for step in 0..4 {
            let groups = toy_rollouts(&model, 4, 8, 100 + step);
            tr.train_step(&groups).unwrap();
            let cursor = serde_json::json!({ "epoch": 0, "index": step });
            paths.push(tr.save_checkpoint(&root, &cursor, 2).unwrap());
        }
        let left = list_checkpoints(&root).unwrap();
        assert_eq!(left.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![3, 4]);
        assert!(!paths[0].exists() && !paths[1].exists());
        // No temporary directories are left behind.
        let names: Vec<String> = fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| n.starts_with(PREFIX)), "{names:?}");
        for f in [MODEL_FILE, OPTIMIZER_FILE, STATE_FILE] {
            assert!(paths[3].join(f).is_file());
        }
        // An interrupted write (a temp dir without rename) is invisible to readers.
        let fake = root.join(".tmp-step-00000009-1");
        fs::create_dir_all(&fake).unwrap();
        fs::write(fake.join(STATE_FILE), b"{").unwrap();
        assert_eq!(latest_checkpoint(&root).unwrap(), Some(paths[3].clone()));
        // A directory named like a checkpoint but without a state file is ignored too.
        fs::create_dir_all(root.join("step-00000010")).unwrap();
        assert_eq!(latest_checkpoint(&root).unwrap(), Some(paths[3].clone()));
        // Re-saving the same step replaces it.
        let p = tr
            .save_checkpoint(&root, &serde_json::json!("again"), 2)
            .unwrap();
        assert_eq!(p, paths[3]);
        let mut tr2 =
            Trainer::new(&model, toy_config(crate::optim::OptimizerKind::AdamW, 1e-2)).unwrap();
        assert_eq!(tr2.load_checkpoint(&p).unwrap(), serde_json::json!("again"));
        assert_eq!(tr2.train_step_count(), 4);
        assert_eq!(tr2.policy_version(), tr.policy_version());
    }

    #[test]
    fn corrupt_or_mismatched_checkpoints_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let model = tiny_model(1);
        let tr =
            Trainer::new(&model, toy_config(crate::optim::OptimizerKind::Magma, 1e-2)).unwrap();
        let p = tr
            .save_checkpoint(dir.path(), &serde_json::Value::Null, 3)
            .unwrap();
        // Wrong optimizer kind.
        let mut other =
            Trainer::new(&model, toy_config(crate::optim::OptimizerKind::AdamW, 1e-2)).unwrap();
        assert!(other.load_checkpoint(&p).is_err());
        // Another architecture.
        let big = tiny_model_with(2, 24);
        let mut tr3 =
            Trainer::new(&big, toy_config(crate::optim::OptimizerKind::Magma, 1e-2)).unwrap();
        assert!(matches!(
            tr3.load_checkpoint(&p),
            Err(TrainerError::Checkpoint { .. })
        ));
        // Truncated state file.
        fs::write(p.join(STATE_FILE), b"{\"format\": 1").unwrap();
        let mut tr4 =
            Trainer::new(&model, toy_config(crate::optim::OptimizerKind::Magma, 1e-2)).unwrap();
        assert!(tr4.load_checkpoint(&p).is_err());
    }
}
