//! The paged engine against the full-sequence forward of `models` and a naive generator.

use std::sync::Arc;

use candle_core::{DType, Device};
use rlvr_models::{Architecture, Batch, Forward, Model, ModelConfig};
use rlvr_runtime::naive::generate_naive;
use rlvr_runtime::paged_attention::CpuKvCache;
use rlvr_runtime::{kv_pool_blocks, Engine, EngineConfig, Request, RuntimeError, SamplingParams};

mod common;
use common::{drive, engine_config, prompt, prompts, score_completion};

fn tiny(arch: Architecture) -> Arc<Model> {
    tiny_in(arch, DType::F32)
}

fn tiny_in(arch: Architecture, dtype: DType) -> Arc<Model> {
    let cfg = ModelConfig::tiny(arch, 96, 64, 2);
    // Larger weights than the default init give peaked, less uniform distributions.
    let m = Model::random(cfg, 42, dtype, &Device::Cpu).unwrap();
    for (name, v) in m.named_vars() {
        if !name.ends_with("norm.weight") {
            v.set(&(v.as_tensor() * 8.0).unwrap()).unwrap();
        }
    }
    Arc::new(m)
}

/// Drive the KV backend by hand (`common::drive`: a packed prefill of a prefix of each sequence,
/// then one token per sequence per step); every position's logits equal the full-sequence
/// forward's.
#[test]
fn paged_decode_equals_full_forward() {
    for arch in [
        Architecture::Llama,
        Architecture::Qwen2,
        Architecture::Qwen3,
    ] {
        let model = tiny(arch);
        let seqs = prompts(&[5, 17, 33, 12]);
        let mut kv = CpuKvCache::new(&model.config, 64, 4);
        let full = model
            .forward(Batch::padded(&seqs, 0), Forward::INFERENCE)
            .unwrap();
        let (worst, _) = drive(&model, &mut kv, &full, &seqs, &[3, 9, 1, 12]);
        assert!(
            worst < 1e-4,
            "{arch:?}: paged vs full max |Δlogit| = {worst}"
        );
    }
}

fn engine(model: &Arc<Model>, num_blocks: Option<usize>) -> Engine {
    Engine::new(
        model.clone(),
        None,
        engine_config(4, num_blocks.unwrap_or(512)),
    )
    .unwrap()
}

#[test]
fn greedy_equals_naive_generator() {
    let model = tiny(Architecture::Llama);
    let mut e = engine(&model, None);
    let prompts = prompts(&[3, 9, 21]);
    let params = SamplingParams::greedy(20);
    let got = e.generate_groups(&prompts, 2, &params).unwrap();
    for (i, p) in prompts.iter().enumerate() {
        let want = generate_naive(&model, p, 1, &params).unwrap();
        for s in 0..2 {
            assert_eq!(
                got[i * 2 + s].token_ids,
                want[0].token_ids,
                "prompt {i} sample {s}"
            );
        }
    }
}

/// Half-precision logits reach the host in their own dtype and are widened there (what bf16
/// does on CUDA): the engine still matches the naive generator, whose logits are cast to f32 on
/// the device.
#[test]
fn half_precision_engine_equals_naive_generator() {
    let model = tiny_in(Architecture::Llama, DType::F16);
    let mut e = engine(&model, None);
    let p = prompt(12, 3);
    for params in [
        SamplingParams::greedy(16),
        SamplingParams {
            temperature: 1.0,
            seed: 3,
            max_new_tokens: 16,
            ..Default::default()
        },
    ] {
        let got = e
            .generate(vec![Request {
                prompt_ids: p.clone(),
                params: params.clone(),
                n: 3,
            }])
            .unwrap();
        let want = generate_naive(&model, &p, 3, &params).unwrap();
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.token_ids, w.token_ids);
            for (a, b) in g.logprobs.iter().zip(&w.logprobs) {
                assert!((a - b).abs() < 2e-2, "f16 logprob {a} vs naive {b}");
            }
        }
    }
}

#[test]
fn seeded_sampling_equals_naive_and_scores() {
    let model = tiny(Architecture::Qwen2);
    let mut e = engine(&model, None);
    let p = prompt(10, 5);
    let params = SamplingParams {
        temperature: 0.8,
        top_p: 0.95,
        seed: 7,
        max_new_tokens: 24,
        ..Default::default()
    };
    let got = e
        .generate(vec![Request {
            prompt_ids: p.clone(),
            params: params.clone(),
            n: 4,
        }])
        .unwrap();
    let want = generate_naive(&model, &p, 4, &params).unwrap();
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.token_ids, w.token_ids);
    }
    // The raw log-probs / entropies equal a full-sequence scoring of the same ids.
    for c in &got {
        let full = score_completion(&model, c, Forward::TRAIN);
        for k in 0..c.token_ids.len() {
            assert!(
                (full.logprobs[k] - c.logprobs[k]).abs() < 1e-4,
                "logprob {k}: {} vs {}",
                full.logprobs[k],
                c.logprobs[k]
            );
            assert!(
                (full.entropies[k] - c.entropies[k]).abs() < 1e-4,
                "entropy {k}"
            );
        }
        // Sampling log-prob differs from the raw one when T ≠ 1.
        assert!(c
            .sampling_logprobs
            .iter()
            .zip(&c.logprobs)
            .any(|(a, b)| (a - b).abs() > 1e-3));
    }
}

#[test]
fn group_shares_prompt_blocks() {
    let model = tiny(Architecture::Llama);
    let mut e = engine(&model, Some(100));
    let p = prompt(10, 1); // 10 tokens, blocks of 4 → 3 blocks, the last one partial.
    let params = SamplingParams {
        seed: 1,
        max_new_tokens: 8,
        ..Default::default()
    };
    e.add_request(Request {
        prompt_ids: p,
        params,
        n: 8,
    })
    .unwrap();
    e.step().unwrap(); // prefill once, fork 8 samples
    assert_eq!(
        e.num_blocks() - e.free_blocks(),
        3,
        "the prompt is allocated once for G = 8"
    );
    assert_eq!(e.stats().prefill_tokens, 10, "prefilled once");
    e.step().unwrap(); // first decode: each sample copies the partial last block
    assert_eq!(e.num_blocks() - e.free_blocks(), 2 + 8);
    while e.has_unfinished() {
        e.step().unwrap();
    }
    assert_eq!(e.free_blocks(), e.num_blocks(), "every block returned");
}

#[test]
fn preemption_under_tiny_budget_gives_same_tokens() {
    let model = tiny(Architecture::Llama);
    let prompts: Vec<Vec<u32>> = (0..3).map(|i| prompt(6 + 3 * i, i as u32)).collect();
    let params = SamplingParams {
        seed: 11,
        max_new_tokens: 16,
        ..Default::default()
    };
    let ample = engine(&model, None)
        .generate_groups(&prompts, 4, &params)
        .unwrap();
    // 8 blocks of 4 tokens: one sample needs up to 7, so the 12 samples must take turns.
    let mut small = engine(&model, Some(8));
    let tight = small.generate_groups(&prompts, 4, &params).unwrap();
    assert!(
        small.stats().preemptions > 0,
        "the tiny pool should force preemption"
    );
    assert_eq!(tight.len(), 12);
    for (a, b) in ample.iter().zip(&tight) {
        assert_eq!(
            (a.request_index, a.sample_index),
            (b.request_index, b.sample_index)
        );
        assert_eq!(
            a.token_ids, b.token_ids,
            "request {} sample {}",
            a.request_index, a.sample_index
        );
    }
    assert!(tight.iter().any(|c| c.preempted));
    assert_eq!(small.free_blocks(), small.num_blocks());
}

#[test]
fn too_long_request_is_an_error_not_a_hang() {
    let model = tiny(Architecture::Llama);
    let mut e = engine(&model, Some(4));
    let err = e
        .add_request(Request {
            prompt_ids: prompt(10, 0),
            params: SamplingParams {
                max_new_tokens: 10,
                ..Default::default()
            },
            n: 1,
        })
        .unwrap_err();
    assert!(err.to_string().contains("KV cache too small"), "{err}");
}

/// A request that can never run (longer than the model's context, or than the KV pool) fails
/// `generate` before anything is queued or run, with a typed error naming it, and the engine
/// goes on serving the requests that fit.
#[test]
fn requests_that_can_never_run_are_refused_up_front() {
    let model = tiny(Architecture::Llama);
    let context = model.config.max_position_embeddings;
    let request = |len: usize, max_new_tokens: usize| Request {
        prompt_ids: prompt(len, 1),
        params: SamplingParams {
            max_new_tokens,
            ..Default::default()
        },
        n: 2,
    };
    let mut e = engine(&model, Some(4096));
    let err = e
        .generate(vec![request(10, 4), request(context - 5, 6)])
        .unwrap_err();
    match err {
        RuntimeError::ContextTooLong {
            index: 1,
            prompt_tokens,
            max_new_tokens: 6,
            context: c,
        } => assert_eq!((prompt_tokens, c), (context - 5, context)),
        other => panic!("{other}"),
    }
    assert!(!e.has_unfinished(), "the request that fits was queued");
    assert_eq!(e.stats().steps, 0);
    // Exactly at the context is fine.
    let out = e.generate(vec![request(context - 6, 6)]).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].request_index, 0);
    // 4 blocks of 4 tokens hold 16 tokens.
    let mut small = engine(&model, Some(4));
    let err = small
        .generate(vec![request(6, 2), request(10, 10)])
        .unwrap_err();
    assert!(
        matches!(
            err,
            RuntimeError::KvTooSmall {
                index: 1,
                needed: 5,
                total: 4,
                ..
            }
        ),
        "{err}"
    );
    assert!(!small.has_unfinished());
    // The pool size callers can check against before creating an engine.
    assert_eq!(
        kv_pool_blocks(&model, &common::engine_config(4, 4)).unwrap(),
        4
    );
    let budget = EngineConfig {
        kv_cache_bytes: 1 << 20,
        ..Default::default()
    };
    let blocks = kv_pool_blocks(&model, &budget).unwrap();
    assert_eq!(
        Engine::new(model.clone(), None, budget)
            .unwrap()
            .num_blocks(),
        blocks
    );
}

#[test]
fn seeded_sampling_independent_of_batch() {
    let model = tiny(Architecture::Qwen3);
    let params = SamplingParams {
        seed: 99,
        max_new_tokens: 12,
        ..Default::default()
    };
    let a = Request {
        prompt_ids: prompt(7, 3),
        params: params.clone(),
        n: 3,
    };
    let alone = engine(&model, None).generate(vec![a.clone()]).unwrap();
    let others = |seed| Request {
        prompt_ids: prompt(13, 4),
        params: SamplingParams {
            seed,
            ..params.clone()
        },
        n: 5,
    };
    let mixed = engine(&model, None)
        .generate(vec![others(1), a.clone(), others(2)])
        .unwrap();
    let mixed_a: Vec<_> = mixed.iter().filter(|c| c.request_index == 1).collect();
    for (x, y) in alone.iter().zip(mixed_a) {
        assert_eq!(x.token_ids, y.token_ids);
    }
    // Same seed twice gives the same tokens; a different seed differs.
    let again = engine(&model, None).generate(vec![a.clone()]).unwrap();
    assert_eq!(alone, again);
    let other = engine(&model, None)
        .generate(vec![Request {
            params: SamplingParams {
                seed: 100,
                ..params
            },
            ..a
        }])
        .unwrap();
    assert_ne!(
        alone.iter().map(|c| &c.token_ids).collect::<Vec<_>>(),
        other.iter().map(|c| &c.token_ids).collect::<Vec<_>>()
    );
}

#[test]
fn stops_on_eos_and_length() {
    let model = tiny(Architecture::Llama);
    let mut e = engine(&model, None);
    // Make every token an EOS: the first sampled token ends each sample.
    let params = SamplingParams {
        seed: 3,
        max_new_tokens: 5,
        stop_token_ids: (0..96).collect(),
        ..Default::default()
    };
    let out = e
        .generate(vec![Request {
            prompt_ids: prompt(5, 0),
            params: params.clone(),
            n: 2,
        }])
        .unwrap();
    assert!(out
        .iter()
        .all(|c| c.token_ids.len() == 1 && c.finish_reason == rlvr_runtime::FinishReason::Eos));
    let out = e
        .generate(vec![Request {
            prompt_ids: prompt(5, 0),
            params: SamplingParams {
                ignore_eos: true,
                ..params
            },
            n: 2,
        }])
        .unwrap();
    assert!(out
        .iter()
        .all(|c| c.token_ids.len() == 5 && c.finish_reason == rlvr_runtime::FinishReason::Length));
}

#[test]
fn chunked_prefill_and_chunked_recompute_give_same_tokens() {
    let model = tiny(Architecture::Qwen2);
    let prompts: Vec<Vec<u32>> = (0..3).map(|i| prompt(11 + 4 * i, i as u32)).collect();
    let params = SamplingParams {
        seed: 21,
        max_new_tokens: 14,
        ..Default::default()
    };
    let ample = engine(&model, None)
        .generate_groups(&prompts, 3, &params)
        .unwrap();
    // Prefill budget of 5 tokens per step: prompts and recomputes span several steps.
    let mut small = Engine::new(
        model.clone(),
        None,
        EngineConfig {
            block_size: 4,
            num_blocks: Some(9),
            max_batch_tokens: 5,
            ..Default::default()
        },
    )
    .unwrap();
    let tight = small.generate_groups(&prompts, 3, &params).unwrap();
    assert!(small.stats().preemptions > 0);
    for (a, b) in ample.iter().zip(&tight) {
        assert_eq!(
            a.token_ids, b.token_ids,
            "request {} sample {}",
            a.request_index, a.sample_index
        );
    }
    assert_eq!(small.free_blocks(), small.num_blocks());
}
