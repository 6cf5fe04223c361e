//! Paged KV cache and attention over block tables (CPU backend).
//!
//! One forward pass handles a packed batch: all scheduled tokens of all sequences in one row
//! (`[1, T]`), prefill chunks and decode tokens alike. Each token knows its sequence, position and
//! cache slot; it attends to positions `0..=pos` of its own sequence through the block table.
//!
//! Owns the [`KvBackend`] contract and the host-memory KV storage; knows nothing of requests,
//! scheduling or which blocks are free (the engine's layout says where each token goes).

use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;
use rlvr_models::simd::vectorized;
use rlvr_models::{Attention, ModelConfig};

use crate::cpu_attention::{Shape, TokenAttention};

/// Where one scheduled token lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenSlot {
    /// Its sequence: an index into [`StepLayout::block_tables`].
    pub seq_index: u32,
    /// Position in its sequence (RoPE position and causal limit).
    pub pos: u32,
    /// Cache slot: block id × block size + offset.
    pub slot: u32,
}

/// The attention metadata of one engine step; the model never sees the scheduler.
#[derive(Debug, Clone, Default)]
pub struct StepLayout {
    pub tokens: Vec<TokenSlot>,
    pub block_tables: Vec<Vec<u32>>,
}

impl StepLayout {
    /// `(num_tokens, n_heads, head_dim)` of `q`, which must be the packed `[1, T, n_heads,
    /// head_dim]` queries of this step.
    pub fn packed_dims(&self, q: &Tensor) -> candle_core::Result<(usize, usize, usize)> {
        let (batch, num_tokens, n_heads, head_dim) = q.dims4()?;
        if batch != 1 || num_tokens != self.tokens.len() {
            candle_core::bail!(
                "paged attention expects a packed [1, {}] batch, got q {:?}",
                self.tokens.len(),
                q.dims()
            );
        }
        Ok((num_tokens, n_heads, head_dim))
    }
}

/// A KV cache backend: owns the block pool's storage and produces the attention of a step.
pub trait KvBackend: Send {
    fn num_blocks(&self) -> usize;
    fn block_size(&self) -> usize;
    /// Copy one block's keys and values (all layers) for copy-on-write.
    fn copy_block(&mut self, src: u32, dst: u32) -> candle_core::Result<()>;
    /// The attention implementation for one forward over `layout`.
    fn attention<'a>(&'a mut self, layout: &'a StepLayout) -> Box<dyn Attention + 'a>;
    /// Host → device copies the last forward's attention made (its index tensors, built once
    /// per step and shared by all layers); 0 where the cache is in host memory.
    fn last_step_uploads(&self) -> u64 {
        0
    }
}

/// KV storage in host memory, f32, per layer: values `[num_blocks × block_size, n_kv_heads,
/// head_dim]`, keys transposed within each block (`[num_blocks, n_kv_heads, head_dim,
/// block_size]`, see [`crate::cpu_attention`]).
pub struct CpuKvCache {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    num_blocks: usize,
    block_size: usize,
    n_kv: usize,
    head_dim: usize,
}

impl CpuKvCache {
    pub fn bytes_per_block(cfg: &ModelConfig, block_size: usize) -> usize {
        2 * cfg.num_layers
            * block_size
            * cfg.num_kv_heads
            * cfg.head_dim
            * std::mem::size_of::<f32>()
    }

    pub fn new(cfg: &ModelConfig, num_blocks: usize, block_size: usize) -> Self {
        let per_layer = num_blocks * block_size * cfg.num_kv_heads * cfg.head_dim;
        Self {
            k: (0..cfg.num_layers).map(|_| vec![0f32; per_layer]).collect(),
            v: (0..cfg.num_layers).map(|_| vec![0f32; per_layer]).collect(),
            num_blocks,
            block_size,
            n_kv: cfg.num_kv_heads,
            head_dim: cfg.head_dim,
        }
    }
}

impl CpuKvCache {
    /// Store the step's keys and values `[T, n_kv × head_dim]` at their tokens' slots, keys in
    /// the kernel's transposed block layout (see [`crate::cpu_attention`]).
    fn write(&mut self, layer: usize, layout: &StepLayout, shape: Shape, k: &[f32], v: &[f32]) {
        let row = shape.n_kv * shape.head_dim;
        let (k_cache, v_cache) = (&mut self.k[layer], &mut self.v[layer]);
        for (i, token) in layout.tokens.iter().enumerate() {
            let slot = token.slot as usize;
            let k_row = &k[i * row..(i + 1) * row];
            for (kv_head, k_head) in k_row.chunks_exact(shape.head_dim).enumerate() {
                for (d, &x) in k_head.iter().enumerate() {
                    k_cache[shape.key_index(slot, kv_head, d)] = x;
                }
            }
            let dst = slot * row;
            v_cache[dst..dst + row].copy_from_slice(&v[i * row..(i + 1) * row]);
        }
    }
}

impl KvBackend for CpuKvCache {
    fn num_blocks(&self) -> usize {
        self.num_blocks
    }

    fn block_size(&self) -> usize {
        self.block_size
    }

    fn copy_block(&mut self, src: u32, dst: u32) -> candle_core::Result<()> {
        let block = self.block_size * self.n_kv * self.head_dim;
        let (src, dst) = (src as usize * block, dst as usize * block);
        for layer in self.k.iter_mut().chain(self.v.iter_mut()) {
            layer.copy_within(src..src + block, dst);
        }
        Ok(())
    }

    fn attention<'a>(&'a mut self, layout: &'a StepLayout) -> Box<dyn Attention + 'a> {
        Box::new(CpuPagedAttention {
            cache: self,
            layout,
        })
    }
}

struct CpuPagedAttention<'a> {
    cache: &'a mut CpuKvCache,
    layout: &'a StepLayout,
}

fn flat_f32(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()
}

impl Attention for CpuPagedAttention<'_> {
    fn attend(
        &mut self,
        layer: usize,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let (num_tokens, n_heads, head_dim) = self.layout.packed_dims(q)?;
        if head_dim != self.cache.head_dim || n_heads % self.cache.n_kv != 0 {
            candle_core::bail!(
                "paged attention: {n_heads} query heads of size {head_dim} do not fit a cache of \
                 {} kv heads of size {}",
                self.cache.n_kv,
                self.cache.head_dim
            );
        }
        let shape = Shape {
            n_heads,
            n_kv: self.cache.n_kv,
            head_dim,
            block_size: self.cache.block_size,
        };
        let q_dtype = q.dtype();
        let (q, k, v) = (flat_f32(q)?, flat_f32(k)?, flat_f32(v)?);
        // Write this step's keys and values first, so tokens of a chunk see each other.
        self.cache.write(layer, self.layout, shape, &k, &v);
        let (k_cache, v_cache) = (&self.cache.k[layer], &self.cache.v[layer]);
        let q_row = n_heads * head_dim;
        let mut out = vec![0f32; num_tokens * q_row];
        let layout = self.layout;
        out.par_chunks_mut(q_row).enumerate().for_each(|(i, o)| {
            let token = layout.tokens[i];
            let n_keys = token.pos as usize + 1;
            let table = &layout.block_tables[token.seq_index as usize];
            vectorized(TokenAttention {
                q: &q[i * q_row..(i + 1) * q_row],
                k_cache,
                v_cache,
                blocks: &table[..n_keys.div_ceil(shape.block_size)],
                n_keys,
                shape,
                out: o,
            });
        });
        let shape = (1, num_tokens, n_heads, head_dim);
        Tensor::from_vec(out, shape, &Device::Cpu)?.to_dtype(q_dtype)
    }
}
