//! What a train step reports ([`StepMetrics`]) and the running sums its mini-batch loop keeps
//! to fill it.
//!
//! Owns the metric definitions (means over optimizer steps, fractions over tokens). Must not
//! compute anything itself: it only adds up what the mini-batches and the optimizer return.

use serde::{Deserialize, Serialize};

use super::minibatch::MinibatchOut;
use crate::correction::MismatchStats;
use crate::loss::SurrogateStats;
use crate::optim::{MagmaStats, OptimStats};

/// What one `train_step` did. Fractions are over response tokens unless named otherwise.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// Train step T after this call.
    pub train_step: u64,
    /// Policy version V after this call.
    pub policy_version: u64,
    pub optimizer_steps: usize,
    pub skipped_empty_minibatches: usize,
    pub skipped_nonfinite_steps: usize,
    pub groups: usize,
    pub samples: usize,
    pub response_tokens: usize,
    pub reward_mean: f64,
    pub frac_zero_adv_groups: f64,
    /// Samples and completion tokens whose forward/backward was skipped for a zero advantage
    /// (`skip_zero_advantage`); the clip and ratio statistics cover the trained tokens only.
    pub zero_adv_skipped_samples: usize,
    pub zero_adv_skipped_tokens: usize,
    /// Mean over optimizer steps of the full loss (policy + KL − entropy bonus).
    pub loss: f64,
    pub pg_loss: f64,
    pub kl_ref: f64,
    pub entropy_bonus: f64,
    /// Clipped tokens over valid (M = 1) tokens.
    pub clip_frac: f64,
    pub band_masked_frac: f64,
    pub ratio_mean: f64,
    pub ratio_max_abs_dev: f64,
    pub s2t_masked_frac: f64,
    pub s2t_candidates: usize,
    pub s2t_masked: usize,
    #[serde(flatten)]
    pub mismatch: MismatchStats,
    /// Mean entropy (T = 1) of the response tokens' next-token distributions.
    pub entropy_mean: f64,
    pub lr: f64,
    pub grad_norm_pre_clip: f64,
    pub grad_norm_post_clip: f64,
    pub update_rms_ratio: f64,
    /// Magma / SkipUpdate statistics of the last optimizer step.
    pub magma: Option<MagmaStats>,
    /// Mean and max over samples of `V − min(policy_versions)` at the start of the step.
    pub version_lag_mean: f64,
    pub version_lag_max: u64,
    /// Max over groups of `T − t_start`.
    pub group_age_max: u64,
    pub timings: Timings,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub proximal_ms: f64,
    pub forward_backward_ms: f64,
    /// Forward+backward time the skipped zero-advantage tokens would have taken, estimated at
    /// this step's measured time per trained token.
    pub zero_adv_saved_ms: f64,
    pub optimizer_ms: f64,
    pub total_ms: f64,
    /// Response tokens trained on per second of forward+backward.
    pub train_tokens_per_s: f64,
    /// Peak memory during the step: on CUDA the high-water mark of candle's allocations, on the
    /// CPU the process's peak RSS (MiB; 0 where unknown).
    pub peak_memory_mb: f64,
}

/// Sums over a train step's mini-batches and optimizer steps.
#[derive(Default)]
pub(crate) struct StepTotals {
    surrogate: SurrogateStats,
    loss: f64,
    pg_loss: f64,
    kl: f64,
    entropy_bonus: f64,
    grad_norm_pre_clip: f64,
    grad_norm_post_clip: f64,
    update_rms_ratio: f64,
    pub forward_backward_s: f64,
    pub optimizer_s: f64,
    /// Completion tokens that went through a forward/backward.
    pub trained_tokens: usize,
}

impl StepMetrics {
    /// A mini-batch's mismatch and S2T counts (kept whether or not it steps).
    pub(crate) fn add_minibatch(&mut self, out: &MinibatchOut) {
        if let Some(acc) = &out.rollout_mismatch {
            self.mismatch = acc.finish();
        }
        self.s2t_candidates += out.s2t_candidates;
        self.s2t_masked += out.s2t_masked;
        self.zero_adv_skipped_samples += out.skipped_samples;
        self.zero_adv_skipped_tokens += out.skipped_tokens;
    }

    /// An optimizer step's outcome: counted as taken or skipped; LR and Magma stats of the last.
    pub(crate) fn add_step(&mut self, stats: &OptimStats) {
        if stats.skipped_nonfinite {
            self.skipped_nonfinite_steps += 1;
        } else {
            self.optimizer_steps += 1;
        }
        self.lr = stats.lr;
        if stats.magma.is_some() {
            self.magma = stats.magma.clone();
        }
    }
}

impl StepTotals {
    /// A stepped mini-batch: its loss terms and surrogate counters, and its optimizer step.
    pub fn add(&mut self, out: &MinibatchOut, stats: &OptimStats) {
        self.surrogate.merge(&out.stats);
        self.loss += out.loss;
        self.pg_loss += out.pg_loss;
        self.kl += out.kl;
        self.entropy_bonus += out.entropy;
        self.grad_norm_pre_clip += stats.grad_norm_pre_clip;
        self.grad_norm_post_clip += stats.grad_norm_post_clip;
        self.update_rms_ratio += stats.update_rms_ratio;
    }

    /// Means over optimizer steps, fractions over tokens, and the loop's timings.
    pub fn finish(&self, metrics: &mut StepMetrics) {
        let steps = (metrics.optimizer_steps + metrics.skipped_nonfinite_steps).max(1) as f64;
        metrics.loss = self.loss / steps;
        metrics.pg_loss = self.pg_loss / steps;
        metrics.kl_ref = self.kl / steps;
        metrics.entropy_bonus = self.entropy_bonus / steps;
        metrics.grad_norm_pre_clip = self.grad_norm_pre_clip / steps;
        metrics.grad_norm_post_clip = self.grad_norm_post_clip / steps;
        metrics.update_rms_ratio = self.update_rms_ratio / steps;
        let surrogate = &self.surrogate;
        let valid = surrogate.tokens.max(1) as f64;
        metrics.clip_frac = surrogate.clipped as f64 / valid;
        metrics.band_masked_frac = surrogate.band_masked as f64 / valid;
        metrics.ratio_mean = if surrogate.tokens > 0 {
            surrogate.ratio_sum / valid
        } else {
            1.0
        };
        metrics.ratio_max_abs_dev = surrogate.ratio_max_abs_dev;
        metrics.s2t_masked_frac = metrics.s2t_masked as f64 / metrics.response_tokens.max(1) as f64;
        metrics.timings.forward_backward_ms = self.forward_backward_s * 1e3;
        metrics.timings.optimizer_ms = self.optimizer_s * 1e3;
        metrics.timings.zero_adv_saved_ms = if self.trained_tokens > 0 {
            metrics.timings.forward_backward_ms * metrics.zero_adv_skipped_tokens as f64
                / self.trained_tokens as f64
        } else {
            0.0
        };
        metrics.timings.train_tokens_per_s = if self.forward_backward_s > 0.0 {
            surrogate.tokens as f64 / self.forward_backward_s
        } else {
            0.0
        };
    }
}
