//! The trainer step (algorithms.md §3.4): proximal no-grad forward → behaviour correction and
//! S2T mask → `n_mb` mini-batches with micro-batch gradient accumulation → clip → optimizer step
//! (`policy_version += 1` each) → `train_step += 1`.
//!
//! This file owns the [`Trainer`] (its state, locks and counters) and the step loop; the stages
//! live in `prepare.rs` (once per step), `minibatch.rs` (one gradient) and `forward.rs` (every
//! call into the model). It must not know the model's internals nor the optimizer's arithmetic.

mod forward;
mod metrics;
mod minibatch;
mod prepare;
mod rows;
mod support;

use std::ops::{Deref, Range};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use candle_core::Tensor;
use rlvr_models::Model;

use crate::config::TrainerConfig;
use crate::data::ScoredGroup;
use crate::error::Result;
use crate::loss::LossSettings;
use crate::optim::{OptimStats, Optimizer};
use crate::rng::SplitMix64;
pub(crate) use forward::{accumulate_grads, micro_grads, train_forward_rows, RowsForward};
use metrics::StepTotals;
pub use metrics::{StepMetrics, Timings};
use prepare::Seq;
pub(crate) use rows::MicroRows;

/// The RL trainer. It shares the model's `Var`s: optimizer steps are visible to every holder of
/// the model (the runtime) at once.
pub struct Trainer<M: Deref<Target = Model>> {
    pub(crate) model: M,
    pub(crate) config: TrainerConfig,
    pub(crate) settings: LossSettings,
    pub(crate) optimizer: Optimizer,
    pub(crate) rng: SplitMix64,
    pub(crate) train_step: u64,
    pub(crate) policy_version: Arc<AtomicU64>,
    reference: Option<Model>,
    weight_lock: Option<Arc<RwLock<()>>>,
}

impl<M: Deref<Target = Model>> Trainer<M> {
    pub fn new(model: M, config: TrainerConfig) -> Result<Self> {
        config.validate()?;
        if config.recompute_activations && !model.supports_taped_backward() {
            return Err(crate::error::TrainerError::Config(format!(
                "recompute_activations needs the hand-written backward (a CPU f32/f64 model), not \
                 {:?} {:?}: candle's autograd keeps every activation",
                model.device().location(),
                model.dtype()
            )));
        }
        // The optimizer's parameters are the model's trainable vars (the adapters under LoRA),
        // in order: gradients line up with both.
        let params = model
            .trainable()
            .into_iter()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect();
        let optimizer = Optimizer::new(params, config.optimizer.clone())?;
        Ok(Self {
            settings: config.loss_settings(),
            rng: SplitMix64::new(config.seed),
            optimizer,
            model,
            config,
            train_step: 0,
            policy_version: Arc::new(AtomicU64::new(0)),
            reference: None,
            weight_lock: None,
        })
    }

    /// Share a policy-version counter with the runtime (its current value is kept).
    pub fn with_policy_version(mut self, v: Arc<AtomicU64>) -> Self {
        self.policy_version = v;
        self
    }

    /// Take this lock for reading around forwards and for writing around optimizer steps.
    pub fn with_weight_lock(mut self, lock: Arc<RwLock<()>>) -> Self {
        self.weight_lock = Some(lock);
        self
    }

    /// A frozen reference model for the KL term (`kl_coef > 0`).
    pub fn set_reference(&mut self, reference: Model) {
        self.reference = Some(reference);
    }

    pub fn policy_version(&self) -> u64 {
        self.policy_version.load(Ordering::SeqCst)
    }

    /// Rollout batches consumed so far (T).
    pub fn train_step_count(&self) -> u64 {
        self.train_step
    }

    pub fn config(&self) -> &TrainerConfig {
        &self.config
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn optimizer(&self) -> &Optimizer {
        &self.optimizer
    }

    fn read_lock(&self) -> Option<RwLockReadGuard<'_, ()>> {
        self.weight_lock
            .as_ref()
            .map(|l| l.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn write_lock(lock: &Option<Arc<RwLock<()>>>) -> Option<RwLockWriteGuard<'_, ()>> {
        lock.as_ref()
            .map(|l| l.write().unwrap_or_else(|e| e.into_inner()))
    }

    /// The weights at full precision, HF names: the optimizer's f32 masters where the model's
    /// weights are bf16/f16, else the weights themselves (for exports).
    pub fn full_precision_state_dict(&self) -> std::collections::BTreeMap<String, Tensor> {
        self.optimizer
            .params()
            .iter()
            .map(|p| {
                let t = match &p.master {
                    Some(master) => master.clone(),
                    None => p.var.as_detached_tensor(),
                };
                (p.name.clone(), t)
            })
            .collect()
    }

    /// Consume one rollout batch: `n_mb` optimizer steps.
    pub fn train_step(&mut self, groups: &[ScoredGroup]) -> Result<StepMetrics> {
        let start = Instant::now();
        let device = self.model.device().clone();
        rlvr_models::device_mem::reset_peak(&device);
        let prep = self.prepare(groups)?;
        let mut metrics = prep.metrics.clone();
        let mut totals = StepTotals::default();
        for k in 0..prep.minibatches.len() {
            let timer = Instant::now();
            let out = self.minibatch(&prep, k)?;
            totals.forward_backward_s += timer.elapsed().as_secs_f64();
            metrics.add_minibatch(&out);
            totals.trained_tokens += out.trained_tokens;
            let Some(grads) = &out.grads else {
                metrics.skipped_empty_minibatches += 1;
                continue;
            };
            let timer = Instant::now();
            let stats = self.optimizer_step(grads)?;
            totals.optimizer_s += timer.elapsed().as_secs_f64();
            metrics.add_step(&stats);
            totals.add(&out, &stats);
        }
        if metrics.optimizer_steps + metrics.skipped_nonfinite_steps == 0 {
            metrics.lr = self.optimizer.next_lr();
        }
        totals.finish(&mut metrics);
        self.train_step += 1;
        metrics.train_step = self.train_step;
        metrics.policy_version = self.policy_version();
        metrics.timings.total_ms = start.elapsed().as_secs_f64() * 1e3;
        metrics.timings.peak_memory_mb = rlvr_models::device_mem::peak_mib(&device);
        Ok(metrics)
    }

    /// The micro-batches of mini-batch `mb` (the same for the no-grad forwards and training, so
    /// that with unchanged weights the ratio is exactly 1).
    pub(crate) fn micro_batches(&self, seqs: &[Seq], mb: &Range<usize>) -> Vec<Range<usize>> {
        let cfg = &self.config;
        micro_batches(seqs, mb, cfg.micro_batch_size, cfg.share_prompt)
    }

    /// One optimizer step under the write lock; a taken step bumps the policy version.
    fn optimizer_step(&mut self, grads: &[Option<Tensor>]) -> Result<OptimStats> {
        let _w = Self::write_lock(&self.weight_lock);
        let stats = self.optimizer.step(grads)?;
        if !stats.skipped_nonfinite {
            self.policy_version.fetch_add(1, Ordering::SeqCst);
        }
        Ok(stats)
    }
}

/// The micro-batches of the sequences `r` of `seqs`: consecutive ranges of at most `size`.
/// Unshared, cut every `size` sequences; with shared prompts (`by_group`), whole groups are kept
/// together where they fit, and a group larger than `size` is split by whole completions.
fn micro_batches(seqs: &[Seq], r: &Range<usize>, size: usize, by_group: bool) -> Vec<Range<usize>> {
    let size = size.max(1);
    let mut out = Vec::new();
    let mut start = r.start;
    if by_group {
        let mut g = r.start;
        while g < r.end {
            let ge = (g..r.end)
                .find(|&i| seqs[i].group != seqs[g].group)
                .unwrap_or(r.end);
            // The current micro-batch is start..g; close it if this group does not fit.
            if ge - start > size && g > start {
                out.push(start..g);
                start = g;
            }
            while ge - start > size {
                out.push(start..start + size);
                start += size;
            }
            g = ge;
        }
    }
    while start < r.end {
        let end = (start + size).min(r.end);
        out.push(start..end);
        start = end;
    }
    out
}

#[cfg(test)]
mod lora_tests;
#[cfg(test)]
mod mask_tests;
#[cfg(test)]
mod share_tests;
#[cfg(test)]
mod skip_tests;
#[cfg(test)]
mod tests;
