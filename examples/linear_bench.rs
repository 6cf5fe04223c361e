//! f32 linear-layer throughput of `rlvr_models::ops::linear` (candle's matmul, as the decoder
//! calls it) at the default model's shapes: decode steps of 8–256 sequences, the LM head, and a
//! training micro-batch. Prints one JSON line: GFLOP/s, the median of 7 timings per shape.
//! `scripts/bench_linear_torch.py` measures `torch.nn.functional.linear` at the same shapes.
//!
//! `cargo build --release --workspace --examples && target/release/examples/linear_bench`
use std::time::Instant;

use candle_core::{Device, Result, Tensor};

/// (rows, in, out).
const SHAPES: [(usize, usize, usize); 10] = [
    (8, 576, 1536),
    (64, 576, 576),
    (64, 576, 1536),
    (64, 1536, 576),
    (64, 576, 49152),
    (256, 576, 1536),
    (256, 1536, 576),
    (256, 576, 49152),
    (1024, 576, 1536),
    (1024, 1536, 576),
];
const ROUNDS: usize = 7;

/// GFLOP/s of one timing of about 10 GFLOP.
fn gflops(x: &Tensor, w: &Tensor) -> Result<f64> {
    let flop = 2.0 * (x.dim(0)? * x.dim(1)? * w.dim(0)?) as f64;
    let iters = (1e10 / flop).max(2.0) as usize;
    let t = Instant::now();
    for _ in 0..iters {
        rlvr_models::ops::linear(x, w, None)?;
    }
    Ok(flop * iters as f64 / t.elapsed().as_secs_f64() / 1e9)
}

fn main() -> Result<()> {
    let mut fields = vec![];
    for (m, k, n) in SHAPES {
        let x = Tensor::randn(0f32, 1., (m, k), &Device::Cpu)?;
        let w = Tensor::randn(0f32, 1., (n, k), &Device::Cpu)?;
        rlvr_models::ops::linear(&x, &w, None)?;
        let mut runs = (0..ROUNDS)
            .map(|_| gflops(&x, &w))
            .collect::<Result<Vec<_>>>()?;
        runs.sort_by(f64::total_cmp);
        fields.push(format!("\"{m}x{k}x{n}\": {:.1}", runs[ROUNDS / 2]));
    }
    let threads = candle_core::utils::get_num_threads();
    println!(
        "{{\"impl\": \"rlvr (candle gemm)\", \"threads\": {threads}, \"gflops_median_of_{ROUNDS}\": {{{}}}}}",
        fields.join(", ")
    );
    Ok(())
}
