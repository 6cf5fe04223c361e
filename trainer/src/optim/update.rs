//! One parameter tensor's update within an optimizer step: the moments, the Magma / SkipUpdate
//! multiplier of the masked part, and the new weight, by the fused in-place CPU pass where it
//! applies (`fused.rs`) or else by composed candle ops (`adamw.rs`). Both give the same bits.
//! A fused update is prepared here (its multiplier fixed) and run with the step's other fused
//! updates in one parallel pass ([`run_fused`]), so that no core waits at each tensor's end.
//!
//! Owns the order of a tensor's update. Must not know other tensors, the global norm or the mask
//! stream: the step hands it the clip factor, this tensor's draw and its gradient sums.

use std::time::Instant;

use candle_core::Tensor;
use rayon::prelude::*;

use super::host_f32::is_host_f32;
use super::magma::{self, ScalarF64};
use super::stats::StepSums;
use super::sum_sq::GradSums;
use super::{adamw, fused, AdamWConfig, OptimizerConfig, OptimizerKind, ParamState};
use crate::error::{Result, TrainerError};

/// What every tensor of a step shares.
pub(super) struct StepCtx<'a> {
    pub lr: f64,
    /// Optimizer step, from 1.
    pub t: u64,
    /// Global-norm clip factor of the gradients (1 = none).
    pub clip: f64,
    pub cfg: &'a OptimizerConfig,
}

/// Whether `p`'s update for `grad` takes the fused CPU pass: an f32 weight (no master copy)
/// with θ, m, v and the gradient contiguous f32 on the CPU, all of one size.
pub(super) fn fuses(p: &ParamState, grad: &Tensor) -> bool {
    let n = p.var.elem_count();
    let (m, v) = (&p.first_moment, &p.second_moment);
    p.master.is_none()
        && [p.var.as_tensor(), m, v, grad]
            .iter()
            .all(|t| is_host_f32(t) && t.elem_count() == n)
}

/// Whether the gradient-norm pass must also sum `p`'s first moment against `grad`: the cosine
/// of a fused masked Magma tensor comes from those sums.
pub(super) fn needs_alignment_sums(p: &ParamState, grad: &Tensor, cfg: &OptimizerConfig) -> bool {
    p.masked && cfg.kind == OptimizerKind::Magma && fuses(p, grad)
}

/// A fused update, its multiplier fixed, for [`run_fused`].
pub(super) struct FusedJob {
    name: String,
    theta: Tensor,
    m: Tensor,
    v: Tensor,
    grad: Tensor,
    update: fused::Update,
}

/// Update `p` for gradient `grad` and mask draw `z` (`None`: unmasked tensor), given its
/// gradient-norm pass sums: by composed ops here, or returned as a job for the fused pass.
pub(super) fn prepare(
    p: &mut ParamState,
    grad: &Tensor,
    z: Option<bool>,
    grad_sums: &GradSums,
    ctx: &StepCtx,
    sums: &mut StepSums,
) -> Result<Option<FusedJob>> {
    let decay_masked = ctx.cfg.magma.mask_weight_decay || !p.masked;
    if fuses(p, grad) {
        let beta1 = ctx.cfg.adamw.beta1;
        let GradSums { gg, mg, mm } = *grad_sums;
        let cosine = |_: &ParamState| Ok(magma::cosine_from_sums(gg, mg, mm, ctx.clip, beta1));
        let mult = multiplier(p, z, cosine, ctx, sums)?;
        record_draw(p, z, mult, sums);
        return Ok(Some(FusedJob {
            name: p.name.clone(),
            theta: p.var.as_detached_tensor(),
            m: p.first_moment.clone(),
            v: p.second_moment.clone(),
            grad: grad.clone(),
            update: fused::Update {
                lr: ctx.lr,
                t: ctx.t,
                clip: ctx.clip,
                decay: p.decay,
                decay_masked,
                mult,
            },
        }));
    }
    let clipped_grad = update_moments(p, grad, ctx)?;
    let mult = multiplier(
        p,
        z,
        |p| Ok(magma::cosine(&p.first_moment, &clipped_grad)?),
        ctx,
        sums,
    )?;
    record_draw(p, z, mult, sums);
    apply_composed(p, mult, decay_masked, ctx, sums)?;
    Ok(None)
}

/// The fused updates, all tensors in one parallel pass (each also chunk-parallel inside); their
/// displacement sums are added in order.
pub(super) fn run_fused(jobs: &[FusedJob], cfg: &AdamWConfig, sums: &mut StepSums) -> Result<()> {
    let passes = jobs
        .par_iter()
        .map(|j| fused::step(&j.theta, &j.m, &j.v, &j.grad, &j.update, cfg))
        .collect::<Result<Vec<_>>>()?;
    for (job, pass) in jobs.iter().zip(passes) {
        let Some(pass) = pass else {
            return Err(TrainerError::Optimizer(format!(
                "{}: the fused pass did not apply to its tensors",
                job.name
            )));
        };
        sums.add_displacement(pass.masked_sq, pass.dense_sq, job.update.mult);
    }
    Ok(())
}

/// Keep a masked tensor's draw and the multiplier it led to.
fn record_draw(p: &mut ParamState, z: Option<bool>, mult: f64, sums: &mut StepSums) {
    if z.is_some() {
        p.last_mask = z;
        sums.multipliers.push(mult);
    }
}

/// `m ← β1 m + (1−β1) g`, `v ← β2 v + (1−β2) g²` for the clipped gradient, by composed ops;
/// returns the clipped gradient.
fn update_moments(p: &mut ParamState, grad: &Tensor, ctx: &StepCtx) -> Result<Tensor> {
    let grad = grad.to_dtype(p.first_moment.dtype())?;
    let clipped_grad = if ctx.clip != 1.0 {
        grad.affine(ctx.clip, 0.0)?
    } else {
        grad
    };
    let (m, v) = adamw::update_moments(
        &p.first_moment,
        &p.second_moment,
        &clipped_grad,
        &ctx.cfg.adamw,
    )?;
    p.first_moment = m;
    p.second_moment = v;
    Ok(clipped_grad)
}

/// The masked part's multiplier: Magma's `z·s` (after the alignment EMA of s, from the
/// tensor's `cosine`), SkipUpdate's `z/p`, 1 for unmasked tensors and plain AdamW.
fn multiplier(
    p: &mut ParamState,
    z: Option<bool>,
    cosine: impl FnOnce(&ParamState) -> Result<f64>,
    ctx: &StepCtx,
    sums: &mut StepSums,
) -> Result<f64> {
    let cfg = &ctx.cfg.magma;
    let Some(z) = z else { return Ok(1.0) };
    match ctx.cfg.kind {
        OptimizerKind::Magma => {
            let timer = Instant::now();
            let cosine = cosine(p)?;
            let score = magma::ema_update(p.align_score.unwrap_or(cfg.s0), cosine, cfg);
            p.align_score = Some(score);
            sums.cosines.push(cosine);
            sums.overhead_s += timer.elapsed().as_secs_f64();
            Ok(if cfg.damping {
                magma::magma_multiplier(z, score)
            } else if z {
                1.0
            } else {
                0.0
            })
        }
        OptimizerKind::SkipUpdate => Ok(magma::skip_update_multiplier(z, cfg.p)),
        OptimizerKind::AdamW => Ok(1.0),
    }
}

/// The weight the update starts from: the f32 master of a low-precision weight, else the weight.
fn theta(p: &ParamState) -> Tensor {
    match &p.master {
        Some(master) => master.clone(),
        None => p.var.as_detached_tensor(),
    }
}

/// `θ + mult·masked + dense` from composed candle ops: the Adam displacement, the decay, and
/// their split into the masked part and the dense part.
fn apply_composed(
    p: &mut ParamState,
    mult: f64,
    decay_masked: bool,
    ctx: &StepCtx,
    sums: &mut StepSums,
) -> Result<()> {
    let cfg = &ctx.cfg.adamw;
    let theta = theta(p);
    let adam = adamw::adam_displacement(&p.first_moment, &p.second_moment, ctx.t, ctx.lr, cfg)?;
    let decay = if p.decay && cfg.weight_decay != 0.0 {
        Some(adamw::decay_displacement(&theta, ctx.lr, cfg)?)
    } else {
        None
    };
    // Masked part and dense part of the displacement.
    let (masked_part, dense_part) = match decay {
        Some(d) if decay_masked => ((adam + d)?, None),
        Some(d) => (adam, Some(d)),
        None => (adam, None),
    };
    let masked_sq = masked_part.sqr()?.sum_all()?.to_scalar_f64()?;
    let dense_sq = match &dense_part {
        Some(d) => d.sqr()?.sum_all()?.to_scalar_f64()?,
        None => 0.0,
    };
    sums.add_displacement(masked_sq, dense_sq, mult);
    if let Some(new_theta) = displaced(&theta, masked_part, dense_part, mult)? {
        set_theta(p, new_theta)?;
    }
    Ok(())
}

/// `θ + mult·masked + dense`, or `None` when nothing moves (mult = 0, no dense part).
fn displaced(
    theta: &Tensor,
    masked_part: Tensor,
    dense_part: Option<Tensor>,
    mult: f64,
) -> Result<Option<Tensor>> {
    Ok(match (mult == 0.0, dense_part) {
        (true, None) => None,
        (true, Some(d)) => Some((theta + d)?),
        (false, dense) => {
            let upd = if mult == 1.0 {
                masked_part
            } else {
                masked_part.affine(mult, 0.0)?
            };
            let moved = (theta + upd)?;
            Some(match dense {
                Some(d) => (moved + d)?,
                None => moved,
            })
        }
    })
}

/// Write the new weight: into the master and, cast, into the shared `Var` for low-precision
/// weights; into the `Var` otherwise.
fn set_theta(p: &mut ParamState, new_theta: Tensor) -> Result<()> {
    match &mut p.master {
        Some(master) => {
            p.var.set(&new_theta.to_dtype(p.var.dtype())?)?;
            *master = new_theta;
        }
        None => p.var.set(&new_theta)?,
    }
    Ok(())
}
