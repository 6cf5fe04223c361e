//! Runs one step on the model: packs the scheduled tokens into one `[1, T]` row with their
//! attention layout, runs the forward over the KV backend, and brings the sampled rows' logits to
//! the host.
//!
//! Owns the model handle and the KV backend; knows nothing of requests, scheduling policy or
//! sampling.

use std::ops::Range;
use std::sync::Arc;

use candle_core::{DType, Tensor};
use rayon::prelude::*;
use rlvr_models::{Batch, Forward, Model};

use crate::block_manager::cache_slot;
use crate::error::{Ctx, Result};
use crate::paged_attention::{KvBackend, StepLayout, TokenSlot};

/// The model inputs of one step: token ids, their attention layout, and the rows whose logits
/// are wanted.
#[derive(Debug, Default)]
pub(crate) struct StepInputs {
    pub ids: Vec<u32>,
    pub layout: StepLayout,
    pub sample_rows: Vec<usize>,
}

impl StepInputs {
    /// Add `positions` of one sequence (`tokens`, `block_table`); `sampled`: its last
    /// position's logits are wanted.
    pub fn push_sequence(
        &mut self,
        tokens: &[u32],
        block_table: &[u32],
        positions: Range<usize>,
        block_size: usize,
        sampled: bool,
    ) {
        let seq_index = self.layout.block_tables.len() as u32;
        for pos in positions {
            self.layout.tokens.push(TokenSlot {
                seq_index,
                pos: pos as u32,
                slot: cache_slot(block_table, block_size, pos) as u32,
            });
            self.ids.push(tokens[pos]);
        }
        self.layout.block_tables.push(block_table.to_vec());
        if sampled {
            self.sample_rows.push(self.ids.len() - 1);
        }
    }
}

pub(crate) struct ModelRunner {
    model: Arc<Model>,
    kv: Box<dyn KvBackend>,
}

impl ModelRunner {
    pub fn new(model: Arc<Model>, kv: Box<dyn KvBackend>) -> Self {
        Self { model, kv }
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Copy-on-write copies `(src, dst)` of KV blocks, in order.
    pub fn copy_blocks(&mut self, copies: &[(u32, u32)]) -> Result<()> {
        for &(src, dst) in copies {
            self.kv.copy_block(src, dst).ctx("copy-on-write")?;
        }
        Ok(())
    }

    /// Packed forward of `inputs`; logits of its sample rows, in order.
    pub fn forward(&mut self, inputs: &StepInputs) -> Result<Vec<Vec<f32>>> {
        let device = self.model.device().clone();
        let num_tokens = inputs.ids.len();
        let input = Tensor::from_slice(&inputs.ids, (1, num_tokens), &device).ctx("input ids")?;
        let positions: Vec<u32> = inputs.layout.tokens.iter().map(|t| t.pos).collect();
        let positions = Tensor::from_vec(positions, (1, num_tokens), &device).ctx("positions")?;
        let mut attn = self.kv.attention(&inputs.layout);
        let batch = Batch::injected(&input, &positions, attn.as_mut());
        let hidden = self.model.hidden(batch, Forward::INFERENCE)?.states;
        drop(attn);
        if inputs.sample_rows.is_empty() {
            // A prefill chunk that completes no prompt: only its KV writes matter (and a
            // zero-row index_select is an invalid launch on CUDA).
            return Ok(vec![]);
        }
        let rows: Vec<u32> = inputs.sample_rows.iter().map(|&r| r as u32).collect();
        let rows = Tensor::from_vec(rows, inputs.sample_rows.len(), &device).ctx("row index")?;
        let picked = hidden
            .squeeze(0)
            .and_then(|h| h.index_select(&rows, 0))
            .and_then(|h| h.unsqueeze(0))
            .ctx("select rows")?;
        let logits = self
            .model
            .logits_native(&picked)?
            .squeeze(0)
            .ctx("logits")?;
        logits_to_host(&logits)
    }
}

/// `[n, vocab]` logits as f32 rows on the host. Half-precision logits cross in their own dtype
/// (half the bytes of f32) and are widened here, which is exact.
fn logits_to_host(logits: &Tensor) -> Result<Vec<Vec<f32>>> {
    fn widen<T: candle_core::WithDType>(
        logits: &Tensor,
        vocab: usize,
    ) -> candle_core::Result<Vec<Vec<f32>>> {
        let flat = logits.flatten_all()?.to_vec1::<T>()?;
        Ok(flat
            .par_chunks(vocab)
            .map(|row| row.iter().map(|x| x.to_f64() as f32).collect())
            .collect())
    }
    let (_, vocab) = logits.dims2().ctx("logits shape")?;
    let vocab = vocab.max(1);
    match logits.dtype() {
        DType::BF16 => widen::<half::bf16>(logits, vocab),
        DType::F16 => widen::<half::f16>(logits, vocab),
        DType::F32 => widen::<f32>(logits, vocab),
        _ => logits
            .to_dtype(DType::F32)
            .and_then(|l| widen::<f32>(&l, vocab)),
    }
    .ctx("logits to host")
}
