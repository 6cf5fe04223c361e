//! The packed layout (`share_prompt`) against the unshared rows: gradients, log-probs and
//! entropies of every loss preset on tiny models of all three architectures, micro-batches that
//! split a group, the hand-written backward against autograd, and finite differences.

use super::forward::FORCE_AUTOGRAD;
use super::tests::{fd_check_step, masking_config, max_abs_grad, shift_prox};
use super::*;
use crate::data::ScoredGroup;
use crate::loss::LossPreset;
use crate::test_util::*;
use candle_core::{DType, Device};
use rlvr_models::testing::max_abs_diff;
use rlvr_models::{Architecture, ModelConfig};

const PRESETS: [LossPreset; 4] = [
    LossPreset::Grpo,
    LossPreset::Dapo,
    LossPreset::DrGrpo,
    LossPreset::Stapo,
];

fn model(arch: Architecture, dtype: DType, seed: u64) -> Model {
    let cfg = ModelConfig {
        arch,
        qkv_bias: arch == Architecture::Qwen2,
        qk_norm: arch == Architecture::Qwen3,
        ..tiny_config(2, 16)
    };
    Model::random(cfg, seed, dtype, &Device::Cpu).unwrap()
}

/// Groups whose samples share their group's prompt (1 to 5 tokens), with completions of 1 to 5
/// tokens and one empty completion.
fn shared_groups(n_groups: usize, g: usize, seed: u64) -> Vec<ScoredGroup> {
    let mut groups = random_groups(n_groups, g, seed);
    for (gi, group) in groups.iter_mut().enumerate() {
        let prompt: Vec<u32> = (0..1 + gi % 5)
            .map(|t| (3 + 5 * gi + t) as u32 % 32)
            .collect();
        for s in &mut group.samples {
            s.prompt_ids = prompt.clone();
        }
    }
    let empty = &mut groups[0].samples[1];
    empty.completion_ids.clear();
    empty.behaviour_logprobs.clear();
    groups
}

fn config(preset: LossPreset, share: bool, micro: usize) -> TrainerConfig {
    let mut c = masking_config(preset, micro);
    c.share_prompt = share;
    c
}

fn assert_close_grads(
    a: &[Option<Tensor>],
    b: &[Option<Tensor>],
    model: &Model,
    tol: f64,
    what: &str,
) {
    let gmax = max_abs_grad(b);
    assert!(gmax > 0.0, "{what}: zero gradient");
    for ((x, y), (name, _)) in a.iter().zip(b).zip(model.named_vars()) {
        let d = max_abs_diff(x.as_ref().unwrap(), y.as_ref().unwrap());
        assert!(
            d <= tol * gmax,
            "{what}/{name}: max diff {d} vs max grad {gmax}"
        );
    }
}

/// Per-token values of the proximal forward agree within `tol`.
fn assert_close_values(a: &[f64], b: &[f64], tol: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * y.abs().max(1.0),
            "{what}[{i}]: {x} vs {y}"
        );
    }
}

/// Every preset, every architecture, f32: the shared layout's gradient within 1e-5 of the
/// unshared one (micro-batches of whole groups, and of 3 that split groups of 4), with its
/// log-probs and entropies within 1e-5.
#[test]
fn shared_prompt_matches_unshared_for_every_preset_and_architecture() {
    let groups = shared_groups(3, 4, 44);
    for arch in [
        Architecture::Llama,
        Architecture::Qwen2,
        Architecture::Qwen3,
    ] {
        let model = model(arch, DType::F32, 7);
        for preset in PRESETS {
            let run = |share: bool, micro: usize| {
                let mut tr = Trainer::new(&model, config(preset, share, micro)).unwrap();
                let mut prep = tr.prepare(&groups).unwrap();
                let flat = |f: fn(&Seq) -> &Vec<f64>| -> Vec<f64> {
                    prep.seqs
                        .iter()
                        .flat_map(|s| f(s).iter().copied())
                        .collect()
                };
                let stats = (flat(|s| &s.l_prox), flat(|s| &s.prob), flat(|s| &s.entropy));
                shift_prox(&mut prep);
                let n = prep.seqs.len().max(1) as f64;
                let mean_abs_adv = prep.seqs.iter().map(|s| s.advantage.abs()).sum::<f64>() / n;
                (stats, tr.minibatch(&prep, 0).unwrap(), mean_abs_adv)
            };
            let (base_stats, base, loss_scale) = run(false, 16);
            assert!(base.stats.clipped > 0);
            for micro in [16, 4, 3] {
                let what = format!("{arch:?} {preset:?} micro {micro}");
                let (stats, out, _) = run(true, micro);
                assert_close_values(&stats.0, &base_stats.0, 1e-5, &format!("{what} ℓ"));
                assert_close_values(&stats.1, &base_stats.1, 1e-5, &format!("{what} p"));
                assert_close_values(&stats.2, &base_stats.2, 1e-5, &format!("{what} H"));
                // The loss is a sum of per-token terms of size ≈ |A| that cancel (Qwen2/GRPO:
                // 2.6e-4 from terms of ≈ 0.8): 1e-5 relative to the terms' scale. Measured there,
                // micro-batches of 3 move the loss by 3.7e-9 shared and by 7.5e-9 (2.9e-5 of
                // the total) unshared: f32 summation order, not the layout (gradients 2e-7).
                let scale = base.loss.abs().max(loss_scale);
                assert!(
                    (out.loss - base.loss).abs() <= 1e-5 * scale,
                    "{what}: loss {} vs {} (scale {scale})",
                    out.loss,
                    base.loss
                );
                assert_eq!(out.stats.tokens, base.stats.tokens, "{what}");
                assert_eq!(out.s2t_masked, base.s2t_masked, "{what}");
                assert_close_grads(
                    out.grads.as_ref().unwrap(),
                    base.grads.as_ref().unwrap(),
                    &model,
                    1e-5,
                    &what,
                );
            }
        }
    }
}

/// Micro-batches keep groups whole where they fit and split larger ones by whole completions.
#[test]
fn micro_batches_keep_groups_whole() {
    let model = tiny_model_f64(7);
    let groups = shared_groups(3, 4, 44);
    let cfg = |share, micro| config(LossPreset::Grpo, share, micro);
    let mut tr = Trainer::new(&model, cfg(true, 6)).unwrap();
    let prep = tr.prepare(&groups).unwrap();
    let all = 0..prep.seqs.len();
    assert_eq!(tr.micro_batches(&prep.seqs, &all), [0..4, 4..8, 8..12]);
    tr.config.micro_batch_size = 8;
    assert_eq!(tr.micro_batches(&prep.seqs, &all), [0..8, 8..12]);
    tr.config.micro_batch_size = 3;
    assert_eq!(
        tr.micro_batches(&prep.seqs, &all),
        [0..3, 3..4, 4..7, 7..8, 8..11, 11..12]
    );
    tr.config.share_prompt = false;
    tr.config.micro_batch_size = 6;
    assert_eq!(tr.micro_batches(&prep.seqs, &all), [0..6, 6..12]);
}

/// The hand-written backward through the packed layout against candle's autograd through the
/// same forward (KL, entropy bonus and a temperature on), in f64.
#[test]
fn shared_hand_written_backward_matches_autograd() {
    let groups = shared_groups(3, 4, 45);
    for arch in [Architecture::Llama, Architecture::Qwen3] {
        let model = model(arch, DType::F64, 9);
        let mut cfg = config(LossPreset::Grpo, true, 3);
        cfg.kl_coef = 0.1;
        cfg.entropy_coef = 0.05;
        cfg.temperature = 0.7;
        let mut tr = Trainer::new(&model, cfg).unwrap();
        tr.set_reference(self::model(arch, DType::F64, 10));
        let mut prep = tr.prepare(&groups).unwrap();
        shift_prox(&mut prep);
        let run = |force: bool| {
            FORCE_AUTOGRAD.with(|f| f.set(force));
            let o = tr.minibatch(&prep, 0).unwrap();
            FORCE_AUTOGRAD.with(|f| f.set(false));
            o
        };
        let (a, b) = (run(false), run(true));
        assert!((a.loss - b.loss).abs() <= 1e-9 * b.loss.abs().max(1e-6));
        let what = format!("{arch:?}");
        assert_close_grads(
            a.grads.as_ref().unwrap(),
            b.grads.as_ref().unwrap(),
            &model,
            1e-6,
            &what,
        );
    }
}

/// Finite differences of the loss through the packed layout, groups split across micro-batches
/// (the same model and tolerances as the unshared check; the other architectures are held to the
/// unshared gradient above). The step is 1e-3, not 2e-3: at this point the loss curves enough
/// that the central difference along the gradient is off by 3.0e-4 (relative) at h = 2e-3 and
/// 7.3e-5 at h = 1e-3 (O(h²) truncation), identically with and without sharing.
#[test]
fn shared_prompt_finite_differences() {
    let groups = shared_groups(3, 4, 46);
    for preset in [LossPreset::Grpo, LossPreset::DrGrpo] {
        let model = model(Architecture::Llama, DType::F64, 4);
        let cfg = config(preset, true, 3);
        let label = format!("{preset:?}, shared prompt");
        fd_check_step(&groups, &model, cfg, 1e-3, &label);
    }
}

/// A whole train step with the packed layout (the default) is deterministic and moves the
/// weights as the unshared one does, up to round-off.
#[test]
fn shared_train_step_matches_unshared() {
    let groups = shared_groups(4, 4, 47);
    let run = |share: bool| {
        let model = model(Architecture::Llama, DType::F64, 3);
        let mut cfg = config(LossPreset::Dapo, share, 5);
        cfg.num_minibatches = 2;
        let mut tr = Trainer::new(&model, cfg).unwrap();
        tr.train_step(&groups).unwrap();
        model
            .vars()
            .iter()
            .map(|v| v.as_detached_tensor())
            .collect::<Vec<_>>()
    };
    let (a, b) = (run(true), run(false));
    for (x, y) in a.iter().zip(&b) {
        assert!(max_abs_diff(x, y) <= 1e-9, "{}", max_abs_diff(x, y));
    }
}

/// LoRA adapters and activation recomputation through the packed layout: the adapters' gradients
/// within 1e-5 of the unshared ones (f32, groups split by micro-batches of 3), and recomputation
/// bit-identical to the stored tape.
#[test]
fn shared_prompt_with_lora_and_recomputation() {
    let groups = shared_groups(3, 4, 48);
    for arch in [Architecture::Llama, Architecture::Qwen2] {
        let mut model = model(arch, DType::F32, 11);
        model
            .attach_lora(rlvr_models::model::LoraConfig {
                rank: 4,
                alpha: 8.0,
                targets: rlvr_models::model::LoraTarget::ALL.to_vec(),
                rslora: false,
                seed: 2,
            })
            .unwrap();
        // Non-zero B so that every adapter (A included) has a gradient.
        for (i, (_, v)) in model.trainable().into_iter().enumerate() {
            v.set(&rlvr_models::testing::randt(
                v.dims(),
                60 + i as u64,
                0.1,
                v.dtype(),
            ))
            .unwrap();
        }
        let run = |share: bool, micro: usize, recompute: bool| {
            let mut cfg = config(LossPreset::Grpo, share, micro);
            cfg.recompute_activations = recompute;
            let mut tr = Trainer::new(&model, cfg).unwrap();
            let mut prep = tr.prepare(&groups).unwrap();
            shift_prox(&mut prep);
            tr.minibatch(&prep, 0).unwrap().grads.unwrap()
        };
        let base = run(false, 16, false);
        assert_eq!(base.len(), model.trainable().len());
        let gmax = max_abs_grad(&base);
        assert!(gmax > 0.0);
        let shared = run(true, 3, false);
        for ((x, y), (name, _)) in shared.iter().zip(&base).zip(model.trainable()) {
            let d = max_abs_diff(x.as_ref().unwrap(), y.as_ref().unwrap());
            assert!(d <= 1e-5 * gmax, "{arch:?}/{name}: {d} vs max grad {gmax}");
        }
        let recomputed = run(true, 3, true);
        for ((x, y), (name, _)) in recomputed.iter().zip(&shared).zip(model.trainable()) {
            let (x, y) = (x.as_ref().unwrap(), y.as_ref().unwrap());
            assert_eq!(max_abs_diff(x, y), 0.0, "{arch:?}/{name}: recomputed");
        }
    }
}
