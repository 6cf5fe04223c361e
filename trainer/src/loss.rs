//! The clipped-ratio policy loss, its aggregation modes and presets (GRPO, DAPO, Dr.GRPO, STAPO).
//!
//! Per token, with `u = exp(ℓ_θ − ℓ_prox)` and detached weight `c` (behaviour correction):
//! `L = −Σ_t w_t · c_t · min(u_t Â, clip(u_t, 1−ε_low, 1+ε_high) Â)`, where `w_t` is the
//! aggregation weight (0 for masked tokens). The clipped branch (`Â>0 ∧ u>1+ε_high` or
//! `Â<0 ∧ u<1−ε_low`, strict) contributes its constant value and an exactly zero gradient.
//!
//! Owns the loss arithmetic on a vector of ℓ_θ. Must not know the model, the batch layout or the
//! optimizer: per-token constants and weights come in, a scalar loss goes out.

use candle_core::{DType, Result, Tensor};
use serde::{Deserialize, Serialize};

use crate::advantage::AdvantageMode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    /// One global mean over the mini-batch's valid tokens (DAPO, STAPO).
    TokenMean,
    /// Mean over each sequence's valid tokens, then over sequences (GRPO).
    SeqMeanTokenMean,
    /// Each sequence's token sum divided by a constant (the max response length), then the mean
    /// over sequences (Dr.GRPO).
    SeqMeanTokenSumNorm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossPreset {
    Grpo,
    Dapo,
    DrGrpo,
    Stapo,
}

/// What a preset fixes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossSettings {
    pub advantage: AdvantageMode,
    pub eps_low: f64,
    pub eps_high: f64,
    pub aggregation: Aggregation,
    pub s2t: bool,
}

impl LossPreset {
    pub fn settings(self) -> LossSettings {
        let dapo = LossSettings {
            advantage: AdvantageMode::GroupZScore,
            eps_low: 0.2,
            eps_high: 0.28,
            aggregation: Aggregation::TokenMean,
            s2t: false,
        };
        match self {
            LossPreset::Grpo => LossSettings {
                eps_high: 0.2,
                aggregation: Aggregation::SeqMeanTokenMean,
                ..dapo
            },
            LossPreset::Dapo => dapo,
            LossPreset::DrGrpo => LossSettings {
                advantage: AdvantageMode::GroupMean,
                eps_high: 0.2,
                aggregation: Aggregation::SeqMeanTokenSumNorm,
                ..dapo
            },
            LossPreset::Stapo => LossSettings { s2t: true, ..dapo },
        }
    }
}

/// Aggregation weight of every token of a mini-batch (`valid[i][t]` = M_t of sequence i), or
/// `None` when no token is valid (the mini-batch is skipped). `norm_len` is Dr.GRPO's constant.
pub fn aggregation_weights(
    valid: &[Vec<bool>],
    agg: Aggregation,
    norm_len: usize,
) -> Option<Vec<Vec<f64>>> {
    let counts: Vec<usize> = valid
        .iter()
        .map(|v| v.iter().filter(|m| **m).count())
        .collect();
    let total: usize = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let nonempty = counts.iter().filter(|c| **c > 0).count() as f64;
    let n_seq = valid.len() as f64;
    Some(
        valid
            .iter()
            .zip(&counts)
            .map(|(v, &ci)| {
                let w = match agg {
                    Aggregation::TokenMean => 1.0 / total as f64,
                    Aggregation::SeqMeanTokenMean => 1.0 / (nonempty * ci.max(1) as f64),
                    Aggregation::SeqMeanTokenSumNorm => 1.0 / (n_seq * norm_len.max(1) as f64),
                };
                v.iter().map(|&m| if m { w } else { 0.0 }).collect()
            })
            .collect(),
    )
}

/// Clip settings of the surrogate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipSettings {
    pub eps_low: f64,
    pub eps_high: f64,
    /// GLM-5's direct double-sided IS band: tokens with u outside the open interval
    /// (1−ε_low, 1+ε_high) get no gradient and no loss.
    pub band_mask: bool,
}

/// Per-token constants of the surrogate (everything except ℓ_θ).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenTerms {
    pub advantage: f64,
    pub l_prox: f64,
    /// Behaviour correction `sg(c_t)`.
    pub is_weight: f64,
    /// Aggregation weight `w_t` (0 = masked).
    pub agg_weight: f64,
}

/// Counters from one surrogate evaluation (tokens with `agg_weight > 0` only).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SurrogateStats {
    pub tokens: usize,
    pub clipped: usize,
    pub band_masked: usize,
    pub ratio_sum: f64,
    pub ratio_max_abs_dev: f64,
}

impl SurrogateStats {
    /// Add the counters of another evaluation (micro-batch or mini-batch) to these.
    pub fn merge(&mut self, other: &SurrogateStats) {
        self.tokens += other.tokens;
        self.clipped += other.clipped;
        self.band_masked += other.band_masked;
        self.ratio_sum += other.ratio_sum;
        self.ratio_max_abs_dev = self.ratio_max_abs_dev.max(other.ratio_max_abs_dev);
    }
}

/// Unclipped tokens with |log-ratio| beyond 20 keep their value but get no gradient (counted as
/// clipped), so the backward stays finite.
pub const MAX_LOG_RATIO: f64 = 20.0;

/// Is the clipped branch active for ratio u and advantage a?
pub fn is_clipped(u: f64, a: f64, clip: &ClipSettings) -> bool {
    (a > 0.0 && u > 1.0 + clip.eps_high) || (a < 0.0 && u < 1.0 - clip.eps_low)
}

/// The surrogate loss for ℓ_θ (`[N]`, any float dtype, autograd-capable) and its constants.
/// The returned scalar has the exact value of the clipped objective and its exact gradient.
pub fn surrogate_loss(
    l_theta: &Tensor,
    terms: &[TokenTerms],
    clip: &ClipSettings,
) -> Result<(Tensor, SurrogateStats)> {
    let dtype = l_theta.dtype();
    let l_vals = l_theta.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    if l_vals.len() != terms.len() {
        candle_core::bail!("{} log-probs for {} token terms", l_vals.len(), terms.len());
    }
    // Per token, the coefficient of u in the differentiable part (0: no gradient).
    let mut coefs = Vec::with_capacity(terms.len());
    // Tokens without gradient read ℓ_prox := ℓ_θ's value, so their u is exactly 1 (never inf·0).
    let mut prox = Vec::with_capacity(terms.len());
    let mut constant = 0.0;
    let mut stats = SurrogateStats::default();
    for (&l, term) in l_vals.iter().zip(terms) {
        if term.agg_weight == 0.0 {
            coefs.push(0.0);
            prox.push(l);
            continue;
        }
        let log_ratio = l - term.l_prox;
        let u = log_ratio.exp();
        stats.tokens += 1;
        stats.ratio_sum += u;
        stats.ratio_max_abs_dev = stats.ratio_max_abs_dev.max((u - 1.0).abs());
        let coef = -term.agg_weight * term.is_weight * term.advantage;
        if clip.band_mask && !(u > 1.0 - clip.eps_low && u < 1.0 + clip.eps_high) {
            stats.band_masked += 1;
            coefs.push(0.0);
            prox.push(l);
        } else if is_clipped(u, term.advantage, clip) {
            stats.clipped += 1;
            coefs.push(0.0);
            prox.push(l);
            constant += coef * u.clamp(1.0 - clip.eps_low, 1.0 + clip.eps_high);
        } else if log_ratio.abs() > MAX_LOG_RATIO {
            stats.clipped += 1;
            coefs.push(0.0);
            prox.push(l);
            constant += coef * u;
        } else {
            coefs.push(coef);
            prox.push(term.l_prox);
        }
    }
    let dev = l_theta.device();
    let prox = Tensor::from_vec(prox, l_vals.len(), dev)?.to_dtype(dtype)?;
    let coefs = Tensor::from_vec(coefs, l_vals.len(), dev)?.to_dtype(dtype)?;
    let u = (l_theta - prox)?.exp()?;
    let loss = (u * coefs)?.sum_all()?.affine(1.0, constant)?;
    Ok((loss, stats))
}

/// `Σ_t w_t · k3_t` with `k3 = e^{ℓ_ref − ℓ_θ} − (ℓ_ref − ℓ_θ) − 1` (KL to a frozen reference).
pub fn k3_kl(l_theta: &Tensor, l_ref: &[f64], weights: &[f64]) -> Result<Tensor> {
    let dev = l_theta.device();
    let n = l_ref.len();
    let l_ref = Tensor::from_slice(l_ref, n, dev)?.to_dtype(l_theta.dtype())?;
    let w = Tensor::from_slice(weights, n, dev)?.to_dtype(l_theta.dtype())?;
    let r = (l_ref - l_theta)?;
    let k3 = ((r.exp()? - r)? - 1.0)?;
    (k3 * w)?.sum_all()
}

/// `Σ_t w_t · H_t` for entropies `[N]`.
pub fn weighted_sum(x: &Tensor, weights: &[f64]) -> Result<Tensor> {
    let w = Tensor::from_slice(weights, weights.len(), x.device())?.to_dtype(x.dtype())?;
    (x * w)?.sum_all()
}

#[cfg(test)]
mod tests;
