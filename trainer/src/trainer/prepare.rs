//! A train step's preparation, done once before any gradient (algorithms.md §3.4): input checks,
//! advantages and staleness metrics, the split into mini-batches of whole groups, the proximal
//! (and reference) no-grad forwards, and the behaviour correction.
//!
//! Owns [`Seq`], the per-sample layout every later stage reads. Must not know the loss, the
//! gradient or the optimizer; the model is reached only through [`super::forward`].

use std::ops::{Deref, Range};
use std::time::Instant;

use rlvr_models::Model;

use super::forward::proximal_forward;
use super::{StepMetrics, Trainer};
use crate::advantage::batch_advantages;
use crate::config::{ProximalMode, TrainerConfig};
use crate::correction::{is_weight, MismatchAcc, MismatchStats};
use crate::data::{ScoredGroup, ScoredSample};
use crate::error::{Result, TrainerError};

/// One sample laid out for the model, with everything the loss needs per token.
pub(crate) struct Seq {
    pub row: Vec<u32>,
    pub prompt_len: usize,
    /// The caller's index of the sample's group.
    pub group: usize,
    pub advantage: f64,
    pub l_prox: Vec<f64>,
    pub prob: Vec<f64>,
    pub entropy: Vec<f64>,
    pub is_weight: Vec<f64>,
    pub is_keep: Vec<bool>,
    pub l_ref: Vec<f64>,
    /// Per completion token, the ids its sampling distribution kept (empty: not truncated).
    pub support: Vec<Vec<u32>>,
}

impl Seq {
    /// Completion tokens.
    pub fn len(&self) -> usize {
        self.row.len() - self.prompt_len
    }

    /// With `ProximalMode::Rollout` ℓ_prox, p and H come from the rollout; otherwise the
    /// proximal forward fills them in.
    fn new(s: &ScoredSample, group: usize, advantage: f64, proximal: ProximalMode) -> Self {
        let mut seq = Seq {
            row: s.full_row(),
            prompt_len: s.prompt_ids.len(),
            group,
            advantage,
            l_prox: Vec::new(),
            prob: Vec::new(),
            entropy: Vec::new(),
            is_weight: Vec::new(),
            is_keep: Vec::new(),
            l_ref: Vec::new(),
            support: s.sampling_support.clone(),
        };
        if proximal == ProximalMode::Rollout {
            let f = |xs: &[f32]| xs.iter().map(|&x| x as f64).collect::<Vec<_>>();
            seq.l_prox = f(&s.behaviour_logprobs);
            let raw = if s.raw_logprobs.is_empty() {
                &s.behaviour_logprobs
            } else {
                &s.raw_logprobs
            };
            seq.prob = raw.iter().map(|&x| (x as f64).exp()).collect();
            seq.entropy = if s.entropies.is_empty() {
                vec![0.0; s.completion_ids.len()]
            } else {
                f(&s.entropies)
            };
        }
        seq
    }
}

/// Everything the mini-batch loop needs, computed once per train step.
pub(crate) struct Prepared {
    pub seqs: Vec<Seq>,
    pub minibatches: Vec<Range<usize>>,
    pub norm_len: usize,
    pub metrics: StepMetrics,
}

/// The samples in training order, split into mini-batches, with each sample's ℓ_b.
struct Layout<'a> {
    seqs: Vec<Seq>,
    behaviour: Vec<&'a [f32]>,
    minibatches: Vec<Range<usize>>,
}

impl<M: Deref<Target = Model>> Trainer<M> {
    /// Validation, advantages, mini-batch split, proximal forward and behaviour correction.
    pub(crate) fn prepare(&mut self, groups: &[ScoredGroup]) -> Result<Prepared> {
        self.check_inputs(groups)?;
        let mut metrics = StepMetrics {
            groups: groups.len(),
            ..Default::default()
        };
        // Advantages and staleness, in the caller's group order.
        let advantages = self.advantages(groups, &mut metrics);
        self.staleness(groups, &mut metrics);
        let Layout {
            mut seqs,
            behaviour,
            minibatches,
        } = self.lay_out(groups, &advantages);
        metrics.response_tokens = seqs.iter().map(Seq::len).sum();
        let timer = Instant::now();
        self.no_grad_forwards(&mut seqs, &minibatches)?;
        metrics.timings.proximal_ms = timer.elapsed().as_secs_f64() * 1e3;
        let entropy_sum: f64 = seqs.iter().map(|s| s.entropy.iter().sum::<f64>()).sum();
        metrics.mismatch = behaviour_correction(&mut seqs, &behaviour, &self.config);
        metrics.entropy_mean = entropy_sum / metrics.response_tokens.max(1) as f64;
        let norm_len = self
            .config
            .max_response_len
            .unwrap_or_else(|| seqs.iter().map(Seq::len).max().unwrap_or(1));
        Ok(Prepared {
            seqs,
            minibatches,
            norm_len,
            metrics,
        })
    }

    fn check_inputs(&self, groups: &[ScoredGroup]) -> Result<()> {
        let cfg = &self.config;
        if cfg.kl_coef != 0.0 && self.reference.is_none() {
            return Err(TrainerError::Config(
                "kl_coef ≠ 0 needs a reference model (Trainer::set_reference)".into(),
            ));
        }
        let needs_rollout_stats = cfg.proximal == ProximalMode::Rollout && self.settings.s2t;
        let vocab = self.model.config.vocab_size as u32;
        for (gi, g) in groups.iter().enumerate() {
            for (si, s) in g.samples.iter().enumerate() {
                s.validate(gi, si)?;
                // Sets are ascending (validated): the last id is the largest.
                if s.sampling_support
                    .iter()
                    .any(|set| set.last() >= Some(&vocab))
                {
                    return Err(TrainerError::InvalidSample {
                        group: gi,
                        sample: si,
                        msg: format!("sampling_support has ids outside the vocabulary ({vocab})"),
                    });
                }
                if needs_rollout_stats
                    && (s.raw_logprobs.len() != s.completion_ids.len()
                        || s.entropies.len() != s.completion_ids.len())
                {
                    return Err(TrainerError::InvalidSample {
                        group: gi,
                        sample: si,
                        msg: "proximal = rollout with S2T needs raw_logprobs and entropies".into(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Per group and sample, the advantage; fills the sample, reward and advantage metrics.
    fn advantages(&self, groups: &[ScoredGroup], metrics: &mut StepMetrics) -> Vec<Vec<f64>> {
        let rewards: Vec<Vec<f64>> = groups
            .iter()
            .map(|g| g.samples.iter().map(|s| s.reward).collect())
            .collect();
        let adv = batch_advantages(
            &rewards,
            self.settings.advantage,
            self.config.batch_adv_norm,
        );
        let n_samples: usize = rewards.iter().map(Vec::len).sum();
        metrics.samples = n_samples;
        metrics.reward_mean = rewards.iter().flatten().sum::<f64>() / n_samples.max(1) as f64;
        let zero_adv_groups = adv.iter().filter(|a| a.iter().all(|x| *x == 0.0)).count();
        metrics.frac_zero_adv_groups = zero_adv_groups as f64 / groups.len().max(1) as f64;
        adv
    }

    /// Policy-version lag of the samples and age of the groups at the start of the step.
    fn staleness(&self, groups: &[ScoredGroup], metrics: &mut StepMetrics) {
        let version_now = self.policy_version();
        let mut lags = Vec::new();
        for g in groups {
            metrics.group_age_max = metrics
                .group_age_max
                .max(self.train_step.saturating_sub(g.t_start));
            for s in &g.samples {
                if let Some(&first) = s.policy_versions.iter().min() {
                    lags.push(version_now.saturating_sub(first));
                }
            }
        }
        metrics.version_lag_max = lags.iter().copied().max().unwrap_or(0);
        metrics.version_lag_mean = lags.iter().sum::<u64>() as f64 / lags.len().max(1) as f64;
    }

    /// Mini-batches of whole groups (shuffled when configured), in training order; within a
    /// mini-batch the zero-advantage groups come last.
    fn lay_out<'a>(&mut self, groups: &'a [ScoredGroup], advantages: &[Vec<f64>]) -> Layout<'a> {
        let mut order: Vec<usize> = (0..groups.len()).collect();
        if self.config.shuffle {
            self.rng.shuffle(&mut order);
        }
        let n_mb = self.config.num_minibatches.min(groups.len()).max(1);
        let n_samples = advantages.iter().map(Vec::len).sum();
        let mut layout = Layout {
            seqs: Vec::with_capacity(n_samples),
            behaviour: Vec::with_capacity(n_samples),
            minibatches: Vec::with_capacity(n_mb),
        };
        let mut next_group = 0;
        for k in 0..n_mb {
            let take = groups.len() / n_mb + usize::from(k < groups.len() % n_mb);
            let first = layout.seqs.len();
            // Groups with a gradient first, zero-advantage ones last: whole micro-batches of the
            // latter can then be skipped (`skip_zero_advantage`) with the same split either way.
            let mut chosen = order[next_group..next_group + take].to_vec();
            chosen.sort_by_key(|&gi| advantages[gi].iter().all(|a| *a == 0.0));
            for &gi in &chosen {
                for (si, s) in groups[gi].samples.iter().enumerate() {
                    let seq = Seq::new(s, gi, advantages[gi][si], self.config.proximal);
                    layout.seqs.push(seq);
                    layout.behaviour.push(&s.behaviour_logprobs);
                }
            }
            next_group += take;
            layout.minibatches.push(first..layout.seqs.len());
        }
        layout
    }

    /// Proximal (and reference) no-grad forwards, on the same micro-batches as training so that
    /// with unchanged weights the ratio is exactly 1.
    fn no_grad_forwards(&self, seqs: &mut [Seq], minibatches: &[Range<usize>]) -> Result<()> {
        let cfg = &self.config;
        let all: &[Seq] = seqs;
        let ranges: Vec<_> = minibatches
            .iter()
            .flat_map(|mb| self.micro_batches(all, mb))
            .collect();
        for range in ranges {
            let micro = &mut seqs[range];
            if micro.iter().all(|s| s.len() == 0) {
                continue;
            }
            let _guard = self.read_lock();
            if cfg.proximal == ProximalMode::Recompute {
                let out = proximal_forward(&self.model, micro, cfg)?;
                for (s, ((lp, prob), ent)) in micro
                    .iter_mut()
                    .zip(out.logprobs.into_iter().zip(out.probs).zip(out.entropies))
                {
                    s.l_prox = lp;
                    s.prob = prob;
                    s.entropy = ent;
                }
            }
            if let (Some(reference), true) = (&self.reference, cfg.kl_coef != 0.0) {
                let out = proximal_forward(reference, micro, cfg)?;
                for (s, lp) in micro.iter_mut().zip(out.logprobs) {
                    s.l_ref = lp;
                }
            }
        }
        Ok(())
    }
}

/// Behaviour correction weights and masks of every token, and the ℓ_b ↔ ℓ_prox mismatch
/// statistics (none with `ProximalMode::Rollout`, where ℓ_prox is ℓ_b).
fn behaviour_correction(
    seqs: &mut [Seq],
    behaviour: &[&[f32]],
    cfg: &TrainerConfig,
) -> MismatchStats {
    let mut acc = MismatchAcc::default();
    for (s, l_b) in seqs.iter_mut().zip(behaviour) {
        let n = s.len();
        if cfg.proximal == ProximalMode::Rollout {
            s.is_weight = vec![1.0; n];
            s.is_keep = vec![true; n];
            continue;
        }
        let mut weights = Vec::with_capacity(n);
        let mut keep = Vec::with_capacity(n);
        for (&lp, &lb) in s.l_prox.iter().zip(l_b.iter()) {
            let iw = is_weight(lp, lb as f64, &cfg.correction);
            acc.add(lp, lb as f64, &iw);
            weights.push(iw.weight);
            keep.push(iw.keep);
        }
        s.is_weight = weights;
        s.is_keep = keep;
    }
    acc.finish()
}
