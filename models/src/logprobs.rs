//! Per-token log-probabilities and entropies, in f32 via log-softmax (never log(softmax)).

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor, D};

use crate::model::{
    cpu_kernels, cpu_slice, dispatch_dtype, dispatch_real, par_rows, with_host, Real,
};

/// Log-softmax over the vocabulary of `[.., V]` logits, in f32, from autograd-capable ops.
pub fn log_softmax_f32(logits: &Tensor) -> Result<Tensor> {
    let x = logits.to_dtype(DType::F32)?;
    let max = x.max_keepdim(D::Minus1)?;
    let shifted = x.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    shifted.broadcast_sub(&lse)
}

/// Log-prob of `targets` (`[..]`, u32) under `logits` (`[.., V]`): `[..]` f32.
pub fn gather_logprobs(log_probs: &Tensor, targets: &Tensor) -> Result<Tensor> {
    log_probs
        .gather(&targets.unsqueeze(D::Minus1)?.contiguous()?, D::Minus1)?
        .squeeze(D::Minus1)
}

/// Entropy `-Σ p log p` of each next-token distribution: `[..]` f32.
pub fn entropy_from_logprobs(log_probs: &Tensor) -> Result<Tensor> {
    (log_probs.exp()? * log_probs)?.sum(D::Minus1)?.neg()
}

/// For logits `[b, s, V]` and targets `[b, s]`: (log-prob of each target, entropy) in f32.
pub fn logprobs_and_entropy(logits: &Tensor, targets: &Tensor) -> Result<(Tensor, Tensor)> {
    let lp = log_softmax_f32(logits)?;
    Ok((gather_logprobs(&lp, targets)?, entropy_from_logprobs(&lp)?))
}

/// Scoring one sequence: log-prob of token i+1 given tokens ≤ i and the entropy of that
/// next-token distribution, from `[n, V]` logits of an n-token sequence. Each has length n−1.
pub fn sequence_scores(logits: &Tensor, ids: &[u32]) -> Result<(Vec<f32>, Vec<f32>)> {
    let n = ids.len();
    if n < 2 {
        return Ok((vec![], vec![]));
    }
    // On the host with f64 accumulation, exactly as the runtime's sampler computes them.
    let rows: Vec<Vec<f32>> = logits
        .narrow(0, 0, n - 1)?
        .to_dtype(DType::F32)?
        .to_vec2()?;
    Ok(rows
        .iter()
        .zip(&ids[1..])
        .map(|(row, &t)| crate::rowstats::logprob_entropy(row, t))
        .unzip())
}

/// Per row of `[N, V]` logits with `targets[row]`, under softmax(logits / T): `[N, 3]` holding
/// (log-prob of the target, entropy, log-sum-exp of logits / T), with a hand-written backward.
/// One pass over each row (max, then sum of exponentials), no `[N, V]` temporaries.
struct TargetStatsOp {
    targets: Vec<u32>,
    inv_t: f64,
}

fn target_stats_fwd<T: Real>(
    st: &CpuStorage,
    l: &Layout,
    op: &TargetStatsOp,
) -> Result<(CpuStorage, Shape)> {
    let x = cpu_slice::<T>(st, l)?;
    let (n, v) = l.shape().dims2()?;
    if op.targets.len() != n || op.targets.iter().any(|&t| t as usize >= v) {
        candle_core::bail!(
            "target log-probs: {} targets for logits {:?}",
            op.targets.len(),
            l.dims()
        );
    }
    let inv_t = T::from_f64(op.inv_t);
    let mut out = vec![T::from_f64(0.0); 3 * n];
    par_rows(&mut out, 3, 2 * v, |r0, o| {
        for (k, orow) in o.chunks_exact_mut(3).enumerate() {
            let r = r0 + k;
            let xr = &x[r * v..(r + 1) * v];
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
            let zt = (xr[op.targets[r] as usize] * inv_t - m).to_f64();
            orow[0] = T::from_f64(zt - log_sum);
            orow[1] = T::from_f64(log_sum - acc / sum);
            orow[2] = T::from_f64(m.to_f64() + log_sum);
        }
    });
    Ok((T::to_cpu_storage_owned(out), Shape::from((n, 3))))
}

/// The gradient of the logits, overwriting `buf` (which holds the logits `[N, V]`) row by row;
/// `rs` the forward's `[N, 3]` stats and `gs` their gradient.
fn target_stats_grad_in_place<T: Real>(
    buf: &mut [T],
    v: usize,
    rs: &[T],
    gs: &[T],
    op: &TargetStatsOp,
) {
    let inv_t = T::from_f64(op.inv_t);
    par_rows(buf, v, 2 * v, |r0, o| {
        for (k, row) in o.chunks_exact_mut(v).enumerate() {
            let r = r0 + k;
            let (ent, lse) = (rs[3 * r + 1], rs[3 * r + 2]);
            let (g0, g1, g2) = (gs[3 * r], gs[3 * r + 1], gs[3 * r + 2]);
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
            let t = op.targets[r] as usize;
            row[t] += g0 * inv_t;
        }
    });
}

fn target_stats_bwd<T: Real>(
    x: &Tensor,
    res: &Tensor,
    g: &Tensor,
    op: &TargetStatsOp,
) -> Result<Tensor> {
    let (_, v) = x.dims2()?;
    let mut dx: Vec<T> = x.flatten_all()?.to_vec1()?;
    with_host::<T, _>(res, |rs| {
        with_host::<T, _>(g, |gs| {
            target_stats_grad_in_place(&mut dx, v, rs, gs, op);
            Ok(())
        })
    })?;
    Tensor::from_vec(dx, x.shape(), x.device())
}

/// [`target_stats_grad_in_place`] as an in-place op on the logits tensor.
struct TargetStatsGradInPlace<'a, T> {
    op: &'a TargetStatsOp,
    stats: &'a [T],
    d_stats: &'a [T],
}

impl<T: Real> candle_core::InplaceOp1 for TargetStatsGradInPlace<'_, T> {
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
        target_stats_grad_in_place(buf, v, self.stats, self.d_stats, self.op);
        Ok(())
    }
}

impl CustomOp1 for TargetStatsOp {
    fn name(&self) -> &'static str {
        "rlvr-target-logprobs"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        dispatch_real!(s, target_stats_fwd(s, l, self))
    }

    fn bwd(&self, x: &Tensor, res: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(dispatch_dtype!(
            x.dtype(),
            target_stats_bwd(x, res, g, self)
        )?))
    }
}

/// For `[N, V]` logits and N targets, under softmax(logits / T): the log-prob of each target
/// and the entropy of each row, `[N]` each in the logits' dtype, autograd-capable. On the CPU
/// (f32/f64) one fused kernel with a hand-written backward; elsewhere composed ops.
pub fn target_logprobs_entropy(
    logits: &Tensor,
    targets: &[u32],
    temperature: f64,
) -> Result<(Tensor, Tensor)> {
    let (n, _) = logits.dims2()?;
    if targets.len() != n {
        candle_core::bail!("target log-probs: {} targets for {n} rows", targets.len());
    }
    if cpu_kernels(logits.device(), logits.dtype()) {
        let st = logits.contiguous()?.apply_op1(TargetStatsOp {
            targets: targets.to_vec(),
            inv_t: 1.0 / temperature,
        })?;
        return Ok((
            st.narrow(1, 0, 1)?.squeeze(1)?,
            st.narrow(1, 1, 1)?.squeeze(1)?,
        ));
    }
    target_logprobs_entropy_composed(logits, targets, temperature)
}

/// [`target_logprobs_entropy`] from primitive ops (any device): the reference for the kernel.
pub fn target_logprobs_entropy_composed(
    logits: &Tensor,
    targets: &[u32],
    temperature: f64,
) -> Result<(Tensor, Tensor)> {
    // Half-precision logits (bf16 on CUDA) are normalised in f32; the cast is differentiable,
    // so the gradient flows back to them.
    let logits = match logits.dtype() {
        DType::BF16 | DType::F16 => logits.to_dtype(DType::F32)?,
        _ => logits.clone(),
    };
    let z = if temperature == 1.0 {
        logits
    } else {
        logits.affine(1.0 / temperature, 0.0)?
    };
    let max = z.max_keepdim(D::Minus1)?;
    let shifted = z.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    let lp = shifted.broadcast_sub(&lse)?;
    let t = Tensor::new(targets, lp.device())?;
    Ok((gather_logprobs(&lp, &t)?, entropy_from_logprobs(&lp)?))
}

/// The fused kernel's forward without autograd: `[N, 3]` per row of `[N, V]` logits, under
/// softmax(logits / T): (log-prob of the target, entropy, log-sum-exp of logits / T). CPU f32/f64
/// only; with [`target_stats_backward`] for a hand-written backward.
pub fn target_stats(logits: &Tensor, targets: &[u32], temperature: f64) -> Result<Tensor> {
    if !cpu_kernels(logits.device(), logits.dtype()) {
        candle_core::bail!("target_stats: CPU f32/f64 logits only");
    }
    logits.contiguous()?.apply_op1_no_bwd(&TargetStatsOp {
        targets: targets.to_vec(),
        inv_t: 1.0 / temperature,
    })
}

/// Gradient with respect to the logits of `Σ d_stats · stats` for `stats` = [`target_stats`]
/// `(logits, targets, temperature)`: `[N, V]`.
pub fn target_stats_backward(
    logits: &Tensor,
    stats: &Tensor,
    d_stats: &Tensor,
    targets: &[u32],
    temperature: f64,
) -> Result<Tensor> {
    let op = TargetStatsOp {
        targets: targets.to_vec(),
        inv_t: 1.0 / temperature,
    };
    let d_stats = d_stats.to_dtype(logits.dtype())?;
    dispatch_dtype!(
        logits.dtype(),
        target_stats_bwd(logits, stats, &d_stats, &op)
    )
}

/// [`target_stats_backward`] that overwrites the logits with their gradient, saving an `[N, V]`
/// buffer: `logits` must not share its storage with any tensor still in use.
pub fn target_stats_backward_in_place(
    logits: Tensor,
    stats: &Tensor,
    d_stats: &Tensor,
    targets: &[u32],
    temperature: f64,
) -> Result<Tensor> {
    fn go<T: Real>(
        logits: &Tensor,
        stats: &Tensor,
        d_stats: &Tensor,
        op: &TargetStatsOp,
    ) -> Result<()> {
        let d_stats = d_stats.to_dtype(T::DTYPE)?;
        with_host::<T, _>(stats, |rs| {
            with_host::<T, _>(&d_stats, |gs| {
                logits.inplace_op1(&TargetStatsGradInPlace {
                    op,
                    stats: rs,
                    d_stats: gs,
                })
            })
        })
    }
    let op = TargetStatsOp {
        targets: targets.to_vec(),
        inv_t: 1.0 / temperature,
    };
    let logits = logits.contiguous()?;
    dispatch_dtype!(logits.dtype(), go(&logits, stats, d_stats, &op))?;
    Ok(logits)
}

/// Host values of [`target_logprobs_entropy`] (no autograd): per row (log-prob, entropy) in f64.
pub fn target_logprobs_entropy_host(
    logits: &Tensor,
    targets: &[u32],
    temperature: f64,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let logits = logits.detach();
    let (lp, ent) = target_logprobs_entropy(&logits, targets, temperature)?;
    let f = |t: Tensor| -> Result<Vec<f64>> { t.to_dtype(DType::F64)?.to_vec1::<f64>() };
    Ok((f(lp)?, f(ent)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn rand(n: usize, seed: u64, scale: f64) -> Vec<f64> {
        let mut r = crate::rng::SplitMix64::new(seed);
        (0..n).map(|_| r.normal() as f32 as f64 * scale).collect()
    }

    fn close(a: &Tensor, b: &Tensor, tol: f64) {
        let a: Vec<f64> = a
            .to_dtype(DType::F64)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let b: Vec<f64> = b
            .to_dtype(DType::F64)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(1e-30f64, |m, x| m.max(x.abs()));
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!(
                (x - y).abs() <= tol * scale,
                "[{i}] {x} vs {y} (scale {scale})"
            );
        }
    }

    /// The fused kernel against the composed ops: values and the gradient of
    /// `Σ a·lp + b·H` (random a, b), at T = 1 and T ≠ 1, in f32 and f64.
    #[test]
    fn fused_target_logprobs_match_composed_values_and_gradients() {
        // The second size runs the row-parallel path.
        for ((n, v), dtype) in [(7, 300), (64, 1000)]
            .into_iter()
            .flat_map(|nv| [(nv, DType::F64), (nv, DType::F32)])
        {
            let targets: Vec<u32> = (0..n).map(|i| (i * 37 % v) as u32).collect();
            let tol = if dtype == DType::F64 { 1e-12 } else { 2e-5 };
            for temperature in [1.0, 0.7] {
                let x = Tensor::from_vec(rand(n * v, 3, 3.0), (n, v), &Device::Cpu).unwrap();
                let x = Var::from_tensor(&x.to_dtype(dtype).unwrap()).unwrap();
                let a = Tensor::from_vec(rand(n, 4, 1.0), n, &Device::Cpu)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap();
                let b = Tensor::from_vec(rand(n, 5, 1.0), n, &Device::Cpu)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap();
                let run = |fused: bool| {
                    let (lp, h) = if fused {
                        target_logprobs_entropy(x.as_tensor(), &targets, temperature).unwrap()
                    } else {
                        target_logprobs_entropy_composed(x.as_tensor(), &targets, temperature)
                            .unwrap()
                    };
                    let loss = ((&lp * &a).unwrap().sum_all().unwrap()
                        + (&h * &b).unwrap().sum_all().unwrap())
                    .unwrap();
                    let g = loss.backward().unwrap().get(x.as_tensor()).unwrap().clone();
                    (lp, h, g)
                };
                let (lp, h, g) = run(true);
                let (lp0, h0, g0) = run(false);
                close(&lp, &lp0, tol);
                close(&h, &h0, tol);
                close(&g, &g0, tol);
                // The no-grad forward and explicit backward give the same.
                let st = target_stats(x.as_tensor(), &targets, temperature).unwrap();
                let d = Tensor::stack(&[&a, &b, &a.zeros_like().unwrap()], 1).unwrap();
                let gx =
                    target_stats_backward(x.as_tensor(), &st, &d, &targets, temperature).unwrap();
                close(&gx, &g, 1e-12);
                let logits = x.as_tensor().copy().unwrap();
                let gi =
                    target_stats_backward_in_place(logits, &st, &d, &targets, temperature).unwrap();
                close(&gi, &gx, 0.0);
                close(&st.narrow(1, 0, 1).unwrap().squeeze(1).unwrap(), &lp, 0.0);
                // Host values agree with the tensor values.
                let (hl, hh) =
                    target_logprobs_entropy_host(x.as_tensor(), &targets, temperature).unwrap();
                assert_eq!(
                    hl,
                    lp.to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap()
                );
                assert_eq!(
                    hh,
                    h.to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap()
                );
            }
        }
    }
}
