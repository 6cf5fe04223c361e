//! Injected attention. The decoder computes q, k, v and RoPE, then hands them to an [`Attention`]:
//! the trainer passes [`CausalAttention`] (autograd-capable, no cache), the runtime its paged one.

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Result, Shape, Tensor, D};

use crate::model::{
    cpu_kernels, cpu_slice, dispatch_dtype, dispatch_real, par_rows, with_host, Real,
};

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
    grouped_attention_with(q, k, v, |scores, scale, group, s_q| {
        let (b, n_kv, _, s_k) = scores.dims4()?;
        let scores = (scores * scale)?;
        let scores = match mask {
            Some(m) => scores
                .reshape((b, n_kv, group, s_q, s_k))?
                .broadcast_add(m)?
                .reshape((b, n_kv, group * s_q, s_k))?,
            None => scores,
        };
        if fused_softmax {
            candle_nn::ops::softmax_last_dim(&scores)
        } else {
            softmax_composed(&scores)
        }
    })
}

/// Grouped-query attention around `probs(scores, scale, group, s_q)`, which turns the unscaled
/// scores `[b, n_kv, group*s_q, s_k]` into attention probabilities of the same shape.
fn grouped_attention_with(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    probs: impl FnOnce(&Tensor, f64, usize, usize) -> Result<Tensor>,
) -> Result<Tensor> {
    let (b, s_q, n_heads, d) = q.dims4()?;
    let (_, _, n_kv, _) = k.dims4()?;
    let group = n_heads / n_kv;
    let scale = 1.0 / (d as f64).sqrt();
    // [b, n_kv, group*s_q, d]: the heads sharing one kv head are stacked along the rows.
    let q = q
        .transpose(1, 2)?
        .contiguous()?
        .reshape((b, n_kv, group * s_q, d))?;
    let k = k.transpose(1, 2)?.contiguous()?;
    let v = v.transpose(1, 2)?.contiguous()?;
    let scores = q.matmul(&k.t()?)?;
    let probs = probs(&scores, scale, group, s_q)?;
    probs
        .matmul(&v)?
        .reshape((b, n_heads, s_q, d))?
        .transpose(1, 2)?
        .contiguous()
}

/// Keys visible to query `i` of a row of real length `len`: `j ≤ i` with `j < len`, and the
/// query itself (a padding row sees itself, so no row is empty). Returns the visible prefix
/// length and whether the diagonal is visible on its own beyond it.
#[inline(always)]
fn visible(i: usize, len: usize) -> (usize, bool) {
    if i < len {
        (i + 1, false)
    } else {
        (len, true)
    }
}

/// Causal padded softmax of `scale · scores` over the last dim of `[b, n_kv, group*s, s]`
/// (row r is query `r % s` of batch row `r / (n_kv*group*s)`), with a backward. Masked entries
/// are exactly 0, as with the additive −1e9 mask.
struct CausalSoftmaxOp {
    lengths: Vec<usize>,
    seq: usize,
    scale: f64,
}

fn causal_softmax_fwd<T: Real>(
    st: &CpuStorage,
    l: &Layout,
    op: &CausalSoftmaxOp,
) -> Result<(CpuStorage, Shape)> {
    let x = cpu_slice::<T>(st, l)?;
    let (b, h, rows_per_head, s_k) = l.shape().dims4()?;
    let s = op.seq;
    if s_k != s || rows_per_head % s != 0 || b != op.lengths.len() {
        candle_core::bail!(
            "causal softmax: scores {:?}, seq {s}, {} rows",
            l.dims(),
            op.lengths.len()
        );
    }
    let per_batch = h * rows_per_head;
    let scale = T::from_f64(op.scale);
    let zero = T::from_f64(0.0);
    let mut out = vec![zero; x.len()];
    par_rows(&mut out, s, 3 * s, |r0, o| {
        for (k, orow) in o.chunks_exact_mut(s).enumerate() {
            let r = r0 + k;
            let (n, diag) = visible(r % s, op.lengths[r / per_batch]);
            let i = r % s;
            let xr = &x[r * s..(r + 1) * s];
            let mut m = xr[..n]
                .iter()
                .fold(T::from_f64(f64::NEG_INFINITY), |m, &v| m.fmax(v * scale));
            if diag {
                m = m.fmax(xr[i] * scale);
            }
            let mut sum = 0f64;
            for (o, &v) in orow[..n].iter_mut().zip(&xr[..n]) {
                let e = (v * scale - m).exp();
                *o = e;
                sum += e.to_f64();
            }
            if diag {
                let e = (xr[i] * scale - m).exp();
                orow[i] = e;
                sum += e.to_f64();
            }
            let inv = T::from_f64(1.0 / sum);
            for o in &mut orow[..n] {
                *o *= inv;
            }
            if diag {
                orow[i] *= inv;
            }
        }
    });
    Ok((T::to_cpu_storage_owned(out), l.shape().clone()))
}

fn causal_softmax_bwd<T: Real>(y: &Tensor, g: &Tensor, op: &CausalSoftmaxOp) -> Result<Tensor> {
    let s = op.seq;
    let (_, h, rows_per_head, _) = y.dims4()?;
    let per_batch = h * rows_per_head;
    let scale = T::from_f64(op.scale);
    with_host::<T, _>(y, |ys| {
        with_host::<T, _>(g, |gs| {
            let mut dx = vec![T::from_f64(0.0); ys.len()];
            par_rows(&mut dx, s, 3 * s, |r0, o| {
                for (k, orow) in o.chunks_exact_mut(s).enumerate() {
                    let r = r0 + k;
                    let (n, diag) = visible(r % s, op.lengths[r / per_batch]);
                    let i = r % s;
                    let (yr, gr) = (&ys[r * s..(r + 1) * s], &gs[r * s..(r + 1) * s]);
                    let mut dot = 0f64;
                    for j in 0..n {
                        dot += (yr[j] * gr[j]).to_f64();
                    }
                    if diag {
                        dot += (yr[i] * gr[i]).to_f64();
                    }
                    let dot = T::from_f64(dot);
                    for j in 0..n {
                        orow[j] = scale * yr[j] * (gr[j] - dot);
                    }
                    if diag {
                        orow[i] = scale * yr[i] * (gr[i] - dot);
                    }
                }
            });
            Tensor::from_vec(dx, y.shape(), y.device())
        })
    })
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
    seq: usize,
    grad: bool,
) -> Result<AttnParts> {
    let (b, s_q, n_heads, d) = q.dims4()?;
    let (_, _, n_kv, _) = k.dims4()?;
    let group = n_heads / n_kv;
    let scale = 1.0 / (d as f64).sqrt();
    let qg = q
        .transpose(1, 2)?
        .contiguous()?
        .reshape((b, n_kv, group * s_q, d))?;
    let kt = k.transpose(1, 2)?.contiguous()?;
    let vt = v.transpose(1, 2)?.contiguous()?;
    let scores = qg.matmul(&kt.t()?)?.contiguous()?;
    let op = CausalSoftmaxOp {
        lengths: lengths.to_vec(),
        seq,
        scale,
    };
    let probs = if grad {
        scores.apply_op1(op)?
    } else {
        scores.apply_op1_no_bwd(&op)?
    };
    let out = probs
        .matmul(&vt)?
        .reshape((b, n_heads, s_q, d))?
        .transpose(1, 2)?
        .contiguous()?;
    Ok(AttnParts {
        out,
        q: qg,
        k: kt,
        v: vt,
        probs: Some(probs),
    })
}

/// Backward of [`causal_kernel_attention`] given the output gradient `[b, s, n_heads, d]`:
/// gradients of q `[b, s, n_heads, d]`, k and v `[b, s, n_kv, d]` (contiguous).
pub(crate) fn causal_kernel_attention_bwd(
    parts: &AttnParts,
    d_out: &Tensor,
    lengths: &[usize],
    seq: usize,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (b, s, n_heads, d) = d_out.dims4()?;
    let n_kv = parts.k.dim(1)?;
    let group = n_heads / n_kv;
    let op = CausalSoftmaxOp {
        lengths: lengths.to_vec(),
        seq,
        scale: 1.0 / (d as f64).sqrt(),
    };
    let probs = match &parts.probs {
        Some(p) => p.clone(),
        // The forward's kernel on the same operands: the same probabilities, bit for bit.
        None => parts
            .q
            .matmul(&parts.k.t()?)?
            .contiguous()?
            .apply_op1_no_bwd(&op)?,
    };
    let d_o = d_out
        .transpose(1, 2)?
        .contiguous()?
        .reshape((b, n_kv, group * s, d))?;
    let d_p = d_o.matmul(&parts.v.t()?)?;
    let d_v = probs.t()?.matmul(&d_o)?;
    let d_s = dispatch_dtype!(probs.dtype(), causal_softmax_bwd(&probs, &d_p, &op))?;
    drop((probs, d_p));
    let d_q = d_s.matmul(&parts.k)?;
    let d_k = d_s.t()?.matmul(&parts.q)?;
    let back = |t: Tensor| t.transpose(1, 2)?.contiguous();
    Ok((
        back(d_q.reshape((b, n_heads, s, d))?)?,
        back(d_k)?,
        back(d_v)?,
    ))
}

impl CustomOp1 for CausalSoftmaxOp {
    fn name(&self) -> &'static str {
        "rlvr-causal-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        dispatch_real!(s, causal_softmax_fwd(s, l, self))
    }

    fn bwd(&self, _x: &Tensor, res: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(dispatch_dtype!(
            res.dtype(),
            causal_softmax_bwd(res, g, self)
        )?))
    }
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
    use crate::model::kernel_tests::{check, close, randt};

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
