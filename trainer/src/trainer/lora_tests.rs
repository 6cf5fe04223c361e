//! The trainer with LoRA adapters and with activation recomputation: only the adapters move
//! (AdamW, Magma, SkipUpdate), the taped and autograd paths agree, resume is bit-identical, and
//! recomputation changes nothing but memory.

use super::tests::{assert_same_optimizer_state, shift_prox, taped_and_autograd};
use super::*;
use crate::loss::LossPreset;
use crate::optim::OptimizerKind;
use crate::test_util::*;
use candle_core::{DType, Device};
use rlvr_models::model::{LoraConfig, LoraTarget};
use rlvr_models::testing::{f64_bits, max_abs_diff};
use rlvr_models::Model;

fn lora_cfg(seed: u64) -> LoraConfig {
    LoraConfig {
        rank: 4,
        alpha: 8.0,
        targets: LoraTarget::ALL.to_vec(),
        rslora: false,
        seed,
    }
}

fn adapted(base_seed: u64, lora_seed: u64) -> Model {
    let mut m = tiny_model(base_seed);
    m.attach_lora(lora_cfg(lora_seed)).unwrap();
    m
}

fn adapter_bits(m: &Model) -> Vec<Vec<u64>> {
    m.trainable()
        .into_iter()
        .map(|(_, v)| f64_bits(&v.as_detached_tensor()))
        .collect()
}

#[test]
fn only_the_adapters_train_with_every_optimizer() {
    for kind in [
        OptimizerKind::AdamW,
        OptimizerKind::Magma,
        OptimizerKind::SkipUpdate,
    ] {
        let model = adapted(5, 1);
        let base = weight_bits(&model);
        let adapters = adapter_bits(&model);
        let mut cfg = toy_config(kind, 2e-2);
        cfg.optimizer.magma.p = 0.9;
        let mut tr = Trainer::new(&model, cfg).unwrap();
        assert_eq!(tr.optimizer().params().len(), 2 * 2 * 7);
        assert!(tr.optimizer().params()[0]
            .name
            .ends_with("q_proj.lora_A.weight"));
        if kind != OptimizerKind::AdamW {
            assert!(tr.optimizer().params().iter().all(|p| p.masked));
        }
        let mut rng = crate::rng::SplitMix64::new(9);
        for _ in 0..3 {
            let groups = toy_rollouts_at(&model, 4, 8, &mut rng, 1.0, tr.policy_version());
            let m = tr.train_step(&groups).unwrap();
            assert!(m.loss.is_finite());
        }
        assert_eq!(weight_bits(&model), base, "{kind:?}: a frozen weight moved");
        let moved = adapter_bits(&model)
            .iter()
            .zip(&adapters)
            .filter(|(a, b)| a != b)
            .count();
        assert!(moved >= 14, "{kind:?}: only {moved} adapters moved");
    }
}

/// The trainer's hand-written backward under LoRA equals candle's autograd (f64).
#[test]
fn taped_and_autograd_adapter_gradients_agree() {
    let mut model = tiny_model_f64(7);
    model.attach_lora(lora_cfg(2)).unwrap();
    for (i, (name, v)) in model.trainable().into_iter().enumerate() {
        if name.contains("lora_B") {
            let t = rlvr_models::testing::randt(v.dims(), 50 + i as u64, 0.1, v.dtype());
            v.set(&t).unwrap();
        }
    }
    let mut cfg = toy_config(OptimizerKind::AdamW, 1e-2);
    cfg.loss = LossPreset::Grpo;
    cfg.num_minibatches = 1;
    cfg.micro_batch_size = 3;
    cfg.temperature = 0.7;
    let mut tr = Trainer::new(&model, cfg).unwrap();
    let mut prep = tr.prepare(&random_groups(4, 4, 44)).unwrap();
    shift_prox(&mut prep);
    let (a, b) = taped_and_autograd(&tr, &prep);
    let (ga, gb) = (a.grads.unwrap(), b.grads.unwrap());
    assert_eq!(ga.len(), model.trainable().len());
    for ((x, y), (name, _)) in ga.iter().zip(&gb).zip(model.trainable()) {
        let (x, y) = (x.as_ref().unwrap(), y.as_ref().unwrap());
        let scale = rlvr_models::testing::max_abs(y).max(1e-12);
        let d = max_abs_diff(x, y);
        assert!(d <= 1e-9 * scale, "{name}: {d} vs {scale}");
    }
}

/// Save at step 5, restore into a fresh trainer over the same base with other adapters,
/// continue to 10: adapters, moments and counters bit-identical to the uninterrupted run.
#[test]
fn lora_resume_is_bit_identical() {
    for kind in [OptimizerKind::Magma, OptimizerKind::AdamW] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = toy_config(kind, 2e-2);
        cfg.optimizer.adamw.weight_decay = 0.01;
        let run = |model: &Model, tr: &mut Trainer<&Model>, rng: &mut _, steps, save: bool| {
            for _ in 0..steps {
                let groups = toy_rollouts_at(model, 4, 8, rng, 1.0, tr.policy_version());
                tr.train_step(&groups).unwrap();
            }
            if save {
                let cursor = serde_json::to_value(*rng).unwrap();
                tr.save_checkpoint(dir.path(), &cursor, 3).unwrap();
            }
        };
        let model_a = adapted(5, 1);
        let mut tr_a = Trainer::new(&model_a, cfg.clone()).unwrap();
        let mut rng_a = crate::rng::SplitMix64::new(77);
        run(&model_a, &mut tr_a, &mut rng_a, 5, true);
        run(&model_a, &mut tr_a, &mut rng_a, 5, false);

        let model_b = adapted(5, 99);
        let mut tr_b = Trainer::new(&model_b, cfg.clone()).unwrap();
        let ck = crate::checkpoint::list_checkpoints(dir.path()).unwrap();
        let cursor = tr_b.load_checkpoint(&ck[0].1).unwrap().data_cursor;
        let mut rng_b: crate::rng::SplitMix64 = serde_json::from_value(cursor).unwrap();
        run(&model_b, &mut tr_b, &mut rng_b, 5, false);

        assert_eq!(adapter_bits(&model_a), adapter_bits(&model_b), "{kind:?}");
        assert_eq!(weight_bits(&model_a), weight_bits(&model_b));
        assert_same_optimizer_state(&tr_a, &tr_b);
        // A full fine-tuning trainer cannot take a LoRA checkpoint (and says why).
        let plain = tiny_model(5);
        let mut tr_c = Trainer::new(&plain, cfg.clone()).unwrap();
        let e = tr_c.load_checkpoint(&ck[0].1).unwrap_err().to_string();
        assert!(e.contains("LoRA"), "{e}");
    }
}

/// Activation recomputation (every 1 and every 2 layers) trains to the very same weights.
#[test]
fn recomputation_trains_bit_identically() {
    for lora in [false, true] {
        let run = |recompute: Option<usize>| {
            let model = if lora { adapted(3, 1) } else { tiny_model(3) };
            let mut cfg = toy_config(OptimizerKind::AdamW, 2e-2);
            cfg.recompute_activations = recompute.is_some();
            cfg.recompute_every = recompute.unwrap_or(1);
            let mut tr = Trainer::new(&model, cfg).unwrap();
            let mut rng = crate::rng::SplitMix64::new(4);
            for _ in 0..3 {
                let groups = toy_rollouts_at(&model, 4, 8, &mut rng, 1.0, tr.policy_version());
                tr.train_step(&groups).unwrap();
            }
            (weight_bits(&model), adapter_bits(&model))
        };
        let plain = run(None);
        assert_eq!(run(Some(1)), plain, "lora {lora}");
        assert_eq!(run(Some(2)), plain, "lora {lora}");
    }
}

/// Half-precision weights under LoRA (bf16 is the CUDA default; candle's CPU matmul has no bf16,
/// so f16 stands in here — the optimizer treats both alike): the frozen base stays 16-bit with no
/// f32 master and no moments — the optimizer holds state for the adapters only (each with its f32
/// master) — and training moves the adapters, not the base.
#[test]
fn a_half_precision_base_gets_no_optimizer_state() {
    let mut model = Model::random(tiny_config(2, 16), 5, DType::F16, &Device::Cpu).unwrap();
    model.attach_lora(lora_cfg(1)).unwrap();
    let base = weight_bits(&model);
    let adapters = adapter_bits(&model);
    let mut tr = Trainer::new(&model, toy_config(OptimizerKind::AdamW, 2e-2)).unwrap();
    let params = tr.optimizer().params();
    assert_eq!(params.len(), 2 * 2 * 7, "state for the adapters only");
    for p in params {
        assert!(p.name.contains(".lora_"), "{} has optimizer state", p.name);
        assert_eq!(p.var.dtype(), DType::F16);
        assert_eq!(p.first_moment.dtype(), DType::F32);
        assert!(p.master.as_ref().is_some_and(|m| m.dtype() == DType::F32));
    }
    assert!(model.named_vars().all(|(_, v)| v.dtype() == DType::F16));
    let mut rng = crate::rng::SplitMix64::new(9);
    for _ in 0..2 {
        let groups = toy_rollouts_at(&model, 4, 8, &mut rng, 1.0, tr.policy_version());
        assert!(tr.train_step(&groups).unwrap().loss.is_finite());
    }
    assert_eq!(weight_bits(&model), base, "a frozen f16 weight moved");
    assert_ne!(adapter_bits(&model), adapters, "the adapters did not move");
}
