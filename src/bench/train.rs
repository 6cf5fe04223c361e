//! `rlvr bench train`: trainer forward+backward throughput and optimizer step time (AdamW vs
//! Magma), optionally through LoRA adapters (`--lora-rank`) and with activation recomputation
//! (`--recompute-every`). The measurement is `rlvr_trainer::bench_train` (it needs the trainer's
//! internals); this adds the command's fields to its report.

use anyhow::Result;
use serde_json::{json, Value};

use super::model::BenchModel;
use crate::common::{peak_rss_mb, ModelArgs};

#[derive(clap::Args, Debug)]
pub struct TrainBenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Tokens per optimizer step (rows of up to 256 tokens).
    #[arg(long, default_value_t = 4096)]
    pub batch_tokens: usize,
    /// Tokens per forward/backward micro-batch (default: the whole batch at once).
    #[arg(long)]
    pub micro_batch_tokens: Option<usize>,
    #[arg(long, default_value_t = 2)]
    pub iters: usize,
    /// A GRPO-shaped batch: groups of this many completions of one prompt (only completion
    /// tokens are targets). Without it: rows of random tokens.
    #[arg(long)]
    pub group: Option<usize>,
    /// With --group: tokens of each group's prompt.
    #[arg(long, default_value_t = 150)]
    pub prompt_tokens: usize,
    /// With --group: tokens of each completion.
    #[arg(long, default_value_t = 200)]
    pub completion_tokens: usize,
    /// With --group: the packed layout (each prompt once) or one row per completion.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub share_prompt: bool,
    /// Train LoRA adapters of this rank (base frozen) instead of every weight.
    #[arg(long)]
    pub lora_rank: Option<usize>,
    /// LoRA α (default 8, as in PEFT).
    #[arg(long, default_value_t = 8.0)]
    pub lora_alpha: f64,
    /// Adapted layers, comma-separated (default all: q,k,v,o,gate,up,down).
    #[arg(long, default_value = "all")]
    pub lora_targets: String,
    /// Activation recomputation: keep one decoder layer input per this many layers.
    #[arg(long)]
    pub recompute_every: Option<usize>,
}

pub fn run(args: &TrainBenchArgs) -> Result<()> {
    let mut model = BenchModel::load(&args.model)?.model;
    if let Some(rank) = args.lora_rank {
        let targets = rlvr_models::model::parse_targets(&args.lora_targets)
            .map_err(|e| anyhow::anyhow!("--lora-targets: {e}"))?;
        model.attach_lora(rlvr_models::model::LoraConfig {
            rank,
            alpha: args.lora_alpha,
            targets,
            rslora: false,
            seed: 0,
        })?;
    }
    let shape = args.group.map(|group| rlvr_trainer::GroupShape {
        group,
        prompt_tokens: args.prompt_tokens,
        completion_tokens: args.completion_tokens,
        share_prompt: args.share_prompt,
    });
    let report = rlvr_trainer::bench_train(
        &model,
        args.batch_tokens,
        args.micro_batch_tokens,
        args.recompute_every,
        args.iters,
        shape,
    )?;
    let mut line = serde_json::to_value(&report)?;
    if let Value::Object(fields) = &mut line {
        fields.insert("bench".into(), json!("train"));
        fields.insert("model".into(), json!(args.model.model));
        fields.insert("lora_rank".into(), json!(args.lora_rank));
        fields.insert(
            "threads".into(),
            json!(candle_core::utils::get_num_threads()),
        );
        fields.insert("peak_rss_mb".into(), json!(peak_rss_mb()));
    }
    println!("{line}");
    Ok(())
}
