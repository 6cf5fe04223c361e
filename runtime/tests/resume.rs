//! Multi-turn generation: a sample that closes a tool call pauses with its KV blocks, the
//! environment's tokens are appended and the sample resumes. The result must equal a full
//! recompute of the final conversation: the same greedy tokens and the same log-probs and
//! entropies (paged vs full forward, within 1e-4) at every generated position.

use std::sync::Arc;

use candle_core::{DType, Device};
use rlvr_models::{Architecture, Forward, Model, ModelConfig};
use rlvr_runtime::{Completion, Engine, FinishReason, Request, SamplingParams};

mod common;
use common::{engine_config, prompt, score_completion};

fn tiny() -> Arc<Model> {
    let cfg = ModelConfig::tiny(Architecture::Qwen2, 96, 64, 2);
    let m = Model::random(cfg, 42, DType::F32, &Device::Cpu).unwrap();
    for (name, v) in m.named_vars() {
        if !name.ends_with("norm.weight") {
            v.set(&(v.as_tensor() * 8.0).unwrap()).unwrap();
        }
    }
    Arc::new(m)
}

/// What a driver saw: final completions, and whether a decode ran while a sample was paused.
struct Run {
    done: Vec<Completion>,
    decoded_while_paused: bool,
    resumes: usize,
    inserted: usize,
}

/// Drive `requests` to the end: a paused sample is resumed two engine steps later (others keep
/// decoding meanwhile) with `insert(turn)` tokens, up to `max_turns` pauses, then finished.
fn drive(e: &mut Engine, requests: Vec<Request>, max_turns: usize) -> Run {
    let mut run = Run {
        done: vec![],
        decoded_while_paused: false,
        resumes: 0,
        inserted: 0,
    };
    for r in requests {
        e.add_request(r).unwrap();
    }
    // (request, sample, turns so far, steps left before the answer arrives)
    let mut waiting: Vec<(usize, usize, usize, usize)> = vec![];
    let mut turns = std::collections::HashMap::new();
    while e.has_unfinished() || !waiting.is_empty() {
        let decodes = e.stats().decode_steps;
        let paused_before = e.num_paused() > 0;
        for c in e.step().unwrap() {
            if c.finish_reason != FinishReason::ToolCall {
                run.done.push(c);
                continue;
            }
            let t = turns.entry((c.request_index, c.sample_index)).or_insert(0);
            *t += 1;
            waiting.push((c.request_index, c.sample_index, *t, 2));
        }
        run.decoded_while_paused |= paused_before && e.stats().decode_steps > decodes;
        for w in &mut waiting {
            w.3 = w.3.saturating_sub(1);
        }
        let (ready, later): (Vec<_>, Vec<_>) = waiting.into_iter().partition(|w| w.3 == 0);
        waiting = later;
        for (request, sample, turn, _) in ready {
            let tokens = prompt(3 + turn, 40 + turn as u32);
            let room = e.paused_room(request, sample).unwrap();
            if turn > max_turns || tokens.len() > room {
                let c = e
                    .finish_paused(request, sample, FinishReason::Length)
                    .unwrap();
                run.done.push(c);
            } else {
                e.resume(request, sample, &tokens).unwrap();
                run.resumes += 1;
                run.inserted += tokens.len();
            }
        }
    }
    run.done.sort_by_key(|c| (c.request_index, c.sample_index));
    run
}

/// Every generated token of `c` against one full forward of its final conversation; inserted
/// tokens carry placeholder scores (0). Returns how many generated tokens were checked.
fn check_against_full(model: &Model, c: &Completion, greedy: bool) -> usize {
    let full = score_completion(model, c, Forward::TRAIN);
    let mut checked = 0;
    for k in 0..c.token_ids.len() {
        if c.is_inserted(k) {
            assert_eq!((c.logprobs[k], c.entropies[k]), (0.0, 0.0), "placeholder");
            continue;
        }
        let (got, want) = (c.logprobs[k], full.logprobs[k]);
        assert!(
            (got - want).abs() < 1e-4,
            "token {k}: logprob {got} vs full {want}"
        );
        let (got, want) = (c.entropies[k], full.entropies[k]);
        assert!(
            (got - want).abs() < 1e-4,
            "token {k}: entropy {got} vs full {want}"
        );
        if greedy {
            let row = full.logits.get(c.prompt_tokens() - 1 + k).unwrap();
            let argmax = row.argmax(0).unwrap().to_scalar::<u32>().unwrap();
            assert_eq!(c.token_ids[k], argmax, "greedy token {k}");
        }
        checked += 1;
    }
    checked
}

fn requests(params: &SamplingParams, n: usize) -> Vec<Request> {
    [5, 9, 14]
        .iter()
        .enumerate()
        .map(|(i, &len)| Request {
            prompt_ids: prompt(len, i as u32),
            params: SamplingParams {
                seed: params.seed + i as u64,
                ..params.clone()
            },
            n,
        })
        .collect()
}

#[test]
fn resumed_turns_equal_full_recompute_of_the_conversation() {
    let model = tiny();
    // Pause sequences taken from a plain greedy run: its first token (a pause right after the
    // prompt: the resumed prefill writes into the group's shared last prompt block) and a later
    // pair.
    let mut plain = Engine::new(model.clone(), None, engine_config(4, 512)).unwrap();
    let greedy = plain
        .generate(requests(&SamplingParams::greedy(24), 1))
        .unwrap();
    let g = &greedy[0].token_ids;
    let pauses = vec![vec![g[0]], vec![g[3], g[4]], vec![greedy[2].token_ids[2]]];
    let base = SamplingParams {
        max_new_tokens: 40,
        pause_token_seqs: pauses,
        ..SamplingParams::greedy(0)
    };
    let sampled = SamplingParams {
        temperature: 1.0,
        seed: 11,
        ..base.clone()
    };
    for (params, is_greedy) in [(base, true), (sampled, false)] {
        for num_blocks in [512, 14] {
            let cfg = engine_config(4, num_blocks);
            let mut e = Engine::new(model.clone(), None, cfg).unwrap();
            let run = drive(&mut e, requests(&params, 3), 3);
            assert_eq!(run.done.len(), 9);
            assert!(run.resumes > 3, "only {} resumes", run.resumes);
            let mut checked = 0;
            for c in &run.done {
                assert_eq!(c.inserted.is_empty(), !c.inserted.contains(&true));
                checked += check_against_full(&model, c, is_greedy);
            }
            assert!(checked > 30, "{checked} generated tokens checked");
            assert!(
                run.decoded_while_paused,
                "others decode while one is paused"
            );
            assert_eq!(e.free_blocks(), num_blocks, "every block back in the pool");
            if num_blocks == 512 {
                // Without preemption, a resume prefills the last sampled token and the insertion.
                let prompts: usize = [5, 9, 14].iter().sum();
                let want = prompts + run.resumes + run.inserted;
                assert_eq!(
                    e.stats().prefill_tokens as usize,
                    want,
                    "prefill only new tokens"
                );
                assert_eq!(e.stats().preemptions, 0);
            }
        }
    }
}

#[test]
fn resume_errors_leave_the_sample_paused() {
    let model = tiny();
    let mut e = Engine::new(model.clone(), None, engine_config(4, 64)).unwrap();
    let first = e
        .generate(vec![Request {
            prompt_ids: prompt(6, 1),
            params: SamplingParams::greedy(3),
            n: 1,
        }])
        .unwrap();
    let params = SamplingParams {
        pause_token_seqs: vec![vec![first[0].token_ids[0]]],
        ..SamplingParams::greedy(8)
    };
    let index = e
        .add_request(Request {
            prompt_ids: prompt(6, 1),
            params,
            n: 1,
        })
        .unwrap();
    let mut paused = None;
    while paused.is_none() {
        paused = e
            .step()
            .unwrap()
            .into_iter()
            .find(|c| c.finish_reason == FinishReason::ToolCall);
    }
    assert_eq!(e.paused_room(index, 0), Some(6));
    assert!(
        e.resume(index, 0, &[500]).is_err(),
        "outside the vocabulary"
    );
    assert!(e.resume(index, 0, &[5; 7]).is_err(), "past max_new_tokens");
    assert!(e.resume(index, 1, &[5]).is_err(), "no such paused sample");
    assert_eq!(e.num_paused(), 1);
    let c = e.release_paused(index, 0).unwrap();
    assert_eq!(c.finish_reason, FinishReason::ToolCall);
    assert_eq!(e.free_blocks(), 64);
    // `generate` ends a tool call: no one resumes there.
    let out = e
        .generate(vec![Request {
            prompt_ids: prompt(6, 1),
            params: SamplingParams {
                pause_token_seqs: vec![vec![first[0].token_ids[0]]],
                ..SamplingParams::greedy(8)
            },
            n: 2,
        }])
        .unwrap();
    assert!(out
        .iter()
        .all(|c| c.finish_reason == FinishReason::ToolCall));
    assert_eq!((e.num_paused(), e.free_blocks()), (0, 64));
}

/// A pause on a token that is also a stop token (Llama 3's `<|eot_id|>` ends every turn, call or
/// answer): the sample pauses instead of finishing, and a caller that finds no call there ends
/// it with `Eos`. That completion is exactly the one of a run that simply stopped at the token
/// (tokens, log-probs, entropies, text), and its blocks go back to the pool.
#[test]
fn a_pause_on_a_stop_token_then_finish_equals_stopping_there() {
    let model = tiny();
    let mut probe = Engine::new(model.clone(), None, engine_config(4, 64)).unwrap();
    let g = probe
        .generate(requests(&SamplingParams::greedy(12), 1))
        .unwrap();
    let greedy = SamplingParams::greedy(12);
    let sampled = SamplingParams {
        temperature: 1.0,
        seed: 3,
        ..SamplingParams::greedy(12)
    };
    for (mut params, n) in [(greedy, 1), (sampled, 3)] {
        params.stop_token_ids = vec![g[0].token_ids[3], g[1].token_ids[2]];
        let mut plain = Engine::new(model.clone(), None, engine_config(4, 64)).unwrap();
        let want = plain.generate(requests(&params, n)).unwrap();
        params.pause_token_seqs = params.stop_token_ids.iter().map(|&t| vec![t]).collect();
        let mut e = Engine::new(model.clone(), None, engine_config(4, 64)).unwrap();
        for r in requests(&params, n) {
            e.add_request(r).unwrap();
        }
        let mut got = vec![];
        while e.has_unfinished() {
            for c in e.step().unwrap() {
                if c.finish_reason != FinishReason::ToolCall {
                    got.push(c);
                    continue;
                }
                let stop = *c.token_ids.last().unwrap();
                assert!(
                    params.stop_token_ids.contains(&stop),
                    "paused at a stop token"
                );
                let done = e
                    .finish_paused(c.request_index, c.sample_index, FinishReason::Eos)
                    .unwrap();
                got.push(done);
            }
        }
        got.sort_by_key(|c| (c.request_index, c.sample_index));
        assert_eq!(got.len(), want.len());
        let paused = want.iter().filter(|c| c.finish_reason == FinishReason::Eos);
        assert!(paused.count() >= 2, "the stop tokens were hit");
        for (a, b) in got.iter().zip(&want) {
            assert_eq!(a, b, "paused-then-finished equals stopped");
        }
        let eos = got.iter().filter(|c| c.finish_reason == FinishReason::Eos);
        assert_eq!(
            e.stats().pauses as usize,
            eos.count(),
            "each stop was a pause"
        );
        assert_eq!((e.num_paused(), e.free_blocks()), (0, 64));
    }
}
