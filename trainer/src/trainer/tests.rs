use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use super::forward::FORCE_AUTOGRAD;
use super::minibatch::MinibatchOut;
use super::prepare::Prepared;
use super::*;
use crate::config::ProximalMode;
use crate::correction::CorrectionMode;
use crate::error::TrainerError;
use crate::loss::LossPreset;
use crate::optim::OptimizerKind;
use crate::test_util::*;
use candle_core::{DType, Device, Tensor};
use rlvr_models::testing::{f64_bits, max_abs, max_abs_diff, randn_from, values};
use rlvr_models::Model;

fn preset_config(loss: LossPreset) -> TrainerConfig {
    one_minibatch_config(loss, 5)
}

/// AdamW at lr 1e-2, `loss`, one mini-batch of micro-batches of `micro` sequences.
fn one_minibatch_config(loss: LossPreset, micro: usize) -> TrainerConfig {
    let mut c = toy_config(OptimizerKind::AdamW, 1e-2);
    c.loss = loss;
    c.num_minibatches = 1;
    c.micro_batch_size = micro;
    c
}

/// [`one_minibatch_config`] with τ_p raised to 0.05: random tiny models give p ≈ 1/32, and
/// this makes S2T actually mask tokens.
pub(super) fn masking_config(loss: LossPreset, micro: usize) -> TrainerConfig {
    let mut c = one_minibatch_config(loss, micro);
    c.s2t_tau_p = 0.05;
    c
}

/// Shift ℓ_prox by fixed log-ratios well away from the clip bounds (ln 0.8, ln 1.28), so that
/// some tokens sit in the clipped branch and none is within a finite-difference step of a kink.
pub(super) fn shift_prox(prep: &mut Prepared) {
    const OFFS: [f64; 5] = [-0.5, -0.1, 0.0, 0.1, 0.5];
    for (i, s) in prep.seqs.iter_mut().enumerate() {
        for (t, l) in s.l_prox.iter_mut().enumerate() {
            *l += OFFS[(i * 7 + t * 3) % 5];
        }
    }
}

/// Mini-batch 0 of `prep` on the trainer's own (taped) path, then forced through candle's autograd.
pub(super) fn taped_and_autograd<M: Deref<Target = Model>>(
    tr: &Trainer<M>,
    prep: &Prepared,
) -> (MinibatchOut, MinibatchOut) {
    let run = |force: bool| {
        FORCE_AUTOGRAD.with(|f| f.set(force));
        let o = tr.minibatch(prep, 0).unwrap();
        FORCE_AUTOGRAD.with(|f| f.set(false));
        o
    };
    (run(false), run(true))
}

/// The two trainers' optimizers hold bit-identical scalars and moments.
pub(super) fn assert_same_optimizer_state<M: Deref<Target = Model>>(
    a: &Trainer<M>,
    b: &Trainer<M>,
) {
    assert_eq!(a.optimizer().scalars(), b.optimizer().scalars());
    for (x, y) in a.optimizer().params().iter().zip(b.optimizer().params()) {
        assert_eq!(f64_bits(&x.first_moment), f64_bits(&y.first_moment));
        assert_eq!(f64_bits(&x.second_moment), f64_bits(&y.second_moment));
    }
}

/// `max |g|` over all gradients.
pub(super) fn max_abs_grad(grads: &[Option<Tensor>]) -> f64 {
    grads.iter().flatten().map(max_abs).fold(0.0, f64::max)
}

fn dot(a: &[Option<Tensor>], b: &[Option<Tensor>]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| match (x, y) {
            (Some(x), Some(y)) => (x * y)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap(),
            _ => 0.0,
        })
        .sum()
}

/// Directional derivatives of the mini-batch loss, autograd vs central finite differences: along
/// the (unit) gradient, along each tensor's own gradient, and along a random direction. The model
/// computes logits and norm statistics in f32, so differences use a step of 2e-3 in unit
/// directions and tolerances sized to f32 round-off.
fn fd_check(model: &Model, cfg: TrainerConfig, reference: Option<Model>, label: &str) {
    fd_check_on(&random_groups(4, 4, 21), model, cfg, reference, label);
}

/// [`fd_check`] on given groups.
pub(super) fn fd_check_on(
    groups: &[ScoredGroup],
    model: &Model,
    cfg: TrainerConfig,
    reference: Option<Model>,
    label: &str,
) {
    fd_check_at(groups, model, (cfg, reference), 2e-3, label);
}

/// [`fd_check_on`] without a reference model, with the finite-difference step `h`.
pub(super) fn fd_check_step(
    groups: &[ScoredGroup],
    model: &Model,
    cfg: TrainerConfig,
    h: f64,
    label: &str,
) {
    fd_check_at(groups, model, (cfg, None), h, label);
}

fn fd_check_at(
    groups: &[ScoredGroup],
    model: &Model,
    (cfg, reference): (TrainerConfig, Option<Model>),
    h: f64,
    label: &str,
) {
    let mut tr = Trainer::new(model, cfg).unwrap();
    if let Some(r) = reference {
        tr.set_reference(r);
    }
    let mut prep = tr.prepare(groups).unwrap();
    shift_prox(&mut prep);
    let out = tr.minibatch(&prep, 0).unwrap();
    assert!(
        out.stats.clipped > 0,
        "{label}: the clipped branch is exercised"
    );
    let grads = out.grads.unwrap();
    let theta0: Vec<Tensor> = model
        .vars()
        .iter()
        .map(|v| v.as_detached_tensor().copy().unwrap())
        .collect();
    // Loss at θ0 ± h·d for a direction d of unit norm.
    let fd = |d: &[Option<Tensor>]| -> f64 {
        let at = |sign: f64| {
            for ((v, t0), d) in model.vars().iter().zip(&theta0).zip(d) {
                match d {
                    Some(d) => v
                        .set(&(t0 + d.affine(sign * h, 0.0).unwrap()).unwrap())
                        .unwrap(),
                    None => v.set(t0).unwrap(),
                }
            }
            let o = tr.minibatch(&prep, 0).unwrap();
            (o.loss, o.stats.clipped, o.s2t_masked)
        };
        let (lp, cp, sp) = at(1.0);
        let (lm, cm, sm) = at(-1.0);
        for (v, t0) in model.vars().iter().zip(&theta0) {
            v.set(t0).unwrap();
        }
        assert_eq!((cp, sp), (cm, sm), "{label}: no kink crossed");
        (lp - lm) / (2.0 * h)
    };
    let unit = |d: Vec<Option<Tensor>>| -> Vec<Option<Tensor>> {
        let n = dot(&d, &d).sqrt();
        d.into_iter()
            .map(|t| t.map(|t| t.affine(1.0 / n, 0.0).unwrap()))
            .collect()
    };
    // Along the gradient: the derivative is ‖g‖.
    let gnorm = dot(&grads, &grads).sqrt();
    let d_all = fd(&unit(grads.clone()));
    eprintln!(
        "{label}: ‖g‖ {gnorm:.6e} fd {d_all:.6e} rel {:.1e}",
        (d_all - gnorm).abs() / gnorm
    );
    assert!(
        (d_all - gnorm).abs() <= 2e-4 * gnorm,
        "{label}: ‖g‖ {gnorm} vs fd {d_all}"
    );
    // Along each tensor's gradient.
    let mut checked = 0;
    let mut worst = 0.0f64;
    for (i, (name, _)) in model.named_vars().enumerate() {
        let mut d: Vec<Option<Tensor>> = vec![None; grads.len()];
        d[i] = grads[i].clone();
        let gi = dot(&d, &d).sqrt();
        if gi < 0.01 * gnorm {
            continue;
        }
        let f = fd(&unit(d));
        worst = worst.max((f - gi).abs() / gi);
        // Relative 2e-3 plus an absolute floor for f32 round-off in the loss (≈1e-7 / 2h).
        assert!(
            (f - gi).abs() <= 2e-3 * gi + 2e-5,
            "{label}/{name}: ‖g‖ {gi} vs fd {f}"
        );
        checked += 1;
    }
    assert!(checked >= 3, "{label}: {checked} tensors checked");
    // Along a random direction.
    let mut rng = crate::rng::SplitMix64::new(5);
    let r = unit(
        model
            .vars()
            .iter()
            .map(|v| Some(randn_from(&mut rng, v.dims(), 1.0, v.dtype())))
            .collect(),
    );
    let a = dot(&grads, &r);
    let f = fd(&r);
    eprintln!("{label}: {checked} tensors, worst rel {worst:.1e}; random dir {a:.4e} vs {f:.4e}");
    assert!(
        (f - a).abs() <= 1e-3 * gnorm,
        "{label}: random direction {a} vs fd {f}"
    );
}

#[test]
fn finite_differences_match_autograd_for_every_preset() {
    let model = tiny_model_f64(4);
    for preset in [
        LossPreset::Grpo,
        LossPreset::Dapo,
        LossPreset::DrGrpo,
        LossPreset::Stapo,
    ] {
        let mut cfg = preset_config(preset);
        if preset == LossPreset::Stapo {
            // Random tiny models give p ≈ 1/32: raise τ_p so that S2T actually masks tokens.
            cfg.s2t_tau_p = 0.05;
        }
        fd_check(&model, cfg, None, &format!("{preset:?}"));
    }
    // KL to a reference, entropy bonus, temperature, TIS weights.
    let mut cfg = preset_config(LossPreset::Dapo);
    cfg.kl_coef = 0.3;
    cfg.entropy_coef = 0.05;
    cfg.temperature = 0.7;
    fd_check(&model, cfg, Some(tiny_model_f64(8)), "dapo+kl+entropy+T0.7");
}

#[test]
fn stapo_mask_is_active_with_a_large_tau_p() {
    let model = tiny_model_f64(4);
    let mut cfg = preset_config(LossPreset::Stapo);
    cfg.s2t_tau_p = 0.05;
    let mut tr = Trainer::new(&model, cfg).unwrap();
    let prep = tr.prepare(&random_groups(4, 4, 21)).unwrap();
    let out = tr.minibatch(&prep, 0).unwrap();
    assert!(out.s2t_candidates > 0 && out.s2t_masked > 0);
    assert!(out.s2t_masked < out.s2t_candidates);
}

// §4.1.6: nothing masked → STAPO is DAPO bit-for-bit; gradient independent of the micro-batch
// split.
#[test]
fn stapo_equals_dapo_when_nothing_is_masked() {
    let model = tiny_model_f64(6);
    let groups = random_groups(4, 4, 33);
    let run = |loss: LossPreset| {
        let mut tr = Trainer::new(&model, preset_config(loss)).unwrap();
        let prep = tr.prepare(&groups).unwrap();
        tr.minibatch(&prep, 0).unwrap()
    };
    let a = run(LossPreset::Stapo);
    let b = run(LossPreset::Dapo);
    assert_eq!(
        a.s2t_candidates, 0,
        "τ_p = 0.002 finds no candidate on a random tiny model"
    );
    assert_eq!(a.loss.to_bits(), b.loss.to_bits());
    for (x, y) in a.grads.unwrap().iter().zip(b.grads.unwrap().iter()) {
        assert_eq!(f64_bits(x.as_ref().unwrap()), f64_bits(y.as_ref().unwrap()));
    }
}

#[test]
fn gradient_does_not_depend_on_the_micro_batch_split() {
    let model = tiny_model_f64(7);
    let groups = random_groups(4, 4, 44);
    for preset in [LossPreset::Stapo, LossPreset::Grpo, LossPreset::DrGrpo] {
        let mut cfg = preset_config(preset);
        cfg.s2t_tau_p = 0.05;
        let mut tr = Trainer::new(&model, cfg).unwrap();
        let mut prep = tr.prepare(&groups).unwrap();
        shift_prox(&mut prep);
        let mut results = Vec::new();
        for size in [1usize, 2, 3, 16] {
            tr.config.micro_batch_size = size;
            let o = tr.minibatch(&prep, 0).unwrap();
            assert!(o.s2t_masked > 0 || preset != LossPreset::Stapo);
            results.push((o.loss, o.grads.unwrap()));
        }
        let (l0, g0) = &results[0];
        let gmax = max_abs_grad(g0);
        for (l, g) in &results[1..] {
            assert!(
                (l - l0).abs() <= 1e-6 * l0.abs().max(1e-12),
                "{preset:?}: {l} vs {l0}"
            );
            for (x, y) in g.iter().zip(g0) {
                let d = max_abs_diff(x.as_ref().unwrap(), y.as_ref().unwrap());
                assert!(
                    d <= 1e-6 * gmax,
                    "{preset:?}: max diff {d} vs max grad {gmax}"
                );
            }
        }
    }
}

/// The hand-written backward (decoder tape, LM head, fused log-prob kernel) against candle's
/// autograd through the same forward (fused ops with their backward): same loss and gradients,
/// with the KL and entropy terms and a temperature.
#[test]
fn hand_written_backward_matches_autograd() {
    let model = tiny_model_f64(7);
    let groups = random_groups(4, 4, 44);
    let mut cfg = preset_config(LossPreset::Grpo);
    cfg.kl_coef = 0.1;
    cfg.entropy_coef = 0.05;
    cfg.temperature = 0.7;
    cfg.micro_batch_size = 3;
    let mut tr = Trainer::new(&model, cfg).unwrap();
    tr.set_reference(tiny_model_f64(8));
    let mut prep = tr.prepare(&groups).unwrap();
    shift_prox(&mut prep);
    let (a, b) = taped_and_autograd(&tr, &prep);
    assert!(
        (a.loss - b.loss).abs() <= 1e-9 * b.loss.abs().max(1e-12),
        "{} vs {}",
        a.loss,
        b.loss
    );
    assert_eq!(
        (a.stats.clipped, a.stats.tokens),
        (b.stats.clipped, b.stats.tokens)
    );
    let (ga, gb) = (a.grads.unwrap(), b.grads.unwrap());
    let gmax = max_abs_grad(&gb);
    for ((x, y), (name, _)) in ga.iter().zip(&gb).zip(model.named_vars()) {
        let d = max_abs_diff(x.as_ref().unwrap(), y.as_ref().unwrap());
        assert!(d <= 1e-6 * gmax, "{name}: max diff {d} vs max grad {gmax}");
    }
}

// §4.1.7: all-equal group.
#[test]
fn all_equal_group_gives_zero_loss_and_gradient() {
    let model = tiny_model(2);
    let mut groups = toy_rollouts(&model, 2, 8, 3);
    for g in &mut groups {
        for s in &mut g.samples {
            s.reward = 1.0;
        }
    }
    let mut cfg = toy_config(OptimizerKind::Magma, 1e-2);
    cfg.s2t_tau_p = 1.0; // every token would be a candidate if Â > 0
    let before = weight_bits(&model);
    let mut tr = Trainer::new(&model, cfg).unwrap();
    let prep = tr.prepare(&groups).unwrap();
    assert!(prep.seqs.iter().all(|s| s.advantage == 0.0));
    let out = tr.minibatch(&prep, 0).unwrap();
    assert_eq!((out.s2t_candidates, out.s2t_masked), (0, 0));
    assert_eq!(out.loss, 0.0);
    for g in out.grads.unwrap().iter().flatten() {
        assert_eq!(max_abs(g), 0.0);
    }
    let m = tr.train_step(&groups).unwrap();
    assert_eq!(m.frac_zero_adv_groups, 1.0);
    assert_eq!((m.loss, m.s2t_masked, m.s2t_candidates), (0.0, 0, 0));
    assert!(!m.loss.is_nan() && !m.grad_norm_pre_clip.is_nan());
    assert_eq!(m.grad_norm_pre_clip, 0.0);
    // Zero-advantage tokens stay in the denominator and the step runs (with a zero update).
    assert_eq!(m.optimizer_steps, 2);
    assert_eq!(weight_bits(&model), before);
}

// §4.1.8: empty valid set.
#[test]
fn empty_valid_set_skips_the_step() {
    let model = tiny_model(2);
    let before = weight_bits(&model);
    // (a) No response tokens at all.
    let mut groups = toy_rollouts(&model, 2, 4, 3);
    for g in &mut groups {
        for s in &mut g.samples {
            s.completion_ids.clear();
            s.behaviour_logprobs.clear();
            s.raw_logprobs.clear();
            s.entropies.clear();
            s.policy_versions.clear();
        }
        g.samples[0].reward = 1.0;
    }
    let mut tr = Trainer::new(&model, toy_config(OptimizerKind::Magma, 1e-2)).unwrap();
    let m = tr.train_step(&groups).unwrap();
    assert_eq!(m.skipped_empty_minibatches, 2);
    assert_eq!((m.optimizer_steps, m.loss), (0, 0.0));
    assert!(!m.loss.is_nan() && !m.clip_frac.is_nan() && !m.s2t_masked_frac.is_nan());
    assert_eq!(tr.policy_version(), 0);
    assert_eq!(tr.optimizer().t(), 0);
    for p in tr.optimizer().params() {
        assert_eq!(max_abs(&p.first_moment), 0.0);
        assert_eq!(
            p.align_score,
            p.masked.then_some(0.5),
            "no Magma state update"
        );
    }
    assert_eq!(weight_bits(&model), before);
    // (b) Every token masked by IcePop (behaviour log-probs far from the trainer's).
    let mut groups = toy_rollouts(&model, 2, 4, 3);
    for g in &mut groups {
        for s in &mut g.samples {
            for l in &mut s.behaviour_logprobs {
                *l -= 5.0;
            }
        }
    }
    let mut cfg = toy_config(OptimizerKind::AdamW, 1e-2);
    cfg.correction.mode = CorrectionMode::Icepop;
    let mut tr = Trainer::new(&model, cfg).unwrap();
    let m = tr.train_step(&groups).unwrap();
    assert_eq!(m.skipped_empty_minibatches, 2);
    assert_eq!(m.mismatch.is_masked_frac, 1.0);
    assert_eq!(weight_bits(&model), before);
}

// lr = 0: ratios exactly 1 and no clipping on rollouts of the model itself.
#[test]
fn lr_zero_gives_unit_ratios() {
    for temperature in [1.0, 0.7] {
        let model = tiny_model(9);
        let before = weight_bits(&model);
        let mut cfg = toy_config(OptimizerKind::AdamW, 0.0);
        cfg.temperature = temperature;
        cfg.num_minibatches = 4;
        cfg.micro_batch_size = 3;
        let mut tr = Trainer::new(&model, cfg).unwrap();
        let mut rng = crate::rng::SplitMix64::new(17);
        for _ in 0..3 {
            let groups = toy_rollouts_at(&model, 8, 8, &mut rng, temperature, tr.policy_version());
            let m = tr.train_step(&groups).unwrap();
            assert_eq!(m.ratio_max_abs_dev, 0.0, "T = {temperature}");
            assert_eq!(m.ratio_mean, 1.0);
            assert_eq!(m.clip_frac, 0.0);
            assert_eq!(m.optimizer_steps, 4);
            // The naive sampler (fused inference kernels) and the trainer agree closely, which
            // also shows that the trainer reads logits / T.
            assert!(
                m.mismatch.max_abs_diff < 1e-4,
                "{}",
                m.mismatch.max_abs_diff
            );
            assert!(m.mismatch.ess > 0.999);
        }
        assert_eq!(tr.policy_version(), 12);
        assert_eq!(weight_bits(&model), before);
    }
}

#[test]
fn cheap_mode_uses_rollout_logprobs() {
    let model = tiny_model(9);
    let mut cfg = toy_config(OptimizerKind::AdamW, 0.0);
    cfg.proximal = ProximalMode::Rollout;
    cfg.band_mask = true;
    let mut tr = Trainer::new(&model, cfg).unwrap();
    let groups = toy_rollouts(&model, 4, 8, 1);
    let m = tr.train_step(&groups).unwrap();
    assert!(m.ratio_max_abs_dev > 0.0 && m.ratio_max_abs_dev < 1e-4);
    assert_eq!(m.band_masked_frac, 0.0);
    // The rollout ↔ trainer mismatch comes from the first mini-batch's training forward.
    assert!(m.mismatch.tokens > 0 && m.mismatch.tokens < m.response_tokens);
    assert!(m.mismatch.max_abs_diff > 0.0 && m.mismatch.max_abs_diff < 1e-4);
    assert!(m.mismatch.mismatch_k3.abs() < 1e-8);
    // S2T in cheap mode needs the runtime's raw log-probs and entropies.
    let mut bad = groups.clone();
    bad[0].samples[0].entropies.clear();
    let mut cfg = toy_config(OptimizerKind::AdamW, 0.0);
    cfg.proximal = ProximalMode::Rollout;
    let mut tr = Trainer::new(&model, cfg).unwrap();
    assert!(matches!(
        tr.train_step(&bad),
        Err(TrainerError::InvalidSample { .. })
    ));
}

#[test]
fn trainer_over_an_arc_model_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<Trainer<Arc<Model>>>();
    let model = Arc::new(tiny_model(1));
    let mut tr = Trainer::new(model.clone(), toy_config(OptimizerKind::AdamW, 1e-3)).unwrap();
    let groups = toy_rollouts(&model, 2, 4, 1);
    let m = std::thread::spawn(move || tr.train_step(&groups).unwrap())
        .join()
        .unwrap();
    assert_eq!(m.optimizer_steps, 2);
}

#[test]
fn fused_proximal_kernels_are_close() {
    let model = tiny_model(9);
    let mut cfg = toy_config(OptimizerKind::AdamW, 0.0);
    cfg.proximal_fused_kernels = true;
    let mut tr = Trainer::new(&model, cfg).unwrap();
    let m = tr.train_step(&toy_rollouts(&model, 4, 8, 1)).unwrap();
    assert!(m.ratio_max_abs_dev < 1e-4 && m.clip_frac == 0.0);
}

// §4.2.9 on a real model: Magma masks exactly the attention and MLP matrices.
#[test]
fn magma_masks_attention_and_mlp_matrices_of_the_model() {
    let model = tiny_model(1);
    let tr = Trainer::new(&model, toy_config(OptimizerKind::Magma, 1e-2)).unwrap();
    let masked: Vec<&str> = tr
        .optimizer()
        .params()
        .iter()
        .filter(|p| p.align_score.is_some())
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(masked.len(), 2 * 7);
    assert!(masked.iter().all(|n| n.contains("_proj.weight")));
}

#[test]
fn invalid_input_is_a_typed_error() {
    let model = tiny_model(1);
    let mut tr = Trainer::new(&model, toy_config(OptimizerKind::AdamW, 1e-2)).unwrap();
    let mut groups = toy_rollouts(&model, 2, 2, 1);
    groups[1].samples[1].behaviour_logprobs.push(0.0);
    let e = tr.train_step(&groups).unwrap_err();
    assert!(
        matches!(
            e,
            TrainerError::InvalidSample {
                group: 1,
                sample: 1,
                ..
            }
        ),
        "{e}"
    );
    let mut groups = toy_rollouts(&model, 1, 2, 1);
    groups[0].samples[0].prompt_ids.clear();
    assert!(tr.train_step(&groups).is_err());
    let mut cfg = toy_config(OptimizerKind::AdamW, 1e-2);
    cfg.kl_coef = 0.1;
    let mut tr = Trainer::new(&model, cfg).unwrap();
    assert!(matches!(
        tr.train_step(&toy_rollouts(&model, 1, 2, 1)),
        Err(TrainerError::Config(_))
    ));
    let cfg = TrainerConfig {
        temperature: 0.0,
        ..Default::default()
    };
    assert!(Trainer::new(&model, cfg).is_err());
}

#[test]
fn minibatches_versions_and_shared_counters() {
    let model = tiny_model(1);
    let version = Arc::new(AtomicU64::new(40));
    let lock = Arc::new(RwLock::new(()));
    let mut cfg = toy_config(OptimizerKind::AdamW, 1e-3);
    cfg.num_minibatches = 4;
    let mut tr = Trainer::new(&model, cfg)
        .unwrap()
        .with_policy_version(version.clone())
        .with_weight_lock(lock.clone());
    let mut groups = toy_rollouts_at(&model, 5, 4, &mut crate::rng::SplitMix64::new(1), 1.0, 38);
    groups[0].t_start = 0;
    let m = tr.train_step(&groups).unwrap();
    assert_eq!(m.optimizer_steps, 4);
    assert_eq!(version.load(Ordering::SeqCst), 44);
    assert_eq!((m.version_lag_max, m.version_lag_mean), (2, 2.0));
    assert_eq!((m.train_step, m.policy_version), (1, 44));
    let m = tr.train_step(&groups[..2]).unwrap();
    assert_eq!(m.optimizer_steps, 2, "never more mini-batches than groups");
    assert_eq!(m.group_age_max, 1);
    assert!(lock.try_write().is_ok(), "the lock is released");
    // The metrics serialise to one JSON object.
    let j = serde_json::to_value(&m).unwrap();
    assert!(j.get("mismatch_kl").is_some() && j.get("timings").is_some());
}

// §4.2.8 and the checkpoint requirement: save at step 10, restore into a fresh model and
// trainer, continue to 20: bit-identical to the uninterrupted run (AdamW and Magma state, s,
// mask RNG, trainer RNG, counters, and the caller's data cursor).
#[test]
fn resume_is_bit_identical() {
    for kind in [OptimizerKind::Magma, OptimizerKind::AdamW] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = toy_config(kind, 2e-2);
        cfg.optimizer.adamw.weight_decay = 0.01;
        cfg.num_minibatches = 2;
        cfg.micro_batch_size = 5;
        let run = |model: &Model,
                   tr: &mut Trainer<&Model>,
                   rng: &mut crate::rng::SplitMix64,
                   from: u64,
                   to: u64,
                   save: Option<u64>| {
            for step in from..to {
                let groups = toy_rollouts_at(model, 4, 8, rng, 1.0, tr.policy_version());
                tr.train_step(&groups).unwrap();
                if save == Some(step + 1) {
                    let cursor = serde_json::to_value(*rng).unwrap();
                    tr.save_checkpoint(dir.path(), &cursor, 3).unwrap();
                }
            }
        };
        let model_a = tiny_model(5);
        let mut tr_a = Trainer::new(&model_a, cfg.clone()).unwrap();
        let mut rng_a = crate::rng::SplitMix64::new(77);
        run(&model_a, &mut tr_a, &mut rng_a, 0, 20, Some(10));

        let model_b = tiny_model(123); // different initial weights: everything must come from the checkpoint
        let mut tr_b = Trainer::new(&model_b, cfg.clone()).unwrap();
        let ck = crate::checkpoint::list_checkpoints(dir.path()).unwrap();
        assert_eq!(ck.len(), 1);
        let cursor = tr_b.load_checkpoint(&ck[0].1).unwrap().data_cursor;
        let mut rng_b: crate::rng::SplitMix64 = serde_json::from_value(cursor).unwrap();
        assert_eq!(tr_b.train_step_count(), 10);
        run(&model_b, &mut tr_b, &mut rng_b, 10, 20, None);

        assert_eq!(weight_bits(&model_a), weight_bits(&model_b), "{kind:?}");
        assert_eq!(tr_a.policy_version(), tr_b.policy_version());
        assert_same_optimizer_state(&tr_a, &tr_b);
        assert_eq!(tr_a.rng, tr_b.rng);
    }
}

/// Train the toy task for `steps` steps; returns (mean reward of the first 3 steps, of the last 5,
/// first step whose 3-step mean exceeds 0.9, wall seconds).
fn learn(kind: OptimizerKind, lr: f64, steps: usize, seed: u64) -> (f64, f64, Option<usize>, f64) {
    let t = Instant::now();
    let model = tiny_model(11 + seed);
    let mut cfg = toy_config(kind, lr);
    cfg.num_minibatches = 2;
    cfg.micro_batch_size = 64;
    let mut tr = Trainer::new(&model, cfg).unwrap();
    let mut rng = crate::rng::SplitMix64::new(2024 + seed);
    let mut rewards = Vec::new();
    let mut s2t_frac = Vec::new();
    let mut reached = None;
    for step in 0..steps {
        let groups = toy_rollouts_at(&model, 16, 8, &mut rng, 1.0, tr.policy_version());
        let m = tr.train_step(&groups).unwrap();
        assert!(m.loss.is_finite() && m.grad_norm_pre_clip.is_finite());
        rewards.push(m.reward_mean);
        s2t_frac.push(m.s2t_masked_frac);
        if step % 10 == 0 {
            eprintln!(
                "{kind:?} step {step}: reward {:.3} clip {:.3} s2t {:.2e} H {:.3} gn {:.3}",
                m.reward_mean, m.clip_frac, m.s2t_masked_frac, m.entropy_mean, m.grad_norm_pre_clip
            );
        }
        let n = rewards.len();
        if reached.is_none() && n >= 3 && rewards[n - 3..].iter().sum::<f64>() / 3.0 > 0.9 {
            reached = Some(step + 1);
        }
    }
    let n = rewards.len();
    let first = rewards[..3].iter().sum::<f64>() / 3.0;
    let last = rewards[n - 5..].iter().sum::<f64>() / 5.0;
    // §4.1.9's alert level for the spurious-token fraction.
    let s2t_mean = s2t_frac.iter().sum::<f64>() / n as f64;
    assert!(s2t_mean < 1e-2, "s2t_masked_frac {s2t_mean}");
    (first, last, reached, t.elapsed().as_secs_f64())
}

/// The toy task (prompt `[BOS, d]`, reward 1 iff the first token is d, chance 1/32) learned from
/// naive-sampler rollouts, 16 prompts × G = 8 per step, 150 steps, three seeds.
fn learns(kind: OptimizerKind, lr: f64) {
    let t = Instant::now();
    for seed in 0..3 {
        let (first, last, reached, secs) = learn(kind, lr, 150, seed);
        eprintln!(
            "{kind:?} lr {lr} seed {seed}: reward {first:.3} → {last:.3} (3-step mean > 0.9 at step {reached:?}), {secs:.2}s"
        );
        assert!(first < 0.1, "starts near chance");
        assert!(last > 0.9, "{kind:?} seed {seed}: final reward {last}");
    }
    eprintln!("{kind:?}: 3 runs in {:.2}s", t.elapsed().as_secs_f64());
}

#[test]
fn learns_the_toy_task_with_adamw() {
    learns(OptimizerKind::AdamW, 5e-3);
}

#[test]
fn learns_the_toy_task_with_magma() {
    // Magma's mean step is ≈ ¼ of AdamW's (p·s): a 2× higher LR, as algorithms.md §2.4 suggests.
    learns(OptimizerKind::Magma, 1e-2);
}

/// Half-precision weights on the CPU, as bf16 weights are on CUDA (candle's CPU backend has no
/// bf16 matmul, so f16 stands in): the trainer runs candle's autograd over composed ops (the path
/// it takes on CUDA), keeps f32 masters in the optimizer, refreshes the shared half-precision
/// weights in place after each step, sums micro-batch gradients in f32 and logs the
/// rollout ↔ trainer mismatch.
#[test]
fn half_weights_train_on_the_autograd_path_with_f32_masters() {
    let model = Model::random(tiny_config(2, 16), 9, DType::F16, &Device::Cpu).unwrap();
    assert!(!model.supports_taped_backward());
    // A view taken before training: in-place refreshes must show through it.
    let view = model
        .named_vars()
        .find(|(n, _)| n.contains("layers.1.self_attn.q_proj"))
        .map(|(_, v)| v.as_detached_tensor())
        .unwrap();

    // lr = 0: the trainer's forward equals the proximal one, ratio exactly 1.
    let mut cfg = toy_config(OptimizerKind::AdamW, 0.0);
    cfg.proximal = ProximalMode::Recompute;
    let mut tr = Trainer::new(&model, cfg).unwrap();
    let mut groups = toy_rollouts(&model, 4, 8, 3);
    for g in &mut groups {
        g.samples[0].reward = 1.0; // non-zero advantages in every group
    }
    let m = tr.train_step(&groups).unwrap();
    assert_eq!(
        (m.ratio_mean, m.ratio_max_abs_dev, m.clip_frac),
        (1.0, 0.0, 0.0)
    );
    // The naive sampler and the trainer both run f16 weights: small but real mismatch.
    assert!(m.mismatch.tokens > 0 && m.mismatch.max_abs_diff < 0.1);

    let mut cfg = toy_config(OptimizerKind::AdamW, 1e-3);
    cfg.proximal = ProximalMode::Rollout;
    cfg.micro_batch_size = 3; // several micro-batches per mini-batch
    let mut tr = Trainer::new(&model, cfg).unwrap();
    // Exact values of the view (f16 → f64 is exact).
    let before = values(&view);
    let m = tr.train_step(&groups).unwrap();
    assert_eq!(m.optimizer_steps, 2);
    assert!(
        m.mismatch.tokens > 0 && m.mismatch.max_abs_diff < 0.1,
        "{:?}",
        m.mismatch
    );
    assert!(m.timings.peak_memory_mb > 0.0);
    let after = values(&view);
    assert_ne!(before, after, "the shared f16 storage was updated in place");
    for p in tr.optimizer.params() {
        let master = p.master.as_ref().expect("f16 weights keep an f32 master");
        assert_eq!(master.dtype(), DType::F32);
        let cast = f64_bits(&master.to_dtype(DType::F16).unwrap());
        let var = f64_bits(&p.var.as_detached_tensor());
        assert_eq!(cast, var, "{}: var = f16(master)", p.name);
    }
}

/// The toy task learned with f16 weights and f32 masters (the CPU stand-in for CUDA's bf16).
#[test]
fn half_precision_learns_the_toy_task() {
    let model = Model::random(tiny_config(2, 16), 12, DType::F16, &Device::Cpu).unwrap();
    let mut cfg = toy_config(OptimizerKind::AdamW, 5e-3);
    cfg.num_minibatches = 2;
    cfg.micro_batch_size = 64;
    let mut tr = Trainer::new(&model, cfg).unwrap();
    let mut rng = crate::rng::SplitMix64::new(2024);
    let mut rewards = vec![];
    for _ in 0..150 {
        let groups = toy_rollouts_at(&model, 16, 8, &mut rng, 1.0, tr.policy_version());
        let m = tr.train_step(&groups).unwrap();
        assert!(m.loss.is_finite());
        rewards.push(m.reward_mean);
    }
    let first = rewards[..3].iter().sum::<f64>() / 3.0;
    let last = rewards[rewards.len() - 5..].iter().sum::<f64>() / 5.0;
    eprintln!("f16 AdamW: reward {first:.3} → {last:.3}");
    assert!(first < 0.1 && last > 0.9, "f16: {first} → {last}");
}
