//! Rotate-half RoPE on contiguous `[b, s, heads, d]` with cos/sin `[b, s, d/2]`. The backward
//! of a rotation by θ is the rotation by −θ.

use candle_core::{Result, Shape, Tensor};

use super::{par_rows, with_hosts, Kernel1, Op, Real};

pub(crate) struct Rope {
    pub cos: Tensor,
    pub sin: Tensor,
    /// Rotate by −θ.
    pub inverse: bool,
}

impl Rope {
    fn inverted(&self) -> Rope {
        Rope {
            cos: self.cos.clone(),
            sin: self.sin.clone(),
            inverse: !self.inverse,
        }
    }
}

impl Kernel1 for Rope {
    const NAME: &'static str = "rlvr-rope";

    fn forward<T: Real>(&self, x: &[T], dims: &[usize]) -> Result<(Vec<T>, Shape)> {
        let &[b, seq_len, heads, d] = dims else {
            candle_core::bail!("rope: x {dims:?} is not [b, s, heads, d]");
        };
        let half = d / 2;
        if self.cos.dims() != [b, seq_len, half]
            || self.sin.dims() != [b, seq_len, half]
            || d % 2 != 0
        {
            candle_core::bail!("rope: x {dims:?} vs cos {:?}", self.cos.dims());
        }
        let mut out = vec![T::from_f64(0.0); x.len()];
        with_hosts::<T, _, 2>([&self.cos, &self.sin], |[cs, ss]| {
            let row = heads * d;
            par_rows(&mut out, row, 3 * row, |r0, o| {
                for (i, orow) in o.chunks_exact_mut(row).enumerate() {
                    let r = r0 + i;
                    let (c, sn) = (&cs[r * half..(r + 1) * half], &ss[r * half..(r + 1) * half]);
                    let xr = &x[r * row..(r + 1) * row];
                    for (xh, oh) in xr.chunks_exact(d).zip(orow.chunks_exact_mut(d)) {
                        rotate_head(xh, oh, c, sn, self.inverse);
                    }
                }
            });
            Ok(())
        })?;
        Ok((out, Shape::from(dims.to_vec())))
    }

    fn backward<T: Real>(&self, _x: &Tensor, _out: &Tensor, grad: &Tensor) -> Result<Tensor> {
        grad.contiguous()?.apply_op1_no_bwd(&Op(self.inverted()))
    }
}

#[inline(always)]
fn rotate_head<T: Real>(xh: &[T], oh: &mut [T], cos: &[T], sin: &[T], inverse: bool) {
    let half = cos.len();
    let (x1, x2) = xh.split_at(half);
    let (o1, o2) = oh.split_at_mut(half);
    for k in 0..half {
        let s = if inverse { -sin[k] } else { sin[k] };
        o1[k] = x1[k] * cos[k] - x2[k] * s;
        o2[k] = x2[k] * cos[k] + x1[k] * s;
    }
}

/// The backward of the RoPE forward as a standalone op: `d` rotated by −θ.
pub(crate) fn rope_backward(d: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    d.contiguous()?.apply_op1_no_bwd(&Op(Rope {
        cos: cos.contiguous()?,
        sin: sin.contiguous()?,
        inverse: true,
    }))
}
