//! Every call the trainer makes into the model: the no-grad forwards (proximal and reference
//! log-probs), the training forward and its backward (candle autograd, or the model's taped
//! decoder with a hand-written LM-head backward on the CPU).
//!
//! Tokens sampled from a truncated distribution (top-k/top-p/min-p) are scored under the same
//! truncation (`support.rs`), in every pass.
//!
//! Owns the completion-token selection and the per-micro-batch gradient. Must not know losses,
//! mini-batches or the optimizer: callers hand it rows and a scalar loss, it hands back per-token
//! values and gradients in [`Model::trainable`] order (every weight, or the LoRA adapters).

use candle_core::{DType, Tensor, Var};
use rlvr_models::logprobs::{
    target_logprobs_entropy, target_logprobs_entropy_host, target_stats,
    target_stats_backward_in_place,
};
use rlvr_models::model::HiddenTape;
use rlvr_models::{Forward, Model};

use super::prepare::Seq;
use super::rows::MicroRows;
use super::support::Support;
use crate::config::TrainerConfig;
use crate::error::Result;

/// Per-token values of a forward over one micro-batch, per sequence.
pub(crate) struct MicroOut {
    /// `[N]` log-probs of the completion tokens at the sampling temperature (autograd-capable).
    pub l_theta: Tensor,
    /// `[N]` entropies at the sampling temperature (kept only when the entropy bonus needs them).
    pub entropy: Option<Tensor>,
    taped: Option<Taped>,
}

/// The hand-written backward's side of a micro-batch: autograd runs from the loss to `stats`
/// (a leaf: per completion token the log-prob, entropy and log-sum-exp); the LM head, the fused
/// log-prob kernel and the decoder tape take the gradient on from there.
struct Taped {
    tape: HiddenTape,
    stats: Var,
    logits: Tensor,
    completion: Completion,
    temperature: f64,
    /// Truncated rows: their kept logits and targets' logits as leaves of their own.
    truncated: Option<(Support, Var, Var)>,
}

/// The hidden states of the completion-predicting positions, gathered from a `[b, s, h]` batch.
struct Completion {
    /// `[N, h]` rows of the flattened hidden states.
    hidden: Tensor,
    /// `[N]` their indices in the flattened `[b*s]` positions.
    idx: Tensor,
    /// The `N` completion tokens they predict.
    targets: Vec<u32>,
    /// `(b, s, h)` of the padded batch.
    dims: (usize, usize, usize),
}

/// Per sequence, from a no-grad forward: ℓ at the sampling temperature, p and H at T = 1.
pub(crate) struct NoGradOut {
    pub logprobs: Vec<Vec<f64>>,
    pub probs: Vec<Vec<f64>>,
    pub entropies: Vec<Vec<f64>>,
}

/// Gather the hidden states `[b, s, h]` at the positions predicting the completion tokens.
fn select_completion(hidden: &Tensor, rows: &MicroRows) -> Result<Completion> {
    let (b, s, h) = hidden.dims3()?;
    let (idx, targets) = rows.completion_index(s);
    let idx = Tensor::from_vec(idx, targets.len(), hidden.device())?;
    let hidden = hidden.reshape((b * s, h))?.index_select(&idx, 0)?;
    Ok(Completion {
        hidden,
        idx,
        targets,
        dims: (b, s, h),
    })
}

/// Logits `[N, V]` (f32) predicting the completion tokens of `rows`, and the `N` targets. The
/// LM head runs only on those N positions, with the numerics and gradient of `fwd` (a
/// Train-numerics forward without a graph gives the training values bit for bit).
fn completion_logits(model: &Model, rows: &MicroRows, fwd: Forward) -> Result<(Tensor, Vec<u32>)> {
    let hidden = model.hidden(rows.batch(), fwd)?.states;
    let sel = select_completion(&hidden, rows)?;
    Ok((model.logits(&sel.hidden, fwd)?, sel.targets))
}

/// Each sequence's kept sets (empty where it was not sampled with truncation).
fn supports_of(seqs: &[Seq]) -> Vec<&[Vec<u32>]> {
    seqs.iter().map(|q| q.support.as_slice()).collect()
}

/// The truncation of the rows of `[N, V]` `logits` (the completion tokens of `rows`), if any.
fn support_for(
    supports: &[&[Vec<u32>]],
    rows: &MicroRows,
    logits: &Tensor,
) -> Result<Option<Support>> {
    if supports.iter().all(|s| s.is_empty()) {
        return Ok(None);
    }
    let vocab = logits.dim(1)?;
    Support::new(supports, &rows.completions(), vocab, logits.device())
}

fn split_per_seq(seqs: &[Seq], flat: Vec<f64>) -> Vec<Vec<f64>> {
    let mut it = flat.into_iter();
    seqs.iter()
        .map(|s| it.by_ref().take(s.len()).collect())
        .collect()
}

/// No-grad forward of `model` (the policy, or the frozen reference) over a micro-batch.
pub(crate) fn proximal_forward(
    model: &Model,
    seqs: &[Seq],
    cfg: &TrainerConfig,
) -> Result<NoGradOut> {
    let fwd = if cfg.proximal_fused_kernels {
        Forward::INFERENCE
    } else {
        Forward::TRAIN_NO_GRAD
    };
    let rows = MicroRows::of(seqs, cfg)?;
    let (sel, tgt) = completion_logits(model, &rows, fwd)?;
    let (l1, ent) = target_logprobs_entropy_host(&sel, &tgt, 1.0)?;
    let mut lt = if cfg.temperature == 1.0 {
        l1.clone()
    } else {
        target_logprobs_entropy_host(&sel, &tgt, cfg.temperature)?.0
    };
    // ℓ at T under the sampler's truncation; p and H stay those of the full distribution.
    if let Some(support) = support_for(&supports_of(seqs), &rows, &sel)? {
        let (kept, target) = support.gather(&sel.detach())?;
        let truncated = support.logprobs(&kept, &target, cfg.temperature)?;
        support.merge_host(&mut lt, &truncated)?;
    }
    let prob: Vec<f64> = l1.into_iter().map(f64::exp).collect();
    Ok(NoGradOut {
        logprobs: split_per_seq(seqs, lt),
        probs: split_per_seq(seqs, prob),
        entropies: split_per_seq(seqs, ent),
    })
}

/// The options of a training forward over rows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowsForward {
    pub temperature: f64,
    pub keep_entropy: bool,
    /// Activation recomputation every k layers (the taped path only).
    pub recompute_every: Option<usize>,
}

/// Forward for training: ℓ_θ of the completion tokens of `rows` from logits / T (renormalised
/// over `supports[i]`'s kept sets where sampling truncated; empty `supports`: nowhere), and their
/// entropies, autograd-capable. On the CPU the decoder runs taped for the hand-written backward
/// (see [`micro_grads`]); elsewhere through candle's autograd.
pub(crate) fn train_forward_rows(
    model: &Model,
    rows: &MicroRows,
    opts: RowsForward,
    supports: &[&[Vec<u32>]],
) -> Result<MicroOut> {
    let RowsForward {
        temperature,
        keep_entropy,
        recompute_every,
    } = opts;
    if !use_tape(model) {
        let (sel, tgt) = completion_logits(model, rows, Forward::TRAIN)?;
        let (mut l_theta, entropy) = target_logprobs_entropy(&sel, &tgt, temperature)?;
        if let Some(support) = support_for(supports, rows, &sel)? {
            let (kept, target) = support.gather(&sel)?;
            let truncated = support.logprobs(&kept, &target, temperature)?;
            l_theta = support.merge(&l_theta, &truncated)?;
        }
        return Ok(MicroOut {
            l_theta,
            entropy: keep_entropy.then_some(entropy),
            taped: None,
        });
    }
    let (hidden, tape) = model
        .hidden(
            rows.batch(),
            Forward::TRAIN_TAPED.recomputing(recompute_every),
        )?
        .into_taped()?;
    let completion = select_completion(&hidden, rows)?;
    drop(hidden);
    // Detached LM head (as in the proximal pass, so values match bit for bit).
    let logits = model.logits(&completion.hidden, Forward::TRAIN_NO_GRAD)?;
    let stats = Var::from_tensor(&target_stats(&logits, &completion.targets, temperature)?)?;
    let mut l_theta = stats.as_tensor().narrow(1, 0, 1)?.squeeze(1)?;
    let entropy = stats.as_tensor().narrow(1, 1, 1)?.squeeze(1)?;
    let truncated = match support_for(supports, rows, &logits)? {
        Some(support) => {
            let (kept, target) = support.gather(&logits)?;
            let (kept, target) = (Var::from_tensor(&kept)?, Var::from_tensor(&target)?);
            let values = support.logprobs(kept.as_tensor(), target.as_tensor(), temperature)?;
            l_theta = support.merge(&l_theta, &values)?;
            Some((support, kept, target))
        }
        None => None,
    };
    Ok(MicroOut {
        l_theta,
        entropy: keep_entropy.then_some(entropy),
        taped: Some(Taped {
            tape,
            stats,
            logits,
            completion,
            temperature,
            truncated,
        }),
    })
}

/// [`train_forward_rows`] for a micro-batch of sequences.
pub(crate) fn train_forward(
    model: &Model,
    seqs: &[Seq],
    cfg: &TrainerConfig,
    keep_entropy: bool,
) -> Result<MicroOut> {
    let rows = MicroRows::of(seqs, cfg)?;
    let opts = RowsForward {
        temperature: cfg.temperature,
        keep_entropy,
        recompute_every: cfg.recompute(),
    };
    train_forward_rows(model, &rows, opts, &supports_of(seqs))
}

#[cfg(test)]
thread_local! {
    /// Tests: run the candle-autograd path even where the hand-written backward is available.
    pub(crate) static FORCE_AUTOGRAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn use_tape(model: &Model) -> bool {
    #[cfg(test)]
    if FORCE_AUTOGRAD.with(|f| f.get()) {
        return false;
    }
    model.supports_taped_backward()
}

/// Backward of `loss` (a function of `fwd`'s outputs): the gradient of every trainable parameter,
/// in [`Model::trainable`] order (`None`: no gradient).
pub(crate) fn micro_grads(
    model: &Model,
    fwd: MicroOut,
    loss: &Tensor,
) -> Result<Vec<Option<Tensor>>> {
    let MicroOut {
        l_theta,
        entropy,
        taped,
    } = fwd;
    let grads = loss.backward()?;
    drop((l_theta, entropy));
    let mut out: Vec<Option<Tensor>> = model
        .trainable()
        .into_iter()
        .map(|(_, v)| grads.get(v.as_tensor()).cloned())
        .collect();
    let Some(taped) = taped else {
        return Ok(out);
    };
    let grad_of = |v: &Var| -> Result<Tensor> {
        Ok(match grads.get(v.as_tensor()) {
            Some(d) => d.clone(),
            None => v.as_tensor().zeros_like()?,
        })
    };
    let d_stats = grad_of(&taped.stats)?;
    let d_truncated = match &taped.truncated {
        Some((_, kept, target)) => Some((grad_of(kept)?, grad_of(target)?)),
        None => None,
    };
    drop(grads);
    taped_backward(model, taped, &d_stats, d_truncated, &mut out)?;
    Ok(out)
}

/// From the gradient of the per-token stats (and of the truncated rows' gathered logits) down
/// through the LM head and the decoder tape, added into `out` (in [`Model::trainable`] order).
fn taped_backward(
    model: &Model,
    taped: Taped,
    d_stats: &Tensor,
    d_truncated: Option<(Tensor, Tensor)>,
    out: &mut [Option<Tensor>],
) -> Result<()> {
    let Taped {
        tape,
        stats,
        logits,
        completion,
        temperature,
        truncated,
    } = taped;
    let (b, s, h) = completion.dims;
    // LM head: logits = sel · Wᵀ.
    // The logits are not used after this: their buffer takes their gradient.
    let mut d_logits = target_stats_backward_in_place(
        logits,
        stats.as_tensor(),
        d_stats,
        &completion.targets,
        temperature,
    )?;
    if let (Some((support, ..)), Some((d_kept, d_target))) = (truncated, d_truncated) {
        d_logits = support.scatter_grads(d_logits, &d_kept, &d_target)?;
    }
    let head_weight = model.vars()[model.lm_head_index()].as_detached_tensor();
    let dtype = head_weight.dtype();
    let d_logits = d_logits.to_dtype(dtype)?;
    let d_sel = d_logits.matmul(&head_weight)?;
    // A frozen head (LoRA) gets no gradient.
    if let Some(head) = model.trainable_lm_head() {
        let d_head = d_logits.t()?.matmul(&completion.hidden.to_dtype(dtype)?)?;
        add_grad(&mut out[head], d_head)?;
    }
    drop(d_logits);
    let d_hidden = Tensor::zeros((b * s, h), dtype, head_weight.device())?
        .index_add(&completion.idx, &d_sel, 0)?
        .reshape((b, s, h))?;
    let decoder = model.backward_hidden(tape, &d_hidden)?;
    for (o, d) in out.iter_mut().zip(decoder) {
        if let Some(d) = d {
            add_grad(o, d)?;
        }
    }
    Ok(())
}

pub(crate) fn add_grad(acc: &mut Option<Tensor>, g: Tensor) -> Result<()> {
    *acc = Some(match acc.take() {
        Some(a) => (a + g)?,
        None => g,
    });
    Ok(())
}

/// Add one micro-batch's gradients (in [`Model::trainable`] order) into the running sums, in f32 for
/// bf16/f16 weights (the optimizer's master precision), not in the weights' 8-bit mantissa.
pub(crate) fn accumulate_grads(
    sums: &mut [Option<Tensor>],
    grads: Vec<Option<Tensor>>,
) -> Result<()> {
    for (sum, g) in sums.iter_mut().zip(grads) {
        if let Some(g) = g {
            add_grad(sum, accumulation_dtype(g)?)?;
        }
    }
    Ok(())
}

fn accumulation_dtype(g: Tensor) -> Result<Tensor> {
    Ok(match g.dtype() {
        DType::BF16 | DType::F16 => g.to_dtype(DType::F32)?,
        _ => g,
    })
}
