//! Attention over a [`PackedLayout`]: q, k, v of the stream `[1, T, heads, d]` gathered into the
//! layout's virtual rows, attended with the query-offset causal mask, and scattered back. On the
//! CPU (f32/f64) through the causal-softmax kernel (forward, and a hand-written backward for the
//! taped training forward); elsewhere as an additive mask and a composed (or fused) softmax,
//! through candle's autograd. A prompt's keys and values appear in each of its completions' rows;
//! the backward sums their gradients into the prompt's tokens.

use candle_core::{DType, Device, Result, Tensor};

use super::PackedLayout;
use crate::attention::{grouped_attention, kernel_attention, kernel_attention_bwd, AttnParts};
use crate::kernels::causal_softmax::{CausalSoftmax, QueryOffsets};
use crate::kernels::cpu_kernels;

/// The layout's gather/scatter indices on a device, and its softmax kernel.
#[derive(Clone)]
pub(crate) struct PackedIndex {
    q: Tensor,
    k: Tensor,
    inverse: Tensor,
    op: CausalSoftmax,
    rows: usize,
    q_len: usize,
    k_len: usize,
    tokens: usize,
}

impl PackedIndex {
    pub fn new(layout: &PackedLayout, device: &Device) -> Result<Self> {
        let idx = |v: &[u32]| Tensor::from_slice(v, v.len(), device);
        Ok(Self {
            q: idx(&layout.q_index)?,
            k: idx(&layout.k_index)?,
            inverse: idx(&layout.inverse)?,
            op: CausalSoftmax {
                lengths: layout.key_lengths.clone(),
                seq_len: layout.k_len,
                scale: 1.0,
                queries: Some(QueryOffsets {
                    offsets: layout.offsets.clone(),
                    counts: layout.counts.clone(),
                    q_len: layout.q_len,
                }),
            },
            rows: layout.rows(),
            q_len: layout.q_len,
            k_len: layout.k_len,
            tokens: layout.len(),
        })
    }

    /// The kernel for head size `head_dim`.
    fn op(&self, head_dim: usize) -> CausalSoftmax {
        CausalSoftmax {
            scale: 1.0 / (head_dim as f64).sqrt(),
            ..self.op.clone()
        }
    }

    /// Stream `[1, T, h, d]` → query slots `[rows, q_len, h, d]`.
    fn gather_q(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, h, d) = x.dims4()?;
        x.squeeze(0)?
            .index_select(&self.q, 0)?
            .reshape((self.rows, self.q_len, h, d))
    }

    /// Stream `[1, T, h, d]` → key slots `[rows, k_len, h, d]`.
    fn gather_k(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, h, d) = x.dims4()?;
        x.squeeze(0)?
            .index_select(&self.k, 0)?
            .reshape((self.rows, self.k_len, h, d))
    }

    /// Query slots `[rows, q_len, h, d]` → stream `[1, T, h, d]` (padding slots dropped).
    fn scatter_q(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, h, d) = x.dims4()?;
        x.reshape((self.rows * self.q_len, h, d))?
            .index_select(&self.inverse, 0)?
            .unsqueeze(0)
    }

    /// Key slots' gradients `[rows, k_len, h, d]` summed into the stream `[1, T, h, d]`.
    fn sum_k(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, h, d) = x.dims4()?;
        Tensor::zeros((self.tokens, h, d), x.dtype(), x.device())?
            .index_add(&self.k, &x.reshape((self.rows * self.k_len, h, d))?, 0)?
            .unsqueeze(0)
    }

    /// Additive mask `[rows, 1, 1, q_len, k_len]`: query i of a row sees keys `0..=offset + i`;
    /// a padding query sees key 0 only (its output is dropped).
    fn mask(&self, dtype: DType, device: &Device) -> Result<Tensor> {
        let Some(q) = self.op.queries.as_ref() else {
            candle_core::bail!("packed attention without query offsets");
        };
        let (sq, sk) = (self.q_len, self.k_len);
        let mut m = vec![-1e9f32; self.rows * sq * sk];
        for b in 0..self.rows {
            for i in 0..sq {
                let visible = if i < q.counts[b] {
                    q.offsets[b] + i + 1
                } else {
                    1
                };
                let row = (b * sq + i) * sk;
                m[row..row + visible].fill(0.0);
            }
        }
        Tensor::from_vec(m, (self.rows, 1, 1, sq, sk), device)?.to_dtype(dtype)
    }
}

/// Packed attention with the CPU kernel; its parts (operands in the virtual rows, output in the
/// stream) for the hand-written backward. `grad`: record the autograd graph.
pub(crate) fn packed_kernel_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    index: &PackedIndex,
    grad: bool,
) -> Result<AttnParts> {
    let op = index.op(q.dim(3)?);
    let (qv, kv, vv) = (index.gather_q(q)?, index.gather_k(k)?, index.gather_k(v)?);
    let mut parts = kernel_attention(&qv, &kv, &vv, op, grad)?;
    parts.out = index.scatter_q(&parts.out)?;
    Ok(parts)
}

/// Backward of [`packed_kernel_attention`] given the stream's output gradient `[1, T, heads,
/// d]`: the stream's gradients of q `[1, T, heads, d]`, k and v `[1, T, n_kv, d]`, the prompt's
/// summed over every row that reads it.
pub(crate) fn packed_kernel_attention_bwd(
    parts: &AttnParts,
    d_out: &Tensor,
    index: &PackedIndex,
) -> Result<(Tensor, Tensor, Tensor)> {
    let op = index.op(d_out.dim(3)?);
    // Padding query slots read token 0's gradient, but their probabilities are all zero: they
    // add nothing to dk, dv, and their dq is dropped.
    let d_out = index.gather_q(d_out)?;
    let (d_q, d_k, d_v) = kernel_attention_bwd(parts, &d_out, &op)?;
    Ok((
        index.scatter_q(&d_q)?,
        index.sum_k(&d_k)?,
        index.sum_k(&d_v)?,
    ))
}

/// The packed layout's attention for forwards without a tape (no-grad, or candle's autograd).
pub(crate) struct PackedAttention {
    index: PackedIndex,
    fused: bool,
    mask: Option<Tensor>,
}

impl PackedAttention {
    /// `fused`: inference numerics (no backward).
    pub fn new(index: PackedIndex, fused: bool) -> Self {
        Self {
            index,
            fused,
            mask: None,
        }
    }
}

impl crate::attention::Attention for PackedAttention {
    fn attend(&mut self, _layer: usize, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        if cpu_kernels(q.device(), q.dtype()) {
            return Ok(packed_kernel_attention(q, k, v, &self.index, !self.fused)?.out);
        }
        self.attend_masked(q, k, v)
    }
}

impl PackedAttention {
    /// The additive mask and composed (or fused) softmax: the path of non-CPU devices.
    pub(crate) fn attend_masked(&mut self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        if self.mask.is_none() {
            self.mask = Some(self.index.mask(q.dtype(), q.device())?);
        }
        let index = &self.index;
        let (qv, kv, vv) = (index.gather_q(q)?, index.gather_k(k)?, index.gather_k(v)?);
        let out = grouped_attention(&qv, &kv, &vv, self.mask.as_ref(), self.fused)?;
        index.scatter_q(&out)
    }
}
