//! Runtime → trainer on one shared model: with the optimizer disabled (lr = 0) the importance
//! ratios are exactly 1 and nothing is clipped, and the rollout's log-probs match the trainer's
//! recomputation up to float noise.

use std::sync::Arc;

use rlvr_models::candle_core::{DType, Device};
use rlvr_models::testing::max_abs_diff;
use rlvr_models::{Architecture, Model, ModelConfig};
use rlvr_runtime::{Engine, EngineConfig, SamplingParams};
use rlvr_trainer::{ScoredGroup, ScoredSample, Trainer, TrainerConfig};

fn tiny() -> Arc<Model> {
    let cfg = ModelConfig {
        max_position_embeddings: 256,
        ..ModelConfig::tiny(Architecture::Qwen2, 64, 32, 2)
    };
    let m = Model::random(cfg, 9, DType::F32, &Device::Cpu).unwrap();
    for (_, v) in m.named_vars() {
        v.set(&(v.as_tensor() * 4.0).unwrap()).unwrap();
    }
    Arc::new(m)
}

#[test]
fn lr_zero_gives_unit_ratios_on_runtime_rollouts() {
    let model = tiny();
    let mut engine = Engine::new(
        model.clone(),
        None,
        EngineConfig {
            block_size: 4,
            num_blocks: Some(128),
            ..Default::default()
        },
    )
    .unwrap();
    let prompts: Vec<Vec<u32>> = (0..3u32)
        .map(|i| (0..5 + i).map(|t| 3 + (t * 5 + i) % 60).collect())
        .collect();
    for temperature in [1.0f32, 0.7] {
        let params = SamplingParams {
            temperature,
            seed: 4,
            max_new_tokens: 10,
            ..Default::default()
        };
        let out = engine.generate_groups(&prompts, 4, &params).unwrap();
        let groups: Vec<ScoredGroup> = (0..prompts.len())
            .map(|p| ScoredGroup {
                prompt_id: p as u64,
                t_start: 0,
                samples: out
                    .iter()
                    .filter(|c| c.request_index == p)
                    .map(|c| ScoredSample {
                        prompt_ids: c.prompt_token_ids.clone(),
                        completion_ids: c.token_ids.clone(),
                        behaviour_logprobs: c.sampling_logprobs.clone(),
                        raw_logprobs: c.logprobs.clone(),
                        entropies: c.entropies.clone(),
                        policy_versions: c.policy_versions.clone(),
                        // Vary rewards so that advantages are non-zero.
                        reward: (c.token_ids[0] % 2) as f64,
                        finish_reason: c.finish_reason.as_str().into(),
                    })
                    .collect(),
            })
            .collect();
        let mut cfg = TrainerConfig {
            temperature: temperature as f64,
            num_minibatches: 2,
            ..Default::default()
        };
        cfg.optimizer.lr = 0.0;
        let before = model.state_dict();
        let mut trainer = Trainer::new(model.clone(), cfg).unwrap();
        let m = trainer.train_step(&groups).unwrap();
        assert_eq!(m.ratio_mean, 1.0, "T = {temperature}");
        assert_eq!(m.ratio_max_abs_dev, 0.0, "T = {temperature}");
        assert_eq!(m.clip_frac, 0.0, "T = {temperature}");
        assert!(
            m.mismatch.max_abs_diff < 1e-4,
            "T = {temperature}: rollout vs trainer log-probs differ by {}",
            m.mismatch.max_abs_diff
        );
        for (name, t) in model.state_dict() {
            assert_eq!(
                max_abs_diff(&t, &before[&name]),
                0.0,
                "{name} moved with lr = 0"
            );
        }
    }
}
