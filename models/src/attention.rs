//! Injected attention. The decoder computes q, k, v and RoPE, then hands them to an [`Attention`]:
//! the trainer passes [`CausalAttention`] (autograd-capable, no cache), the runtime its paged one.
//!
//! Owns: the attention trait, grouped-query attention over full sequences (composed, and with the
//! CPU causal-softmax kernel plus its hand-written backward), padding masks. Must not know the
//! decoder's weights or any KV cache (the runtime's paged attention implements the trait).

use candle_core::{DType, Device, Result, Tensor, D};

use crate::kernels::causal_softmax::{causal_softmax_backward, CausalSoftmax};
use crate::kernels::{cpu_kernels, Op};

/// q: `[batch, seq, n_heads, head_dim]`, k and v: `[batch, seq, n_kv_heads, head_dim]`, RoPE
/// already applied. Returns `[batch, seq, n_heads, head_dim]`.
pub trait Attention {
    fn attend(&mut self, layer: usize, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor>;
}

/// Softmax over the last dim from primitive ops, so that gradients flow through it.
pub fn softmax_composed(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?;
    let e = x.broadcast_sub(&max)?.exp()?;
    let s = e.sum_keepdim(D::Minus1)?;
    e.broadcast_div(&s)
}

/// q, k, v regrouped for grouped-query attention: q `[b, n_kv, group*s_q, d]` (the heads
/// sharing one kv head stacked along the rows), k and v `[b, n_kv, s_k, d]`, all contiguous.
struct Grouped {
    q: Tensor,
    k: Tensor,
    v: Tensor,
    batch: usize,
    q_len: usize,
    n_heads: usize,
    head_dim: usize,
    /// Query heads per kv head.
    group: usize,
}

impl Grouped {
    fn new(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Self> {
        let (batch, q_len, n_heads, head_dim) = q.dims4()?;
        let (_, _, n_kv, _) = k.dims4()?;
        let group = n_heads / n_kv;
        Ok(Self {
            q: q.transpose(1, 2)?
                .contiguous()?
                .reshape((batch, n_kv, group * q_len, head_dim))?,
            k: k.transpose(1, 2)?.contiguous()?,
            v: v.transpose(1, 2)?.contiguous()?,
            batch,
            q_len,
            n_heads,
            head_dim,
            group,
        })
    }

    fn scale(&self) -> f64 {
        1.0 / (self.head_dim as f64).sqrt()
    }

    /// Unscaled scores `[b, n_kv, group*s_q, s_k]`.
    fn scores(&self) -> Result<Tensor> {
        self.q.matmul(&self.k.t()?)
    }

    /// `probs · v` back in the caller's layout `[b, s_q, n_heads, d]`.
    fn attend(&self, probs: &Tensor) -> Result<Tensor> {
        probs
            .matmul(&self.v)?
            .reshape((self.batch, self.n_heads, self.q_len, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()
    }
}

/// Grouped-query attention of q over k, v with an additive mask broadcastable to
/// `[b, n_kv, group, s_q, s_k]`. Shared by the full-sequence and cached paths.
pub fn grouped_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    fused_softmax: bool,
) -> Result<Tensor> {
    let grouped = Grouped::new(q, k, v)?;
    let scores = (grouped.scores()? * grouped.scale())?;
    let (b, n_kv, _, s_k) = scores.dims4()?;
    let (group, s_q) = (grouped.group, grouped.q_len);
    let scores = match mask {
        Some(m) => scores
            .reshape((b, n_kv, group, s_q, s_k))?
            .broadcast_add(m)?
            .reshape((b, n_kv, group * s_q, s_k))?,
        None => scores,
    };
    let probs = if fused_softmax {
        candle_nn::ops::softmax_last_dim(&scores)?
    } else {
        softmax_composed(&scores)?
    };
    grouped.attend(&probs)
}

/// Operands and result of the causal kernel attention, as the hand-written backward reads them.
pub(crate) struct AttnParts {
    /// `[b, s, n_heads, d]`, contiguous.
    pub out: Tensor,
    /// `[b, n_kv, group*s, d]`.
    pub q: Tensor,
    /// `[b, n_kv, s, d]` each.
    pub k: Tensor,
    pub v: Tensor,
    /// `[b, n_kv, group*s, s]`; `None`: recomputed from q and k by the backward (the tape keeps
    /// O(s) per token instead of O(s²)).
    pub probs: Option<Tensor>,
}

/// Full-sequence causal attention with the CPU kernel (f32/f64). `grad`: record the autograd
/// graph through the softmax kernel.
pub(crate) fn causal_kernel_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    lengths: &[usize],
    seq_len: usize,
    grad: bool,
) -> Result<AttnParts> {
    let op = square_op(lengths, seq_len, q.dim(3)?);
    kernel_attention(q, k, v, op, grad)
}

/// The square causal kernel of right-padded rows, for head size `head_dim`.
fn square_op(lengths: &[usize], seq_len: usize, head_dim: usize) -> CausalSoftmax {
    CausalSoftmax {
        lengths: lengths.to_vec(),
        seq_len,
        scale: 1.0 / (head_dim as f64).sqrt(),
        queries: None,
    }
}

/// Attention of q `[b, s_q, n_heads, d]` over k, v `[b, s_k, n_kv, d]` with the CPU softmax
/// kernel `op` (mask, scale and softmax in one pass). `grad`: record the autograd graph through
/// the kernel.
pub(crate) fn kernel_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    op: CausalSoftmax,
    grad: bool,
) -> Result<AttnParts> {
    let grouped = Grouped::new(q, k, v)?;
    let scores = grouped.scores()?.contiguous()?;
    let op = Op(op);
    let probs = if grad {
        scores.apply_op1(op)?
    } else {
        scores.apply_op1_no_bwd(&op)?
    };
    let out = grouped.attend(&probs)?;
    Ok(AttnParts {
        out,
        q: grouped.q,
        k: grouped.k,
        v: grouped.v,
        probs: Some(probs),
    })
}

/// Backward of [`causal_kernel_attention`] given the output gradient `[b, s, n_heads, d]`:
/// gradients of q `[b, s, n_heads, d]`, k and v `[b, s, n_kv, d]` (contiguous).
pub(crate) fn causal_kernel_attention_bwd(
    parts: &AttnParts,
    d_out: &Tensor,
    lengths: &[usize],
    seq_len: usize,
) -> Result<(Tensor, Tensor, Tensor)> {
    let op = square_op(lengths, seq_len, d_out.dim(3)?);
    kernel_attention_bwd(parts, d_out, &op)
}

/// Backward of [`kernel_attention`] with the same `op`, given the output gradient
/// `[b, s_q, n_heads, d]`: gradients of q `[b, s_q, n_heads, d]`, k and v `[b, s_k, n_kv, d]`
/// (contiguous).
pub(crate) fn kernel_attention_bwd(
    parts: &AttnParts,
    d_out: &Tensor,
    op: &CausalSoftmax,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (b, s_q, n_heads, d) = d_out.dims4()?;
    let n_kv = parts.k.dim(1)?;
    let group = n_heads / n_kv;
    let probs = match &parts.probs {
        Some(p) => p.clone(),
        // The forward's kernel on the same operands: the same probabilities, bit for bit.
        None => parts
            .q
            .matmul(&parts.k.t()?)?
            .contiguous()?
            .apply_op1_no_bwd(&Op(op.clone()))?,
    };
    let d_o = d_out
        .transpose(1, 2)?
        .contiguous()?
        .reshape((b, n_kv, group * s_q, d))?;
    let d_p = d_o.matmul(&parts.v.t()?)?;
    let d_v = probs.t()?.matmul(&d_o)?;
    let d_s = causal_softmax_backward(&probs, &d_p, op)?;
    drop((probs, d_p));
    let d_q = d_s.matmul(&parts.k)?;
    let d_k = d_s.t()?.matmul(&parts.q)?;
    let back = |t: Tensor| t.transpose(1, 2)?.contiguous();
    Ok((
        back(d_q.reshape((b, n_heads, s_q, d))?)?,
        back(d_k)?,
        back(d_v)?,
    ))
}

/// Additive causal mask for right-padded sequences: query i sees keys j ≤ i with j < len
/// (a padding row sees itself, so no row is empty). Shape `[b, 1, 1, s, s]`.
pub fn causal_padding_mask(
    lengths: &[usize],
    seq: usize,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let b = lengths.len();
    let mut m = vec![0f32; b * seq * seq];
    for (bi, &len) in lengths.iter().enumerate() {
        for i in 0..seq {
            for j in 0..seq {
                let ok = j <= i && (j < len || j == i);
                if !ok {
                    m[(bi * seq + i) * seq + j] = -1e9;
                }
            }
        }
    }
    Tensor::from_vec(m, (b, 1, 1, seq, seq), device)?.to_dtype(dtype)
}

/// Full-sequence causal attention with padding, autograd-capable (training, scoring, and the
/// reference for the paged runtime). On the CPU (f32/f64) the mask, scale and softmax run as one
/// kernel with a backward; elsewhere as an additive mask and composed (or fused) softmax.
pub struct CausalAttention {
    lengths: Vec<usize>,
    seq: usize,
    dtype: DType,
    device: Device,
    mask: Option<Tensor>,
    fused: bool,
}

impl CausalAttention {
    /// `lengths[i]` is the number of real (non-padding) tokens of row i of a right-padded batch.
    pub fn new(lengths: &[usize], seq: usize, dtype: DType, device: &Device) -> Result<Self> {
        Ok(Self {
            lengths: lengths.to_vec(),
            seq,
            dtype,
            device: device.clone(),
            mask: None,
            fused: false,
        })
    }

    /// Use candle's fused softmax (no backward): for inference only.
    pub fn inference(mut self) -> Self {
        self.fused = true;
        self
    }
}

impl Attention for CausalAttention {
    fn attend(&mut self, _layer: usize, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        let kernel = cpu_kernels(q.device(), q.dtype())
            && q.dim(1)? == self.seq
            && k.dim(1)? == self.seq
            && q.dim(0)? == self.lengths.len();
        if kernel {
            let parts = causal_kernel_attention(q, k, v, &self.lengths, self.seq, !self.fused)?;
            return Ok(parts.out);
        }
        if self.mask.is_none() {
            self.mask = Some(causal_padding_mask(
                &self.lengths,
                self.seq,
                self.dtype,
                &self.device,
            )?);
        }
        grouped_attention(q, k, v, self.mask.as_ref(), self.fused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check, close, randt};

    /// The causal kernel (mask, scale and softmax in one pass) against the additive mask and
    /// composed softmax: outputs and gradients for q, k, v, with padded rows.
    #[test]
    fn causal_kernel_matches_masked_composed_attention() {
        // The second size runs the row-parallel path.
        for ((s, lengths), dtype) in [(9, [9, 4, 1]), (64, [64, 40, 1])]
            .into_iter()
            .flat_map(|c| [(c, DType::F64), (c, DType::F32)])
        {
            let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
            let (b, nh, nkv, d) = (3, 4, 2, 8);
            let q = randt(&[b, s, nh, d], 11, 1.5, dtype);
            let k = randt(&[b, s, nkv, d], 12, 1.5, dtype);
            let v = randt(&[b, s, nkv, d], 13, 1.0, dtype);
            let mask = causal_padding_mask(&lengths, s, dtype, &Device::Cpu).unwrap();
            check(
                &[q.clone(), k.clone(), v.clone()],
                |t| {
                    let mut a = CausalAttention::new(&lengths, s, dtype, &Device::Cpu).unwrap();
                    a.attend(0, &t[0], &t[1], &t[2]).unwrap()
                },
                |t| grouped_attention(&t[0], &t[1], &t[2], Some(&mask), false).unwrap(),
                tol,
                "causal attention",
            );
            // Inference flavour: same values.
            let mut a = CausalAttention::new(&lengths, s, dtype, &Device::Cpu)
                .unwrap()
                .inference();
            let y = a.attend(0, &q, &k, &v).unwrap();
            let y0 = grouped_attention(&q, &k, &v, Some(&mask), true).unwrap();
            close(&y, &y0, tol, "causal attention (inference)");
        }
    }
}
