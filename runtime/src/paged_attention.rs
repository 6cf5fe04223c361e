//! Paged KV cache and attention over block tables (CPU backend).
//!
//! One forward pass handles a packed batch: all scheduled tokens of all sequences in one row
//! (`[1, T]`), prefill chunks and decode tokens alike. Each token knows its sequence, position and
//! cache slot; it attends to positions `0..=pos` of its own sequence through the block table.

use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;
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

/// A KV cache backend: owns the block pool's storage and produces the attention of a step.
pub trait KvBackend: Send {
    fn num_blocks(&self) -> usize;
    fn block_size(&self) -> usize;
    /// Copy one block's keys and values (all layers) for copy-on-write.
    fn copy_block(&mut self, src: u32, dst: u32) -> candle_core::Result<()>;
    /// The attention implementation for one forward over `layout`.
    fn attention<'a>(&'a mut self, layout: &'a StepLayout) -> Box<dyn Attention + 'a>;
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

impl KvBackend for CpuKvCache {
    fn num_blocks(&self) -> usize {
        self.num_blocks
    }

    fn block_size(&self) -> usize {
        self.block_size
    }

    fn copy_block(&mut self, src: u32, dst: u32) -> candle_core::Result<()> {
        let n = self.block_size * self.n_kv * self.head_dim;
        let (s, d) = (src as usize * n, dst as usize * n);
        for layer in self.k.iter_mut().chain(self.v.iter_mut()) {
            layer.copy_within(s..s + n, d);
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

/// Dot product with eight independent lanes, so it vectorises without reassociation.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = (acc[0] + acc[4]) + (acc[1] + acc[5]) + (acc[2] + acc[6]) + (acc[3] + acc[7]);
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// Attention of one token over its sequence's cached keys and values.
/// `q`: `[nh, d]`; `out`: `[nh, d]` (zeroed); `slots`: cache rows of positions `0..=pos`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn token_attention(
    q: &[f32],
    kc: &[f32],
    vc: &[f32],
    slots: &[usize],
    nh: usize,
    nkv: usize,
    d: usize,
    out: &mut [f32],
) {
    let group = nh / nkv;
    let row = nkv * d;
    let scale = 1.0 / (d as f32).sqrt();
    let n = slots.len();
    let mut scores = vec![0f32; group * n];
    for kvh in 0..nkv {
        for (j, &s) in slots.iter().enumerate() {
            let kj = &kc[s * row + kvh * d..s * row + (kvh + 1) * d];
            for g in 0..group {
                let h = kvh * group + g;
                let qh = &q[h * d..(h + 1) * d];
                scores[g * n + j] = dot(qh, kj) * scale;
            }
        }
        for g in 0..group {
            let sc = &mut scores[g * n..(g + 1) * n];
            let max = sc.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
            let mut sum = 0f32;
            for x in sc.iter_mut() {
                *x = (*x - max).exp();
                sum += *x;
            }
            let inv = 1.0 / sum;
            for x in sc.iter_mut() {
                *x *= inv;
            }
        }
        for (j, &s) in slots.iter().enumerate() {
            let vj = &vc[s * row + kvh * d..s * row + (kvh + 1) * d];
            for g in 0..group {
                let h = kvh * group + g;
                let w = scores[g * n + j];
                for (o, &v) in out[h * d..(h + 1) * d].iter_mut().zip(vj) {
                    *o += w * v;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn token_attention_avx2(
    q: &[f32],
    kc: &[f32],
    vc: &[f32],
    slots: &[usize],
    nh: usize,
    nkv: usize,
    d: usize,
    out: &mut [f32],
) {
    token_attention(q, kc, vc, slots, nh, nkv, d, out)
}

/// Dispatch to an AVX2/FMA build of the same code when the CPU has it.
#[allow(clippy::too_many_arguments)]
fn token_attention_dispatch(
    q: &[f32],
    kc: &[f32],
    vc: &[f32],
    slots: &[usize],
    nh: usize,
    nkv: usize,
    d: usize,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports the features the function was compiled for.
            unsafe { token_attention_avx2(q, kc, vc, slots, nh, nkv, d, out) };
            return;
        }
    }
    token_attention(q, kc, vc, slots, nh, nkv, d, out)
}

impl Attention for CpuPagedAttention<'_> {
    fn attend(
        &mut self,
        layer: usize,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let (b, t, nh, d) = q.dims4()?;
        if b != 1 || t != self.layout.tokens.len() {
            candle_core::bail!(
                "paged attention expects a packed [1, {}] batch, got q {:?}",
                self.layout.tokens.len(),
                q.dims()
            );
        }
        let nkv = self.cache.n_kv;
        let bs = self.cache.block_size;
        let row = nkv * d;
        let (qv, kv, vv) = (flat_f32(q)?, flat_f32(k)?, flat_f32(v)?);
        // Write this step's keys and values first, so tokens of a chunk see each other.
        {
            let (kc, vc) = (&mut self.cache.k[layer], &mut self.cache.v[layer]);
            for (i, tok) in self.layout.tokens.iter().enumerate() {
                let dst = tok.slot as usize * row;
                kc[dst..dst + row].copy_from_slice(&kv[i * row..(i + 1) * row]);
                vc[dst..dst + row].copy_from_slice(&vv[i * row..(i + 1) * row]);
            }
        }
        let kc = &self.cache.k[layer];
        let vc = &self.cache.v[layer];
        let layout = self.layout;
        let mut out = vec![0f32; t * nh * d];
        out.par_chunks_mut(nh * d).enumerate().for_each(|(i, o)| {
            let tok = layout.tokens[i];
            let table = &layout.block_tables[tok.seq_index as usize];
            let slots: Vec<usize> = (0..=tok.pos as usize)
                .map(|pos| cache_slot(table, bs, pos))
                .collect();
            token_attention_dispatch(
                &qv[i * nh * d..(i + 1) * nh * d],
                kc,
                vc,
                &slots,
                nh,
                nkv,
                d,
                o,
            );
        });
        Tensor::from_vec(out, (1, t, nh, d), &Device::Cpu)?.to_dtype(q.dtype())
    }
}
