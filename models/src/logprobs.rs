//! Per-token log-probabilities and entropies, in f32 via log-softmax (never log(softmax)).

use candle_core::{DType, Result, Tensor, D};

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
    let logits = logits.narrow(0, 0, n - 1)?;
    let targets = Tensor::new(&ids[1..], logits.device())?;
    let (lp, ent) = logprobs_and_entropy(&logits, &targets)?;
    Ok((lp.to_vec1()?, ent.to_vec1()?))
}
