//! The trainer's configuration (serde; every field has a default, see algorithms.md §1.6).
//!
//! Owns the knobs, their defaults and their validation. Must not know how a step uses them.

use serde::{Deserialize, Serialize};

use crate::advantage::AdvantageMode;
use crate::correction::CorrectionConfig;
use crate::error::{Result, TrainerError};
use crate::loss::{Aggregation, LossPreset, LossSettings};
use crate::optim::OptimizerConfig;
use crate::s2t::S2tConfig;

/// Where π_old (the proximal policy of the ratio) comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProximalMode {
    /// A no-grad forward at the current weights before the first mini-batch (decoupled
    /// objective; S2T uses its p and H).
    Recompute,
    /// Cheap mode: ℓ_prox := ℓ_b (the rollout's log-probs), no behaviour correction, S2T uses the
    /// runtime's raw (T = 1) log-prob and entropy.
    Rollout,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainerConfig {
    /// `grpo | dapo | dr_grpo | stapo`; the fields below override single settings.
    pub loss: LossPreset,
    pub eps_low: Option<f64>,
    pub eps_high: Option<f64>,
    pub aggregation: Option<Aggregation>,
    pub advantage: Option<AdvantageMode>,
    /// Force the S2T mask on or off.
    pub s2t: Option<bool>,
    /// Divide group-centred advantages by their std over the whole batch.
    pub batch_adv_norm: bool,
    pub s2t_tau_p: f64,
    pub s2t_quantile: f64,
    /// Dr.GRPO's normalising constant; default: the longest completion in the batch.
    pub max_response_len: Option<usize>,
    /// Coefficient of the k3 KL to a frozen reference (needs [`crate::Trainer::set_reference`]).
    pub kl_coef: f64,
    /// Coefficient of the entropy bonus.
    pub entropy_coef: f64,
    pub proximal: ProximalMode,
    /// Run the proximal forward with the fused inference kernels (less memory, faster). Off by
    /// default: the training numerics make u exactly 1 when the weights have not moved.
    pub proximal_fused_kernels: bool,
    pub correction: CorrectionConfig,
    /// GLM-5 direct double-sided IS: no gradient for tokens with u outside (1−ε_low, 1+ε_high).
    pub band_mask: bool,
    /// Sampling temperature of the rollouts: ℓ_θ and ℓ_prox come from logits / T.
    pub temperature: f64,
    /// Optimizer steps per rollout batch (groups are split evenly; at most one per group).
    pub num_minibatches: usize,
    /// Sequences per forward/backward (gradient accumulation inside a mini-batch).
    pub micro_batch_size: usize,
    /// Shuffle the group order (trainer RNG) before splitting into mini-batches.
    pub shuffle: bool,
    pub optimizer: OptimizerConfig,
    /// Seed of the trainer RNG (mini-batch shuffling).
    pub seed: u64,
    /// Token id used for right padding (any id works: padded positions are masked).
    pub pad_id: u32,
    /// Activation recomputation: the training forward keeps only the input of every
    /// `recompute_every`-th decoder layer and the backward recomputes the rest (same gradients,
    /// less memory, ~one more forward of compute). The CPU hand-written backward only.
    pub recompute_activations: bool,
    /// k of [`TrainerConfig::recompute_activations`]: one saved input per k layers.
    pub recompute_every: usize,
    /// Skip the forward/backward of micro-batches whose samples all have zero advantage when
    /// neither a KL nor an entropy term is on (their gradient is exactly zero); their tokens stay
    /// in the loss's denominators, so the gradient is bit for bit the one without skipping.
    pub skip_zero_advantage: bool,
    /// Train on the packed layout: each group's prompt computed once, then its completions
    /// (attending to the prompt and to themselves); micro-batches keep groups whole where they
    /// fit. Off: every sample is its own row `prompt + completion`.
    pub share_prompt: bool,
}

impl Default for TrainerConfig {
    fn default() -> Self {
        Self {
            loss: LossPreset::Stapo,
            eps_low: None,
            eps_high: None,
            aggregation: None,
            advantage: None,
            s2t: None,
            batch_adv_norm: false,
            s2t_tau_p: 0.002,
            s2t_quantile: 0.75,
            max_response_len: None,
            kl_coef: 0.0,
            entropy_coef: 0.0,
            proximal: ProximalMode::Recompute,
            proximal_fused_kernels: false,
            correction: CorrectionConfig::default(),
            band_mask: false,
            temperature: 1.0,
            num_minibatches: 4,
            micro_batch_size: 8,
            shuffle: true,
            optimizer: OptimizerConfig::default(),
            seed: 0,
            pad_id: 0,
            recompute_activations: false,
            recompute_every: 1,
            skip_zero_advantage: true,
            share_prompt: true,
        }
    }
}

impl TrainerConfig {
    /// The preset with this config's overrides applied.
    pub fn loss_settings(&self) -> LossSettings {
        let p = self.loss.settings();
        LossSettings {
            advantage: self.advantage.unwrap_or(p.advantage),
            eps_low: self.eps_low.unwrap_or(p.eps_low),
            eps_high: self.eps_high.unwrap_or(p.eps_high),
            aggregation: self.aggregation.unwrap_or(p.aggregation),
            s2t: self.s2t.unwrap_or(p.s2t),
        }
    }

    pub fn s2t_config(&self) -> S2tConfig {
        S2tConfig {
            tau_p: self.s2t_tau_p,
            quantile: self.s2t_quantile,
        }
    }

    /// `Some(k)` when activation recomputation is on.
    pub fn recompute(&self) -> Option<usize> {
        self.recompute_activations.then_some(self.recompute_every)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(TrainerError::Config(m));
        let s = self.loss_settings();
        if !(s.eps_low >= 0.0 && s.eps_low < 1.0 && s.eps_high >= 0.0) {
            return bad(format!(
                "clip range eps_low={} eps_high={}",
                s.eps_low, s.eps_high
            ));
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return bad(format!("temperature must be > 0, got {}", self.temperature));
        }
        if self.num_minibatches == 0 || self.micro_batch_size == 0 {
            return bad("num_minibatches and micro_batch_size must be ≥ 1".into());
        }
        if !(0.0..=1.0).contains(&self.s2t_quantile) {
            return bad(format!(
                "s2t_quantile must be in [0, 1], got {}",
                self.s2t_quantile
            ));
        }
        if self.recompute_activations && self.recompute_every == 0 {
            return bad("recompute_every must be ≥ 1".into());
        }
        if self.correction.tis_cap <= 0.0 || self.correction.icepop_beta < 1.0 {
            return bad("correction: tis_cap must be > 0 and icepop_beta ≥ 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::{LrSchedule, OptimizerKind};

    #[test]
    fn defaults_and_partial_json() {
        let d: TrainerConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(d, TrainerConfig::default());
        let s = d.loss_settings();
        assert!(s.s2t && (s.eps_low, s.eps_high) == (0.2, 0.28));
        assert_eq!((d.s2t_tau_p, d.s2t_quantile), (0.002, 0.75));
        assert_eq!(d.optimizer.max_grad_norm, Some(1.0));
        let c: TrainerConfig = serde_json::from_str(
            r#"{"loss": "dr_grpo", "eps_high": 0.3, "correction": {"mode": "icepop"},
                "optimizer": {"kind": "magma", "lr": 3e-6, "magma": {"p": 0.25},
                              "schedule": {"type": "cosine", "warmup_steps": 5,
                                           "total_steps": 100, "min_lr_ratio": 0.1}}}"#,
        )
        .unwrap();
        assert_eq!(
            c.loss_settings().aggregation,
            Aggregation::SeqMeanTokenSumNorm
        );
        assert_eq!(c.loss_settings().eps_high, 0.3);
        assert_eq!(c.optimizer.kind, OptimizerKind::Magma);
        assert_eq!((c.optimizer.magma.p, c.optimizer.magma.tau), (0.25, 2.0));
        assert!(matches!(c.optimizer.schedule, LrSchedule::Cosine { .. }));
        let back: TrainerConfig =
            serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        assert!(serde_json::from_str::<TrainerConfig>(r#"{"loss": "ppo"}"#).is_err());
        let bad = TrainerConfig {
            num_minibatches: 0,
            ..Default::default()
        };
        assert!(bad.validate().is_err());
    }
}
