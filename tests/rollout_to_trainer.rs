//! Runtime → trainer on one shared model: with the optimizer disabled (lr = 0) the importance
//! ratios are exactly 1 and nothing is clipped, and the rollout's log-probs match the trainer's
//! recomputation up to float noise; with truncated sampling (top-p, top-k, min-p) too, because
//! the trainer scores each token under the set the sampler kept.

use std::sync::Arc;

use rlvr_models::candle_core::{DType, Device};
use rlvr_models::testing::max_abs_diff;
use rlvr_models::{Architecture, Model, ModelConfig};
use rlvr_runtime::Completion;
use rlvr_runtime::{Engine, EngineConfig, SamplingParams};
use rlvr_trainer::{ProximalMode, ScoredGroup, ScoredSample, Trainer, TrainerConfig};

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

/// The engine's completions as the trainer's groups (one per prompt).
fn scored(out: &[Completion], prompts: usize) -> Vec<ScoredGroup> {
    (0..prompts)
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
                    sampling_support: c.sampling_support.clone(),
                    generated_mask: c.generated_mask(),
                    // Vary rewards so that advantages are non-zero.
                    reward: (c.token_ids[0] % 2) as f64,
                    finish_reason: c.finish_reason.as_str().into(),
                })
                .collect(),
        })
        .collect()
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
        let groups = scored(&out, prompts.len());
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

/// Truncated sampling (top-p 0.9, and top-k / min-p) with lr = 0: the sampler records what it
/// kept and the trainer scores the same truncated distribution, so the behaviour log-probs
/// match the trainer's (recompute mode: ratios exactly 1, behaviour correction ≈ 1; rollout
/// mode, `rlvr train`'s default: ratios within float noise of 1). Scored under the full
/// distribution instead, every ratio would be off by the kept probability mass.
#[test]
fn lr_zero_with_truncated_sampling_gives_unit_ratios() {
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
    let prompts: Vec<Vec<u32>> = (0..4u32)
        .map(|i| (0..4 + i).map(|t| 3 + (t * 11 + i) % 60).collect())
        .collect();
    let settings = [
        (0.9, 0, 0.0, 1.0f32),
        (0.9, 0, 0.0, 0.7),
        (1.0, 8, 0.05, 1.0),
    ];
    for (top_p, top_k, min_p, temperature) in settings {
        let label = format!("top_p {top_p}, top_k {top_k}, min_p {min_p}, T {temperature}");
        let params = SamplingParams {
            temperature,
            top_p,
            top_k,
            min_p,
            seed: 4,
            max_new_tokens: 10,
            record_support: true,
            ..Default::default()
        };
        let out = engine.generate_groups(&prompts, 4, &params).unwrap();
        let sizes: Vec<usize> = out
            .iter()
            .flat_map(|c| c.sampling_support.iter().map(Vec::len))
            .collect();
        let tokens: usize = out.iter().map(|c| c.token_ids.len()).sum();
        assert_eq!(sizes.len(), tokens, "{label}: a kept set per token");
        assert!(
            sizes.iter().any(|&n| n > 1 && n < 64),
            "{label}: the truncation should keep several tokens, not all: {sizes:?}"
        );
        let groups = scored(&out, prompts.len());
        for proximal in [ProximalMode::Recompute, ProximalMode::Rollout] {
            let mut cfg = TrainerConfig {
                temperature: temperature as f64,
                num_minibatches: 2,
                proximal,
                ..Default::default()
            };
            cfg.optimizer.lr = 0.0;
            let mut trainer = Trainer::new(model.clone(), cfg).unwrap();
            let m = trainer.train_step(&groups).unwrap();
            let label = format!("{label}, {proximal:?}");
            if proximal == ProximalMode::Recompute {
                assert_eq!(m.ratio_mean, 1.0, "{label}");
                assert_eq!(m.ratio_max_abs_dev, 0.0, "{label}");
                assert!(m.mismatch.ess > 0.999, "{label}: ess {}", m.mismatch.ess);
            } else {
                assert!(
                    m.ratio_max_abs_dev < 1e-4,
                    "{label}: {}",
                    m.ratio_max_abs_dev
                );
            }
            assert_eq!(m.clip_frac, 0.0, "{label}");
            assert!(
                m.mismatch.max_abs_diff < 1e-4,
                "{label}: rollout vs trainer log-probs differ by {}",
                m.mismatch.max_abs_diff
            );
        }
    }
}
