//! `rlvr bench …`: throughput benchmarks that print one JSON line.

use std::time::Instant;

use anyhow::Result;
use candle_core::Tensor;
use rlvr_models::{CausalAttention, Mode};
use serde_json::json;

use crate::common::{peak_rss_mb, ModelArgs};

#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Full-sequence forward (no cache): tokens/s.
    Forward(ForwardArgs),
}

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

pub fn run(cmd: &BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Forward(a) => forward(a),
    }
}

fn forward(a: &ForwardArgs) -> Result<()> {
    let m = a.model.load()?;
    let dev = m.model.device().clone();
    let vocab = m.model.config.vocab_size as u32;
    // Deterministic pseudo-random ids: the benchmark measures compute, not the text.
    let ids: Vec<u32> = (0..a.batch * a.seq)
        .map(|i| ((i as u64 * 2_654_435_761) % vocab as u64) as u32)
        .collect();
    let ids = Tensor::from_vec(ids, (a.batch, a.seq), &dev)?;
    let pos: Vec<u32> = (0..a.batch).flat_map(|_| 0..a.seq as u32).collect();
    let pos = Tensor::from_vec(pos, (a.batch, a.seq), &dev)?;
    let lengths = vec![a.seq; a.batch];
    let run_once = || -> Result<()> {
        let mut attn = CausalAttention::new(&lengths, a.seq, m.model.dtype(), &dev)?.inference();
        let logits = m.model.forward(&ids, &pos, &mut attn, Mode::Inference)?;
        // Force completion (matters on asynchronous devices).
        let _ = logits
            .sum_all()?
            .to_dtype(candle_core::DType::F32)?
            .to_scalar::<f32>()?;
        Ok(())
    };
    run_once()?;
    let t0 = Instant::now();
    for _ in 0..a.iters.max(1) {
        run_once()?;
    }
    let wall = t0.elapsed().as_secs_f64();
    let tokens = (a.batch * a.seq * a.iters.max(1)) as f64;
    println!(
        "{}",
        json!({
            "bench": "forward",
            "model": a.model.model,
            "device": format!("{:?}", dev),
            "dtype": format!("{:?}", m.model.dtype()),
            "batch": a.batch,
            "seq": a.seq,
            "iters": a.iters.max(1),
            "wall_s": wall,
            "tokens_per_s": tokens / wall,
            "threads": candle_core::utils::get_num_threads(),
            "peak_rss_mb": peak_rss_mb(),
        })
    );
    Ok(())
}
