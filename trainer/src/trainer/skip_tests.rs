//! Zero-advantage skipping (`skip_zero_advantage`): the gradient, the loss and a whole train step
//! are bit for bit those without skipping, for every loss preset, while the skipped samples'
//! tokens stay in the denominators.

use super::tests::{masking_config, shift_prox};
use super::*;
use crate::data::ScoredGroup;
use crate::loss::LossPreset;
use crate::test_util::*;
use rlvr_models::testing::values;

/// Bit patterns with −0 read as +0 (a skipped micro-batch adds no −0).
fn bits(t: &Tensor) -> Vec<u64> {
    values(t).into_iter().map(|x| (x + 0.0).to_bits()).collect()
}

/// Four groups of four; groups 1 and 2 (of the caller's order) with all-equal rewards.
fn groups_with_zero_adv() -> Vec<ScoredGroup> {
    let mut groups = random_groups(4, 4, 44);
    for (gi, g) in groups.iter_mut().enumerate() {
        for (si, s) in g.samples.iter_mut().enumerate() {
            s.reward = match gi {
                1 => 1.0,
                2 => 0.0,
                _ => (si % 2) as f64,
            };
        }
    }
    groups
}

fn config(preset: LossPreset, skip: bool, micro: usize) -> TrainerConfig {
    let mut c = masking_config(preset, micro);
    c.skip_zero_advantage = skip;
    c
}

#[test]
fn skipping_zero_advantage_is_bit_identical_for_every_preset() {
    let model = tiny_model_f64(7);
    let groups = groups_with_zero_adv();
    for preset in [
        LossPreset::Grpo,
        LossPreset::Dapo,
        LossPreset::DrGrpo,
        LossPreset::Stapo,
    ] {
        for (micro, share) in [(4, true), (3, true), (16, true), (3, false)] {
            let run = |skip: bool| {
                let mut cfg = config(preset, skip, micro);
                cfg.share_prompt = share;
                let mut tr = Trainer::new(&model, cfg).unwrap();
                let mut prep = tr.prepare(&groups).unwrap();
                shift_prox(&mut prep);
                tr.minibatch(&prep, 0).unwrap()
            };
            let (on, off) = (run(true), run(false));
            let label = format!("{preset:?}, micro-batches of {micro}, shared {share}");
            // The zero-advantage groups sit at 8..16. Micro-batches of 4 are whole groups: both
            // are skipped; of 3, split by group (shared prompts) or every 3 samples (from 9 on);
            // of 16, nothing (one holds every group).
            let expected = match (micro, share) {
                (16, _) => 0,
                (3, false) => 7,
                _ => 8,
            };
            assert_eq!(on.skipped_samples, expected, "{label}");
            assert_eq!(off.skipped_samples, 0, "{label}");
            assert_eq!(
                (on.loss + 0.0).to_bits(),
                (off.loss + 0.0).to_bits(),
                "{label}"
            );
            assert_eq!((on.pg_loss + 0.0).to_bits(), (off.pg_loss + 0.0).to_bits());
            let (g_on, g_off) = (on.grads.unwrap(), off.grads.unwrap());
            for ((x, y), (name, _)) in g_on.iter().zip(&g_off).zip(model.named_vars()) {
                let (x, y) = (x.as_ref().unwrap(), y.as_ref().unwrap());
                assert_eq!(bits(x), bits(y), "{label}: {name}");
            }
        }
    }
}

/// A whole train step (two mini-batches, one of them all zero-advantage) leaves the same weights
/// and optimizer state, and reports what it skipped.
#[test]
fn train_step_with_skipping_is_bit_identical() {
    let mut groups = groups_with_zero_adv();
    for s in &mut groups[3].samples {
        s.reward = 0.5;
    }
    let run = |skip: bool| {
        let model = tiny_model_f64(7);
        let mut cfg = config(LossPreset::Grpo, skip, 4);
        cfg.num_minibatches = 2;
        cfg.shuffle = false;
        cfg.optimizer.adamw.weight_decay = 0.01;
        let mut tr = Trainer::new(&model, cfg).unwrap();
        let m = tr.train_step(&groups).unwrap();
        (weight_bits(&model), m)
    };
    let ((w_on, m_on), (w_off, m_off)) = (run(true), run(false));
    assert_eq!(w_on, w_off);
    assert_eq!(m_on.frac_zero_adv_groups, 0.75);
    assert_eq!(m_on.zero_adv_skipped_samples, 12);
    assert_eq!(m_off.zero_adv_skipped_samples, 0);
    let tokens: usize = groups[1..]
        .iter()
        .flat_map(|g| &g.samples)
        .map(|s| s.completion_ids.len())
        .sum();
    assert_eq!(m_on.zero_adv_skipped_tokens, tokens);
    assert!(m_on.timings.zero_adv_saved_ms > 0.0);
    assert_eq!(m_on.optimizer_steps, 2);
    assert_eq!((m_on.loss + 0.0).to_bits(), (m_off.loss + 0.0).to_bits());
    assert_eq!(m_on.grad_norm_pre_clip, m_off.grad_norm_pre_clip);
}

/// With a KL or an entropy term zero-advantage samples have a gradient: nothing is skipped.
#[test]
fn no_skipping_with_kl_or_entropy_terms() {
    let model = tiny_model_f64(7);
    let groups = groups_with_zero_adv();
    let mut cfg = config(LossPreset::Grpo, true, 4);
    for (kl, entropy) in [(0.0, 0.01), (0.1, 0.0)] {
        cfg.entropy_coef = entropy;
        cfg.kl_coef = kl;
        let mut tr = Trainer::new(&model, cfg.clone()).unwrap();
        tr.set_reference(tiny_model_f64(8));
        let prep = tr.prepare(&groups).unwrap();
        assert_eq!(tr.minibatch(&prep, 0).unwrap().skipped_samples, 0);
    }
}
