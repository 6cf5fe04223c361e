//! Multi-turn samples: tokens the environment inserted (tool results) are context only. Checked
//! through the gradients of a tiny model: whatever an inserted token's old log-prob, proximal
//! log-prob, probability or entropy, the loss and gradient do not change; and they equal the
//! gradient of the same rows with those positions masked by hand (and the normalisation counting
//! only the model's tokens).

use super::prepare::Prepared;
use super::tests::{masking_config, max_abs_grad, shift_prox};
use super::*;
use crate::data::ScoredGroup;
use crate::loss::LossPreset;
use crate::test_util::*;
use rlvr_models::testing::{f64_bits, max_abs_diff};

/// Longer random samples, each with every third token (from the second on) inserted.
fn multi_turn_groups() -> Vec<ScoredGroup> {
    let mut groups = random_groups(4, 4, 45);
    for (gi, g) in groups.iter_mut().enumerate() {
        for (si, s) in g.samples.iter_mut().enumerate() {
            // Lengthen to 6..9 tokens so that every sample has inserted and generated tokens.
            let extra = 6 + (gi + si) % 4 - s.completion_ids.len().min(6);
            for k in 0..extra {
                s.completion_ids
                    .push(((gi * 5 + si * 3 + k) % VOCAB) as u32);
                s.behaviour_logprobs.push(-2.0 - 0.1 * k as f32);
            }
            let n = s.completion_ids.len();
            s.generated_mask = (0..n).map(|t| t % 3 != 1).collect();
        }
    }
    groups
}

fn config(preset: LossPreset) -> TrainerConfig {
    masking_config(preset, 3)
}

fn prepared(groups: &[ScoredGroup], preset: LossPreset, model: &rlvr_models::Model) -> Prepared {
    let mut tr = Trainer::new(model, config(preset)).unwrap();
    let mut prep = tr.prepare(groups).unwrap();
    shift_prox(&mut prep);
    prep
}

fn assert_same(a: &super::minibatch::MinibatchOut, b: &super::minibatch::MinibatchOut, what: &str) {
    let (ga, gb) = (a.grads.as_ref().unwrap(), b.grads.as_ref().unwrap());
    let gmax = max_abs_grad(gb);
    assert!(gmax > 0.0, "{what}: a gradient to compare");
    assert!(
        (a.loss - b.loss).abs() <= 1e-12 * b.loss.abs().max(1e-12),
        "{what}: loss"
    );
    for (x, y) in ga.iter().zip(gb) {
        let d = max_abs_diff(x.as_ref().unwrap(), y.as_ref().unwrap());
        assert!(d <= 1e-12 * gmax, "{what}: max diff {d} vs max grad {gmax}");
    }
    assert_eq!(
        a.stats.tokens, b.stats.tokens,
        "{what}: ratio/clip token counts"
    );
}

#[test]
fn inserted_tokens_change_nothing_whatever_their_scores() {
    let model = tiny_model_f64(7);
    let groups = multi_turn_groups();
    let mut perturbed = groups.clone();
    for s in perturbed.iter_mut().flat_map(|g| g.samples.iter_mut()) {
        for t in 0..s.completion_ids.len() {
            if !s.generated_mask[t] {
                s.behaviour_logprobs[t] = -30.0 + t as f32;
            }
        }
    }
    for preset in [
        LossPreset::Stapo,
        LossPreset::Grpo,
        LossPreset::DrGrpo,
        LossPreset::Dapo,
    ] {
        let a = prepared(&groups, preset, &model);
        let mut b = prepared(&perturbed, preset, &model);
        // The proximal path too: ℓ_prox, p and H of inserted tokens set to garbage.
        for s in &mut b.seqs {
            for t in 0..s.len() {
                if !s.generated[t] {
                    s.l_prox[t] += 7.0;
                    s.prob[t] = 0.999;
                    s.entropy[t] = 9.0;
                    s.is_weight[t] = 123.0;
                }
            }
        }
        let generated: usize = groups
            .iter()
            .flat_map(|g| &g.samples)
            .map(|s| s.generated_mask.iter().filter(|g| **g).count())
            .sum();
        assert_eq!(
            a.metrics.response_tokens, generated,
            "counts model tokens only"
        );
        let tr = Trainer::new(&model, config(preset)).unwrap();
        let (oa, ob) = (tr.minibatch(&a, 0).unwrap(), tr.minibatch(&b, 0).unwrap());
        assert_same(&oa, &ob, &format!("{preset:?}"));
        assert_eq!(
            (oa.s2t_candidates, oa.s2t_masked),
            (ob.s2t_candidates, ob.s2t_masked)
        );
        assert!(oa.stats.tokens <= generated);
        if preset == LossPreset::Stapo {
            assert!(oa.s2t_masked > 0, "S2T is active (over model tokens)");
        }
    }
}

#[test]
fn inserted_tokens_are_exactly_masked_positions() {
    let model = tiny_model_f64(7);
    let groups = multi_turn_groups();
    let mut plain = groups.clone();
    for s in plain.iter_mut().flat_map(|g| g.samples.iter_mut()) {
        s.generated_mask.clear();
    }
    for preset in [LossPreset::Grpo, LossPreset::DrGrpo, LossPreset::Dapo] {
        let masked = prepared(&groups, preset, &model);
        // The same rows as single-turn data, with the inserted positions masked by hand and
        // Dr.GRPO's constant taken over model tokens.
        let mut by_hand = prepared(&plain, preset, &model);
        for (s, m) in by_hand.seqs.iter_mut().zip(&masked.seqs) {
            assert_eq!(s.row, m.row);
            assert_eq!(f64_bits_of(&s.l_prox), f64_bits_of(&m.l_prox));
            for t in 0..s.len() {
                s.is_keep[t] &= m.generated[t];
            }
        }
        by_hand.norm_len = masked.norm_len;
        assert!(masked.norm_len < by_hand.seqs.iter().map(|s| s.len()).max().unwrap());
        let tr = Trainer::new(&model, config(preset)).unwrap();
        let (a, b) = (
            tr.minibatch(&masked, 0).unwrap(),
            tr.minibatch(&by_hand, 0).unwrap(),
        );
        assert_same(&a, &b, &format!("{preset:?} vs masked by hand"));
        // And not the unmasked gradient.
        let unmasked = prepared(&plain, preset, &model);
        let c = tr.minibatch(&unmasked, 0).unwrap();
        assert!(
            (c.loss - a.loss).abs() > 1e-9,
            "{preset:?}: the mask matters"
        );
    }
}

fn f64_bits_of(xs: &[f64]) -> Vec<u64> {
    let t = candle_core::Tensor::new(xs, &candle_core::Device::Cpu).unwrap();
    f64_bits(&t)
}
