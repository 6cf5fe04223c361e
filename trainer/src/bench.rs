//! Throughput benchmark of the training path: forward+backward tokens/s and optimizer step time
//! for AdamW vs Magma vs SkipUpdate, on any model (with LoRA adapters attached: on the adapters
//! only; optionally with activation recomputation). The optimizers run at lr = 0, so the
//! weights are unchanged.
//!
//! Owns the benchmark's batch and report. Must not know losses or rollouts: it times the
//! trainer's own forward/backward ([`crate::trainer`]) and the optimizer as they are.

use std::time::Instant;

use candle_core::{DType, Tensor};
use rlvr_models::{device_mem, Model};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::optim::{LrSchedule, Optimizer, OptimizerConfig, OptimizerKind};
use crate::rng::SplitMix64;
use crate::trainer::{accumulate_grads, micro_grads, train_forward_rows, MicroRows, RowsForward};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    pub device: String,
    pub dtype: String,
    pub parameters: usize,
    /// Parameters with gradients and optimizer state (the adapters under LoRA).
    pub trainable_parameters: usize,
    /// Activation recomputation: one saved layer input per this many layers.
    pub recompute_every: Option<usize>,
    pub rows: usize,
    pub seq_len: usize,
    pub batch_tokens: usize,
    pub iters: usize,
    /// Rows per forward/backward micro-batch (gradients summed over micro-batches in f32).
    pub micro_batch_rows: usize,
    pub fwd_bwd_ms: f64,
    pub fwd_bwd_tokens_per_s: f64,
    /// Peak memory (MiB) of the forward+backward passes, before the optimizer benchmarks
    /// allocate their state: on CUDA the high-water mark of candle's allocations (weights
    /// included), on the CPU the process's peak RSS.
    pub fwd_bwd_peak_mb: f64,
    /// Peak memory (MiB) over the whole benchmark, optimizer state (m, v, f32 master copies of
    /// bf16 weights) included.
    pub peak_mb: f64,
    /// Optimizer steps (ms, steady state: the mean after one warm-up step) in the default
    /// configuration: global-norm clip at 1.0 and weight decay 0.01 on matrices. The like-for-like
    /// reference is torch's `clip_grad_norm_` + fused AdamW step with the same weight decay.
    pub adamw_step_ms: f64,
    pub magma_step_ms: f64,
    /// Of the Magma step: the alignment's own computation (the cosine and score from sums;
    /// the sums themselves ride along the gradient-norm pass, reading m there, and are part of
    /// the step time only).
    pub magma_overhead_ms: f64,
    pub skip_update_step_ms: f64,
    /// The first step of a fresh AdamW (default configuration): the warm-up step, which first
    /// touches the moments.
    pub adamw_first_step_ms: f64,
    /// The same steps without gradient clipping and with weight decay 0: the configuration of
    /// torch's plain AdamW timings (`adamw_fused_step_ms` of `scripts/bench_transformers.py`).
    pub adamw_no_clip_no_decay_step_ms: f64,
    pub magma_no_clip_no_decay_step_ms: f64,
    pub skip_update_no_clip_no_decay_step_ms: f64,
    /// The GRPO-shaped batch, when one was asked for (else rows of random tokens, every token
    /// after the first a target).
    pub group_shape: Option<GroupShape>,
}

/// A GRPO-shaped batch: groups of `group` rows, each its group's prompt of `prompt_tokens` then
/// a completion of `completion_tokens` (only completion tokens are targets, as in training),
/// laid out packed (`share_prompt`) or as one row per sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GroupShape {
    pub group: usize,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub share_prompt: bool,
}

/// The benchmark's rows, where each row's targets start, and the layout.
struct BenchBatch {
    rows: Vec<Vec<u32>>,
    prompt_lens: Vec<usize>,
    share_prompt: bool,
}

impl BenchBatch {
    /// About `batch_tokens` random tokens: rows of up to 256 tokens (every token after the first
    /// a target), or whole groups of `shape` (at least one).
    fn new(model: &Model, batch_tokens: usize, shape: Option<GroupShape>) -> Self {
        let vocab = model.config.vocab_size;
        let Some(shape) = shape else {
            let seq_len = batch_tokens
                .clamp(2, 256)
                .min(model.config.max_position_embeddings.max(2));
            let rows = random_rows(vocab, (batch_tokens / seq_len).max(1), seq_len, 7);
            return Self {
                prompt_lens: vec![1; rows.len()],
                rows,
                share_prompt: false,
            };
        };
        let (p, c, g) = (
            shape.prompt_tokens.max(1),
            shape.completion_tokens,
            shape.group.max(1),
        );
        let n_groups = (batch_tokens / (g * (p + c)).max(1)).max(1);
        let mut rows = Vec::with_capacity(n_groups * g);
        for (i, prompt) in random_rows(vocab, n_groups, p, 7).into_iter().enumerate() {
            for completion in random_rows(vocab, g, c, 100 + i as u64) {
                rows.push([prompt.as_slice(), &completion].concat());
            }
        }
        Self {
            prompt_lens: vec![p; rows.len()],
            rows,
            share_prompt: shape.share_prompt,
        }
    }

    fn tokens(&self) -> usize {
        self.rows.iter().map(Vec::len).sum()
    }

    fn targets(&self) -> usize {
        self.rows
            .iter()
            .zip(&self.prompt_lens)
            .map(|(r, p)| r.len() - p)
            .sum()
    }
}

impl BenchReport {
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Measure forward+backward and optimizer steps on a batch of about `batch_tokens` random tokens
/// in rows of up to 256 tokens, or in groups of `shape`, averaged over `iters` runs after one
/// warm-up. With `micro_batch_tokens`, the forward/backward runs over micro-batches of that many
/// tokens (at least one row) and sums their gradients, as the trainer does.
pub fn bench_train(
    model: &Model,
    batch_tokens: usize,
    micro_batch_tokens: Option<usize>,
    recompute_every: Option<usize>,
    iters: usize,
    shape: Option<GroupShape>,
) -> Result<BenchReport> {
    let iters = iters.max(1);
    let batch = BenchBatch::new(model, batch_tokens, shape);
    let rows_n = batch.rows.len();
    let seq_len = batch.rows.iter().map(Vec::len).max().unwrap_or(1);
    let dev = model.device().clone();
    // The targets go through the trainer's own path (hidden states → LM head on the target
    // positions → fused log-prob).
    let micro_rows = micro_batch_tokens
        .map_or(rows_n, |t| (t / seq_len).max(1))
        .min(rows_n);
    device_mem::reset_peak(&dev);
    let (grads, fwd_bwd_s) = time_fwd_bwd(model, &batch, (micro_rows, recompute_every), iters)?;
    let fwd_bwd_peak_mb = device_mem::peak_mib(&dev);

    let params: Vec<(String, candle_core::Var)> = model
        .trainable()
        .into_iter()
        .map(|(n, v)| (n.to_string(), v.clone()))
        .collect();
    let time = |kind, bare| time_optimizer(&params, &grads, optimizer_config(kind, bare), iters);
    let adamw = time(OptimizerKind::AdamW, false)?;
    let magma = time(OptimizerKind::Magma, false)?;
    let skip = time(OptimizerKind::SkipUpdate, false)?;
    let adamw_bare = time(OptimizerKind::AdamW, true)?;
    let magma_bare = time(OptimizerKind::Magma, true)?;
    let skip_bare = time(OptimizerKind::SkipUpdate, true)?;
    let tokens = batch.tokens();
    Ok(BenchReport {
        device: format!("{:?}", dev.location()),
        dtype: format!("{:?}", model.dtype()),
        parameters: model.num_parameters(),
        trainable_parameters: params.iter().map(|(_, v)| v.elem_count()).sum(),
        recompute_every,
        rows: rows_n,
        seq_len,
        batch_tokens: tokens,
        iters,
        micro_batch_rows: micro_rows,
        fwd_bwd_ms: fwd_bwd_s * 1e3,
        fwd_bwd_tokens_per_s: tokens as f64 / fwd_bwd_s,
        fwd_bwd_peak_mb,
        // The high-water mark is process-wide and may be reset by another thread meanwhile;
        // the whole run's peak is at least the forward/backward's.
        peak_mb: device_mem::peak_mib(&dev).max(fwd_bwd_peak_mb),
        adamw_step_ms: adamw.step_ms,
        magma_step_ms: magma.step_ms,
        magma_overhead_ms: magma.overhead_ms,
        skip_update_step_ms: skip.step_ms,
        adamw_first_step_ms: adamw.first_step_ms,
        adamw_no_clip_no_decay_step_ms: adamw_bare.step_ms,
        magma_no_clip_no_decay_step_ms: magma_bare.step_ms,
        skip_update_no_clip_no_decay_step_ms: skip_bare.step_ms,
        group_shape: shape,
    })
}

/// `n` rows of `len` tokens drawn uniformly from the vocabulary.
fn random_rows(vocab: usize, n: usize, len: usize, seed: u64) -> Vec<Vec<u32>> {
    let mut rng = SplitMix64::new(seed);
    (0..n)
        .map(|_| (0..len).map(|_| rng.below(vocab) as u32).collect())
        .collect()
}

/// Wait for the device: read back one gradient (nothing to wait for on the CPU, where reading
/// back the first gradient, the embedding's, would only add its sum to the timings).
fn sync(grads: &[Option<Tensor>]) -> Result<()> {
    if let Some(Some(g)) = grads.first() {
        if !g.device().is_cpu() {
            g.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()?;
        }
    }
    Ok(())
}

/// Seconds per forward+backward after one warm-up, and the last gradients.
fn time_fwd_bwd(
    model: &Model,
    batch: &BenchBatch,
    micro_rows: (usize, Option<usize>),
    iters: usize,
) -> Result<(Vec<Option<Tensor>>, f64)> {
    let grads = summed_grads(model, batch, micro_rows)?;
    sync(&grads)?;
    drop(grads);
    let timer = Instant::now();
    let mut grads = Vec::new();
    for _ in 0..iters {
        drop(grads);
        grads = summed_grads(model, batch, micro_rows)?;
        sync(&grads)?;
    }
    Ok((grads, timer.elapsed().as_secs_f64() / iters as f64))
}

/// The benchmark's optimizer at lr = 0 (the weights stay put): the default configuration, or
/// with `bare` no gradient clipping and weight decay 0 (torch's plain AdamW timing).
fn optimizer_config(kind: OptimizerKind, bare: bool) -> OptimizerConfig {
    let mut cfg = OptimizerConfig {
        kind,
        lr: 0.0,
        schedule: LrSchedule::Constant { warmup_steps: 0 },
        ..Default::default()
    };
    if bare {
        cfg.max_grad_norm = None;
        cfg.adamw.weight_decay = 0.0;
    }
    cfg
}

/// One optimizer's timings (ms).
struct OptimizerTimes {
    /// The first step of the fresh optimizer.
    first_step_ms: f64,
    /// Per step after it.
    step_ms: f64,
    /// Of a step: Magma's alignment computation.
    overhead_ms: f64,
}

/// A fresh optimizer's first step, then the mean of `iters` steps.
fn time_optimizer(
    params: &[(String, candle_core::Var)],
    grads: &[Option<Tensor>],
    cfg: OptimizerConfig,
    iters: usize,
) -> Result<OptimizerTimes> {
    let mut opt = Optimizer::new(params.to_vec(), cfg)?;
    let timer = Instant::now();
    opt.step(grads)?;
    sync(grads)?;
    let first_step_ms = timer.elapsed().as_secs_f64() * 1e3;
    let mut overhead = 0.0;
    let timer = Instant::now();
    for _ in 0..iters {
        let stats = opt.step(grads)?;
        overhead += stats.magma.map(|m| m.overhead_ms).unwrap_or(0.0);
    }
    sync(grads)?;
    Ok(OptimizerTimes {
        first_step_ms,
        step_ms: timer.elapsed().as_secs_f64() * 1e3 / iters as f64,
        overhead_ms: overhead / iters as f64,
    })
}

/// Gradient of the mean negative log-likelihood of the batch's targets, summed over
/// micro-batches of `micro_rows` rows in f32.
fn summed_grads(
    model: &Model,
    batch: &BenchBatch,
    (micro_rows, recompute_every): (usize, Option<usize>),
) -> Result<Vec<Option<Tensor>>> {
    let targets = batch.targets();
    let mut acc: Vec<Option<Tensor>> = vec![None; model.trainable().len()];
    let opts = RowsForward {
        temperature: 1.0,
        keep_entropy: false,
        recompute_every,
    };
    let micro_rows = micro_rows.max(1);
    for (chunk, prompt_lens) in batch
        .rows
        .chunks(micro_rows)
        .zip(batch.prompt_lens.chunks(micro_rows))
    {
        let rows = MicroRows::new(chunk.to_vec(), prompt_lens.to_vec(), 0, batch.share_prompt)?;
        let fwd = train_forward_rows(model, &rows, opts, &[])?;
        let loss = (fwd.l_theta.sum_all()?.neg()? / targets.max(1) as f64)?;
        accumulate_grads(&mut acc, micro_grads(model, fwd, &loss)?)?;
    }
    Ok(acc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{tiny_model, weight_bits};
    use rlvr_models::testing::{max_abs, max_abs_diff};

    #[test]
    fn bench_runs_and_leaves_weights_unchanged() {
        let model = tiny_model(3);
        let before = weight_bits(&model);
        let r = bench_train(&model, 64, None, None, 1, None).unwrap();
        assert!(r.fwd_bwd_tokens_per_s > 0.0 && r.adamw_step_ms > 0.0 && r.magma_step_ms > 0.0);
        assert!(r.skip_update_step_ms > 0.0 && r.adamw_first_step_ms > 0.0);
        assert!(r.adamw_no_clip_no_decay_step_ms > 0.0 && r.magma_no_clip_no_decay_step_ms > 0.0);
        assert!(r.skip_update_no_clip_no_decay_step_ms > 0.0);
        assert_eq!(r.batch_tokens, 64);
        assert!(r.fwd_bwd_peak_mb > 0.0 && r.peak_mb >= r.fwd_bwd_peak_mb);
        assert!(r.to_json_line().starts_with('{'));
        assert_eq!(weight_bits(&model), before);
    }

    #[test]
    fn micro_batches_give_the_full_batch_gradient() {
        let model = tiny_model(5);
        let rows: Vec<Vec<u32>> = (0..6u32)
            .map(|r| (0..9u32).map(|t| (r * 7 + t * 3) % 30 + 1).collect())
            .collect();
        let batch = BenchBatch {
            prompt_lens: vec![1; rows.len()],
            rows,
            share_prompt: false,
        };
        let full = summed_grads(&model, &batch, (6, None)).unwrap();
        let micro = summed_grads(&model, &batch, (4, Some(1))).unwrap();
        let mut compared = 0;
        for (a, b) in full.iter().zip(&micro) {
            if let (Some(a), Some(b)) = (a, b) {
                let (d, scale) = (max_abs_diff(a, b), max_abs(a));
                assert!(d <= 1e-5 * scale.max(1e-3), "grad diff {d} (scale {scale})");
                compared += 1;
            }
        }
        assert_eq!(compared, model.vars().len());
        let r = bench_train(&model, 64, Some(16), Some(2), 1, None).unwrap();
        assert!(r.micro_batch_rows >= 1 && r.micro_batch_rows <= r.rows);
    }

    /// The GRPO-shaped batch: its packed layout gives the unshared gradient (groups split across
    /// micro-batches too), and the benchmark reports the shape.
    #[test]
    fn grouped_batch_shares_prompts_with_the_same_gradient() {
        let model = tiny_model(5);
        let shape = |share_prompt| GroupShape {
            group: 4,
            prompt_tokens: 6,
            completion_tokens: 5,
            share_prompt,
        };
        let batch = |share| BenchBatch::new(&model, 100, Some(shape(share)));
        assert_eq!(batch(true).rows.len(), 8);
        assert_eq!(batch(true).targets(), 40);
        let base = summed_grads(&model, &batch(false), (8, None)).unwrap();
        for micro in [8, 4, 3] {
            let shared = summed_grads(&model, &batch(true), (micro, None)).unwrap();
            for (a, b) in shared.iter().zip(&base) {
                let (a, b) = (a.as_ref().unwrap(), b.as_ref().unwrap());
                let (d, scale) = (max_abs_diff(a, b), max_abs(b));
                assert!(
                    d <= 1e-5 * scale.max(1e-3),
                    "micro {micro}: diff {d} (scale {scale})"
                );
            }
        }
        let r = bench_train(&model, 100, None, None, 1, Some(shape(true))).unwrap();
        assert_eq!((r.rows, r.seq_len, r.batch_tokens), (8, 11, 88));
        assert_eq!(r.group_shape, Some(shape(true)));
    }
}
