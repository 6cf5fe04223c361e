//! SwiGLU, `silu(g) · u`, elementwise over two tensors of the same shape.

use candle_core::{Result, Shape, Tensor};

use super::{dispatch_dtype, par_rows, par_rows2, with_hosts, Kernel2, Real};

pub(crate) struct SwiGlu;

impl Kernel2 for SwiGlu {
    const NAME: &'static str = "rlvr-swiglu";

    fn forward<T: Real>(
        &self,
        (g, g_dims): (&[T], &[usize]),
        (u, u_dims): (&[T], &[usize]),
    ) -> Result<(Vec<T>, Shape)> {
        if g_dims != u_dims {
            candle_core::bail!("swiglu: {g_dims:?} vs {u_dims:?}");
        }
        let one = T::from_f64(1.0);
        let mut out = vec![T::from_f64(0.0); g.len()];
        let row = *g_dims.last().unwrap_or(&1);
        par_rows(&mut out, row, 8 * row, |r0, o| {
            let off = r0 * row;
            for ((o, &gv), &uv) in o.iter_mut().zip(&g[off..]).zip(&u[off..]) {
                *o = gv / (one + (-gv).exp()) * uv;
            }
        });
        Ok((out, Shape::from(g_dims.to_vec())))
    }

    fn backward<T: Real>(
        &self,
        g: &Tensor,
        u: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        backward_typed::<T>(g, u, grad)
    }
}

/// The gradients of `g` and `u` given the output gradient.
pub(crate) fn swiglu_backward(g: &Tensor, u: &Tensor, grad: &Tensor) -> Result<(Tensor, Tensor)> {
    dispatch_dtype!(g.dtype(), backward_typed(g, u, grad))
}

fn backward_typed<T: Real>(g: &Tensor, u: &Tensor, grad: &Tensor) -> Result<(Tensor, Tensor)> {
    let one = T::from_f64(1.0);
    with_hosts::<T, _, 3>([g, u, grad], |[gs, us, ds]| {
        let n = gs.len();
        let mut dg = vec![T::from_f64(0.0); n];
        let mut du = vec![T::from_f64(0.0); n];
        par_rows2(&mut dg, &mut du, 1, 12, |k0, dg_block, du_block| {
            for (i, (dg, du)) in dg_block.iter_mut().zip(du_block.iter_mut()).enumerate() {
                let k = k0 + i;
                let (gv, uv, dv) = (gs[k], us[k], ds[k]);
                let s = one / (one + (-gv).exp());
                *dg = dv * uv * s * (one + gv * (one - s));
                *du = dv * gv * s;
            }
        });
        Ok((
            Tensor::from_vec(dg, g.shape(), g.device())?,
            Tensor::from_vec(du, u.shape(), u.device())?,
        ))
    })
}
