//! Our own AdamW (readable moments), optionally wrapped by Magma or SkipUpdate, with global-norm
//! clipping and LR schedules. Parameters are updated in place (`Var::set`), so the runtime sees
//! the new weights with zero copies.
//!
//! This file owns the optimizer's configuration, its per-tensor state and the step: the global
//! norm and clip, the mask draws, then each tensor's update (`update.rs`). It must not know the
//! model, the loss or the trainer: it sees named `Var`s and gradients aligned with them.

pub mod adamw;
mod fused;
mod host_f32;
pub mod magma;
pub mod schedule;
mod state;
mod stats;
mod sum_sq;
mod update;
mod zeros;

use std::time::Instant;

use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

pub use adamw::AdamWConfig;
pub use magma::{MagmaConfig, MaskScope};
pub use schedule::LrSchedule;
pub use state::OptimizerScalars;
pub use stats::{MagmaStats, OptimStats};

use crate::error::{Result, TrainerError};
use crate::rng::SplitMix64;
use stats::StepSums;
use sum_sq::GradSums;
use update::StepCtx;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    AdamW,
    /// AdamW displacement, per-tensor Bernoulli(p) mask, damped by the alignment score s.
    Magma,
    /// AdamW displacement, per-tensor Bernoulli(p) mask, survivors rescaled by 1/p.
    SkipUpdate,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    pub lr: f64,
    pub schedule: LrSchedule,
    /// Global gradient-norm clip; `None` or ≤ 0 disables it.
    pub max_grad_norm: Option<f64>,
    pub adamw: AdamWConfig,
    pub magma: MagmaConfig,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            kind: OptimizerKind::AdamW,
            lr: 1e-5,
            schedule: LrSchedule::default(),
            max_grad_norm: Some(1.0),
            adamw: AdamWConfig::default(),
            magma: MagmaConfig::default(),
        }
    }
}

/// One parameter tensor's state.
pub struct ParamState {
    pub name: String,
    pub var: Var,
    /// Adam's first moment m (f32, or f64 for f64 weights). The fused CPU pass updates m and v
    /// in place: a clone kept across a step sees the new values.
    pub first_moment: Tensor,
    /// Adam's second moment v.
    pub second_moment: Tensor,
    /// f32 master copy of a low-precision (bf16/f16) weight.
    pub master: Option<Tensor>,
    /// Gets a Magma/SkipUpdate mask.
    pub masked: bool,
    /// Weight decay applies (matrices only).
    pub decay: bool,
    /// Magma alignment score s (masked tensors of a Magma optimizer only).
    pub align_score: Option<f64>,
    /// Last mask draw z (logging).
    pub last_mask: Option<bool>,
}

impl ParamState {
    fn new(name: String, var: Var, config: &OptimizerConfig) -> Result<Self> {
        let state_dtype = adamw::state_dtype(var.dtype());
        let first_moment = zeros::written_zeros(var.shape(), state_dtype, var.device())?;
        let second_moment = zeros::written_zeros(var.shape(), state_dtype, var.device())?;
        let master = if var.dtype() == state_dtype {
            None
        } else {
            Some(var.as_detached_tensor().to_dtype(state_dtype)?)
        };
        let masked =
            config.kind != OptimizerKind::AdamW && magma::is_masked(&name, config.magma.scope);
        let align_score =
            (masked && config.kind == OptimizerKind::Magma).then_some(config.magma.s0);
        Ok(ParamState {
            decay: var.rank() >= 2,
            name,
            var,
            first_moment,
            second_moment,
            master,
            masked,
            align_score,
            last_mask: None,
        })
    }
}

pub struct Optimizer {
    pub config: OptimizerConfig,
    params: Vec<ParamState>,
    /// Optimizer steps taken (t of the last step).
    steps_taken: u64,
    mask_rng: SplitMix64,
    mask_draws: u64,
}

impl OptimizerConfig {
    fn validate(&self) -> Result<()> {
        if !(self.lr >= 0.0 && self.lr.is_finite()) {
            return Err(TrainerError::Config(format!(
                "lr must be ≥ 0, got {}",
                self.lr
            )));
        }
        if self.kind != OptimizerKind::AdamW && !(self.magma.p > 0.0 && self.magma.p <= 1.0) {
            return Err(TrainerError::Config(format!(
                "magma.p must be in (0, 1], got {}",
                self.magma.p
            )));
        }
        if self.kind == OptimizerKind::Magma && self.magma.tau <= 0.0 {
            return Err(TrainerError::Config("magma.tau must be > 0".into()));
        }
        Ok(())
    }
}

impl Optimizer {
    /// Optimizer over named parameters (HF names decide the Magma mask scope).
    pub fn new(params: Vec<(String, Var)>, config: OptimizerConfig) -> Result<Self> {
        config.validate()?;
        let params = params
            .into_iter()
            .map(|(name, var)| ParamState::new(name, var, &config))
            .collect::<Result<Vec<_>>>()?;
        let mask_rng = SplitMix64::new(config.magma.seed);
        Ok(Self {
            config,
            params,
            steps_taken: 0,
            mask_rng,
            mask_draws: 0,
        })
    }

    pub fn params(&self) -> &[ParamState] {
        &self.params
    }

    /// Optimizer steps taken so far.
    pub fn t(&self) -> u64 {
        self.steps_taken
    }

    pub fn mask_rng(&self) -> SplitMix64 {
        self.mask_rng
    }

    /// Learning rate the next step will use.
    pub fn next_lr(&self) -> f64 {
        self.config
            .schedule
            .lr_at(self.config.lr, self.steps_taken + 1)
    }

    /// Clip `grads` (aligned with `params()`, `None` = no gradient) to the global norm, then take
    /// one step. A non-finite gradient norm skips the step (no moment update).
    pub fn step(&mut self, grads: &[Option<Tensor>]) -> Result<OptimStats> {
        let start = Instant::now();
        if grads.len() != self.params.len() {
            return Err(TrainerError::Optimizer(format!(
                "{} gradients for {} parameters",
                grads.len(),
                self.params.len()
            )));
        }
        let grad_sums = self.grad_sums(grads)?;
        let pre = grad_sums.iter().flatten().map(|s| s.gg).sum::<f64>().sqrt();
        let mut stats = OptimStats {
            lr: self.next_lr(),
            grad_norm_pre_clip: pre,
            ..Default::default()
        };
        if !pre.is_finite() {
            stats.skipped_nonfinite = true;
            stats.grad_norm_post_clip = pre;
            return Ok(stats);
        }
        let clip = match self.config.max_grad_norm {
            Some(max) if max > 0.0 && pre > max => max / (pre + 1e-6),
            _ => 1.0,
        };
        stats.grad_norm_post_clip = pre * clip;
        self.steps_taken += 1;
        let sums = self.update_all(grads, &grad_sums, stats.lr, clip)?;
        stats.update_rms_ratio = sums.update_rms_ratio();
        if self.config.kind != OptimizerKind::AdamW {
            stats.magma = Some(self.magma_stats(&sums));
        }
        stats.step_ms = start.elapsed().as_secs_f64() * 1e3;
        Ok(stats)
    }

    /// Every gradient's sums (`None` where there is none): `Σ g²` for the global norm, with
    /// `Σ m·g`, `Σ m²` for a fused Magma tensor's cosine.
    fn grad_sums(&self, grads: &[Option<Tensor>]) -> Result<Vec<Option<GradSums>>> {
        let items: Vec<(&Tensor, Option<&Tensor>)> = self
            .params
            .iter()
            .zip(grads)
            .filter_map(|(p, g)| {
                let g = g.as_ref()?;
                let with_m = update::needs_alignment_sums(p, g, &self.config);
                Some((g, with_m.then_some(&p.first_moment)))
            })
            .collect();
        let mut sums = sum_sq::grad_sums(&items)?.into_iter();
        Ok(grads
            .iter()
            .map(|g| g.as_ref().and_then(|_| sums.next()))
            .collect())
    }

    /// Every tensor's mask draw and update, at step `steps_taken`: the composed ones in turn,
    /// then the fused ones in one parallel pass.
    fn update_all(
        &mut self,
        grads: &[Option<Tensor>],
        grad_sums: &[Option<GradSums>],
        lr: f64,
        clip: f64,
    ) -> Result<StepSums> {
        let ctx = StepCtx {
            lr,
            t: self.steps_taken,
            clip,
            cfg: &self.config,
        };
        let mut sums = StepSums::default();
        let mut jobs = Vec::new();
        for ((p, grad), grad_sums) in self.params.iter_mut().zip(grads).zip(grad_sums) {
            // Draw every masked tensor's z every step, gradient or not: the stream stays aligned.
            let z = if p.masked {
                self.mask_draws += 1;
                sums.masked_params += p.var.elem_count();
                Some(self.mask_rng.bernoulli(ctx.cfg.magma.p))
            } else {
                sums.unmasked_params += p.var.elem_count();
                None
            };
            if let (Some(grad), Some(grad_sums)) = (grad, grad_sums) {
                jobs.extend(update::prepare(p, grad, z, grad_sums, &ctx, &mut sums)?);
            }
        }
        update::run_fused(&jobs, &ctx.cfg.adamw, &mut sums)?;
        Ok(sums)
    }

    fn magma_stats(&self, sums: &StepSums) -> MagmaStats {
        let scores: Vec<f64> = self.params.iter().filter_map(|p| p.align_score).collect();
        let draws: Vec<bool> = self.params.iter().filter_map(|p| p.last_mask).collect();
        MagmaStats::new(self.config.kind, &self.config.magma, &scores, &draws, sums)
    }
}

#[cfg(test)]
mod tests;
