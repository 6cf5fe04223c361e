//! The whole loop learns on a toy tool task: a tiny random model, real engine, real calculator,
//! real trainer. The reward is 1 for a sample that called the calculator without error; the
//! inserted results are masked out of the loss. The tool-call rate must rise from chance.

use std::sync::Arc;

use candle_core::{DType, Device};
use rlvr_models::{Architecture, Model, ModelConfig};
use rlvr_runtime::{Engine, EngineConfig, Request, SamplingParams};
use rlvr_trainer::{LrSchedule, OptimizerKind, ScoredGroup, ScoredSample, Trainer, TrainerConfig};

use super::render::ToolFormat;
use super::rollout::{generate_with_tools, ToolRollout};
use super::testing::{id, tokenizer, EOS};
use super::ToolsSection;

fn scored(r: ToolRollout) -> ScoredSample {
    let c = r.completion;
    let called = r.stats.calls > 0 && r.stats.errors == 0;
    ScoredSample {
        generated_mask: c.generated_mask(),
        prompt_ids: c.prompt_token_ids,
        completion_ids: c.token_ids,
        behaviour_logprobs: c.sampling_logprobs,
        raw_logprobs: c.logprobs,
        entropies: c.entropies,
        policy_versions: c.policy_versions,
        sampling_support: c.sampling_support,
        reward: f64::from(u8::from(called)),
        finish_reason: c.finish_reason.as_str().into(),
    }
}

#[test]
fn a_tiny_model_learns_to_call_the_calculator() {
    let tok = tokenizer(None);
    let vocab = 102; // the test tokenizer's ids
    let cfg = ModelConfig::tiny(Architecture::Llama, vocab, 32, 1);
    let model = Arc::new(Model::random(cfg, 5, DType::F32, &Device::Cpu).unwrap());
    let section = ToolsSection {
        enabled: vec!["calculator".into()],
        max_turns: 1,
        ..Default::default()
    };
    let toolbox = section.toolbox().unwrap();
    let format = ToolFormat::new(&tok, &toolbox.specs(), false).unwrap();
    let mut tcfg = TrainerConfig {
        num_minibatches: 1,
        micro_batch_size: 16,
        ..Default::default()
    };
    tcfg.optimizer.kind = OptimizerKind::AdamW;
    tcfg.optimizer.lr = 3e-2;
    tcfg.optimizer.schedule = LrSchedule::Constant { warmup_steps: 0 };
    let mut trainer = Trainer::new(model.clone(), tcfg).unwrap();
    let mut engine = Engine::new(model, Some(tok.clone()), EngineConfig::default()).unwrap();
    let prompts: Vec<u32> = ["A", "B", "C", "D"].iter().map(|q| id(&tok, q)).collect();
    let mut rates = vec![];
    let mut resumed = 0;
    for step in 0..25u64 {
        let requests = prompts
            .iter()
            .enumerate()
            .map(|(i, &p)| Request {
                prompt_ids: vec![p],
                params: SamplingParams {
                    seed: step * 100 + i as u64,
                    max_new_tokens: 48,
                    stop_token_ids: vec![EOS],
                    ..Default::default()
                },
                n: 8,
            })
            .collect();
        let out = generate_with_tools(&mut engine, requests, &tok, &format, &toolbox).unwrap();
        let rate = out.iter().filter(|r| r.stats.calls > 0).count() as f64 / out.len() as f64;
        rates.push(rate);
        // Samples that got a result inserted (the mask is in play).
        resumed = out.iter().filter(|r| r.stats.turns > 1).count();
        let mut groups: Vec<ScoredGroup> = (0..prompts.len())
            .map(|i| ScoredGroup {
                prompt_id: i as u64,
                samples: vec![],
                t_start: step,
            })
            .collect();
        for r in out {
            groups[r.completion.request_index].samples.push(scored(r));
        }
        trainer.train_step(&groups).unwrap();
    }
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    let (first, last) = (mean(&rates[..3]), mean(&rates[rates.len() - 3..]));
    // By chance (48 tokens from a near-uniform 102-token vocabulary) about 2 in 3 samples write
    // the one-token call somewhere; after training every sample calls.
    assert!(first < 0.8, "chance call rate {first} ({rates:?})");
    assert!(last > 0.99, "learned call rate {last} ({rates:?})");
    assert!(
        resumed >= 16,
        "{resumed} of 32 samples resumed after a result"
    );
}
