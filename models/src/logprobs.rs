//! Per-token log-probabilities and entropies, in f32 via log-softmax (never log(softmax)).

use candle_core::{DType, Result, Tensor, D};

use crate::kernels::target_stats::{grad_into_logits, TargetStats};
use crate::kernels::{cpu_kernels, Op};

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
        let st = logits
            .contiguous()?
            .apply_op1(Op(TargetStats::new(targets, temperature)))?;
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
    logits
        .contiguous()?
        .apply_op1_no_bwd(&Op(TargetStats::new(targets, temperature)))
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
    let kernel = TargetStats::new(targets, temperature);
    let d_stats = d_stats.to_dtype(logits.dtype())?;
    crate::kernels::backward1(&kernel, logits, stats, &d_stats)
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
    let kernel = TargetStats::new(targets, temperature);
    let logits = logits.contiguous()?;
    grad_into_logits(&kernel, &logits, stats, d_stats)?;
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
    use crate::testing::{close, randt};
    use candle_core::Var;

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
                let x = Var::from_tensor(&randt(&[n, v], 3, 3.0, dtype)).unwrap();
                let a = randt(&[n], 4, 1.0, dtype);
                let b = randt(&[n], 5, 1.0, dtype);
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
                close(&lp, &lp0, tol, "log-probs");
                close(&h, &h0, tol, "entropies");
                close(&g, &g0, tol, "gradient");
                // The no-grad forward and explicit backward give the same.
                let st = target_stats(x.as_tensor(), &targets, temperature).unwrap();
                let d = Tensor::stack(&[&a, &b, &a.zeros_like().unwrap()], 1).unwrap();
                let gx =
                    target_stats_backward(x.as_tensor(), &st, &d, &targets, temperature).unwrap();
                close(&gx, &g, 1e-12, "explicit backward");
                let logits = x.as_tensor().copy().unwrap();
                let gi =
                    target_stats_backward_in_place(logits, &st, &d, &targets, temperature).unwrap();
                close(&gi, &gx, 0.0, "in-place backward");
                let st_lp = st.narrow(1, 0, 1).unwrap().squeeze(1).unwrap();
                close(&st_lp, &lp, 0.0, "stats log-probs");
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
