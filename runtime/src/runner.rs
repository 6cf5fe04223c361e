//! Runs one step on the model: packs the scheduled tokens into one `[1, T]` row with their
//! attention layout, runs the forward over the KV backend, and leaves the sampled rows' logits
//! on the model's device (the step sampler decides what crosses to the host).
//!
//! Owns the model handle and the KV backend; knows nothing of requests, scheduling policy or
//! sampling.

use std::ops::Range;
use std::sync::Arc;

use candle_core::Tensor;
use rlvr_models::{Batch, Forward, Model};

use crate::block_manager::cache_slot;
use crate::error::{Ctx, Result};
use crate::paged_attention::{KvBackend, StepLayout, TokenSlot};
use crate::step_sampler::Transfers;

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

    /// Packed forward of `inputs`: the logits `[rows, vocab]` of its sample rows, in order, in
    /// the model's dtype on its device (None when no row is sampled). Token ids and positions
    /// go up in one copy; the row selection only when it is not every token (decode).
    pub fn forward(
        &mut self,
        inputs: &StepInputs,
        transfers: &mut Transfers,
    ) -> Result<Option<Tensor>> {
        let device = self.model.device().clone();
        let num_tokens = inputs.ids.len();
        let mut packed = Vec::with_capacity(2 * num_tokens);
        packed.extend_from_slice(&inputs.ids);
        packed.extend(inputs.layout.tokens.iter().map(|t| t.pos));
        transfers.uploads += 1;
        let packed = Tensor::from_vec(packed, (2, num_tokens), &device).ctx("input ids")?;
        let input = packed.narrow(0, 0, 1).ctx("input ids")?;
        let positions = packed.narrow(0, 1, 1).ctx("positions")?;
        let mut attn = self.kv.attention(&inputs.layout);
        let batch = Batch::injected(&input, &positions, attn.as_mut());
        let hidden = self.model.hidden(batch, Forward::INFERENCE)?.states;
        drop(attn);
        transfers.uploads += self.kv.last_step_uploads();
        if inputs.sample_rows.is_empty() {
            // A prefill chunk that completes no prompt: only its KV writes matter (and a
            // zero-row index_select is an invalid launch on CUDA).
            return Ok(None);
        }
        let hidden = hidden.squeeze(0).ctx("select rows")?;
        let every_token = inputs.sample_rows.len() == num_tokens
            && inputs.sample_rows.iter().enumerate().all(|(i, &r)| r == i);
        let picked = if every_token {
            hidden
        } else {
            transfers.uploads += 1;
            let rows: Vec<u32> = inputs.sample_rows.iter().map(|&r| r as u32).collect();
            let rows =
                Tensor::from_vec(rows, inputs.sample_rows.len(), &device).ctx("row index")?;
            hidden.index_select(&rows, 0).ctx("select rows")?
        };
        let picked = picked.unsqueeze(0).ctx("select rows")?;
        let logits = self
            .model
            .logits_native(&picked)?
            .squeeze(0)
            .ctx("logits")?;
        Ok(Some(logits))
    }
}
