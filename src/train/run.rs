//! A run once set up: its config and directory, the model (one copy of the weights, shared by
//! the generator and the trainer under a lock), the data, the held-out evaluator and the
//! trainer; and what needs several of them: restoring and saving checkpoints, evaluating into
//! eval.jsonl, starting the generation pipeline, redrawing plots, exporting the trained model.
//!
//! It must not know the order of events of a step (step_loop.rs) or how a run ends (finish.rs).

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};

use anyhow::{bail, Context, Result};
use candle_core::DType;
use rlvr_models::{LoadedModel, Model, TextTokenizer};
use rlvr_trainer::{Trainer, TrainerError, Verified};
use serde_json::{json, Value};

use super::eval::Evaluator;
use super::pipeline::{Buffer, GeneratorSpec, Pipeline};
use super::plots;
use super::run_dir::RunDir;
use super::task::Dataset;
use super::RunConfig;
use crate::common::ModelArgs;

pub struct Run {
    pub cfg: RunConfig,
    pub dir: RunDir,
    pub trainer: Trainer<Arc<Model>>,
    model: Arc<Model>,
    tokenizer: TextTokenizer,
    /// The source's generation_config.json, carried into the export.
    generation_config: Option<Value>,
    eos: Vec<u32>,
    dataset: Arc<Dataset>,
    evaluator: Evaluator,
    /// Held by the generator for a whole batch, by the trainer for an optimizer step.
    weights_lock: Arc<RwLock<()>>,
}

/// Where the step loop starts: steps done, and batches generated but not yet trained.
pub struct Start {
    pub step: u64,
    pub pending: Buffer,
}

impl Run {
    /// Load the model and the data for `cfg` and build the trainer around the model.
    pub fn load(cfg: RunConfig, dir: RunDir) -> Result<Self> {
        let mut loaded = load_model(&cfg)?;
        attach_lora(&cfg, &mut loaded.model)?;
        if cfg.chat && loaded.tokenizer.chat_template.is_none() {
            bail!(
                "model {:?} has no chat template: set `chat = false` (or --set chat=false) to use raw prompts",
                cfg.model
            );
        }
        let dataset = Arc::new(super::load_dataset(&cfg, &loaded, true)?);
        let evaluator = Evaluator::new(&dataset, &loaded.tokenizer, &cfg)?;
        let eos = loaded.eos_ids();
        let model = Arc::new(loaded.model);
        let weights_lock = Arc::new(RwLock::new(()));
        let trainer = Trainer::new(model.clone(), cfg.trainer.clone())?
            .with_weight_lock(weights_lock.clone());
        Ok(Self {
            cfg,
            dir,
            trainer,
            model,
            tokenizer: loaded.tokenizer,
            generation_config: loaded.generation_config,
            eos,
            dataset,
            evaluator,
            weights_lock,
        })
    }

    /// A resumed run continues from its newest checkpoint that verifies (weights, optimizer,
    /// pending batches) and drops the log lines after it; a new one, or one without a
    /// checkpoint, starts at 0. Damaged checkpoints newer than the one used are set aside.
    pub fn restore(&mut self) -> Result<Start> {
        let mut start = Start {
            step: 0,
            pending: Buffer::default(),
        };
        if !self.dir.resuming {
            return Ok(start);
        }
        self.remove_stale_temporaries()?;
        match self.load_newest_good_checkpoint()? {
            Some((checkpoint, cursor)) => {
                start.step = self.trainer.train_step_count();
                if let Some(pending) = cursor.get("pending") {
                    start.pending = serde_json::from_value(pending.clone())
                        .context("checkpoint: pending batches")?;
                }
                eprintln!(
                    "rlvr: resuming {} from {} (step {})",
                    self.dir.root.display(),
                    checkpoint.display(),
                    start.step
                );
            }
            None => eprintln!(
                "rlvr: {} has no checkpoint yet: starting from step 0",
                self.dir.root.display()
            ),
        }
        // The evaluation at the start step is redone when the resumed run repeats it: before
        // step 1, and at the end of the run (an interrupted end stops before its export).
        let reevaluates = start.step == 0 || start.step >= self.cfg.max_steps;
        self.dir.truncate_logs(start.step, reevaluates)?;
        Ok(start)
    }

    /// Load the newest checkpoint whose files verify, newest first, saying which were damaged
    /// (then set aside) or could not be verified; its directory and data cursor. None when there
    /// is no checkpoint; an error when none of them verifies (nothing is moved then).
    fn load_newest_good_checkpoint(&mut self) -> Result<Option<(PathBuf, Value)>> {
        let checkpoints = rlvr_trainer::list_checkpoints(&self.dir.checkpoints())?;
        let mut damaged = vec![];
        for (_, checkpoint) in checkpoints.iter().rev() {
            let restored = match self.trainer.load_checkpoint(checkpoint) {
                Ok(restored) => restored,
                Err(e @ TrainerError::CheckpointDamaged { .. }) => {
                    eprintln!(
                        "rlvr: checkpoint {} is damaged: {e}; trying the one before it",
                        checkpoint.display()
                    );
                    damaged.push(checkpoint);
                    continue;
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("loading {}", checkpoint.display()))
                }
            };
            if restored.verified == Verified::NoManifest {
                eprintln!(
                    "rlvr: warning: checkpoint {} has no checksums (written by an older rlvr): its files cannot be verified",
                    checkpoint.display()
                );
            }
            for bad in damaged {
                let aside = rlvr_trainer::set_aside_damaged(bad)?;
                eprintln!(
                    "rlvr: moved the damaged checkpoint to {} (delete it once inspected)",
                    aside.display()
                );
            }
            return Ok(Some((checkpoint.clone(), restored.data_cursor)));
        }
        if !damaged.is_empty() {
            bail!(
                "no checkpoint in {} verifies ({} damaged, see above); nothing was changed: restore the files, or start a new run",
                self.dir.checkpoints().display(),
                damaged.len()
            );
        }
        Ok(None)
    }

    /// Remove what failed writes of an earlier process left: temporary checkpoint directories
    /// and a partial export.
    fn remove_stale_temporaries(&self) -> Result<()> {
        let mut removed = rlvr_trainer::remove_stale_temporaries(&self.dir.checkpoints())?;
        for file in ["model.safetensors", rlvr_models::peft::ADAPTER_WEIGHTS] {
            let export = rlvr_models::weights::temporary_path(&self.export_dir().join(file));
            if export.is_file() {
                std::fs::remove_file(&export)
                    .with_context(|| format!("removing {}", export.display()))?;
                removed.push(export);
            }
        }
        for path in removed {
            eprintln!(
                "rlvr: removed {}, left by an earlier write that did not finish",
                path.display()
            );
        }
        Ok(())
    }

    /// A checkpoint of the trainer, with `pending` batches as its data cursor.
    pub fn checkpoint(&self, pending: &Buffer) -> Result<PathBuf> {
        let cursor = json!({ "pending": pending });
        let step = self.trainer.train_step_count();
        self.trainer
            .save_checkpoint(&self.dir.checkpoints(), &cursor, self.cfg.keep_checkpoints)
            .with_context(|| {
                format!(
                    "writing the checkpoint of step {step} (nothing of it is left on disk); once fixed, continue from the last checkpoint with `rlvr train --resume {}`",
                    self.dir.root.display()
                )
            })
    }

    /// Evaluate on the held-out problems after `step` steps: a line in eval.jsonl and stderr.
    pub fn evaluate(&self, step: u64) -> Result<()> {
        let result = self
            .evaluator
            .run(&self.model, &self.tokenizer, &self.cfg, &self.eos)?;
        let mut line = serde_json::to_value(&result)?;
        line["step"] = json!(step);
        self.dir.append_eval(&line)?;
        eprintln!("{}", result.summary(step));
        Ok(())
    }

    /// The generator and verifiers, starting after the batches `start` already has.
    pub fn start_pipeline(&self, start: &Start, stop: &Arc<AtomicBool>) -> Result<Pipeline> {
        Pipeline::start(GeneratorSpec {
            model: self.model.clone(),
            tokenizer: self.tokenizer.clone(),
            dataset: self.dataset.clone(),
            cfg: self.cfg.clone(),
            engine: self.cfg.engine_config(),
            eos: self.eos.clone(),
            weights_lock: self.weights_lock.clone(),
            stop: stop.clone(),
            next_batch: start.step + start.pending.batches.len() as u64,
            trained: start.step,
        })
    }

    fn export_dir(&self) -> PathBuf {
        self.dir.root.join("final")
    }

    /// Redraw the plots; failing to is reported, not fatal.
    pub fn redraw_plots(&self) {
        if let Err(e) = plots::draw_all(&self.dir.root) {
            eprintln!("rlvr: plots not updated: {e:#}");
        }
    }

    /// Write the trained model (full-precision weights) as an HF directory `final/`, unless
    /// `export_dtype` is `none`; under LoRA the PEFT adapter directory instead, or with
    /// `lora.merge` the HF directory of the merged weights.
    pub fn export(&self) -> Result<()> {
        let dtype = match self.cfg.export_dtype.as_str() {
            "none" => return Ok(()),
            "bf16" => DType::BF16,
            _ => DType::F32,
        };
        let out = self.export_dir();
        let weights = match self.model.lora() {
            Some(lora) if !self.cfg.lora.merge => {
                let base = match self.cfg.model.as_str() {
                    "default" => rlvr_models::DEFAULT_MODEL_ID,
                    other => other,
                };
                rlvr_models::peft::save_adapter(
                    &lora.config,
                    &self.trainer.full_precision_state_dict(),
                    base,
                    &out,
                    dtype,
                )?;
                eprintln!(
                    "rlvr: exported the trained LoRA adapter (PEFT) to {}",
                    out.display()
                );
                return Ok(());
            }
            Some(_) => self.model.merged_state_dict()?,
            None => self.trainer.full_precision_state_dict(),
        };
        rlvr_models::save_hf_dir_with(
            &self.model,
            &weights,
            &self.tokenizer,
            self.generation_config.as_ref(),
            &self.eos,
            &out,
            dtype,
        )?;
        eprintln!("rlvr: exported the trained model to {}", out.display());
        Ok(())
    }
}

/// Attach the run's LoRA adapters (`[lora]`): an existing PEFT adapter, or fresh ones.
fn attach_lora(cfg: &RunConfig, model: &mut Model) -> Result<()> {
    if let Some(dir) = &cfg.lora.adapter {
        return crate::common::attach_adapter(model, std::path::Path::new(dir), cfg.seed);
    }
    if let Some(lora) = cfg.lora.config(cfg.seed)? {
        let (rank, alpha, scale) = (lora.rank, lora.alpha, lora.scale());
        let modules = rlvr_models::peft::module_names(&lora.targets);
        model.attach_lora(lora)?;
        let n: usize = model.trainable().iter().map(|(_, v)| v.elem_count()).sum();
        eprintln!(
            "rlvr: LoRA r={rank} alpha={alpha} (scale {scale}) on {modules}: {n} trainable parameters of {}",
            model.num_parameters()
        );
    }
    Ok(())
}

fn load_model(cfg: &RunConfig) -> Result<LoadedModel> {
    ModelArgs {
        adapter: None,
        model: cfg.model.clone(),
        revision: None,
        device: cfg.device.clone(),
        dtype: cfg.dtype.clone(),
    }
    .load()
}
