//! Throughput benchmark of the training path: forward+backward tokens/s and optimizer step time
//! for AdamW vs Magma, on any model. The optimizers run at lr = 0, so the weights are unchanged.

use std::time::Instant;

use candle_core::{DType, Tensor};
use rlvr_models::Model;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::optim::{LrSchedule, Optimizer, OptimizerConfig, OptimizerKind};
use crate::rng::SplitMix64;
use crate::trainer::{micro_grads, train_forward_rows};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    pub device: String,
    pub dtype: String,
    pub parameters: usize,
    pub rows: usize,
    pub seq_len: usize,
    pub batch_tokens: usize,
    pub iters: usize,
    pub fwd_bwd_ms: f64,
    pub fwd_bwd_tokens_per_s: f64,
    /// Peak resident memory (MiB) of the process up to the end of the forward+backward passes,
    /// before the optimizer benchmarks allocate their state (Linux `VmHWM`; 0 elsewhere).
    pub fwd_bwd_peak_rss_mb: f64,
    pub adamw_step_ms: f64,
    pub magma_step_ms: f64,
    /// Of the Magma step: the alignment (cosine) computation.
    pub magma_overhead_ms: f64,
}

impl BenchReport {
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Measure forward+backward and optimizer steps on a batch of about `batch_tokens` random tokens
/// in rows of up to 256 tokens, averaged over `iters` runs after one warm-up.
pub fn bench_train(model: &Model, batch_tokens: usize, iters: usize) -> Result<BenchReport> {
    let iters = iters.max(1);
    let seq_len = batch_tokens
        .clamp(2, 256)
        .min(model.config.max_position_embeddings.max(2));
    let rows_n = (batch_tokens / seq_len).max(1);
    let mut rng = SplitMix64::new(7);
    let vocab = model.config.vocab_size;
    let rows: Vec<Vec<u32>> = (0..rows_n)
        .map(|_| (0..seq_len).map(|_| rng.below(vocab) as u32).collect())
        .collect();
    let dev = model.device().clone();
    // Every position after the first is a target, through the trainer's own path (hidden
    // states → LM head on the target positions → fused log-prob).
    let prompt_lens = vec![1; rows_n];

    let fwd_bwd = || -> Result<Vec<Option<Tensor>>> {
        let fwd = train_forward_rows(model, &rows, &prompt_lens, 0, 1.0, false)?;
        let loss = fwd.l_theta.mean_all()?.neg()?;
        micro_grads(model, fwd, &loss)
    };
    let sync = |gs: &[Option<Tensor>]| -> Result<()> {
        if let Some(Some(g)) = gs.first() {
            g.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()?;
        }
        Ok(())
    };
    let grads = fwd_bwd()?;
    sync(&grads)?;
    drop(grads);
    let t = Instant::now();
    let mut grads = Vec::new();
    for _ in 0..iters {
        drop(grads);
        grads = fwd_bwd()?;
        sync(&grads)?;
    }
    let fwd_bwd_s = t.elapsed().as_secs_f64() / iters as f64;
    let fwd_bwd_peak_rss_mb = peak_rss_mb();

    let params: Vec<(String, candle_core::Var)> = model
        .named_vars()
        .map(|(n, v)| (n.to_string(), v.clone()))
        .collect();
    let time_opt = |kind: OptimizerKind| -> Result<(f64, f64)> {
        let cfg = OptimizerConfig {
            kind,
            lr: 0.0,
            schedule: LrSchedule::Constant { warmup_steps: 0 },
            ..Default::default()
        };
        let mut opt = Optimizer::new(params.clone(), cfg)?;
        opt.step(&grads)?;
        let mut overhead = 0.0;
        let t = Instant::now();
        for _ in 0..iters {
            let st = opt.step(&grads)?;
            overhead += st.magma.map(|m| m.overhead_ms).unwrap_or(0.0);
        }
        sync(&grads)?;
        Ok((
            t.elapsed().as_secs_f64() * 1e3 / iters as f64,
            overhead / iters as f64,
        ))
    };
    let (adamw_ms, _) = time_opt(OptimizerKind::AdamW)?;
    let (magma_ms, magma_overhead) = time_opt(OptimizerKind::Magma)?;
    let tokens = rows_n * seq_len;
    Ok(BenchReport {
        device: format!("{:?}", dev.location()),
        dtype: format!("{:?}", model.dtype()),
        parameters: model.num_parameters(),
        rows: rows_n,
        seq_len,
        batch_tokens: tokens,
        iters,
        fwd_bwd_ms: fwd_bwd_s * 1e3,
        fwd_bwd_tokens_per_s: tokens as f64 / fwd_bwd_s,
        fwd_bwd_peak_rss_mb,
        adamw_step_ms: adamw_ms,
        magma_step_ms: magma_ms,
        magma_overhead_ms: magma_overhead,
    })
}

/// Peak resident memory of the process in MiB (Linux `VmHWM`; 0 elsewhere).
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{tiny_model, weight_bits};

    #[test]
    fn bench_runs_and_leaves_weights_unchanged() {
        let model = tiny_model(3);
        let before = weight_bits(&model);
        let r = bench_train(&model, 64, 1).unwrap();
        assert!(r.fwd_bwd_tokens_per_s > 0.0 && r.adamw_step_ms > 0.0 && r.magma_step_ms > 0.0);
        assert_eq!(r.batch_tokens, 64);
        assert!(r.to_json_line().starts_with('{'));
        assert_eq!(weight_bits(&model), before);
    }
}
