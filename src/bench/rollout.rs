//! `rlvr bench rollout`: group rollouts with the paged engine, or the naive no-cache baseline;
//! generated tokens per second, and the engine's own prefill/decode split.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Result};
use rlvr_models::Model;
use rlvr_runtime::{Engine, EngineStats, SamplerKind, SamplingParams};
use serde_json::{json, Value};

use super::model::BenchModel;
use crate::common::{cuda_keeps_freed_memory, peak_rss_mb, ModelArgs};
use crate::gen_cmds::EngineArgs;

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
    /// Where tokens are drawn: `host` (logits copied to the host) or `device` (tensor ops on
    /// the model's device); default: device on a GPU, host on the CPU.
    #[arg(long, value_parser = ["host", "device"])]
    pub sampler: Option<String>,
    /// Add the engine's time split: schedule / build inputs / forward / sample / postprocess.
    #[arg(long)]
    pub profile: bool,
    #[command(flatten)]
    pub engine_args: EngineArgs,
}

pub fn run(args: &RolloutArgs) -> Result<()> {
    let bench_model = BenchModel::load(&args.model)?;
    let prompts = bench_model.prompts(args.prompts)?;
    let params = SamplingParams {
        temperature: args.temperature,
        seed: args.seed,
        max_new_tokens: args.max_new_tokens,
        stop_token_ids: bench_model.eos_ids.clone(),
        ignore_eos: args.ignore_eos,
        ..Default::default()
    };
    let prompt_tokens: usize = prompts.iter().map(Vec::len).sum();
    let model = Arc::new(bench_model.model);
    let t0 = Instant::now();
    let (generated, stats) = match args.engine.as_str() {
        "paged" => paged(&model, &prompts, args, &params)?,
        "naive" => (naive(&model, &prompts, args, &params)?, None),
        other => bail!("--engine {other:?}: expected paged or naive"),
    };
    let wall = t0.elapsed().as_secs_f64();
    let device = model.device();
    let mut out = json!({
        "bench": "rollout",
        "engine": args.engine,
        "model": args.model.model,
        "device": format!("{:?}", device),
        "prompts": args.prompts,
        "group": args.group,
        "max_new_tokens": args.max_new_tokens,
        "prompt_tokens": prompt_tokens,
        "generated_tokens": generated,
        "wall_s": wall,
        "generated_tokens_per_s": generated as f64 / wall,
        "threads": candle_core::utils::get_num_threads(),
        "peak_rss_mb": peak_rss_mb(),
        "flash_attn_prefill": rlvr_runtime::flash_attn_enabled() && device.is_cuda(),
        "cuda_pool_keeps_freed": device.is_cuda() && cuda_keeps_freed_memory(),
    });
    if let (Some(stats), Value::Object(fields)) = (stats, &mut out) {
        fields.extend(stats_fields(&stats));
        fields.extend(step_counts(&stats, model.config.num_layers));
        let sampler = match args.sampler.as_deref() {
            Some("device") => SamplerKind::Device,
            Some(_) => SamplerKind::Host,
            None => SamplerKind::default_for(device),
        };
        fields.insert("sampler".into(), json!(sampler));
        if args.profile {
            fields.insert("profile".into(), profile(&stats));
        }
    }
    println!("{out}");
    Ok(())
}

/// All groups through one paged engine: generated tokens and the engine's counters.
fn paged(
    model: &Arc<Model>,
    prompts: &[Vec<u32>],
    args: &RolloutArgs,
    params: &SamplingParams,
) -> Result<(usize, Option<EngineStats>)> {
    let mut engine = Engine::new(model.clone(), None, args.engine_args.config())?;
    match args.sampler.as_deref() {
        Some("host") => engine.set_sampler(SamplerKind::Host),
        Some("device") => engine.set_sampler(SamplerKind::Device),
        _ => {}
    }
    engine.set_count_ops(true);
    let completions = engine.generate_groups(prompts, args.group, params)?;
    let generated = completions.iter().map(|c| c.token_ids.len()).sum();
    Ok((generated, Some(engine.stats().clone())))
}

/// The no-cache baseline, one prompt's group at a time: generated tokens.
fn naive(
    model: &Model,
    prompts: &[Vec<u32>],
    args: &RolloutArgs,
    params: &SamplingParams,
) -> Result<usize> {
    let mut generated = 0;
    for (i, prompt) in prompts.iter().enumerate() {
        let prompt_params = SamplingParams {
            seed: args.seed + i as u64,
            ..params.clone()
        };
        generated +=
            rlvr_runtime::naive::generate_naive(model, prompt, args.group, &prompt_params)?
                .iter()
                .map(|c| c.token_ids.len())
                .sum::<usize>();
    }
    Ok(generated)
}

/// The paged engine's split of the time, in the order the report has always listed them.
fn stats_fields(stats: &EngineStats) -> serde_json::Map<String, Value> {
    [
        (
            "prefill_tokens_per_s",
            json!(stats.prefill_tokens as f64 / stats.prefill_s.max(1e-9)),
        ),
        (
            "decode_tokens_per_s",
            json!(stats.decode_tokens as f64 / stats.decode_s.max(1e-9)),
        ),
        ("prefill_s", json!(stats.prefill_s)),
        ("decode_s", json!(stats.decode_s)),
        ("peak_kv_blocks", json!(stats.peak_kv_blocks)),
        ("kv_blocks_total", json!(stats.kv_blocks_total)),
        ("preemptions", json!(stats.preemptions)),
        ("steps", json!(stats.steps)),
        ("forward_s", json!(stats.forward_s)),
        ("sample_s", json!(stats.sample_s)),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), value))
    .collect()
}

/// What one decode step did, on average: candle ops in all (forward and sampling) and inside
/// one decoder layer, host → device copies and device → host copies (syncs).
fn step_counts(stats: &EngineStats, layers: usize) -> serde_json::Map<String, Value> {
    let steps = stats.decode_steps.max(1) as f64;
    [
        ("decode_steps", json!(stats.decode_steps)),
        ("ops_per_step", json!(stats.decode_ops as f64 / steps)),
        (
            "forward_ops_per_layer_per_step",
            json!(stats.decode_layer_ops as f64 / steps / layers.max(1) as f64),
        ),
        (
            "uploads_per_step",
            json!(stats.decode_uploads as f64 / steps),
        ),
        (
            "host_syncs_per_step",
            json!(stats.decode_host_syncs as f64 / steps),
        ),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), value))
    .collect()
}

/// The engine's time split (`--profile`); `other_s` is what the named parts leave of the
/// prefill and decode time.
fn profile(stats: &EngineStats) -> Value {
    let named = stats.schedule_s
        + stats.build_inputs_s
        + stats.forward_s
        + stats.sample_s
        + stats.postprocess_s;
    json!({
        "schedule_s": stats.schedule_s,
        "build_inputs_s": stats.build_inputs_s,
        "forward_s": stats.forward_s,
        "sample_s": stats.sample_s,
        "postprocess_s": stats.postprocess_s,
        "other_s": (stats.prefill_s + stats.decode_s - named).max(0.0),
    })
}
