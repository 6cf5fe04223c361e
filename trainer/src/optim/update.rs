//! One parameter tensor's update within an optimizer step: the moments, the Magma / SkipUpdate
//! multiplier of the masked part, and the new weight, by the fused in-place CPU passes where
//! they apply (`fused.rs`) or else by composed candle ops (`adamw.rs`). Both give the same bits.
//!
//! Owns the order of a tensor's update. Must not know other tensors, the global norm or the mask
//! stream: the step hands it the clip factor and this tensor's draw.

use std::time::Instant;

use candle_core::Tensor;

use super::magma::{self, ScalarF64};
use super::stats::StepSums;
use super::{adamw, fused, OptimizerConfig, OptimizerKind, ParamState};
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

/// Update `p` for gradient `grad` and mask draw `z` (`None`: unmasked tensor).
pub(super) fn update_tensor(
    p: &mut ParamState,
    grad: &Tensor,
    z: Option<bool>,
    ctx: &StepCtx,
    sums: &mut StepSums,
) -> Result<()> {
    let decay_masked = ctx.cfg.magma.mask_weight_decay || !p.masked;
    // f32 weights on the CPU: fused in-place passes (bit-identical moments and weights).
    if p.master.is_none() && update_fused(p, grad, z, decay_masked, ctx, sums)? {
        return Ok(());
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
    apply_composed(p, mult, decay_masked, ctx, sums)
}

/// The fused CPU update: one in-place pass when the multiplier is known up front, two for a
/// masked Magma tensor (its multiplier needs the pass's cosine). False (nothing done) unless
/// θ, m, v and the gradient are contiguous f32 on the CPU.
fn update_fused(
    p: &mut ParamState,
    grad: &Tensor,
    z: Option<bool>,
    decay_masked: bool,
    ctx: &StepCtx,
    sums: &mut StepSums,
) -> Result<bool> {
    let needs_cosine = z.is_some() && ctx.cfg.kind == OptimizerKind::Magma;
    // Plain AdamW would need no sums at all (its update ratio is 1), but measured on an
    // AVX-512 EPYC the sum-free loop runs ~1.6x slower than the one with the displacement sums
    // (the compiler schedules the pure streaming loop worse), so AdamW keeps them.
    let sums_needed = if needs_cosine {
        fused::SumsNeeded::All
    } else {
        fused::SumsNeeded::Displacement
    };
    let update = fused::Update {
        lr: ctx.lr,
        t: ctx.t,
        clip: ctx.clip,
        decay: p.decay,
        decay_masked,
        sums: sums_needed,
    };
    let known_mult = if needs_cosine {
        None
    } else {
        Some(multiplier(p, z, |_| Ok(0.0), ctx, sums)?)
    };
    let theta = p.var.as_detached_tensor();
    let (m, v) = (&p.first_moment, &p.second_moment);
    let adamw = &ctx.cfg.adamw;
    let Some(pass) = fused::step(&theta, m, v, grad, &update, known_mult, adamw)? else {
        return Ok(false);
    };
    let mult = match known_mult {
        Some(mult) => mult,
        None => {
            let mult = multiplier(p, z, |_| Ok(pass.cosine()), ctx, sums)?;
            let (m, v) = (&p.first_moment, &p.second_moment);
            if !fused::apply(&theta, m, v, &update, mult, adamw)? {
                return Err(TrainerError::Optimizer(format!(
                    "{}: the weight pass could not follow the moment pass",
                    p.name
                )));
            }
            mult
        }
    };
    record_draw(p, z, mult, sums);
    sums.add_displacement(pass.masked_sq, pass.dense_sq, mult);
    Ok(true)
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
