//! The engine serving LoRA adapters unmerged (the trainer's own `Var`s, no copy): its rollouts
//! equal an engine over the merged weights (same greedy tokens, log-probs within 1e-5 in f32),
//! and an update of the adapters in place is seen by the next rollout with no sync.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use rlvr_models::model::{LoraConfig, LoraTarget};
use rlvr_models::testing::randt;
use rlvr_models::{Architecture, Model, ModelConfig};
use rlvr_runtime::{Engine, SamplingParams};

mod common;
use common::{engine_config, prompts};

fn base(arch: Architecture) -> Model {
    let m = Model::random(
        ModelConfig::tiny(arch, 96, 64, 2),
        42,
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    for (name, v) in m.named_vars() {
        if !name.ends_with("norm.weight") {
            v.set(&(v.as_tensor() * 4.0).unwrap()).unwrap();
        }
    }
    m
}

/// Give every adapter's B random values (fresh adapters have B = 0).
fn randomise_b(m: &Model, seed: u64) {
    for (i, (name, v)) in m.trainable().into_iter().enumerate() {
        if name.contains("lora_B") {
            v.set(&randt(v.dims(), seed + i as u64, 0.2, DType::F32))
                .unwrap();
        }
    }
}

fn merged(m: &Model) -> Arc<Model> {
    let tensors: HashMap<String, Tensor> = m.merged_state_dict().unwrap().into_iter().collect();
    Arc::new(
        Model::from_tensors(
            m.config.clone(),
            tensors,
            DType::F32,
            &Device::Cpu,
            Path::new("<merged>"),
        )
        .unwrap(),
    )
}

/// Greedy rollouts of both engines: the same tokens and log-probs within 1e-5; returns the
/// largest log-prob difference.
fn compare(a: &mut Engine, b: &mut Engine) -> f64 {
    let ps = prompts(&[3, 9, 21]);
    let params = SamplingParams::greedy(16);
    let x = a.generate_groups(&ps, 2, &params).unwrap();
    let y = b.generate_groups(&ps, 2, &params).unwrap();
    let mut worst = 0f64;
    for (x, y) in x.iter().zip(&y) {
        assert_eq!(x.token_ids, y.token_ids);
        for (p, q) in x.logprobs.iter().zip(&y.logprobs) {
            worst = worst.max((p - q).abs() as f64);
        }
    }
    assert!(worst <= 1e-5, "max |Δ log-prob| {worst}");
    worst
}

#[test]
fn engine_with_adapters_equals_merged_weights_and_sees_updates() {
    for arch in [
        Architecture::Llama,
        Architecture::Qwen2,
        Architecture::Qwen3,
    ] {
        let mut m = base(arch);
        m.attach_lora(LoraConfig {
            rank: 4,
            alpha: 8.0,
            targets: LoraTarget::ALL.to_vec(),
            rslora: false,
            seed: 1,
        })
        .unwrap();
        randomise_b(&m, 10);
        let m = Arc::new(m);
        let mut adapted = Engine::new(m.clone(), None, engine_config(4, 512)).unwrap();
        let mut reference = Engine::new(merged(&m), None, engine_config(4, 512)).unwrap();
        let worst = compare(&mut adapted, &mut reference);
        eprintln!("{arch:?}: adapters vs merged max |Δ log-prob| {worst:.2e}");
        // The trainer updates the adapters in place: the same engine serves the new ones.
        randomise_b(&m, 99);
        let mut reference = Engine::new(merged(&m), None, engine_config(4, 512)).unwrap();
        compare(&mut adapted, &mut reference);
    }
}
