//! Helpers shared by the runtime's integration tests: prompts, and the hand-driven paged forward
//! that every KV backend is checked with against the full-sequence forward.
#![allow(dead_code)] // each test binary uses its own subset

use candle_core::Tensor;
pub use rlvr_models::testing::max_abs;
use rlvr_models::{Batch, Forward, Model};
use rlvr_runtime::block_manager::cache_slot;
use rlvr_runtime::paged_attention::{KvBackend, StepLayout, TokenSlot};
use rlvr_runtime::{Completion, EngineConfig};

/// A deterministic prompt of `len` ids in `3..93`, varied by `salt`.
pub fn prompt(len: usize, salt: u32) -> Vec<u32> {
    (0..len as u32)
        .map(|i| 3 + (i * 7 + salt * 13) % 90)
        .collect()
}

/// Prompts of the given lengths, the i-th salted with i.
pub fn prompts(lens: &[usize]) -> Vec<Vec<u32>> {
    lens.iter()
        .enumerate()
        .map(|(i, &len)| prompt(len, i as u32))
        .collect()
}

/// An engine config with an exact pool and a prefill budget of 64 tokens.
pub fn engine_config(block_size: usize, num_blocks: usize) -> EngineConfig {
    EngineConfig {
        block_size,
        num_blocks: Some(num_blocks),
        max_batch_tokens: 64,
        ..Default::default()
    }
}

/// A completion's prompt and tokens scored by one full-sequence forward in `mode`.
pub struct FullScores {
    /// `[prompt + completion, vocab]`.
    pub logits: Tensor,
    /// Per generated token: its log-prob and the entropy of its distribution.
    pub logprobs: Vec<f32>,
    pub entropies: Vec<f32>,
}

pub fn score_completion(model: &Model, c: &Completion, mode: Forward) -> FullScores {
    let mut ids = c.prompt_token_ids.clone();
    ids.extend(&c.token_ids);
    let logits = model
        .forward(Batch::padded(std::slice::from_ref(&ids), 0), mode)
        .unwrap()
        .squeeze(0)
        .unwrap();
    let (logprobs, entropies) = rlvr_models::logprobs::sequence_scores(&logits, &ids).unwrap();
    let generated = c.prompt_token_ids.len() - 1..ids.len() - 1;
    FullScores {
        logits,
        logprobs: logprobs[generated.clone()].to_vec(),
        entropies: entropies[generated].to_vec(),
    }
}

/// Interleaved, non-contiguous block ids covering each sequence, so block tables really matter.
fn scattered_tables(seqs: &[Vec<u32>], block_size: usize, num_blocks: usize) -> Vec<Vec<u32>> {
    let num_blocks = num_blocks as u32;
    let mut next = num_blocks - 1;
    seqs.iter()
        .map(|s| {
            (0..s.len().div_ceil(block_size))
                .map(|_| {
                    let block = next;
                    next = next.wrapping_sub(3) % num_blocks;
                    block
                })
                .collect()
        })
        .collect()
}

/// Drive a KV backend by hand: one packed prefill step of the first `prefill[s]` tokens of each
/// sequence `s` (interleaved, so the step's rows are not grouped by sequence), then one token per
/// sequence per step, then every sequence's last position again as a decode token (rewriting its
/// slot with the same k, v: the decode path over full-length contexts). Returns the worst
/// |Δlogit| against `full` (`[seq, pos, vocab]`) and the largest |logit| of `full`.
pub fn drive(
    model: &Model,
    kv: &mut dyn KvBackend,
    full: &Tensor,
    seqs: &[Vec<u32>],
    prefill: &[usize],
) -> (f32, f32) {
    let block_size = kv.block_size();
    let tables = scattered_tables(seqs, block_size, kv.num_blocks());
    let device = model.device().clone();
    let mut worst = 0f32;
    let mut run = |positions: Vec<(usize, usize)>, kv: &mut dyn KvBackend| {
        let layout = StepLayout {
            tokens: positions
                .iter()
                .map(|&(s, pos)| TokenSlot {
                    seq_index: s as u32,
                    pos: pos as u32,
                    slot: cache_slot(&tables[s], block_size, pos) as u32,
                })
                .collect(),
            block_tables: tables.clone(),
        };
        let ids: Vec<u32> = positions.iter().map(|&(s, pos)| seqs[s][pos]).collect();
        let pos: Vec<u32> = positions.iter().map(|&(_, pos)| pos as u32).collect();
        let num_tokens = ids.len();
        let ids = Tensor::from_vec(ids, (1, num_tokens), &device).unwrap();
        let pos = Tensor::from_vec(pos, (1, num_tokens), &device).unwrap();
        let mut attn = kv.attention(&layout);
        let logits = model
            .forward(
                Batch::injected(&ids, &pos, attn.as_mut()),
                Forward::INFERENCE,
            )
            .unwrap()
            .squeeze(0)
            .unwrap();
        for (row, &(s, pos)) in positions.iter().enumerate() {
            let want = full.get(s).unwrap().get(pos).unwrap();
            // The difference is taken in the logits' dtype; f32, f16 and bf16 values are exact
            // in f32.
            worst = worst.max(max_abs(&(logits.get(row).unwrap() - want).unwrap()) as f32);
        }
    };
    let longest_prefill = prefill.iter().max().copied().unwrap_or(0);
    let first: Vec<(usize, usize)> = (0..longest_prefill)
        .flat_map(|pos| (0..seqs.len()).map(move |s| (s, pos)))
        .filter(|&(s, pos)| pos < prefill[s].min(seqs[s].len()))
        .collect();
    run(first, kv);
    let longest = seqs.iter().map(Vec::len).max().unwrap();
    for pos in 1..longest {
        let step: Vec<(usize, usize)> = (0..seqs.len())
            .filter(|&s| pos >= prefill[s] && pos < seqs[s].len())
            .map(|s| (s, pos))
            .collect();
        if !step.is_empty() {
            run(step, kv);
        }
    }
    let last: Vec<(usize, usize)> = (0..seqs.len()).map(|s| (s, seqs[s].len() - 1)).collect();
    run(last, kv);
    (worst, max_abs(full) as f32)
}
