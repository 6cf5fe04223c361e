//! AdamW with readable moments: the dense part shared by plain AdamW, Magma and SkipUpdate.
//!
//! Owns AdamW's tensor formulas (the composed path). Must not know masks, parameter names or
//! the step's order.

use candle_core::{DType, Result, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Decoupled weight decay λ (applied to matrices only: rank ≥ 2).
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// Dtype the moments (and the master copy of low-precision weights) are kept in.
pub fn state_dtype(param: DType) -> DType {
    if param == DType::F64 {
        DType::F64
    } else {
        DType::F32
    }
}

/// Dense moment update: `m ← β1 m + (1−β1) g`, `v ← β2 v + (1−β2) g²`.
pub fn update_moments(
    m: &Tensor,
    v: &Tensor,
    g: &Tensor,
    cfg: &AdamWConfig,
) -> Result<(Tensor, Tensor)> {
    let m = (m.affine(cfg.beta1, 0.0)? + g.affine(1.0 - cfg.beta1, 0.0)?)?;
    let v = (v.affine(cfg.beta2, 0.0)? + g.sqr()?.affine(1.0 - cfg.beta2, 0.0)?)?;
    Ok((m, v))
}

/// The Adam part of the displacement, `−lr·m̂/(√v̂+ε)`, with bias correction at step `t ≥ 1`.
pub fn adam_displacement(
    m: &Tensor,
    v: &Tensor,
    t: u64,
    lr: f64,
    cfg: &AdamWConfig,
) -> Result<Tensor> {
    let bc1 = 1.0 - cfg.beta1.powf(t as f64);
    let bc2 = 1.0 - cfg.beta2.powf(t as f64);
    let denom = v.affine(1.0 / bc2, 0.0)?.sqrt()?.affine(1.0, cfg.eps)?;
    m.affine(-lr / bc1, 0.0)?.div(&denom)
}

/// The decoupled weight-decay part of the displacement, `−lr·λ·θ`.
pub fn decay_displacement(theta: &Tensor, lr: f64, cfg: &AdamWConfig) -> Result<Tensor> {
    theta.affine(-lr * cfg.weight_decay, 0.0)
}
