//! `rlvr bench train`: trainer forward+backward throughput and optimizer step time (AdamW vs
//! Magma). The measurement is `rlvr_trainer::bench_train` (it needs the trainer's internals);
//! this adds the command's fields to its report.

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
}

pub fn run(args: &TrainBenchArgs) -> Result<()> {
    let model = BenchModel::load(&args.model)?.model;
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
        args.iters,
        shape,
    )?;
    let mut line = serde_json::to_value(&report)?;
    if let Value::Object(fields) = &mut line {
        fields.insert("bench".into(), json!("train"));
        fields.insert("model".into(), json!(args.model.model));
        fields.insert(
            "threads".into(),
            json!(candle_core::utils::get_num_threads()),
        );
        fields.insert("peak_rss_mb".into(), json!(peak_rss_mb()));
    }
    println!("{line}");
    Ok(())
}
