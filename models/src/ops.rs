//! The decoder's building blocks as tensor ops: linear layers (and their gradients), and the
//! autograd-capable RMSNorm, RoPE and SwiGLU the training forward uses — the CPU kernels where
//! they apply, composed candle ops elsewhere (candle's fused `rms_norm` and `rope` have no
//! backward).
//!
//! Owns: the choice between kernel and composed op for each block. Must not know the decoder's
//! layout, HF names or the attention in use.

use candle_core::{DType, Result, Tensor, D};

use crate::kernels::rms_norm::RmsNorm;
use crate::kernels::rope::Rope;
use crate::kernels::swiglu::SwiGlu;
use crate::kernels::transpose::transposed;
use crate::kernels::{cpu_kernels, Op};

/// `x @ w.T + b` for x of any rank ≥ 2, as one matmul. Inference numerics: the result records
/// no graph through its transposing copy (use [`linear_train`] for gradients).
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    linear_impl(x, w, b, 256, true)
}

/// [`linear`] as the Train mode forward runs it. Measured on the CPU (2 threads), W·xᵀ (plus
/// the transposing copy) is up to ~2× faster for ≤ 16–32 rows, but from ~64 rows on x·Wᵀ is as
/// fast or faster (the LM head at 256 rows: 2.5×), so training switches at 32 rows.
pub fn linear_train(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    linear_impl(x, w, b, 32, false)
}

fn linear_impl(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    max_small_rows: usize,
    graph_free: bool,
) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let last = dims[dims.len() - 1];
    let rows: usize = dims[..dims.len() - 1].iter().product();
    let x2 = x.reshape((rows, last))?;
    // For few rows (decode steps), W·xᵀ packs the small operand instead of the weight
    // matrix and runs 20–50% faster on CPU; for many rows x·Wᵀ is as good or better.
    let y = if rows <= max_small_rows && !w.device().is_cuda() {
        let wx = w.matmul(&x2.t()?)?;
        if graph_free {
            // Inference numerics record no graph, so the copy needs no backward.
            transposed(&wx)?
        } else {
            wx.t()?.contiguous()?
        }
    } else {
        x2.matmul(&w.t()?)?
    };
    let y = match b {
        Some(b) => y.broadcast_add(b)?,
        None => y,
    };
    let mut out = dims;
    let n = out.len();
    out[n - 1] = w.dim(0)?;
    y.reshape(out)
}

/// Gradient of `W` in `y = x·Wᵀ` (rows of any leading shape): `dyᵀ·x`, `[out, in]`.
pub(crate) fn linear_dw(dy: &Tensor, x: &Tensor) -> Result<Tensor> {
    let out = dy.dim(D::Minus1)?;
    let inp = x.dim(D::Minus1)?;
    let dy2 = dy.reshape(((), out))?;
    let x2 = x.reshape(((), inp))?;
    dy2.t()?.matmul(&x2)
}

/// Gradient of `x` in `y = x·Wᵀ`: `dy·W`, shaped like x.
pub(crate) fn linear_dx(dy: &Tensor, w: &Tensor) -> Result<Tensor> {
    let mut dims = dy.dims().to_vec();
    let out = dims[dims.len() - 1];
    let dx = dy.reshape(((), out))?.matmul(w)?;
    let n = dims.len();
    dims[n - 1] = w.dim(1)?;
    dx.reshape(dims)
}

/// Gradient of the bias in `y = x·Wᵀ + b`: the sum of dy over rows.
pub(crate) fn bias_grad(dy: &Tensor) -> Result<Tensor> {
    let out = dy.dim(D::Minus1)?;
    dy.reshape(((), out))?.sum(0)
}

/// RMSNorm from primitive ops (candle's fused one has no backward); statistics in f32.
pub fn rms_norm_composed(x: &Tensor, w: &Tensor, eps: f32) -> Result<Tensor> {
    let dtype = x.dtype();
    let xf = x.to_dtype(DType::F32)?;
    let ms = xf.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = xf.broadcast_mul(&(ms + eps as f64)?.sqrt()?.recip()?)?;
    normed.to_dtype(dtype)?.broadcast_mul(w)
}

/// Rotate-half RoPE on `[b, s, heads, d]` with cos/sin `[b, s, d/2]`, from primitive ops.
pub fn rope_composed(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    let cos = Tensor::cat(&[cos, cos], D::Minus1)?.unsqueeze(2)?;
    let sin = Tensor::cat(&[sin, sin], D::Minus1)?.unsqueeze(2)?;
    let x1 = x.narrow(D::Minus1, 0, d / 2)?;
    let x2 = x.narrow(D::Minus1, d / 2, d / 2)?;
    let rot = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
    x.broadcast_mul(&cos)? + rot.broadcast_mul(&sin)?
}

/// RMSNorm with a backward: the CPU kernel for f32/f64 on the CPU, else the composed ops.
pub fn rms_norm_train(x: &Tensor, w: &Tensor, eps: f32) -> Result<Tensor> {
    if cpu_kernels(x.device(), x.dtype()) && w.dtype() == x.dtype() {
        x.contiguous()?
            .apply_op2(&w.contiguous()?, Op(RmsNorm { eps: eps as f64 }))
    } else {
        rms_norm_composed(x, w, eps)
    }
}

/// Rotate-half RoPE with a backward: the CPU kernel for f32/f64 on the CPU, else the composed
/// ops. `x` `[b, s, heads, d]`, cos/sin `[b, s, d/2]`.
pub fn rope_train(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    if cpu_kernels(x.device(), x.dtype()) && cos.dtype() == x.dtype() && sin.dtype() == x.dtype() {
        x.contiguous()?.apply_op1(Op(Rope {
            cos: cos.contiguous()?.detach(),
            sin: sin.contiguous()?.detach(),
            inverse: false,
        }))
    } else {
        rope_composed(x, cos, sin)
    }
}

/// `silu(g) · u` with a backward: the CPU kernel for f32/f64 on the CPU, else the composed ops.
pub fn swiglu_train(g: &Tensor, u: &Tensor) -> Result<Tensor> {
    if cpu_kernels(g.device(), g.dtype()) && u.dtype() == g.dtype() && g.dims() == u.dims() {
        g.contiguous()?.apply_op2(&u.contiguous()?, Op(SwiGlu))
    } else {
        g.silu()? * u
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swiglu_kernel_equals_candles_ops_bit_for_bit() -> Result<()> {
        let dev = candle_core::Device::Cpu;
        let g = (Tensor::randn(0f32, 3.0, (64, 1536), &dev)? - 0.5)?;
        let u = Tensor::randn(0f32, 1.0, (64, 1536), &dev)?;
        let want = (g.silu()? * &u)?.flatten_all()?.to_vec1::<f32>()?;
        let got = swiglu_train(&g, &u)?.flatten_all()?.to_vec1::<f32>()?;
        assert!(want
            .iter()
            .zip(&got)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
        Ok(())
    }
    use crate::testing::{check, randt};

    #[test]
    fn rms_norm_kernel_matches_composed() {
        for dtype in [DType::F64, DType::F32] {
            // f32 composed statistics vs f64 accumulation: f32 round-off.
            let tol = if dtype == DType::F64 { 1e-6 } else { 1e-5 };
            for shape in [vec![3, 5, 16], vec![2, 300, 64]] {
                let h = shape[2];
                let x = randt(&shape, 1, 2.0, dtype);
                let w = (randt(&[h], 2, 0.2, dtype) + 1.0).unwrap();
                check(
                    &[x, w],
                    |t| rms_norm_train(&t[0], &t[1], 1e-5).unwrap(),
                    |t| rms_norm_composed(&t[0], &t[1], 1e-5).unwrap(),
                    tol,
                    "rms_norm",
                );
            }
        }
    }

    #[test]
    fn rope_kernel_matches_composed() {
        for dtype in [DType::F64, DType::F32] {
            let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
            let (b, s, heads, d) = (2, 7, 3, 8);
            let x = randt(&[b, s, heads, d], 3, 1.0, dtype);
            let ang = randt(&[b, s, d / 2], 4, 3.0, DType::F64);
            let (cos, sin) = (
                ang.cos().unwrap().to_dtype(dtype).unwrap(),
                ang.sin().unwrap().to_dtype(dtype).unwrap(),
            );
            check(
                &[x],
                |t| rope_train(&t[0], &cos, &sin).unwrap(),
                |t| rope_composed(&t[0], &cos, &sin).unwrap(),
                tol,
                "rope",
            );
        }
    }

    #[test]
    fn swiglu_kernel_matches_composed() {
        for dtype in [DType::F64, DType::F32] {
            let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
            for shape in [vec![3, 4, 10], vec![2, 100, 400]] {
                let g = randt(&shape, 5, 3.0, dtype);
                let u = randt(&shape, 6, 1.0, dtype);
                check(
                    &[g, u],
                    |t| swiglu_train(&t[0], &t[1]).unwrap(),
                    |t| (t[0].silu().unwrap() * &t[1]).unwrap(),
                    tol,
                    "swiglu",
                );
            }
        }
    }
}
