//! The index tensors of one CUDA attention step, built once from the [`StepLayout`] at the first
//! layer and shared by all layers: where each token's keys and values are written, which tokens
//! are decode tokens for the `paged_attention` kernel, which are prefill chunks (and their causal
//! masks, or a flash-attention plan), and how to put the outputs back in token order.
//!
//! Knows the pool's shape and which paths are on; knows nothing of the engine or the model.

use std::collections::HashMap;

use candle_core::{Device, Result, Tensor};

use super::flash::FlashPlan;
use super::CudaKvCache;
use crate::paged_attention::{StepLayout, TokenSlot};

/// Decode tokens of a step, attended by one `paged_attention` launch.
pub(super) struct DecodePlan {
    /// Rows of the step's q for these tokens (None: all rows, in order).
    pub rows: Option<Tensor>,
    /// `[n, max_blocks]` u32, each row padded with block 0.
    pub block_tables: Tensor,
    /// `pos + 1` of each token, u32.
    pub context_lens: Tensor,
    pub max_context_len: usize,
}

/// The tokens of one sequence attended with candle ops (or gathered for flash-attention).
pub(super) struct ChunkPlan {
    pub rows: Tensor,
    /// The sequence's first `ceil(context_len / block_size)` block ids.
    pub blocks: Tensor,
    /// Keys attended: positions `0..context_len`, `context_len` = max pos + 1.
    pub context_len: usize,
    /// Additive causal mask `[1, 1, 1, n, context_len]` (None for a single token, which sees
    /// all, and under flash-attention).
    pub mask: Option<Tensor>,
}

/// Index tensors of one step.
pub(super) struct AttentionPlan {
    /// Cache slot of each token, i64.
    pub slots: Tensor,
    pub decode: Option<DecodePlan>,
    pub chunks: Vec<ChunkPlan>,
    /// All chunks in one flash-attention launch (then `chunks` carry no masks).
    pub flash: Option<FlashPlan>,
    /// Rows of the concatenated outputs (decode, then chunks) in token order (None: already
    /// in order).
    pub unpermute: Option<Tensor>,
}

/// The rows (indices into the step's tokens) of one sequence, in step order.
pub(super) struct SeqRows {
    pub seq_index: u32,
    pub rows: Vec<usize>,
}

impl SeqRows {
    /// Positions `0..context_len` are attended: the last position in the step, plus one.
    pub fn context_len(&self, tokens: &[TokenSlot]) -> usize {
        self.rows
            .iter()
            .map(|&r| tokens[r].pos as usize)
            .max()
            .unwrap_or(0)
            + 1
    }
}

pub(super) fn u32s(values: Vec<u32>, device: &Device) -> Result<Tensor> {
    let len = values.len();
    Tensor::from_vec(values, len, device)
}

impl AttentionPlan {
    pub fn build(cache: &CudaKvCache, layout: &StepLayout, device: &Device) -> Result<Self> {
        let tokens = &layout.tokens;
        let slots = slot_mapping(cache, tokens, device)?;
        let (decode_seqs, chunk_seqs): (Vec<SeqRows>, Vec<SeqRows>) = group_by_sequence(tokens)
            .into_iter()
            .partition(|s| cache.kernel_decode && s.rows.len() == 1);
        let decode = DecodePlan::build(cache, layout, &decode_seqs, device)?;
        let flash = if cache.flash_prefill {
            FlashPlan::build(tokens, &chunk_seqs, device)?
        } else {
            None
        };
        let mut chunks = Vec::with_capacity(chunk_seqs.len());
        for seq in &chunk_seqs {
            chunks.push(ChunkPlan::build(
                cache,
                layout,
                seq,
                flash.is_none(),
                device,
            )?);
        }
        let order = decode_seqs.iter().chain(&chunk_seqs).flat_map(|s| &s.rows);
        let unpermute = unpermute(order.copied().collect(), device)?;
        Ok(Self {
            slots,
            decode,
            chunks,
            flash,
            unpermute,
        })
    }
}

impl AttentionPlan {
    /// Host → device copies this plan made: the slot mapping, the decode tables, each chunk's
    /// rows, blocks and mask, the flash lengths and the unpermutation.
    pub fn uploads(&self) -> u64 {
        let decode = self
            .decode
            .as_ref()
            .map_or(0, |d| 2 + u64::from(d.rows.is_some()));
        let chunks: u64 = self
            .chunks
            .iter()
            .map(|c| 2 + u64::from(c.mask.is_some()))
            .sum();
        let flash = if self.flash.is_some() { 2 } else { 0 };
        1 + decode + chunks + flash + u64::from(self.unpermute.is_some())
    }
}

/// The i64 slot of each token, checked against the pool.
fn slot_mapping(cache: &CudaKvCache, tokens: &[TokenSlot], device: &Device) -> Result<Tensor> {
    let slots: Vec<i64> = tokens.iter().map(|t| t.slot as i64).collect();
    let pool_slots = (cache.num_blocks * cache.block_size) as i64;
    if let Some(slot) = slots.iter().find(|&&s| s >= pool_slots) {
        candle_core::bail!(
            "slot {slot} outside the pool ({} blocks of {})",
            cache.num_blocks,
            cache.block_size
        );
    }
    Tensor::from_vec(slots, tokens.len(), device)
}

/// The step's tokens grouped by sequence, in order of first appearance.
fn group_by_sequence(tokens: &[TokenSlot]) -> Vec<SeqRows> {
    let mut groups: Vec<SeqRows> = vec![];
    let mut group_of = HashMap::new();
    for (row, token) in tokens.iter().enumerate() {
        let group = *group_of.entry(token.seq_index).or_insert_with(|| {
            groups.push(SeqRows {
                seq_index: token.seq_index,
                rows: vec![],
            });
            groups.len() - 1
        });
        groups[group].rows.push(row);
    }
    groups
}

/// The blocks holding positions `0..context_len` of sequence `seq_index`.
fn table_prefix(
    layout: &StepLayout,
    block_size: usize,
    seq_index: u32,
    context_len: usize,
) -> Result<&[u32]> {
    let need = context_len.div_ceil(block_size);
    match layout.block_tables.get(seq_index as usize) {
        Some(table) if table.len() >= need => Ok(&table[..need]),
        Some(table) => candle_core::bail!(
            "sequence {seq_index}: {context_len} positions need {need} blocks, its table has {}",
            table.len()
        ),
        None => candle_core::bail!("sequence {seq_index} has no block table"),
    }
}

impl DecodePlan {
    /// One kernel launch for `seqs` (one token each); None when there are none.
    fn build(
        cache: &CudaKvCache,
        layout: &StepLayout,
        seqs: &[SeqRows],
        device: &Device,
    ) -> Result<Option<Self>> {
        if seqs.is_empty() {
            return Ok(None);
        }
        let (mut rows, mut tables, mut context_lens) = (vec![], vec![], vec![]);
        for seq in seqs {
            let context_len = seq.context_len(&layout.tokens);
            rows.push(seq.rows[0] as u32);
            tables.push(table_prefix(
                layout,
                cache.block_size,
                seq.seq_index,
                context_len,
            )?);
            context_lens.push(context_len as u32);
        }
        let num_seqs = rows.len();
        let width = tables.iter().map(|t| t.len()).max().unwrap_or(1).max(1);
        let mut padded = Vec::with_capacity(num_seqs * width);
        for table in &tables {
            padded.extend(*table);
            padded.extend(std::iter::repeat_n(0u32, width - table.len()));
        }
        let in_order =
            num_seqs == layout.tokens.len() && rows.iter().enumerate().all(|(i, &r)| r == i as u32);
        Ok(Some(Self {
            rows: if in_order {
                None
            } else {
                Some(u32s(rows, device)?)
            },
            block_tables: Tensor::from_vec(padded, (num_seqs, width), device)?,
            max_context_len: context_lens.iter().copied().max().unwrap_or(1) as usize,
            context_lens: u32s(context_lens, device)?,
        }))
    }
}

impl ChunkPlan {
    fn build(
        cache: &CudaKvCache,
        layout: &StepLayout,
        seq: &SeqRows,
        with_mask: bool,
        device: &Device,
    ) -> Result<Self> {
        let context_len = seq.context_len(&layout.tokens);
        let blocks = table_prefix(layout, cache.block_size, seq.seq_index, context_len)?;
        let mask = if seq.rows.len() == 1 || !with_mask {
            None
        } else {
            let queries = seq.rows.len();
            let mut mask = vec![0f32; queries * context_len];
            for (i, &row) in seq.rows.iter().enumerate() {
                let pos = layout.tokens[row].pos as usize;
                mask[i * context_len + pos + 1..(i + 1) * context_len].fill(-1e9);
            }
            let shape = (1, 1, 1, queries, context_len);
            Some(Tensor::from_vec(mask, shape, device)?.to_dtype(cache.dtype)?)
        };
        Ok(Self {
            rows: u32s(seq.rows.iter().map(|&r| r as u32).collect(), device)?,
            blocks: u32s(blocks.to_vec(), device)?,
            context_len,
            mask,
        })
    }
}

/// The permutation back to token order of outputs laid out in `order` (token rows); None when
/// `order` is already the identity.
fn unpermute(order: Vec<usize>, device: &Device) -> Result<Option<Tensor>> {
    if order.iter().enumerate().all(|(i, &row)| row == i) {
        return Ok(None);
    }
    let mut inverse = vec![0u32; order.len()];
    for (j, &row) in order.iter().enumerate() {
        inverse[row] = j as u32;
    }
    Ok(Some(u32s(inverse, device)?))
}
