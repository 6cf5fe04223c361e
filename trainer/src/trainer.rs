//! The trainer step (algorithms.md §3.4): proximal no-grad forward → behaviour correction and
//! S2T mask → `n_mb` mini-batches with micro-batch gradient accumulation → clip → optimizer step
//! (`policy_version += 1` each) → `train_step += 1`.

use std::collections::HashMap;
use std::ops::{Deref, Range};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use candle_core::{DType, Tensor, TensorId, Var};
use rlvr_models::logprobs::{
    target_logprobs_entropy, target_logprobs_entropy_host, target_stats,
    target_stats_backward_in_place,
};
use rlvr_models::model::HiddenTape;
use rlvr_models::{Batch, Forward, Model};
use serde::{Deserialize, Serialize};

use crate::advantage::batch_advantages;
use crate::config::{ProximalMode, TrainerConfig};
use crate::correction::{is_weight, IsWeight, MismatchAcc, MismatchStats};
use crate::data::ScoredGroup;
use crate::error::{Result, TrainerError};
use crate::loss::{
    aggregation_weights, k3_kl, surrogate_loss, weighted_sum, ClipSettings, LossSettings,
    SurrogateStats, TokenTerms,
};
use crate::optim::{MagmaStats, Optimizer};
use crate::rng::SplitMix64;
use crate::s2t::{s2t_mask, S2tToken};

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
    pub optimizer_ms: f64,
    pub total_ms: f64,
    /// Response tokens trained on per second of forward+backward.
    pub train_tokens_per_s: f64,
    /// Peak memory during the step: on CUDA the high-water mark of candle's allocations, on the
    /// CPU the process's peak RSS (MiB; 0 where unknown).
    pub peak_memory_mb: f64,
}

/// One sample laid out for the model, with everything the loss needs per token.
pub(crate) struct Seq {
    pub row: Vec<u32>,
    pub prompt_len: usize,
    pub advantage: f64,
    pub l_prox: Vec<f64>,
    pub prob: Vec<f64>,
    pub entropy: Vec<f64>,
    pub is_weight: Vec<f64>,
    pub is_keep: Vec<bool>,
    pub l_ref: Vec<f64>,
}

impl Seq {
    fn len(&self) -> usize {
        self.row.len() - self.prompt_len
    }
}

/// Per-token values of a forward over one micro-batch, per sequence.
pub(crate) struct MicroOut {
    /// `[N]` log-probs of the completion tokens at the sampling temperature (autograd-capable).
    pub l_theta: Tensor,
    /// `[N]` entropies at the sampling temperature (kept only when the entropy bonus needs them).
    pub entropy: Option<Tensor>,
    taped: Option<Taped>,
}

/// The hand-written backward's side of a micro-batch: autograd runs from the loss to `stats`
/// (a leaf: per completion token the log-prob, entropy and log-sum-exp); the LM head, the fused
/// log-prob kernel and the decoder tape take the gradient on from there.
struct Taped {
    tape: HiddenTape,
    stats: Var,
    logits: Tensor,
    sel: Tensor,
    targets: Vec<u32>,
    temperature: f64,
    idx: Tensor,
    dims: (usize, usize, usize),
}

/// The RL trainer. It shares the model's `Var`s: optimizer steps are visible to every holder of
/// the model (the runtime) at once.
pub struct Trainer<M: Deref<Target = Model>> {
    pub(crate) model: M,
    pub(crate) config: TrainerConfig,
    pub(crate) settings: LossSettings,
    pub(crate) optimizer: Optimizer,
    pub(crate) rng: SplitMix64,
    pub(crate) train_step: u64,
    pub(crate) policy_version: Arc<AtomicU64>,
    reference: Option<Model>,
    weight_lock: Option<Arc<RwLock<()>>>,
}

impl<M: Deref<Target = Model>> Trainer<M> {
    pub fn new(model: M, config: TrainerConfig) -> Result<Self> {
        config.validate()?;
        let params = model
            .named_vars()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect();
        let optimizer = Optimizer::new(params, config.optimizer.clone())?;
        Ok(Self {
            settings: config.loss_settings(),
            rng: SplitMix64::new(config.seed),
            optimizer,
            model,
            config,
            train_step: 0,
            policy_version: Arc::new(AtomicU64::new(0)),
            reference: None,
            weight_lock: None,
        })
    }

    /// Share a policy-version counter with the runtime (its current value is kept).
    pub fn with_policy_version(mut self, v: Arc<AtomicU64>) -> Self {
        self.policy_version = v;
        self
    }

    /// Take this lock for reading around forwards and for writing around optimizer steps.
    pub fn with_weight_lock(mut self, lock: Arc<RwLock<()>>) -> Self {
        self.weight_lock = Some(lock);
        self
    }

    /// A frozen reference model for the KL term (`kl_coef > 0`).
    pub fn set_reference(&mut self, reference: Model) {
        self.reference = Some(reference);
    }

    pub fn policy_version_handle(&self) -> Arc<AtomicU64> {
        self.policy_version.clone()
    }

    pub fn policy_version(&self) -> u64 {
        self.policy_version.load(Ordering::SeqCst)
    }

    /// Rollout batches consumed so far (T).
    pub fn train_step_count(&self) -> u64 {
        self.train_step
    }

    pub fn config(&self) -> &TrainerConfig {
        &self.config
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn optimizer(&self) -> &Optimizer {
        &self.optimizer
    }

    fn read_lock(&self) -> Option<RwLockReadGuard<'_, ()>> {
        self.weight_lock
            .as_ref()
            .map(|l| l.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn write_lock(lock: &Option<Arc<RwLock<()>>>) -> Option<RwLockWriteGuard<'_, ()>> {
        lock.as_ref()
            .map(|l| l.write().unwrap_or_else(|e| e.into_inner()))
    }

    /// The weights at full precision, HF names: the optimizer's f32 masters where the model's
    /// weights are bf16/f16, else the weights themselves (for exports).
    pub fn full_precision_state_dict(&self) -> std::collections::BTreeMap<String, Tensor> {
        self.optimizer
            .params()
            .iter()
            .map(|p| {
                let t = match &p.master {
                    Some(m) => m.clone(),
                    None => p.var.as_detached_tensor(),
                };
                (p.name.clone(), t)
            })
            .collect()
    }

    /// Consume one rollout batch: `n_mb` optimizer steps.
    pub fn train_step(&mut self, groups: &[ScoredGroup]) -> Result<StepMetrics> {
        let start = Instant::now();
        let device = self.model.device().clone();
        rlvr_models::device_mem::reset_peak(&device);
        let prep = self.prepare(groups)?;
        let mut m = prep.metrics.clone();
        let mut sstats = SurrogateStats::default();
        let (mut fb_s, mut opt_s) = (0.0, 0.0);
        let (mut loss_sum, mut pg_sum, mut kl_sum, mut ent_bonus_sum) = (0.0, 0.0, 0.0, 0.0);
        let (mut gn_pre, mut gn_post, mut rms) = (0.0, 0.0, 0.0);
        for k in 0..prep.minibatches.len() {
            let t1 = Instant::now();
            let out = self.minibatch(&prep, k)?;
            fb_s += t1.elapsed().as_secs_f64();
            if let Some(acc) = &out.rollout_mismatch {
                m.mismatch = acc.finish();
            }
            m.s2t_candidates += out.s2t_candidates;
            m.s2t_masked += out.s2t_masked;
            let Some(grads) = out.grads else {
                m.skipped_empty_minibatches += 1;
                continue;
            };
            sstats.tokens += out.stats.tokens;
            sstats.clipped += out.stats.clipped;
            sstats.band_masked += out.stats.band_masked;
            sstats.ratio_sum += out.stats.ratio_sum;
            sstats.ratio_max_abs_dev = sstats.ratio_max_abs_dev.max(out.stats.ratio_max_abs_dev);
            let t2 = Instant::now();
            let stats = {
                let _w = Self::write_lock(&self.weight_lock);
                let stats = self.optimizer.step(&grads)?;
                if !stats.skipped_nonfinite {
                    self.policy_version.fetch_add(1, Ordering::SeqCst);
                }
                stats
            };
            opt_s += t2.elapsed().as_secs_f64();
            if stats.skipped_nonfinite {
                m.skipped_nonfinite_steps += 1;
            } else {
                m.optimizer_steps += 1;
            }
            loss_sum += out.loss;
            pg_sum += out.pg_loss;
            kl_sum += out.kl;
            ent_bonus_sum += out.entropy;
            gn_pre += stats.grad_norm_pre_clip;
            gn_post += stats.grad_norm_post_clip;
            rms += stats.update_rms_ratio;
            m.lr = stats.lr;
            if stats.magma.is_some() {
                m.magma = stats.magma;
            }
        }
        let steps = (m.optimizer_steps + m.skipped_nonfinite_steps).max(1) as f64;
        m.loss = loss_sum / steps;
        m.pg_loss = pg_sum / steps;
        m.kl_ref = kl_sum / steps;
        m.entropy_bonus = ent_bonus_sum / steps;
        m.grad_norm_pre_clip = gn_pre / steps;
        m.grad_norm_post_clip = gn_post / steps;
        m.update_rms_ratio = rms / steps;
        if m.optimizer_steps + m.skipped_nonfinite_steps == 0 {
            m.lr = self.optimizer.next_lr();
        }
        let valid = sstats.tokens.max(1) as f64;
        m.clip_frac = sstats.clipped as f64 / valid;
        m.band_masked_frac = sstats.band_masked as f64 / valid;
        m.ratio_mean = if sstats.tokens > 0 {
            sstats.ratio_sum / valid
        } else {
            1.0
        };
        m.ratio_max_abs_dev = sstats.ratio_max_abs_dev;
        m.s2t_masked_frac = m.s2t_masked as f64 / m.response_tokens.max(1) as f64;
        self.train_step += 1;
        m.train_step = self.train_step;
        m.policy_version = self.policy_version();
        m.timings.forward_backward_ms = fb_s * 1e3;
        m.timings.optimizer_ms = opt_s * 1e3;
        m.timings.total_ms = start.elapsed().as_secs_f64() * 1e3;
        m.timings.peak_memory_mb = rlvr_models::device_mem::peak_mib(&device);
        m.timings.train_tokens_per_s = if fb_s > 0.0 {
            sstats.tokens as f64 / fb_s
        } else {
            0.0
        };
        Ok(m)
    }

    /// Validation, advantages, mini-batch split, proximal forward and behaviour correction.
    pub(crate) fn prepare(&mut self, groups: &[ScoredGroup]) -> Result<Prepared> {
        let cfg = &self.config;
        let settings = self.settings;
        let mut m = StepMetrics {
            groups: groups.len(),
            ..Default::default()
        };
        if cfg.kl_coef != 0.0 && self.reference.is_none() {
            return Err(TrainerError::Config(
                "kl_coef ≠ 0 needs a reference model (Trainer::set_reference)".into(),
            ));
        }
        for (gi, g) in groups.iter().enumerate() {
            for (si, s) in g.samples.iter().enumerate() {
                s.validate(gi, si)?;
                if cfg.proximal == ProximalMode::Rollout
                    && settings.s2t
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
        // Advantages and staleness, in the caller's group order.
        let rewards: Vec<Vec<f64>> = groups
            .iter()
            .map(|g| g.samples.iter().map(|s| s.reward).collect())
            .collect();
        let adv = batch_advantages(&rewards, settings.advantage, cfg.batch_adv_norm);
        let n_samples: usize = rewards.iter().map(Vec::len).sum();
        m.samples = n_samples;
        m.reward_mean = rewards.iter().flatten().sum::<f64>() / n_samples.max(1) as f64;
        m.frac_zero_adv_groups = adv.iter().filter(|a| a.iter().all(|x| *x == 0.0)).count() as f64
            / groups.len().max(1) as f64;
        let v_now = self.policy_version();
        let mut lags = Vec::new();
        for g in groups {
            m.group_age_max = m
                .group_age_max
                .max(self.train_step.saturating_sub(g.t_start));
            for s in &g.samples {
                if let Some(&w0) = s.policy_versions.iter().min() {
                    lags.push(v_now.saturating_sub(w0));
                }
            }
        }
        m.version_lag_max = lags.iter().copied().max().unwrap_or(0);
        m.version_lag_mean = lags.iter().sum::<u64>() as f64 / lags.len().max(1) as f64;

        // Mini-batches of whole groups (shuffled), micro-batches of sequences.
        let mut order: Vec<usize> = (0..groups.len()).collect();
        if cfg.shuffle {
            self.rng.shuffle(&mut order);
        }
        let cfg = &self.config;
        let n_mb = cfg.num_minibatches.min(groups.len()).max(1);
        let mut seqs: Vec<Seq> = Vec::with_capacity(n_samples);
        let mut behaviour: Vec<&[f32]> = Vec::with_capacity(n_samples);
        let mut minibatches: Vec<Range<usize>> = Vec::with_capacity(n_mb);
        let mut gpos = 0;
        for k in 0..n_mb {
            let take = groups.len() / n_mb + usize::from(k < groups.len() % n_mb);
            let first = seqs.len();
            for &gi in &order[gpos..gpos + take] {
                for (si, s) in groups[gi].samples.iter().enumerate() {
                    let mut seq = Seq {
                        row: s.full_row(),
                        prompt_len: s.prompt_ids.len(),
                        advantage: adv[gi][si],
                        l_prox: Vec::new(),
                        prob: Vec::new(),
                        entropy: Vec::new(),
                        is_weight: Vec::new(),
                        is_keep: Vec::new(),
                        l_ref: Vec::new(),
                    };
                    if cfg.proximal == ProximalMode::Rollout {
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
                    seqs.push(seq);
                    behaviour.push(&s.behaviour_logprobs);
                }
            }
            gpos += take;
            minibatches.push(first..seqs.len());
        }
        m.response_tokens = seqs.iter().map(Seq::len).sum();

        // Proximal (and reference) no-grad forwards, on the same micro-batches as training so
        // that with unchanged weights the ratio is exactly 1.
        let t0 = Instant::now();
        for r in minibatches
            .iter()
            .flat_map(|mb| micro_batches(mb, cfg.micro_batch_size))
        {
            if seqs[r.clone()].iter().all(|s| s.len() == 0) {
                continue;
            }
            let _guard = self.read_lock();
            if cfg.proximal == ProximalMode::Recompute {
                let (lp, prob, ent) = proximal_forward(&self.model, &seqs[r.clone()], cfg)?;
                for ((s, lp), (p, h)) in seqs[r.clone()]
                    .iter_mut()
                    .zip(lp)
                    .zip(prob.into_iter().zip(ent))
                {
                    s.l_prox = lp;
                    s.prob = p;
                    s.entropy = h;
                }
            }
            if let (Some(reference), true) = (&self.reference, cfg.kl_coef != 0.0) {
                let (lp, _, _) = proximal_forward(reference, &seqs[r.clone()], cfg)?;
                for (s, lp) in seqs[r.clone()].iter_mut().zip(lp) {
                    s.l_ref = lp;
                }
            }
        }
        m.timings.proximal_ms = t0.elapsed().as_secs_f64() * 1e3;

        // Behaviour correction and mismatch metrics.
        let mut acc = MismatchAcc::default();
        let mut ent_sum = 0.0;
        for (s, lb) in seqs.iter_mut().zip(&behaviour) {
            ent_sum += s.entropy.iter().sum::<f64>();
            let n = s.len();
            if cfg.proximal == ProximalMode::Rollout {
                s.is_weight = vec![1.0; n];
                s.is_keep = vec![true; n];
                continue;
            }
            let mut w = Vec::with_capacity(n);
            let mut k = Vec::with_capacity(n);
            for (&lp, &lb) in s.l_prox.iter().zip(lb.iter()) {
                let iw = is_weight(lp, lb as f64, &cfg.correction);
                acc.add(lp, lb as f64, &iw);
                w.push(iw.weight);
                k.push(iw.keep);
            }
            s.is_weight = w;
            s.is_keep = k;
        }
        m.mismatch = acc.finish();
        m.entropy_mean = ent_sum / m.response_tokens.max(1) as f64;
        let norm_len = cfg
            .max_response_len
            .unwrap_or_else(|| seqs.iter().map(Seq::len).max().unwrap_or(1));
        Ok(Prepared {
            seqs,
            minibatches,
            norm_len,
            metrics: m,
        })
    }

    /// S2T mask, aggregation weights, and the accumulated gradient of mini-batch `k` over its
    /// micro-batches (normalisation global to the mini-batch). No optimizer step.
    pub(crate) fn minibatch(&self, prep: &Prepared, k: usize) -> Result<MinibatchOut> {
        let cfg = &self.config;
        // With ℓ_prox = ℓ_b there is no proximal forward to compare the rollout with: the first
        // mini-batch's training forward (no update of this step yet) takes its place.
        let measure_mismatch = k == 0 && cfg.proximal == ProximalMode::Rollout;
        let settings = self.settings;
        let mb = prep.minibatches[k].clone();
        let mb_seqs = &prep.seqs[mb.clone()];
        let mut out = MinibatchOut::default();
        // S2T over the whole mini-batch before any backward (§1.8.6).
        let keep_s2t: Vec<Vec<bool>> = if settings.s2t {
            let toks: Vec<S2tToken> = mb_seqs
                .iter()
                .flat_map(|s| {
                    (0..s.len()).map(move |t| S2tToken {
                        advantage: s.advantage,
                        prob: s.prob[t],
                        entropy: s.entropy[t],
                    })
                })
                .collect();
            let r = s2t_mask(&toks, &cfg.s2t_config());
            out.s2t_candidates = r.candidates;
            out.s2t_masked = r.masked;
            let mut it = r.keep.into_iter();
            mb_seqs
                .iter()
                .map(|s| it.by_ref().take(s.len()).collect())
                .collect()
        } else {
            mb_seqs.iter().map(|s| vec![true; s.len()]).collect()
        };
        let valid: Vec<Vec<bool>> = mb_seqs
            .iter()
            .zip(&keep_s2t)
            .map(|(s, k)| s.is_keep.iter().zip(k).map(|(a, b)| *a && *b).collect())
            .collect();
        let Some(weights) = aggregation_weights(&valid, settings.aggregation, prep.norm_len) else {
            return Ok(out);
        };
        let clip = ClipSettings {
            eps_low: settings.eps_low,
            eps_high: settings.eps_high,
            band_mask: cfg.band_mask,
        };
        let mut grads: Vec<Option<Tensor>> = vec![None; self.optimizer.params().len()];
        for r in micro_batches(&mb, cfg.micro_batch_size) {
            let rel = (r.start - mb.start)..(r.end - mb.start);
            let w: Vec<f64> = weights[rel].iter().flatten().copied().collect();
            if w.iter().all(|x| *x == 0.0) {
                continue;
            }
            let seqs = &prep.seqs[r];
            let _guard = self.read_lock();
            let fwd = train_forward(&self.model, seqs, cfg, cfg.entropy_coef != 0.0)?;
            if measure_mismatch {
                let lt = fwd.l_theta.to_dtype(DType::F32)?.to_vec1::<f32>()?;
                let lb = seqs.iter().flat_map(|s| s.l_prox.iter().copied());
                let acc = out
                    .rollout_mismatch
                    .get_or_insert_with(MismatchAcc::default);
                let unit = IsWeight {
                    weight: 1.0,
                    keep: true,
                    truncated: false,
                };
                for (l_theta, l_b) in lt.into_iter().zip(lb) {
                    acc.add(l_theta as f64, l_b, &unit);
                }
            }
            let terms: Vec<TokenTerms> = seqs
                .iter()
                .flat_map(|s| (0..s.len()).map(move |t| (s, t)))
                .zip(&w)
                .map(|((s, t), &aw)| TokenTerms {
                    advantage: s.advantage,
                    l_prox: s.l_prox[t],
                    is_weight: s.is_weight[t],
                    agg_weight: aw,
                })
                .collect();
            let (pg, st) = surrogate_loss(&fwd.l_theta, &terms, &clip)?;
            out.stats.tokens += st.tokens;
            out.stats.clipped += st.clipped;
            out.stats.band_masked += st.band_masked;
            out.stats.ratio_sum += st.ratio_sum;
            out.stats.ratio_max_abs_dev = out.stats.ratio_max_abs_dev.max(st.ratio_max_abs_dev);
            out.pg_loss += scalar(&pg)?;
            let mut loss = pg;
            if cfg.kl_coef != 0.0 {
                let l_ref: Vec<f64> = seqs.iter().flat_map(|s| s.l_ref.iter().copied()).collect();
                let kl = k3_kl(&fwd.l_theta, &l_ref, &w)?;
                out.kl += scalar(&kl)?;
                loss = (loss + kl.affine(cfg.kl_coef, 0.0)?)?;
            }
            if let Some(ent) = &fwd.entropy {
                let h = weighted_sum(ent, &w)?;
                out.entropy += scalar(&h)?;
                loss = (loss - h.affine(cfg.entropy_coef, 0.0)?)?;
            }
            out.loss += scalar(&loss)?;
            let g = micro_grads(&self.model, fwd, &loss)?;
            let by_id: HashMap<TensorId, Tensor> = self
                .model
                .vars()
                .iter()
                .zip(g)
                .filter_map(|(v, g)| Some((v.as_tensor().id(), g?)))
                .map(|(id, g)| Ok((id, accumulation_dtype(g)?)))
                .collect::<Result<_>>()?;
            for (acc_g, p) in grads.iter_mut().zip(self.optimizer.params()) {
                if let Some(gi) = by_id.get(&p.var.as_tensor().id()) {
                    *acc_g = Some(match acc_g.take() {
                        Some(a) => (a + gi)?,
                        None => gi.clone(),
                    });
                }
            }
        }
        out.grads = Some(grads);
        Ok(out)
    }
}

/// Everything the mini-batch loop needs, computed once per train step.
pub(crate) struct Prepared {
    pub seqs: Vec<Seq>,
    pub minibatches: Vec<Range<usize>>,
    pub norm_len: usize,
    pub metrics: StepMetrics,
}

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
    pub grads: Option<Vec<Option<Tensor>>>,
    /// ℓ_θ of the training forward vs ℓ_b (rollout mode, first mini-batch only).
    pub rollout_mismatch: Option<MismatchAcc>,
}

/// Gradients of bf16/f16 weights are summed over micro-batches in f32 (the optimizer's master
/// precision), not in the weights' 8-bit mantissa.
pub(crate) fn accumulation_dtype(g: Tensor) -> Result<Tensor> {
    Ok(match g.dtype() {
        DType::BF16 | DType::F16 => g.to_dtype(DType::F32)?,
        _ => g,
    })
}

fn micro_batches(r: &Range<usize>, size: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut a = r.start;
    while a < r.end {
        let b = (a + size.max(1)).min(r.end);
        out.push(a..b);
        a = b;
    }
    out
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

/// Rows `[b*s]` indices of the positions that predict each completion token, and the targets.
fn completion_index(rows: &[Vec<u32>], prompt_lens: &[usize], s: usize) -> (Vec<u32>, Vec<u32>) {
    let mut idx = Vec::new();
    let mut tgt = Vec::new();
    for (b, (row, &p)) in rows.iter().zip(prompt_lens).enumerate() {
        for (t, &tok) in row.iter().enumerate().skip(p) {
            idx.push((b * s + t - 1) as u32);
            tgt.push(tok);
        }
    }
    (idx, tgt)
}

/// Logits `[N, V]` (f32) predicting the completion tokens (positions `prompt_lens[i]..` of
/// `rows[i]`), and the `N` targets. The LM head runs only on those N positions, with the
/// numerics and gradient of `fwd` (a Train-numerics forward without a graph gives the training
/// values bit for bit).
pub(crate) fn completion_logits_rows(
    model: &Model,
    rows: &[Vec<u32>],
    prompt_lens: &[usize],
    pad_id: u32,
    fwd: Forward,
) -> Result<(Tensor, Vec<u32>)> {
    let hidden = model.hidden(Batch::padded(rows, pad_id), fwd)?.states;
    let (b, s, h) = hidden.dims3()?;
    let (idx, tgt) = completion_index(rows, prompt_lens, s);
    let idx = Tensor::from_vec(idx, tgt.len(), hidden.device())?;
    let sel = hidden.reshape((b * s, h))?.index_select(&idx, 0)?;
    Ok((model.logits(&sel, fwd)?, tgt))
}

fn completion_logits(
    model: &Model,
    seqs: &[Seq],
    pad_id: u32,
    fwd: Forward,
) -> Result<(Tensor, Vec<u32>)> {
    let rows: Vec<Vec<u32>> = seqs.iter().map(|q| q.row.clone()).collect();
    let prompt_lens: Vec<usize> = seqs.iter().map(|q| q.prompt_len).collect();
    completion_logits_rows(model, &rows, &prompt_lens, pad_id, fwd)
}

fn split_per_seq(seqs: &[Seq], flat: Vec<f64>) -> Vec<Vec<f64>> {
    let mut it = flat.into_iter();
    seqs.iter()
        .map(|s| it.by_ref().take(s.len()).collect())
        .collect()
}

type Vecs = Vec<Vec<f64>>;

/// No-grad forward: per sequence, ℓ at the sampling temperature, and p and H at T = 1.
fn proximal_forward(
    model: &Model,
    seqs: &[Seq],
    cfg: &TrainerConfig,
) -> Result<(Vecs, Vecs, Vecs)> {
    let fwd = if cfg.proximal_fused_kernels {
        Forward::INFERENCE
    } else {
        Forward::TRAIN_NO_GRAD
    };
    let (sel, tgt) = completion_logits(model, seqs, cfg.pad_id, fwd)?;
    let (l1, ent) = target_logprobs_entropy_host(&sel, &tgt, 1.0)?;
    let lt = if cfg.temperature == 1.0 {
        l1.clone()
    } else {
        target_logprobs_entropy_host(&sel, &tgt, cfg.temperature)?.0
    };
    let prob: Vec<f64> = l1.into_iter().map(f64::exp).collect();
    Ok((
        split_per_seq(seqs, lt),
        split_per_seq(seqs, prob),
        split_per_seq(seqs, ent),
    ))
}

/// Forward for training: ℓ_θ of the completion tokens (`prompt_lens[i]..` of `rows[i]`) from
/// logits / T, and their entropies, autograd-capable. On the CPU the decoder runs taped for the
/// hand-written backward (see [`micro_grads`]); elsewhere through candle's autograd.
pub(crate) fn train_forward_rows(
    model: &Model,
    rows: &[Vec<u32>],
    prompt_lens: &[usize],
    pad_id: u32,
    temperature: f64,
    keep_entropy: bool,
) -> Result<MicroOut> {
    if !use_tape(model) {
        let (sel, tgt) = completion_logits_rows(model, rows, prompt_lens, pad_id, Forward::TRAIN)?;
        let (l_theta, entropy) = target_logprobs_entropy(&sel, &tgt, temperature)?;
        return Ok(MicroOut {
            l_theta,
            entropy: keep_entropy.then_some(entropy),
            taped: None,
        });
    }
    let (hidden, tape) = model
        .hidden(Batch::padded(rows, pad_id), Forward::TRAIN_TAPED)?
        .into_taped()?;
    let (b, s, h) = hidden.dims3()?;
    let (idx, targets) = completion_index(rows, prompt_lens, s);
    let idx = Tensor::from_vec(idx, targets.len(), hidden.device())?;
    let sel = hidden.reshape((b * s, h))?.index_select(&idx, 0)?;
    drop(hidden);
    // Detached LM head (as in the proximal pass, so values match bit for bit).
    let logits = model.logits(&sel, Forward::TRAIN_NO_GRAD)?;
    let stats = Var::from_tensor(&target_stats(&logits, &targets, temperature)?)?;
    let l_theta = stats.as_tensor().narrow(1, 0, 1)?.squeeze(1)?;
    let entropy = stats.as_tensor().narrow(1, 1, 1)?.squeeze(1)?;
    Ok(MicroOut {
        l_theta,
        entropy: keep_entropy.then_some(entropy),
        taped: Some(Taped {
            tape,
            stats,
            logits,
            sel,
            targets,
            temperature,
            idx,
            dims: (b, s, h),
        }),
    })
}

#[cfg(test)]
thread_local! {
    /// Tests: run the candle-autograd path even where the hand-written backward is available.
    pub(crate) static FORCE_AUTOGRAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn use_tape(model: &Model) -> bool {
    #[cfg(test)]
    if FORCE_AUTOGRAD.with(|f| f.get()) {
        return false;
    }
    model.supports_taped_backward()
}

/// Backward of `loss` (a function of `fwd`'s outputs): the gradient of every model parameter, in
/// [`Model::vars`] order (`None`: no gradient).
pub(crate) fn micro_grads(
    model: &Model,
    fwd: MicroOut,
    loss: &Tensor,
) -> Result<Vec<Option<Tensor>>> {
    let MicroOut {
        l_theta,
        entropy,
        taped,
    } = fwd;
    let g = loss.backward()?;
    drop((l_theta, entropy));
    let mut out: Vec<Option<Tensor>> = model
        .vars()
        .iter()
        .map(|v| g.get(v.as_tensor()).cloned())
        .collect();
    let Some(t) = taped else {
        return Ok(out);
    };
    let (b, s, h) = t.dims;
    let stats = t.stats.as_tensor();
    let d_stats = match g.get(stats) {
        Some(d) => d.clone(),
        None => stats.zeros_like()?,
    };
    drop(g);
    // LM head: logits = sel · Wᵀ.
    // The logits are not used after this: their buffer takes their gradient.
    let d_logits =
        target_stats_backward_in_place(t.logits, stats, &d_stats, &t.targets, t.temperature)?;
    let head = model.lm_head_index();
    let w = model.vars()[head].as_detached_tensor();
    let dt = w.dtype();
    let d_logits = d_logits.to_dtype(dt)?;
    let d_sel = d_logits.matmul(&w)?;
    let d_w = d_logits.t()?.matmul(&t.sel.to_dtype(dt)?)?;
    drop(d_logits);
    add_grad(&mut out[head], d_w)?;
    let d_hidden = Tensor::zeros((b * s, h), dt, w.device())?
        .index_add(&t.idx, &d_sel, 0)?
        .reshape((b, s, h))?;
    let decoder = model.backward_hidden(t.tape, &d_hidden)?;
    for (o, d) in out.iter_mut().zip(decoder) {
        if let Some(d) = d {
            add_grad(o, d)?;
        }
    }
    Ok(out)
}

pub(crate) fn add_grad(acc: &mut Option<Tensor>, g: Tensor) -> Result<()> {
    *acc = Some(match acc.take() {
        Some(a) => (a + g)?,
        None => g,
    });
    Ok(())
}

/// [`train_forward_rows`] for a micro-batch of sequences.
fn train_forward(
    model: &Model,
    seqs: &[Seq],
    cfg: &TrainerConfig,
    keep_entropy: bool,
) -> Result<MicroOut> {
    let rows: Vec<Vec<u32>> = seqs.iter().map(|q| q.row.clone()).collect();
    let prompt_lens: Vec<usize> = seqs.iter().map(|q| q.prompt_len).collect();
    train_forward_rows(
        model,
        &rows,
        &prompt_lens,
        cfg.pad_id,
        cfg.temperature,
        keep_entropy,
    )
}

#[cfg(test)]
mod tests;
