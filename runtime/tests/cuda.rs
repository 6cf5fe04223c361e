//! The CUDA paged KV backend (`--features cuda`) against the full-sequence forward and the CPU
//! engine, on tiny random models. Needs a GPU: without one (`Device::new_cuda(0)` fails) each
//! GPU test prints "skipped: no CUDA device" and passes, so the binary also runs in CPU-only CI
//! (`LD_LIBRARY_PATH=/opt/cuda-pip/nogpu`).
//!
//! On a GPU machine: `cargo test --release --features cuda -p rlvr-runtime --test cuda -- --nocapture`
//! Tolerances are relative to the largest reference |logit| (at least 1): f32 1e-4, bf16 2e-2.
#![cfg(feature = "cuda")]

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use rlvr_models::{Architecture, Batch, Forward, Model, ModelConfig};
use rlvr_runtime::cuda_backend::CudaKvCache;
use rlvr_runtime::paged_attention::{KvBackend, StepLayout, TokenSlot};
use rlvr_runtime::{Engine, EngineConfig, Request, SamplingParams};

mod common;
use common::{drive, engine_config, max_abs, prompt, prompts, score_completion};

fn gpu() -> Option<Device> {
    match Device::new_cuda(0) {
        Ok(d) => Some(d),
        Err(e) => {
            eprintln!("skipped: no CUDA device ({e})");
            None
        }
    }
}

fn config(arch: Architecture, head_dim: usize) -> ModelConfig {
    ModelConfig {
        head_dim,
        ..ModelConfig::tiny(arch, 96, 64, 2)
    }
}

/// The same random weights (scaled up, for peaked distributions) on the CPU in f32 and on
/// `dev` in `dtype`.
fn models(cfg: &ModelConfig, dtype: DType, dev: &Device) -> (Arc<Model>, Arc<Model>) {
    let cpu = Model::random(cfg.clone(), 42, DType::F32, &Device::Cpu).unwrap();
    for (name, v) in cpu.named_vars() {
        if !name.ends_with("norm.weight") {
            v.set(&(v.as_tensor() * 4.0).unwrap()).unwrap();
        }
    }
    let tensors: HashMap<String, Tensor> = cpu.state_dict().into_iter().collect();
    let gpu = Model::from_tensors(cfg.clone(), tensors, dtype, dev, Path::new("<random>")).unwrap();
    (Arc::new(cpu), Arc::new(gpu))
}

/// Prefill lengths of the test sequences for `common::drive` (the fifth spans several blocks).
const PREFILL: [usize; 5] = [3, 9, 1, 12, 40];

#[test]
fn paged_matches_full_forward() {
    let Some(dev) = gpu() else { return };
    // (head_dim, block_size, decode through the kernel)
    let shapes = [
        (64, 16, true),
        (64, 8, true),
        (64, 16, false),
        (16, 4, false),
    ];
    for dtype in [DType::F32, DType::BF16] {
        let tol = if dtype == DType::F32 { 1e-4 } else { 2e-2 };
        for arch in [
            Architecture::Llama,
            Architecture::Qwen2,
            Architecture::Qwen3,
        ] {
            for &(hd, bs, kernel) in &shapes {
                let cfg = config(arch, hd);
                let (_, model) = models(&cfg, dtype, &dev);
                let seqs = prompts(&[5, 17, 33, 12, 70]);
                let full = model
                    .forward(Batch::padded(&seqs, 0), Forward::INFERENCE)
                    .unwrap();
                let mut kv = CudaKvCache::new(&cfg, 64, bs, dtype, &dev).unwrap();
                assert_eq!(kv.kernel_decode(), CudaKvCache::kernel_supports(hd, bs));
                kv.set_kernel_decode(kernel).unwrap();
                let (worst, scale) = drive(&model, &mut kv, &full, &seqs, &PREFILL);
                println!(
                    "{dtype:?} {arch:?} head_dim {hd} block {bs} kernel {kernel}: \
                     max |Δlogit| {worst:.3e} (max |logit| {scale:.2})"
                );
                assert!(
                    worst <= tol * scale.max(1.0),
                    "{dtype:?} {arch:?} hd {hd} bs {bs} kernel {kernel}: \
                     paged vs full max |Δlogit| = {worst} (max |logit| {scale})"
                );
            }
        }
    }
}

#[test]
fn f32_paged_matches_cpu_forward() {
    let Some(dev) = gpu() else { return };
    let cfg = config(Architecture::Qwen2, 64);
    let (cpu, model) = models(&cfg, DType::F32, &dev);
    let seqs = prompts(&[9, 40, 23]);
    let full_cpu = cpu
        .forward(Batch::padded(&seqs, 0), Forward::INFERENCE)
        .unwrap();
    let mut kv = CudaKvCache::new(&cfg, 32, 16, DType::F32, &dev).unwrap();
    let full = full_cpu.to_device(&dev).unwrap();
    let (worst, scale) = drive(&model, &mut kv, &full, &seqs, &PREFILL);
    println!("f32 CUDA paged vs CPU full: max |Δlogit| {worst:.3e} (max |logit| {scale:.2})");
    assert!(worst <= 1e-4 * scale.max(1.0), "{worst} vs scale {scale}");
}

fn cuda_engine(model: &Arc<Model>, block_size: usize, num_blocks: usize) -> Engine {
    let kv = CudaKvCache::new(
        &model.config,
        num_blocks,
        block_size,
        model.dtype(),
        model.device(),
    )
    .unwrap();
    Engine::with_backend(
        model.clone(),
        None,
        engine_config(block_size, num_blocks),
        Box::new(kv),
    )
}

/// Greedy groups (shared prompt blocks, copy-on-write, chunked prefill) on the CUDA engine give
/// the CPU engine's tokens and log-probs; a tiny pool (preemption) gives the same tokens.
#[test]
fn f32_engine_matches_cpu_engine() {
    let Some(dev) = gpu() else { return };
    for arch in [Architecture::Llama, Architecture::Qwen3] {
        let cfg = config(arch, 64);
        let (cpu, model) = models(&cfg, DType::F32, &dev);
        let prompts = prompts(&[3, 17, 40, 90]);
        let params = SamplingParams::greedy(24);
        let want = Engine::new(cpu.clone(), None, engine_config(16, 256))
            .unwrap()
            .generate_groups(&prompts, 3, &params)
            .unwrap();
        let got = cuda_engine(&model, 16, 256)
            .generate_groups(&prompts, 3, &params)
            .unwrap();
        assert_eq!(got.len(), want.len());
        let mut worst = 0f32;
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(
                g.token_ids, w.token_ids,
                "{arch:?} request {} sample {}",
                g.request_index, g.sample_index
            );
            for (a, b) in g.logprobs.iter().zip(&w.logprobs) {
                worst = worst.max((a - b).abs());
            }
            for (a, b) in g.entropies.iter().zip(&w.entropies) {
                worst = worst.max((a - b).abs());
            }
        }
        println!("{arch:?}: CUDA vs CPU engine, max |Δ logprob/entropy| {worst:.3e}");
        assert!(worst < 1e-3, "{arch:?}: {worst}");

        // 10 blocks of 16 tokens for 12 samples of up to 114 tokens: preemption.
        let mut small = cuda_engine(&model, 16, 10);
        let tight = small.generate_groups(&prompts, 3, &params).unwrap();
        assert!(
            small.stats().preemptions > 0,
            "the tiny pool should preempt"
        );
        for (a, b) in tight.iter().zip(&want) {
            assert_eq!(a.token_ids, b.token_ids, "{arch:?} under preemption");
        }
        assert_eq!(small.free_blocks(), small.num_blocks());
    }
}

/// Seeded sampling in bf16: the engine's raw log-probs and entropies equal a full-sequence
/// scoring of the same ids on the same device and dtype.
#[test]
fn bf16_engine_logprobs_match_full_scoring() {
    let Some(dev) = gpu() else { return };
    let cfg = config(Architecture::Qwen2, 64);
    let (_, model) = models(&cfg, DType::BF16, &dev);
    let params = SamplingParams {
        temperature: 0.8,
        top_p: 0.95,
        seed: 7,
        max_new_tokens: 32,
        ..Default::default()
    };
    let got = cuda_engine(&model, 16, 128)
        .generate(vec![
            Request {
                prompt_ids: prompt(21, 5),
                params: params.clone(),
                n: 4,
            },
            Request {
                prompt_ids: prompt(6, 2),
                params,
                n: 2,
            },
        ])
        .unwrap();
    let (mut worst, mut scale) = (0f32, 1f32);
    for c in &got {
        let full = score_completion(&model, c, Forward::INFERENCE);
        scale = scale.max(max_abs(&full.logits) as f32);
        for k in 0..c.token_ids.len() {
            worst = worst.max((full.logprobs[k] - c.logprobs[k]).abs());
            worst = worst.max((full.entropies[k] - c.entropies[k]).abs());
        }
    }
    println!(
        "bf16 CUDA engine vs full scoring: max |Δ logprob/entropy| {worst:.3e} \
         (max |logit| {scale:.2})"
    );
    // A log-prob moves by at most twice the largest logit change.
    assert!(worst <= 2.0 * 2e-2 * scale, "{worst} vs scale {scale}");
}

#[test]
fn copy_block_copies_every_layer() {
    let Some(dev) = gpu() else { return };
    let cfg = config(Architecture::Llama, 64);
    let mut kv = CudaKvCache::new(&cfg, 8, 16, DType::BF16, &dev).unwrap();
    // Fill block 2 of every layer through the attention path.
    let t = 16;
    let layout = StepLayout {
        tokens: (0..t as u32)
            .map(|p| TokenSlot {
                seq_index: 0,
                pos: p,
                slot: 2 * 16 + p,
            })
            .collect(),
        block_tables: vec![vec![2]],
    };
    let q = Tensor::randn(0f32, 1., (1, t, 4, 64), &dev)
        .unwrap()
        .to_dtype(DType::BF16)
        .unwrap();
    let k = Tensor::randn(0f32, 1., (1, t, 2, 64), &dev)
        .unwrap()
        .to_dtype(DType::BF16)
        .unwrap();
    {
        let mut attn = kv.attention(&layout);
        for layer in 0..cfg.num_layers {
            attn.attend(layer, &q, &k, &(&k * 2.0).unwrap()).unwrap();
        }
    }
    kv.copy_block(2, 5).unwrap();
    for layer in 0..cfg.num_layers {
        let (kc, vc) = kv.layer(layer);
        for c in [kc, vc] {
            let src = c.get(2).unwrap();
            let dst = c.get(5).unwrap();
            assert!(max_abs(&src) > 0.0, "block 2 was written");
            assert_eq!(max_abs(&(src - dst).unwrap()), 0.0, "layer {layer}");
        }
        // The written keys read back in token order.
        let kd = kc
            .get(2)
            .unwrap()
            .permute((2, 0, 1, 3))
            .unwrap()
            .reshape((16, 2, 64))
            .unwrap();
        assert_eq!(max_abs(&(kd - k.squeeze(0).unwrap()).unwrap()), 0.0);
    }
}

/// The engine sizes its pool from `gpu_memory_fraction`: here 1% of the device's memory on top
/// of what is in use once the model is loaded.
#[test]
fn sizing_from_memory_fraction() {
    let Some(dev) = gpu() else { return };
    let cfg = config(Architecture::Llama, 64);
    let per = CudaKvCache::bytes_per_block(&cfg, 16, DType::BF16);
    assert_eq!(per, 2 * 2 * 16 * 2 * 64 * 2);
    let (_, model) = models(&cfg, DType::BF16, &dev);
    let (free, total) = rlvr_models::device_mem::cuda_free_total(&dev).unwrap();
    let fraction = (total - free) as f64 / total as f64 + 0.01;
    let engine_cfg = EngineConfig {
        block_size: 16,
        gpu_memory_fraction: Some(fraction),
        ..Default::default()
    };
    let n = Engine::new(model, None, engine_cfg).unwrap().num_blocks();
    println!("1% of the device's memory: {n} blocks of {per} bytes");
    assert!(n > 1);
}

/// Runs anywhere (also without a GPU): the backend refuses a CPU device with an error.
#[test]
fn cpu_device_is_an_error() {
    let cfg = config(Architecture::Llama, 64);
    let err = CudaKvCache::new(&cfg, 4, 16, DType::F32, &Device::Cpu)
        .err()
        .expect("a CPU device is refused");
    assert!(err.to_string().contains("CUDA device"), "{err}");
}
