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
use rlvr_models::simd::{vectorized, HotLoop};
use rlvr_models::{Attention, ModelConfig};

use crate::block_manager::cache_slot;

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

/// KV storage in host memory: per layer, `[num_blocks × block_size, n_kv_heads, head_dim]` f32.
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
    /// Store the step's keys and values `[T, n_kv × head_dim]` at their tokens' slots.
    fn write(&mut self, layer: usize, layout: &StepLayout, k: &[f32], v: &[f32]) {
        let row = self.n_kv * self.head_dim;
        let (k_cache, v_cache) = (&mut self.k[layer], &mut self.v[layer]);
        for (i, token) in layout.tokens.iter().enumerate() {
            let dst = token.slot as usize * row;
            k_cache[dst..dst + row].copy_from_slice(&k[i * row..(i + 1) * row]);
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
        let block_size = self.block_size;
        Box::new(CpuPagedAttention {
            cache: self,
            layout,
            slots: token_slots(layout, block_size),
        })
    }
}

struct CpuPagedAttention<'a> {
    cache: &'a mut CpuKvCache,
    layout: &'a StepLayout,
    /// Per token, the cache rows of its positions `0..=pos`: the same for every layer, so
    /// built once per step.
    slots: Vec<Vec<usize>>,
}

/// The cache rows each token of `layout` attends to.
fn token_slots(layout: &StepLayout, block_size: usize) -> Vec<Vec<usize>> {
    layout
        .tokens
        .par_iter()
        .map(|token| {
            let table = &layout.block_tables[token.seq_index as usize];
            (0..=token.pos as usize)
                .map(|pos| cache_slot(table, block_size, pos))
                .collect()
        })
        .collect()
}

fn flat_f32(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()
}

/// Dot product with sixteen independent lanes (one AVX-512 register, two AVX2 ones), so it
/// vectorises without reassociation and sums in the same order on every CPU.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    let mut half = [0f32; LANES / 2];
    for l in 0..LANES / 2 {
        half[l] = acc[l] + acc[l + LANES / 2];
    }
    let mut s =
        (half[0] + half[4]) + (half[1] + half[5]) + (half[2] + half[6]) + (half[3] + half[7]);
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// Head counts and size of the attention.
#[derive(Debug, Clone, Copy)]
struct Heads {
    n_heads: usize,
    n_kv: usize,
    head_dim: usize,
}

/// Attention of one token over its sequence's cached keys and values.
/// `q`: `[n_heads, head_dim]`; `out`: `[n_heads, head_dim]` (zeroed); `slots`: cache rows of
/// positions `0..=pos`.
#[inline(always)]
fn token_attention(
    q: &[f32],
    k_cache: &[f32],
    v_cache: &[f32],
    slots: &[usize],
    heads: Heads,
    out: &mut [f32],
) {
    let Heads {
        n_heads,
        n_kv,
        head_dim,
    } = heads;
    let group = n_heads / n_kv;
    let row = n_kv * head_dim;
    let scale = 1.0 / (head_dim as f32).sqrt();
    let n_keys = slots.len();
    let mut scores = vec![0f32; group * n_keys];
    for kv_head in 0..n_kv {
        for (key, &slot) in slots.iter().enumerate() {
            let base = slot * row + kv_head * head_dim;
            let k = &k_cache[base..base + head_dim];
            for member in 0..group {
                let head = kv_head * group + member;
                let q_head = &q[head * head_dim..(head + 1) * head_dim];
                scores[member * n_keys + key] = dot(q_head, k) * scale;
            }
        }
        for member_scores in scores.chunks_exact_mut(n_keys) {
            let max = member_scores
                .iter()
                .fold(f32::NEG_INFINITY, |m, &x| m.max(x));
            let mut sum = 0f32;
            for x in member_scores.iter_mut() {
                *x = (*x - max).exp();
                sum += *x;
            }
            let inv = 1.0 / sum;
            for x in member_scores.iter_mut() {
                *x *= inv;
            }
        }
        for (key, &slot) in slots.iter().enumerate() {
            let base = slot * row + kv_head * head_dim;
            let v = &v_cache[base..base + head_dim];
            for member in 0..group {
                let head = kv_head * group + member;
                let weight = scores[member * n_keys + key];
                for (o, &x) in out[head * head_dim..(head + 1) * head_dim]
                    .iter_mut()
                    .zip(v)
                {
                    *o += weight * x;
                }
            }
        }
    }
}

/// One token's attention as a [`HotLoop`], so it runs compiled for the widest vector
/// instructions the CPU has (`RLVR_NO_AVX=1` forces the baseline build).
struct TokenAttention<'a> {
    q: &'a [f32],
    k_cache: &'a [f32],
    v_cache: &'a [f32],
    slots: &'a [usize],
    heads: Heads,
    out: &'a mut [f32],
}

impl HotLoop for TokenAttention<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        token_attention(
            self.q,
            self.k_cache,
            self.v_cache,
            self.slots,
            self.heads,
            self.out,
        )
    }
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
        let heads = Heads {
            n_heads,
            n_kv: self.cache.n_kv,
            head_dim,
        };
        let q_dtype = q.dtype();
        let (q, k, v) = (flat_f32(q)?, flat_f32(k)?, flat_f32(v)?);
        // Write this step's keys and values first, so tokens of a chunk see each other.
        self.cache.write(layer, self.layout, &k, &v);
        let (k_cache, v_cache) = (&self.cache.k[layer], &self.cache.v[layer]);
        let q_row = n_heads * head_dim;
        let mut out = vec![0f32; num_tokens * q_row];
        let slots = &self.slots;
        out.par_chunks_mut(q_row).enumerate().for_each(|(i, o)| {
            let q_token = &q[i * q_row..(i + 1) * q_row];
            vectorized(TokenAttention {
                q: q_token,
                k_cache,
                v_cache,
                slots: &slots[i],
                heads,
                out: o,
            });
        });
        let shape = (1, num_tokens, n_heads, head_dim);
        Tensor::from_vec(out, shape, &Device::Cpu)?.to_dtype(q_dtype)
    }
}
