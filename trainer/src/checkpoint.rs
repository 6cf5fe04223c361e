//! Checkpoints: weights, optimizer state, trainer RNG, counters and the caller's data cursor,
//! written atomically (temporary directory, fsync, rename) with a manifest of each file's
//! SHA-256, checked against the disk before the checkpoint is published and again before it is
//! loaded; the last N kept, pruned only once the new one is published. Free space is checked
//! before writing, a failed write removes its temporary directory, and temporaries left by a
//! killed process are removed by [`remove_stale_temporaries`].
//!
//! Layout: `<root>/step-<T, 8 digits>/{model.safetensors, optimizer.safetensors,
//! trainer_state.json, manifest.json}`. `model.safetensors` holds the trainable weights: all of
//! them, or under LoRA the adapters only (PEFT names; the frozen base is the run's model). Checkpoints of older rlvr versions have no manifest:
//! they load, reported as [`Verified::NoManifest`].
//!
//! Owns the directory layout, the atomic write, verification and the retention. Must not know
//! what the optimizer's state means (it stores what [`crate::optim::Optimizer`] hands out) nor
//! the caller's data cursor (opaque JSON), nor which checkpoint a run should resume from.

mod layout;
mod manifest;
mod space;
mod tensor_file;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use candle_core::Tensor;
use rlvr_models::Model;
use serde::{Deserialize, Serialize};

pub use layout::{
    latest_checkpoint, list_checkpoints, remove_stale_temporaries, set_aside_damaged,
};
pub use manifest::{FileDigest, Verified, MANIFEST_FILE};
pub use space::human_bytes;

use crate::config::TrainerConfig;
use crate::error::{io_err, Result, TrainerError};
use crate::optim::OptimizerScalars;
use crate::rng::SplitMix64;
use crate::trainer::Trainer;
use layout::{fsync_dir, prune, publish, PREFIX, TMP_PREFIX};
use manifest::Manifest;

pub const MODEL_FILE: &str = "model.safetensors";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const STATE_FILE: &str = "trainer_state.json";
/// The files a checkpoint's manifest covers.
const FILES: [&str; 3] = [MODEL_FILE, OPTIMIZER_FILE, STATE_FILE];
const FORMAT: u32 = 1;
/// Room for the headers, the trainer state and the manifest, beyond the tensors' data.
const SLACK_BYTES: u64 = 4 << 20;

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

/// What [`Trainer::load_checkpoint`] restored the caller's part of.
#[derive(Debug)]
pub struct Restored {
    pub data_cursor: serde_json::Value,
    pub verified: Verified,
}

fn ck_err(path: &Path, msg: impl Into<String>) -> TrainerError {
    TrainerError::Checkpoint {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

fn damaged(path: &Path, msg: impl Into<String>) -> TrainerError {
    TrainerError::CheckpointDamaged {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// Check a checkpoint's files against its manifest (see [`Verified`]); a mismatch is
/// [`TrainerError::CheckpointDamaged`] naming the file.
pub fn verify_checkpoint(dir: &Path) -> Result<Verified> {
    manifest::verify(dir, &FILES)
}

/// Tests: make the write of a named checkpoint file fail as a full disk does.
#[cfg(test)]
pub(crate) mod fault {
    use std::cell::Cell;
    use std::path::Path;

    thread_local! {
        static FAIL: Cell<Option<&'static str>> = const { Cell::new(None) };
    }

    /// Writes of `file` on this thread fail from now on (None: none do).
    pub fn fail_writing(file: Option<&'static str>) {
        FAIL.with(|f| f.set(file));
    }

    pub fn inject(path: &Path) -> crate::error::Result<()> {
        match FAIL.with(Cell::get) {
            Some(file) if path.ends_with(file) => Err(crate::error::TrainerError::Io {
                path: path.to_path_buf(),
                cause: std::io::Error::from_raw_os_error(28), // ENOSPC
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(not(test))]
mod fault {
    pub fn inject(_path: &std::path::Path) -> crate::error::Result<()> {
        Ok(())
    }
}

impl<M: Deref<Target = Model>> Trainer<M> {
    /// Write a checkpoint of the current state under `root`, and once it is published and
    /// checked, keep only the newest `keep_last` (≥ 1) checkpoints. Returns its directory.
    pub fn save_checkpoint(
        &self,
        root: &Path,
        data_cursor: &serde_json::Value,
        keep_last: usize,
    ) -> Result<PathBuf> {
        fs::create_dir_all(root).map_err(io_err(root))?;
        let weights: HashMap<String, Tensor> =
            self.model.trainable_state_dict().into_iter().collect();
        let optimizer = self.optimizer.state_tensors();
        let needed =
            tensor_file::data_bytes(&weights) + tensor_file::data_bytes(&optimizer) + SLACK_BYTES;
        space::ensure_free(root, needed)?;
        let name = format!("{PREFIX}{:08}", self.train_step);
        let tmp = root.join(format!("{TMP_PREFIX}{name}-{}", std::process::id()));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
        }
        fs::create_dir(&tmp).map_err(io_err(&tmp))?;
        let published = self
            .write_checkpoint_files(&tmp, [weights, optimizer], data_cursor)
            .and_then(|()| verify_checkpoint(&tmp))
            .and_then(|_| publish(root, &tmp, &name));
        let final_dir = match published {
            Ok(dir) => dir,
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        prune(root, keep_last)?;
        Ok(final_dir)
    }

    /// The checkpoint's files (the model's and the optimizer's tensors, the trainer state) and
    /// their manifest, in `dir`.
    fn write_checkpoint_files(
        &self,
        dir: &Path,
        [weights, optimizer]: [HashMap<String, Tensor>; 2],
        data_cursor: &serde_json::Value,
    ) -> Result<()> {
        let mut digests = BTreeMap::new();
        for (name, tensors) in [(MODEL_FILE, weights), (OPTIMIZER_FILE, optimizer)] {
            let path = dir.join(name);
            fault::inject(&path)?;
            digests.insert(name.into(), tensor_file::write_tensors(&tensors, &path)?);
        }
        let state = TrainerState {
            format: FORMAT,
            train_step: self.train_step,
            policy_version: self.policy_version.load(Ordering::SeqCst),
            rng: self.rng,
            optimizer: self.optimizer.scalars(),
            data_cursor: data_cursor.clone(),
            config: self.config.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&state)?;
        digests.insert(STATE_FILE.into(), FileDigest::of_bytes(&bytes));
        write_synced(&dir.join(STATE_FILE), &bytes)?;
        Manifest::new(digests).write(dir)?;
        fsync_dir(dir)
    }

    /// Restore weights (into the shared `Var`s), optimizer state, RNG and counters from a
    /// checkpoint directory, once its files match their manifest; returns the data cursor saved
    /// with it. Nothing is changed when it fails: damaged files are
    /// [`TrainerError::CheckpointDamaged`], a checkpoint of another model or optimizer
    /// [`TrainerError::Checkpoint`] or [`TrainerError::Optimizer`].
    pub fn load_checkpoint(&mut self, dir: &Path) -> Result<Restored> {
        let verified = verify_checkpoint(dir)?;
        let state_path = dir.join(STATE_FILE);
        let bytes = fs::read(&state_path).map_err(io_err(&state_path))?;
        let state: TrainerState = serde_json::from_slice(&bytes)
            .map_err(|e| damaged(&state_path, format!("not a valid trainer state: {e}")))?;
        if state.format != FORMAT {
            return Err(ck_err(dir, format!("unknown format {}", state.format)));
        }
        let device = self.model.device().clone();
        let load = |path: &Path| {
            candle_core::safetensors::load(path, &device).map_err(|e| {
                let why = rlvr_models::weights::describe_invalid_file(path);
                damaged(
                    path,
                    format!("{e}{}", why.map(|w| format!(": {w}")).unwrap_or_default()),
                )
            })
        };
        let wpath = dir.join(MODEL_FILE);
        let weights = load(&wpath)?;
        let opt = load(&dir.join(OPTIMIZER_FILE))?;
        // Check everything before touching any weight.
        let trainable = self.model.trainable();
        for &(name, var) in &trainable {
            let t = weights
                .get(name)
                .ok_or_else(|| {
                    ck_err(
                        &wpath,
                        format!("missing tensor {name} (LoRA checkpoints hold adapters only: resume with the same LoRA settings)"),
                    )
                })?;
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
        for (name, var) in trainable {
            if let Some(t) = weights.get(name) {
                var.set(t)?;
            }
        }
        self.rng = state.rng;
        self.train_step = state.train_step;
        self.policy_version
            .store(state.policy_version, Ordering::SeqCst);
        Ok(Restored {
            data_cursor: state.data_cursor,
            verified,
        })
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = fs::File::create(path).map_err(io_err(path))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(io_err(path))
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
        for f in [MODEL_FILE, OPTIMIZER_FILE, STATE_FILE, MANIFEST_FILE] {
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
        let restored = tr2.load_checkpoint(&p).unwrap();
        assert_eq!(restored.data_cursor, serde_json::json!("again"));
        assert_eq!(restored.verified, Verified::Checksums);
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

    /// The weights of a model, as raw bits.
    fn weights_of(model: &Model) -> Vec<Vec<u32>> {
        model
            .named_vars()
            .map(|(_, v)| {
                let t = v.as_detached_tensor().flatten_all().unwrap();
                t.to_vec1::<f32>()
                    .unwrap()
                    .iter()
                    .map(|x| x.to_bits())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn a_damaged_file_is_named_and_nothing_is_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let model = tiny_model(1);
        let mut tr =
            Trainer::new(&model, toy_config(crate::optim::OptimizerKind::Magma, 1e-2)).unwrap();
        tr.train_step(&toy_rollouts(&model, 4, 8, 7)).unwrap();
        let p = tr
            .save_checkpoint(dir.path(), &serde_json::json!(1), 2)
            .unwrap();
        for file in FILES {
            let copy = dir.path().join(format!("copy-{file}"));
            fs::create_dir_all(&copy).unwrap();
            for f in FILES.iter().chain([&MANIFEST_FILE]) {
                fs::copy(p.join(f), copy.join(f)).unwrap();
            }
            let mut bytes = fs::read(copy.join(file)).unwrap();
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0x40;
            fs::write(copy.join(file), bytes).unwrap();
            let other = tiny_model(9);
            let before = weights_of(&other);
            let mut tr2 =
                Trainer::new(&other, toy_config(crate::optim::OptimizerKind::Magma, 1e-2)).unwrap();
            let e = tr2.load_checkpoint(&copy).unwrap_err();
            assert!(
                matches!(&e, TrainerError::CheckpointDamaged { path, .. } if path.ends_with(file)),
                "{file}: {e}"
            );
            assert!(e.to_string().contains("SHA-256"), "{e}");
            assert_eq!(weights_of(&other), before, "{file}: weights changed");
            assert_eq!(tr2.train_step_count(), 0);
        }
    }

    #[test]
    fn a_checkpoint_without_manifest_loads_unverified() {
        let dir = tempfile::tempdir().unwrap();
        let model = tiny_model(1);
        let tr =
            Trainer::new(&model, toy_config(crate::optim::OptimizerKind::AdamW, 1e-2)).unwrap();
        let p = tr
            .save_checkpoint(dir.path(), &serde_json::json!(3), 2)
            .unwrap();
        fs::remove_file(p.join(MANIFEST_FILE)).unwrap();
        let mut tr2 =
            Trainer::new(&model, toy_config(crate::optim::OptimizerKind::AdamW, 1e-2)).unwrap();
        let restored = tr2.load_checkpoint(&p).unwrap();
        assert_eq!(restored.verified, Verified::NoManifest);
        assert_eq!(restored.data_cursor, serde_json::json!(3));
    }

    #[test]
    fn set_aside_keeps_damaged_checkpoints_out_of_the_list() {
        let dir = tempfile::tempdir().unwrap();
        let model = tiny_model(1);
        let tr =
            Trainer::new(&model, toy_config(crate::optim::OptimizerKind::AdamW, 1e-2)).unwrap();
        let p = tr
            .save_checkpoint(dir.path(), &serde_json::Value::Null, 2)
            .unwrap();
        let aside = set_aside_damaged(&p).unwrap();
        assert!(aside.ends_with("damaged-step-00000000") && aside.is_dir());
        assert!(list_checkpoints(dir.path()).unwrap().is_empty());
        let p = tr
            .save_checkpoint(dir.path(), &serde_json::Value::Null, 2)
            .unwrap();
        assert!(set_aside_damaged(&p)
            .unwrap()
            .ends_with("damaged-step-00000000.2"));
    }

    #[test]
    fn a_failed_write_leaves_no_temporary_and_keeps_the_old_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let model = tiny_model(1);
        let mut tr =
            Trainer::new(&model, toy_config(crate::optim::OptimizerKind::AdamW, 1e-2)).unwrap();
        let first = tr
            .save_checkpoint(dir.path(), &serde_json::json!(0), 1)
            .unwrap();
        tr.train_step(&toy_rollouts(&model, 4, 8, 3)).unwrap();
        // The model file is written, then the optimizer's fails (the disk is full).
        fault::fail_writing(Some(OPTIMIZER_FILE));
        let e = tr.save_checkpoint(dir.path(), &serde_json::json!(1), 1);
        fault::fail_writing(None);
        let e = e.unwrap_err().to_string();
        assert!(e.contains(OPTIMIZER_FILE), "{e}");
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["step-00000000"], "temporaries left behind");
        assert_eq!(verify_checkpoint(&first).unwrap(), Verified::Checksums);
    }

    #[test]
    fn stale_temporaries_are_removed_and_a_replaced_checkpoint_put_back() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let model = tiny_model(1);
        let tr =
            Trainer::new(&model, toy_config(crate::optim::OptimizerKind::AdamW, 1e-2)).unwrap();
        let p = tr
            .save_checkpoint(root, &serde_json::Value::Null, 2)
            .unwrap();
        // Killed while writing step 3, and while replacing step 0 (old copy moved aside, the
        // new one not yet renamed in).
        fs::create_dir_all(root.join(".tmp-step-00000003-77")).unwrap();
        fs::write(root.join(".tmp-step-00000003-77/model.safetensors"), b"x").unwrap();
        fs::rename(&p, root.join(".old-step-00000000-78")).unwrap();
        let removed = remove_stale_temporaries(root).unwrap();
        assert_eq!(removed, [root.join(".tmp-step-00000003-77")]);
        assert_eq!(latest_checkpoint(root).unwrap(), Some(p.clone()));
        assert_eq!(verify_checkpoint(&p).unwrap(), Verified::Checksums);
        // An old copy whose replacement was published is removed.
        fs::create_dir_all(root.join(".old-step-00000000-79")).unwrap();
        assert_eq!(
            remove_stale_temporaries(root).unwrap(),
            [root.join(".old-step-00000000-79")]
        );
        assert!(remove_stale_temporaries(&root.join("none"))
            .unwrap()
            .is_empty());
    }
}
