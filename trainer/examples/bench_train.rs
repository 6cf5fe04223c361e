//! Training-path throughput: forward+backward tokens/s and AdamW vs Magma step time, one JSON line.
//!
//! `cargo run -p rlvr-trainer --release --example bench_train -- [--hidden 64] [--layers 2]
//!  [--vocab 256] [--heads 4] [--kv-heads 2] [--intermediate 4*hidden] [--tied] [--tokens 1024]
//!  [--iters 3] [--model <dir or .gguf>]` (add `--features cuda` for a GPU). The default model's
//!  shape with random weights: `--hidden 576 --layers 30 --vocab 49152 --heads 9 --kv-heads 3
//!  --intermediate 1536 --tied`.

use candle_core::{DType, Device};
use rlvr_models::{Architecture, LoadOptions, Model, ModelConfig};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn num(args: &[String], name: &str, default: usize) -> Result<usize, String> {
    match arg(args, name) {
        Some(v) => v.parse().map_err(|_| format!("{name}: not a number: {v}")),
        None => Ok(default),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let device = Device::cuda_if_available(0)?;
    let dtype = if device.is_cuda() {
        DType::BF16
    } else {
        DType::F32
    };
    let dtype = match arg(&args, "--dtype").as_deref() {
        Some("f32") => DType::F32,
        Some("bf16") => DType::BF16,
        _ => dtype,
    };
    let model = match arg(&args, "--model") {
        Some(spec) => {
            let opts = LoadOptions {
                dtype,
                device: device.clone(),
                ..Default::default()
            };
            rlvr_models::load(&spec, &opts)?.model
        }
        None => {
            let hidden = num(&args, "--hidden", 64)?;
            let cfg = ModelConfig {
                arch: Architecture::Llama,
                vocab_size: num(&args, "--vocab", 256)?,
                hidden_size: hidden,
                intermediate_size: num(&args, "--intermediate", 4 * hidden)?,
                num_layers: num(&args, "--layers", 2)?,
                num_heads: num(&args, "--heads", 4)?,
                num_kv_heads: num(&args, "--kv-heads", 2)?,
                head_dim: hidden / num(&args, "--heads", 4)?,
                rms_norm_eps: 1e-5,
                rope_theta: 10_000.0,
                rope_scaling: None,
                max_position_embeddings: 4096,
                tie_word_embeddings: args.iter().any(|a| a == "--tied"),
                qkv_bias: false,
                o_bias: false,
                qk_norm: false,
                bos_token_id: Some(1),
                eos_token_ids: vec![2],
            };
            Model::random(cfg, 0, dtype, &device)?
        }
    };
    let report = rlvr_trainer::bench_train(
        &model,
        num(&args, "--tokens", 1024)?,
        num(&args, "--iters", 3)?,
    )?;
    println!("{}", report.to_json_line());
    Ok(())
}
