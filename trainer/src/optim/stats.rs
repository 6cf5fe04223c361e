//! What an optimizer step reports (algorithms.md §2.8), and the sums a step keeps over its
//! tensors to report it.
//!
//! Owns the statistics' definitions. Must not touch parameters or moments: it only reads the
//! numbers the per-tensor updates hand it.

use serde::{Deserialize, Serialize};

use super::{MagmaConfig, OptimizerKind};

/// Statistics of one optimizer step (algorithms.md §2.8).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OptimStats {
    pub lr: f64,
    pub grad_norm_pre_clip: f64,
    pub grad_norm_post_clip: f64,
    /// The step was skipped because the gradient norm was not finite.
    pub skipped_nonfinite: bool,
    /// RMS of the applied update over RMS of the base (AdamW) displacement, all tensors.
    pub update_rms_ratio: f64,
    pub magma: Option<MagmaStats>,
    pub step_ms: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MagmaStats {
    pub s_mean: f64,
    pub s_min: f64,
    pub s_max: f64,
    pub cos_mean: f64,
    pub cos_neg_frac: f64,
    /// Realised fraction of masked tensors whose update survived.
    pub survival_frac: f64,
    /// `mean(z·s)` (Magma) or `mean(z/p)` (SkipUpdate) over masked tensors.
    pub eff_mult_mean: f64,
    /// Its expectation: `p·mean(s)` (Magma) or 1 (SkipUpdate).
    pub eff_mult_expected: f64,
    pub masked_tensors: usize,
    pub masked_params: usize,
    pub unmasked_params: usize,
    pub overhead_ms: f64,
}

/// Sums over the tensors of one step.
#[derive(Default)]
pub(super) struct StepSums {
    /// `Σ ‖base displacement‖²` and `Σ ‖applied displacement‖²`.
    base_sq: f64,
    applied_sq: f64,
    /// Magma's alignment computation.
    pub overhead_s: f64,
    pub cosines: Vec<f64>,
    /// The multiplier of every masked tensor that had a gradient.
    pub multipliers: Vec<f64>,
    pub masked_params: usize,
    pub unmasked_params: usize,
}

impl StepSums {
    /// A tensor's displacement: its masked part (scaled by `mult` when applied) and its dense
    /// part (always applied), as squared norms.
    pub fn add_displacement(&mut self, masked_sq: f64, dense_sq: f64, mult: f64) {
        self.base_sq += masked_sq + dense_sq;
        self.applied_sq += mult * mult * masked_sq + dense_sq;
    }

    pub fn update_rms_ratio(&self) -> f64 {
        if self.base_sq > 0.0 {
            (self.applied_sq / self.base_sq).sqrt()
        } else {
            1.0
        }
    }
}

fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

/// Fraction of `xs` for which `pred` holds (0 when empty).
fn frac<T>(xs: &[T], pred: impl Fn(&T) -> bool) -> f64 {
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().filter(|x| pred(x)).count() as f64 / xs.len() as f64
    }
}

impl MagmaStats {
    /// From the alignment scores and last mask draws of the masked tensors, and the step's sums.
    pub(super) fn new(
        kind: OptimizerKind,
        cfg: &MagmaConfig,
        scores: &[f64],
        draws: &[bool],
        sums: &StepSums,
    ) -> Self {
        let s_mean = mean(scores);
        MagmaStats {
            s_mean,
            s_min: scores.iter().copied().fold(f64::INFINITY, f64::min),
            s_max: scores.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            cos_mean: mean(&sums.cosines),
            cos_neg_frac: frac(&sums.cosines, |c| *c < 0.0),
            survival_frac: frac(draws, |z| *z),
            eff_mult_mean: mean(&sums.multipliers),
            eff_mult_expected: match kind {
                OptimizerKind::Magma if cfg.damping => cfg.p * s_mean,
                OptimizerKind::Magma => cfg.p,
                _ => 1.0,
            },
            masked_tensors: draws.len(),
            masked_params: sums.masked_params,
            unmasked_params: sums.unmasked_params,
            overhead_ms: sums.overhead_s * 1e3,
        }
    }
}
