//! RMSNorm over the last dim with weight `[h]`: `y = x · rsqrt(mean(x²) + eps) · w`, its
//! statistics accumulated in f64.

use candle_core::{Result, Shape, Tensor};

use super::{dispatch_dtype, par_rows, par_rows_map, with_hosts, Kernel2, Real};

pub(crate) struct RmsNorm {
    pub eps: f64,
}

#[inline(always)]
fn rms_scale<T: Real>(x: &[T], eps: f64) -> T {
    let ss: f64 = x.iter().map(|&v| v.to_f64() * v.to_f64()).sum();
    T::from_f64(1.0 / (ss / x.len() as f64 + eps).sqrt())
}

impl Kernel2 for RmsNorm {
    const NAME: &'static str = "rlvr-rms-norm";

    fn forward<T: Real>(
        &self,
        (x, x_dims): (&[T], &[usize]),
        (w, w_dims): (&[T], &[usize]),
    ) -> Result<(Vec<T>, Shape)> {
        let h = w.len();
        if h == 0 || x.len() % h != 0 || x_dims.last() != Some(&h) {
            candle_core::bail!("rms_norm: x {x_dims:?} vs w {w_dims:?}");
        }
        let mut out = vec![T::from_f64(0.0); x.len()];
        par_rows(&mut out, h, 3 * h, |r0, o| {
            for (xr, or) in x[r0 * h..].chunks_exact(h).zip(o.chunks_exact_mut(h)) {
                let r = rms_scale(xr, self.eps);
                for ((o, &xv), &wv) in or.iter_mut().zip(xr).zip(w) {
                    *o = xv * r * wv;
                }
            }
        });
        Ok((out, Shape::from(x_dims.to_vec())))
    }

    fn backward<T: Real>(
        &self,
        x: &Tensor,
        w: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        backward_typed::<T>(x, w, grad, self.eps, None)
    }
}

/// RMSNorm backward: `(dx + resid, dw)` for the output gradient `grad`; `resid` (the gradient
/// arriving through a residual connection) is added into dx without another pass.
pub(crate) fn rms_norm_backward(
    x: &Tensor,
    w: &Tensor,
    grad: &Tensor,
    eps: f64,
    resid: Option<&Tensor>,
) -> Result<(Tensor, Tensor)> {
    dispatch_dtype!(x.dtype(), backward_typed(x, w, grad, eps, resid))
}

fn backward_typed<T: Real>(
    x: &Tensor,
    w: &Tensor,
    grad: &Tensor,
    eps: f64,
    resid: Option<&Tensor>,
) -> Result<(Tensor, Tensor)> {
    let mut dx: Vec<T> = match resid {
        Some(r) => r.to_dtype(T::DTYPE)?.flatten_all()?.to_vec1::<T>()?,
        None => vec![T::from_f64(0.0); x.elem_count()],
    };
    if dx.len() != x.elem_count() || grad.elem_count() != x.elem_count() {
        candle_core::bail!("rms_norm backward: sizes {:?} {:?}", x.dims(), grad.dims());
    }
    let dw = with_hosts::<T, _, 3>([x, w, grad], |[xs, ws, gs]| {
        let h = ws.len();
        // dw: f64 partial sums per block of rows, added in block order.
        let parts = par_rows_map(&mut dx, h, 6 * h, |r0, block| {
            let mut dw_part = vec![0f64; h];
            for (i, dx_row) in block.chunks_exact_mut(h).enumerate() {
                let off = (r0 + i) * h;
                let (xr, gr) = (&xs[off..off + h], &gs[off..off + h]);
                row_backward(xr, gr, ws, eps, dx_row, &mut dw_part);
            }
            dw_part
        });
        Ok((0..h)
            .map(|j| T::from_f64(parts.iter().map(|p| p[j]).sum()))
            .collect::<Vec<T>>())
    })?;
    Ok((
        Tensor::from_vec(dx, x.shape(), x.device())?,
        Tensor::from_vec(dw, w.shape(), w.device())?,
    ))
}

/// One row: adds the input gradient into `dx_row` and the weight gradient into `dw_part`.
#[inline(always)]
fn row_backward<T: Real>(
    xr: &[T],
    gr: &[T],
    ws: &[T],
    eps: f64,
    dx_row: &mut [T],
    dw_part: &mut [f64],
) {
    let h = ws.len();
    let r = rms_scale(xr, eps);
    let mut c = 0f64;
    for j in 0..h {
        let n = xr[j] * r;
        c += (gr[j] * ws[j] * n).to_f64();
        dw_part[j] += (gr[j] * n).to_f64();
    }
    let c = T::from_f64(c / h as f64);
    for j in 0..h {
        dx_row[j] += r * (gr[j] * ws[j] - xr[j] * r * c);
    }
}
