//! `rlvr bench forward`: full-sequence forward passes (no KV cache), tokens per second.

use std::time::Instant;

use anyhow::Result;
use candle_core::{DType, Tensor};
use rlvr_models::{Batch, CausalAttention, Forward};
use serde_json::json;

use super::model::BenchModel;
use crate::common::{peak_rss_mb, ModelArgs};

#[derive(clap::Args, Debug)]
pub struct ForwardArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    #[arg(long, default_value_t = 256)]
    pub seq: usize,
    /// Timed iterations (after one warm-up).
    #[arg(long, default_value_t = 3)]
    pub iters: usize,
}

pub fn run(args: &ForwardArgs) -> Result<()> {
    let model = BenchModel::load(&args.model)?.model;
    let dev = model.device().clone();
    let (batch, seq) = (args.batch, args.seq);
    let vocab = model.config.vocab_size as u64;
    // Deterministic pseudo-random ids: the benchmark measures compute, not the text.
    let ids: Vec<u32> = (0..batch * seq)
        .map(|i| ((i as u64 * 2_654_435_761) % vocab) as u32)
        .collect();
    let ids = Tensor::from_vec(ids, (batch, seq), &dev)?;
    let pos: Vec<u32> = (0..batch).flat_map(|_| 0..seq as u32).collect();
    let pos = Tensor::from_vec(pos, (batch, seq), &dev)?;
    let lengths = vec![seq; batch];
    let run_once = || -> Result<()> {
        let mut attn = CausalAttention::new(&lengths, seq, model.dtype(), &dev)?.inference();
        let logits = model.forward(Batch::injected(&ids, &pos, &mut attn), Forward::INFERENCE)?;
        // Force completion (matters on asynchronous devices).
        let _ = logits.sum_all()?.to_dtype(DType::F32)?.to_scalar::<f32>()?;
        Ok(())
    };
    run_once()?;
    let iters = args.iters.max(1);
    let t0 = Instant::now();
    for _ in 0..iters {
        run_once()?;
    }
    let wall = t0.elapsed().as_secs_f64();
    let tokens = (batch * seq * iters) as f64;
    println!(
        "{}",
        json!({
            "bench": "forward",
            "model": args.model.model,
            "device": format!("{:?}", dev),
            "dtype": format!("{:?}", model.dtype()),
            "batch": batch,
            "seq": seq,
            "iters": iters,
            "wall_s": wall,
            "tokens_per_s": tokens / wall,
            "threads": candle_core::utils::get_num_threads(),
            "peak_rss_mb": peak_rss_mb(),
        })
    );
    Ok(())
}
