//! One mini-batch's gradient (algorithms.md §3.4): the S2T mask over the whole mini-batch, the
//! aggregation weights, then per micro-batch the training forward, the loss (clipped surrogate,
//! KL to the reference, entropy bonus) and its backward, summed.
//!
//! Owns the loss terms of a token and the gradient accumulation. Must not know the optimizer
//! (it returns gradients, it never steps) nor the model's internals (see [`super::forward`]).

use std::ops::Deref;

use candle_core::{DType, Tensor};
use rlvr_models::Model;

use super::forward::{accumulate_grads, micro_grads, train_forward, MicroOut};
use super::prepare::{Prepared, Seq};
use super::Trainer;
use crate::config::ProximalMode;
use crate::correction::{IsWeight, MismatchAcc};
use crate::error::Result;
use crate::loss::{
    aggregation_weights, k3_kl, surrogate_loss, weighted_sum, ClipSettings, SurrogateStats,
    TokenTerms,
};
use crate::s2t::{s2t_mask, S2tToken};

/// One mini-batch's loss terms and gradient (`grads = None`: empty valid set, skip the step).
#[derive(Default)]
pub(crate) struct MinibatchOut {
    pub loss: f64,
    pub pg_loss: f64,
    pub kl: f64,
    pub entropy: f64,
    pub stats: SurrogateStats,
    pub s2t_candidates: usize,
    pub s2t_masked: usize,
    /// Aligned with the optimizer's parameters.
    pub grads: Option<Vec<Option<Tensor>>>,
    /// ℓ_θ of the training forward vs ℓ_b (rollout mode, first mini-batch only).
    pub rollout_mismatch: Option<MismatchAcc>,
    /// Samples and completion tokens whose forward/backward was skipped (zero advantage).
    pub skipped_samples: usize,
    pub skipped_tokens: usize,
    /// Completion tokens that went through a forward/backward.
    pub trained_tokens: usize,
}

impl<M: Deref<Target = Model>> Trainer<M> {
    /// S2T mask, aggregation weights, and the accumulated gradient of mini-batch `k` over its
    /// micro-batches (normalisation global to the mini-batch). No optimizer step.
    pub(crate) fn minibatch(&self, prep: &Prepared, k: usize) -> Result<MinibatchOut> {
        let cfg = &self.config;
        // With ℓ_prox = ℓ_b there is no proximal forward to compare the rollout with: the first
        // mini-batch's training forward (no update of this step yet) takes its place.
        let measure_mismatch = k == 0 && cfg.proximal == ProximalMode::Rollout;
        let mb = prep.minibatches[k].clone();
        let mut out = MinibatchOut::default();
        let valid = self.valid_tokens(&prep.seqs[mb.clone()], &mut out);
        let aggregation = self.settings.aggregation;
        let Some(weights) = aggregation_weights(&valid, aggregation, prep.norm_len) else {
            return Ok(out);
        };
        // The optimizer's parameters are the model's trainable vars in order (Trainer::new).
        let mut grads: Vec<Option<Tensor>> = vec![None; self.optimizer.params().len()];
        let skip_zero_adv = self.skips_zero_advantage();
        for micro in self.micro_batches(&prep.seqs, &mb) {
            let rel = (micro.start - mb.start)..(micro.end - mb.start);
            let agg: Vec<f64> = weights[rel].iter().flatten().copied().collect();
            if agg.iter().all(|x| *x == 0.0) {
                continue;
            }
            let seqs = &prep.seqs[micro];
            if skip_zero_adv && seqs.iter().all(|s| s.advantage == 0.0) {
                // Exactly zero gradient: only the denominators (already in `agg`) needed them.
                out.skipped_samples += seqs.len();
                out.skipped_tokens += seqs.iter().map(Seq::len).sum::<usize>();
                continue;
            }
            out.trained_tokens += seqs.iter().map(Seq::len).sum::<usize>();
            let _guard = self.read_lock();
            let fwd = train_forward(&self.model, seqs, cfg, cfg.entropy_coef != 0.0)?;
            if measure_mismatch {
                let acc = out.rollout_mismatch.get_or_insert_with(Default::default);
                add_rollout_mismatch(acc, &fwd.l_theta, seqs)?;
            }
            let loss = self.micro_loss(&fwd, seqs, &agg, &mut out)?;
            accumulate_grads(&mut grads, micro_grads(&self.model, fwd, &loss)?)?;
        }
        if out.trained_tokens == 0 {
            // Everything was skipped: the zero gradient the full path would have summed, so the
            // optimizer still steps every parameter (moments, weight decay) as without skipping.
            grads = self.zero_grads()?;
        }
        out.grads = Some(grads);
        Ok(out)
    }

    /// Whether zero-advantage micro-batches may be skipped: on, and no term (KL, entropy bonus)
    /// gives their tokens a gradient.
    fn skips_zero_advantage(&self) -> bool {
        let cfg = &self.config;
        cfg.skip_zero_advantage && cfg.kl_coef == 0.0 && cfg.entropy_coef == 0.0
    }

    /// A zero gradient for every parameter, in the accumulation dtype.
    fn zero_grads(&self) -> Result<Vec<Option<Tensor>>> {
        let mut grads = vec![None; self.optimizer.params().len()];
        // The optimizer's parameters: the model's trainable vars (the adapters under LoRA).
        let zeros = self
            .optimizer
            .params()
            .iter()
            .map(|p| p.var.as_detached_tensor().zeros_like().map(Some))
            .collect::<candle_core::Result<Vec<_>>>()?;
        accumulate_grads(&mut grads, zeros)?;
        Ok(grads)
    }

    /// Per sequence, the tokens that count: kept by the behaviour correction and by S2T (run over
    /// the whole mini-batch before any backward, §1.8.6). Records the S2T counts in `out`.
    fn valid_tokens(&self, seqs: &[Seq], out: &mut MinibatchOut) -> Vec<Vec<bool>> {
        let keep_s2t: Vec<Vec<bool>> = if self.settings.s2t {
            // Over the model's tokens only: inserted ones are in no S2T statistic.
            let toks: Vec<S2tToken> = seqs
                .iter()
                .flat_map(|s| {
                    (0..s.len())
                        .filter(|&t| s.generated[t])
                        .map(move |t| S2tToken {
                            advantage: s.advantage,
                            prob: s.prob[t],
                            entropy: s.entropy[t],
                        })
                })
                .collect();
            let mask = s2t_mask(&toks, &self.config.s2t_config());
            out.s2t_candidates = mask.candidates;
            out.s2t_masked = mask.masked;
            let mut it = mask.keep.into_iter();
            seqs.iter()
                .map(|s| {
                    let it = &mut it;
                    s.generated
                        .iter()
                        .map(|&g| g && it.next().unwrap_or(false))
                        .collect()
                })
                .collect()
        } else {
            seqs.iter().map(|s| vec![true; s.len()]).collect()
        };
        seqs.iter()
            .zip(&keep_s2t)
            .map(|(s, k)| s.is_keep.iter().zip(k).map(|(a, b)| *a && *b).collect())
            .collect()
    }

    /// The micro-batch's loss (surrogate + KL − entropy bonus) for aggregation weights `agg`;
    /// adds its values and surrogate counters to `out`.
    fn micro_loss(
        &self,
        fwd: &MicroOut,
        seqs: &[Seq],
        agg: &[f64],
        out: &mut MinibatchOut,
    ) -> Result<Tensor> {
        let cfg = &self.config;
        let clip = ClipSettings {
            eps_low: self.settings.eps_low,
            eps_high: self.settings.eps_high,
            band_mask: cfg.band_mask,
        };
        let (pg, stats) = surrogate_loss(&fwd.l_theta, &token_terms(seqs, agg), &clip)?;
        out.stats.merge(&stats);
        out.pg_loss += scalar(&pg)?;
        let mut loss = pg;
        if cfg.kl_coef != 0.0 {
            let l_ref: Vec<f64> = seqs.iter().flat_map(|s| s.l_ref.iter().copied()).collect();
            let kl = k3_kl(&fwd.l_theta, &l_ref, agg)?;
            out.kl += scalar(&kl)?;
            loss = (loss + kl.affine(cfg.kl_coef, 0.0)?)?;
        }
        if let Some(ent) = &fwd.entropy {
            let bonus = weighted_sum(ent, agg)?;
            out.entropy += scalar(&bonus)?;
            loss = (loss - bonus.affine(cfg.entropy_coef, 0.0)?)?;
        }
        out.loss += scalar(&loss)?;
        Ok(loss)
    }
}

/// The surrogate's per-token constants of a micro-batch, token by token.
fn token_terms(seqs: &[Seq], agg: &[f64]) -> Vec<TokenTerms> {
    seqs.iter()
        .flat_map(|s| (0..s.len()).map(move |t| (s, t)))
        .zip(agg)
        .map(|((s, t), &agg_weight)| TokenTerms {
            advantage: s.advantage,
            l_prox: s.l_prox[t],
            is_weight: s.is_weight[t],
            agg_weight,
        })
        .collect()
}

/// ℓ_θ of the training forward against ℓ_b (here ℓ_prox), unweighted.
fn add_rollout_mismatch(acc: &mut MismatchAcc, l_theta: &Tensor, seqs: &[Seq]) -> Result<()> {
    let l_theta = l_theta.to_dtype(DType::F32)?.to_vec1::<f32>()?;
    let l_b = seqs
        .iter()
        .flat_map(|s| s.l_prox.iter().copied().zip(s.generated.clone()));
    let unit = IsWeight {
        weight: 1.0,
        keep: true,
        truncated: false,
    };
    for (lt, (lb, generated)) in l_theta.into_iter().zip(l_b) {
        if generated {
            acc.add(lt as f64, lb, &unit);
        }
    }
    Ok(())
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}
