//! Per row of `[N, V]` logits with `targets[row]`, under softmax(logits / T): `[N, 3]` holding
//! (log-prob of the target, entropy, log-sum-exp of logits / T). One pass over each row (max,
//! then sum of exponentials), no `[N, V]` temporaries; the backward can overwrite the logits
//! with their gradient.

use candle_core::{CpuStorage, DType, Layout, Result, Shape, Tensor};

use super::{dispatch_dtype, par_rows, with_hosts, Kernel1, Real};

pub(crate) struct TargetStats {
    pub targets: Vec<u32>,
    /// 1 / temperature.
    pub inv_t: f64,
}

impl Kernel1 for TargetStats {
    const NAME: &'static str = "rlvr-target-logprobs";

    fn forward<T: Real>(&self, x: &[T], dims: &[usize]) -> Result<(Vec<T>, Shape)> {
        let &[n, v] = dims else {
            candle_core::bail!("target log-probs: logits {dims:?} are not [N, V]");
        };
        if self.targets.len() != n || self.targets.iter().any(|&t| t as usize >= v) {
            candle_core::bail!(
                "target log-probs: {} targets for logits {dims:?}",
                self.targets.len()
            );
        }
        let mut out = vec![T::from_f64(0.0); 3 * n];
        par_rows(&mut out, 3, 2 * v, |r0, o| {
            for (k, orow) in o.chunks_exact_mut(3).enumerate() {
                let r = r0 + k;
                self.row_stats(&x[r * v..(r + 1) * v], self.targets[r], orow);
            }
        });
        Ok((out, Shape::from((n, 3))))
    }

    fn backward<T: Real>(&self, x: &Tensor, out: &Tensor, grad: &Tensor) -> Result<Tensor> {
        let (_, v) = x.dims2()?;
        let mut dx: Vec<T> = x.flatten_all()?.to_vec1()?;
        with_hosts::<T, _, 2>([out, grad], |[stats, d_stats]| {
            self.grad_in_place(&mut dx, v, stats, d_stats);
            Ok(())
        })?;
        Tensor::from_vec(dx, x.shape(), x.device())
    }
}

impl TargetStats {
    pub(crate) fn new(targets: &[u32], temperature: f64) -> Self {
        TargetStats {
            targets: targets.to_vec(),
            inv_t: 1.0 / temperature,
        }
    }

    #[inline(always)]
    fn row_stats<T: Real>(&self, xr: &[T], target: u32, orow: &mut [T]) {
        let inv_t = T::from_f64(self.inv_t);
        let m = xr
            .iter()
            .fold(T::from_f64(f64::NEG_INFINITY), |m, &a| m.fmax(a * inv_t));
        let (mut sum, mut acc) = (0f64, 0f64);
        for &a in xr {
            let d = a * inv_t - m;
            let e = d.exp().to_f64();
            sum += e;
            acc += e * d.to_f64();
        }
        let log_sum = sum.ln();
        let zt = (xr[target as usize] * inv_t - m).to_f64();
        orow[0] = T::from_f64(zt - log_sum);
        orow[1] = T::from_f64(log_sum - acc / sum);
        orow[2] = T::from_f64(m.to_f64() + log_sum);
    }

    /// The gradient of the logits, overwriting `buf` (which holds the logits `[N, V]`) row by
    /// row; `stats` the forward's `[N, 3]` and `d_stats` their gradient.
    fn grad_in_place<T: Real>(&self, buf: &mut [T], v: usize, stats: &[T], d_stats: &[T]) {
        let inv_t = T::from_f64(self.inv_t);
        par_rows(buf, v, 2 * v, |r0, o| {
            for (k, row) in o.chunks_exact_mut(v).enumerate() {
                let r = r0 + k;
                let (ent, lse) = (stats[3 * r + 1], stats[3 * r + 2]);
                let (g0, g1, g2) = (d_stats[3 * r], d_stats[3 * r + 1], d_stats[3 * r + 2]);
                // d/dz: g0·(onehot − p) + g2·p − g1·p·(log p + H); then ·1/T.
                let c0 = (g2 - g0) * inv_t;
                let c1 = g1 * inv_t;
                if g1 == T::from_f64(0.0) {
                    for d in row.iter_mut() {
                        *d = c0 * (*d * inv_t - lse).exp();
                    }
                } else {
                    for d in row.iter_mut() {
                        let lp = *d * inv_t - lse;
                        let p = lp.exp();
                        *d = c0 * p - c1 * p * (lp + ent);
                    }
                }
                let t = self.targets[r] as usize;
                row[t] += g0 * inv_t;
            }
        });
    }
}

/// The logits' gradient written over the logits (`logits` must not share its storage with any
/// tensor still in use).
pub(crate) fn grad_into_logits(
    op: &TargetStats,
    logits: &Tensor,
    stats: &Tensor,
    d_stats: &Tensor,
) -> Result<()> {
    dispatch_dtype!(
        logits.dtype(),
        grad_into_logits_typed(op, logits, stats, d_stats)
    )
}

fn grad_into_logits_typed<T: Real>(
    op: &TargetStats,
    logits: &Tensor,
    stats: &Tensor,
    d_stats: &Tensor,
) -> Result<()> {
    let d_stats = d_stats.to_dtype(T::DTYPE)?;
    with_hosts::<T, _, 2>([stats, &d_stats], |[stats, d_stats]| {
        logits.inplace_op1(&GradInPlace { op, stats, d_stats })
    })
}

/// [`TargetStats::grad_in_place`] as an in-place op on the logits tensor.
struct GradInPlace<'a, T> {
    op: &'a TargetStats,
    stats: &'a [T],
    d_stats: &'a [T],
}

impl<T: Real> candle_core::InplaceOp1 for GradInPlace<'_, T> {
    fn name(&self) -> &'static str {
        "rlvr-target-logprobs-grad"
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> Result<()> {
        let (n, v) = l.shape().dims2()?;
        let Some((a, b)) = l.contiguous_offsets() else {
            candle_core::bail!("target log-probs grad: logits not contiguous");
        };
        if self.stats.len() != 3 * n || self.d_stats.len() != 3 * n || self.op.targets.len() != n {
            candle_core::bail!("target log-probs grad: {n} rows");
        }
        let buf: &mut [T] = match (s, T::DTYPE) {
            (CpuStorage::F32(x), DType::F32) => {
                // SAFETY: T is f32 here (checked through its DTYPE).
                unsafe { std::mem::transmute::<&mut [f32], &mut [T]>(&mut x[a..b]) }
            }
            (CpuStorage::F64(x), DType::F64) => {
                // SAFETY: T is f64 here.
                unsafe { std::mem::transmute::<&mut [f64], &mut [T]>(&mut x[a..b]) }
            }
            _ => candle_core::bail!("target log-probs grad: dtype mismatch"),
        };
        self.op.grad_in_place(buf, v, self.stats, self.d_stats);
        Ok(())
    }
}
