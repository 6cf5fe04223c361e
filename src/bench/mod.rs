//! `rlvr bench …`: throughput benchmarks that print one JSON line.

use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::Tensor;
use rlvr_models::{CausalAttention, Mode};
use serde_json::json;

use crate::common::{peak_rss_mb, ModelArgs};

#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Full-sequence forward (no cache): tokens/s.
    Forward(ForwardArgs),
    /// Group rollouts with the paged engine (or the naive no-cache baseline).
    Rollout(RolloutArgs),
    /// Trainer forward+backward throughput and optimizer step time (AdamW vs Magma).
    Train {
        #[command(flatten)]
        model: ModelArgs,
        /// Tokens per optimizer step (rows of up to 256 tokens).
        #[arg(long, default_value_t = 4096)]
        batch_tokens: usize,
        /// Tokens per forward/backward micro-batch (default: the whole batch at once).
        #[arg(long)]
        micro_batch_tokens: Option<usize>,
        #[arg(long, default_value_t = 2)]
        iters: usize,
    },
    /// Seconds per RL step of the default run and its split (generation / verification / training).
    Step {
        #[arg(long, default_value = "default")]
        model: String,
        /// cpu, cuda or cuda:N (default: cuda when built with it and a GPU is present).
        #[arg(long)]
        device: Option<String>,
        #[arg(long, default_value_t = 3)]
        steps: u64,
        /// Config overrides, as for `rlvr train --set`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Verifier throughput on GSM8K-style completions.
    Verify {
        /// Completions to grade.
        #[arg(long, default_value_t = 200_000)]
        n: usize,
    },
}

#[derive(clap::Args, Debug)]
pub struct RolloutArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Number of distinct prompts.
    #[arg(long, default_value_t = 8)]
    pub prompts: usize,
    /// Samples per prompt (G).
    #[arg(long, default_value_t = 8)]
    pub group: usize,
    #[arg(long, default_value_t = 128)]
    pub max_new_tokens: usize,
    #[arg(long)]
    pub ignore_eos: bool,
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// `paged` (the runtime) or `naive` (full recompute every token, no KV cache).
    #[arg(long, default_value = "paged")]
    pub engine: String,
    #[command(flatten)]
    pub engine_args: crate::gen_cmds::EngineArgs,
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
        BenchCommand::Rollout(a) => rollout(a),
        BenchCommand::Verify { n } => crate::verify_cmd::bench(*n),
        BenchCommand::Step {
            model,
            device,
            steps,
            set,
        } => crate::train::bench_step(model, device.as_deref(), *steps, set),
        BenchCommand::Train {
            model,
            batch_tokens,
            micro_batch_tokens,
            iters,
        } => {
            let m = BenchModel::load(model)?;
            let r =
                rlvr_trainer::bench_train(&m.model, *batch_tokens, *micro_batch_tokens, *iters)?;
            let mut v = serde_json::to_value(&r)?;
            if let Some(o) = v.as_object_mut() {
                o.insert("bench".into(), json!("train"));
                o.insert("model".into(), json!(model.model));
                o.insert(
                    "threads".into(),
                    json!(candle_core::utils::get_num_threads()),
                );
                o.insert("peak_rss_mb".into(), json!(peak_rss_mb()));
            }
            println!("{v}");
            Ok(())
        }
    }
}

fn forward(a: &ForwardArgs) -> Result<()> {
    let m = BenchModel::load(&a.model)?;
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

/// A benchmark's model: loaded, or `random:<preset>` (a known shape with random weights, for
/// speed only; no tokenizer).
pub struct BenchModel {
    pub model: rlvr_models::Model,
    pub tokenizer: Option<rlvr_models::TextTokenizer>,
    pub eos_ids: Vec<u32>,
}

impl BenchModel {
    pub fn load(args: &ModelArgs) -> Result<Self> {
        let Some(name) = args.model.strip_prefix("random:") else {
            let l = args.load()?;
            let eos_ids = l.eos_ids();
            return Ok(Self {
                model: l.model,
                tokenizer: Some(l.tokenizer),
                eos_ids,
            });
        };
        let cfg = rlvr_models::ModelConfig::preset(name).with_context(|| {
            format!(
                "unknown random model {name:?} (known: {})",
                rlvr_models::config::PRESETS.join(", ")
            )
        })?;
        let device = crate::common::device(args.device.as_deref())?;
        let dtype = crate::common::dtype(args.dtype.as_deref(), &device)?;
        let model = rlvr_models::Model::random(cfg, 7, dtype, &device)?;
        eprintln!(
            "rlvr: model random:{name}: {:.1}M parameters, random weights, {dtype:?} on {device:?}",
            model.num_parameters() as f64 / 1e6
        );
        Ok(Self {
            eos_ids: model.config.eos_token_ids.clone(),
            model,
            tokenizer: None,
        })
    }

    /// `n` prompts: chat-rendered arithmetic questions, or for random weights the token ids of
    /// scripts/bench_transformers_gpu.py (lengths 48..55), so both run the same shapes.
    pub fn prompts(&self, n: usize) -> Result<Vec<Vec<u32>>> {
        match &self.tokenizer {
            Some(t) => bench_prompts(t, n),
            None => Ok((0..n)
                .map(|i| {
                    (0..48 + i % 8)
                        .map(|j| 3 + ((j * 7 + i * 13) % 90) as u32)
                        .collect()
                })
                .collect()),
        }
    }
}

/// Chat-rendered arithmetic prompts like the default task's.
pub fn bench_prompts(tok: &rlvr_models::TextTokenizer, n: usize) -> Result<Vec<Vec<u32>>> {
    (0..n)
        .map(|i| {
            let (a, b) = (7 + 13 * i % 90, 3 + 29 * i % 70);
            let q = format!("What is {a} + {b}? Put the final answer in \\boxed{{}}.");
            Ok(tok.encode_prompt(&q, true)?)
        })
        .collect()
}

fn rollout(a: &RolloutArgs) -> Result<()> {
    let m = BenchModel::load(&a.model)?;
    let prompts = m.prompts(a.prompts)?;
    let params = rlvr_runtime::SamplingParams {
        temperature: a.temperature,
        seed: a.seed,
        max_new_tokens: a.max_new_tokens,
        stop_token_ids: m.eos_ids.clone(),
        ignore_eos: a.ignore_eos,
        ..Default::default()
    };
    let prompt_tokens: usize = prompts.iter().map(Vec::len).sum();
    let model = std::sync::Arc::new(m.model);
    let t0 = Instant::now();
    let (generated, stats) = match a.engine.as_str() {
        "paged" => {
            let mut e = rlvr_runtime::Engine::new(model.clone(), None, a.engine_args.config())?;
            let out = e.generate_groups(&prompts, a.group, &params)?;
            (
                out.iter().map(|c| c.token_ids.len()).sum::<usize>(),
                Some(e.stats().clone()),
            )
        }
        "naive" => {
            let mut n = 0;
            for (i, p) in prompts.iter().enumerate() {
                let pi = rlvr_runtime::SamplingParams {
                    seed: a.seed + i as u64,
                    ..params.clone()
                };
                n += rlvr_runtime::naive::generate_naive(&model, p, a.group, &pi)?
                    .iter()
                    .map(|c| c.token_ids.len())
                    .sum::<usize>();
            }
            (n, None)
        }
        other => anyhow::bail!("--engine {other:?}: expected paged or naive"),
    };
    let wall = t0.elapsed().as_secs_f64();
    let mut out = json!({
        "bench": "rollout",
        "engine": a.engine,
        "model": a.model.model,
        "device": format!("{:?}", model.device()),
        "prompts": a.prompts,
        "group": a.group,
        "max_new_tokens": a.max_new_tokens,
        "prompt_tokens": prompt_tokens,
        "generated_tokens": generated,
        "wall_s": wall,
        "generated_tokens_per_s": generated as f64 / wall,
        "threads": candle_core::utils::get_num_threads(),
        "peak_rss_mb": peak_rss_mb(),
        "flash_attn_prefill": rlvr_runtime::flash_attn_enabled() && model.device().is_cuda(),
        "cuda_pool_keeps_freed": model.device().is_cuda()
            && crate::common::cuda_keeps_freed_memory(),
    });
    if let Some(s) = stats {
        let o = out.as_object_mut().expect("object");
        o.insert(
            "prefill_tokens_per_s".into(),
            json!(s.prefill_tokens as f64 / s.prefill_s.max(1e-9)),
        );
        o.insert(
            "decode_tokens_per_s".into(),
            json!(s.decode_tokens as f64 / s.decode_s.max(1e-9)),
        );
        o.insert("prefill_s".into(), json!(s.prefill_s));
        o.insert("decode_s".into(), json!(s.decode_s));
        o.insert("peak_kv_blocks".into(), json!(s.peak_kv_blocks));
        o.insert("kv_blocks_total".into(), json!(s.kv_blocks_total));
        o.insert("preemptions".into(), json!(s.preemptions));
        o.insert("steps".into(), json!(s.steps));
        o.insert("forward_s".into(), json!(s.forward_s));
        o.insert("sample_s".into(), json!(s.sample_s));
    }
    println!("{out}");
    Ok(())
}
