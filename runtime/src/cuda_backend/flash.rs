//! Prefill chunks through candle-flash-attn (feature `flash-attn`): all chunks of a step as one
//! varlen launch over their gathered keys and values, causal and aligned to the end of each
//! chunk's context.
//!
//! Knows the plan's chunks and the cache's gather; knows nothing of decode tokens.

use candle_core::{Device, Result, Tensor};

use super::plan::{u32s, ChunkPlan, SeqRows};
use super::CudaKvCache;
use crate::paged_attention::TokenSlot;

/// All prefill chunks of a step as one flash-attention varlen call.
pub(super) struct FlashPlan {
    /// Cumulative query / key lengths, `[chunks + 1]` u32.
    seqlens_q: Tensor,
    seqlens_k: Tensor,
    max_q: usize,
    max_k: usize,
}

impl FlashPlan {
    /// A plan for `chunks` when every chunk's queries are the last positions of its context
    /// (what the causal flash kernel assumes); else None.
    pub fn build(
        tokens: &[TokenSlot],
        chunks: &[SeqRows],
        device: &Device,
    ) -> Result<Option<Self>> {
        let ends_context = |seq: &SeqRows| {
            let context_len = seq.context_len(tokens);
            let queries = seq.rows.len();
            seq.rows
                .iter()
                .enumerate()
                .all(|(i, &row)| tokens[row].pos as usize + queries == context_len + i)
        };
        if chunks.is_empty() || !chunks.iter().all(ends_context) {
            return Ok(None);
        }
        let (mut seqlens_q, mut seqlens_k) = (vec![0u32], vec![0u32]);
        let (mut max_q, mut max_k) = (0, 0);
        for seq in chunks {
            let (queries, keys) = (seq.rows.len(), seq.context_len(tokens));
            seqlens_q.push(seqlens_q.last().copied().unwrap_or(0) + queries as u32);
            seqlens_k.push(seqlens_k.last().copied().unwrap_or(0) + keys as u32);
            max_q = max_q.max(queries);
            max_k = max_k.max(keys);
        }
        Ok(Some(Self {
            seqlens_q: u32s(seqlens_q, device)?,
            seqlens_k: u32s(seqlens_k, device)?,
            max_q,
            max_k,
        }))
    }

    /// Attention of all `chunks` at `layer`; `q`: the step's `[T, n_heads, head_dim]` queries.
    /// Returns the chunks' outputs, concatenated in chunk order.
    pub fn attend(
        &self,
        cache: &CudaKvCache,
        layer: usize,
        q: &Tensor,
        chunks: &[ChunkPlan],
        scale: f32,
    ) -> Result<Tensor> {
        let rows: Vec<&Tensor> = chunks.iter().map(|c| &c.rows).collect();
        let queries = q.index_select(&Tensor::cat(&rows, 0)?, 0)?;
        let mut keys = Vec::with_capacity(chunks.len());
        let mut values = Vec::with_capacity(chunks.len());
        for c in chunks {
            keys.push(
                cache
                    .gather_k(layer, &c.blocks, c.context_len)?
                    .squeeze(0)?,
            );
            values.push(
                cache
                    .gather_v(layer, &c.blocks, c.context_len)?
                    .squeeze(0)?,
            );
        }
        candle_flash_attn::flash_attn_varlen(
            &queries,
            &Tensor::cat(&keys, 0)?,
            &Tensor::cat(&values, 0)?,
            &self.seqlens_q,
            &self.seqlens_k,
            self.max_q,
            self.max_k,
            scale,
            true,
        )
    }
}
