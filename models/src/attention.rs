//! Injected attention. The decoder computes q, k, v and RoPE, then hands them to an [`Attention`]:
//! the trainer passes [`CausalAttention`] (autograd-capable, no cache), the runtime its paged one.

use candle_core::{DType, Device, Result, Tensor, D};

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

/// Grouped-query attention of q over k, v with an additive mask broadcastable to
/// `[b, n_kv, group, s_q, s_k]`. Shared by the full-sequence and cached paths.
pub fn grouped_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    fused_softmax: bool,
) -> Result<Tensor> {
    let (b, s_q, n_heads, d) = q.dims4()?;
    let (_, s_k, n_kv, _) = k.dims4()?;
    let group = n_heads / n_kv;
    let scale = 1.0 / (d as f64).sqrt();
    // [b, n_kv, group*s_q, d]: the heads sharing one kv head are stacked along the rows.
    let q = q
        .transpose(1, 2)?
        .contiguous()?
        .reshape((b, n_kv, group * s_q, d))?;
    let k = k.transpose(1, 2)?.contiguous()?;
    let v = v.transpose(1, 2)?.contiguous()?;
    let scores = (q.matmul(&k.t()?)? * scale)?;
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
    probs
        .matmul(&v)?
        .reshape((b, n_heads, s_q, d))?
        .transpose(1, 2)?
        .contiguous()
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

/// Full-sequence causal attention with padding, built from autograd-capable ops (training,
/// scoring, and the reference for the paged runtime).
pub struct CausalAttention {
    mask: Tensor,
    fused: bool,
}

impl CausalAttention {
    /// `lengths[i]` is the number of real (non-padding) tokens of row i of a right-padded batch.
    pub fn new(lengths: &[usize], seq: usize, dtype: DType, device: &Device) -> Result<Self> {
        Ok(Self {
            mask: causal_padding_mask(lengths, seq, dtype, device)?,
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
        grouped_attention(q, k, v, Some(&self.mask), self.fused)
    }
}
