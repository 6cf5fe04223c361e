//! `rlvr train` and `rlvr eval`: the main job, and the commands' flags.
//!
//! A run goes: the config and its directory (run_dir.rs), the model, data and trainer
//! (run.rs), the step loop (step_loop.rs, logging through step_log.rs and progress.rs), then
//! the end of the run (finish.rs). Generation and scoring run beside the loop (pipeline.rs);
//! prompts come from task.rs; held-out evaluation is eval.rs.
//!
//! This module owns the order of those stages and nothing of their insides.

mod config;
mod config_keys;
mod dynamic;
mod eval;
mod finish;
mod interrupt;
mod pipeline;
pub(crate) mod plots;
mod progress;
mod run;
mod run_dir;
mod step_log;
mod step_loop;
mod task;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::json;

pub use config::RunConfig;
use config_keys::Override;
use eval::Evaluator;
use interrupt::Interrupt;
use run::Run;
use run_dir::RunDir;
use task::Dataset;

use crate::common::ModelArgs;
use crate::prompt_fit::{OnLongPrompt, PromptLimit};

#[derive(clap::Args, Debug, Default)]
pub struct TrainArgs {
    /// TOML run config; flags override its keys.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub model: Option<String>,
    /// `arithmetic` (built-in), `gsm8k` (bundled) or a JSONL file.
    #[arg(long)]
    pub data: Option<String>,
    /// stapo | grpo | dapo | dr_grpo
    #[arg(long)]
    pub algo: Option<String>,
    /// magma | adamw | skip_update
    #[arg(long)]
    pub optimizer: Option<String>,
    #[arg(long)]
    pub group_size: Option<usize>,
    #[arg(long)]
    pub prompts_per_step: Option<usize>,
    #[arg(long)]
    pub max_steps: Option<u64>,
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long)]
    pub max_staleness: Option<u64>,
    #[arg(long)]
    pub device: Option<String>,
    /// Run directory (default: runs/run-<time>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in this directory from its last checkpoint.
    #[arg(long, conflicts_with = "out")]
    pub resume: Option<PathBuf>,
    /// Overwrite a run directory that holds another run.
    #[arg(long)]
    pub force: bool,
    /// A prompt longer than the model's context (or the KV pool) minus max_new_tokens: fail
    /// before the run starts (default), or leave it out.
    #[arg(long, value_enum)]
    pub on_long_prompt: Option<OnLongPrompt>,
    /// Train LoRA adapters of this rank instead of every weight (`lora.rank`).
    #[arg(long)]
    pub lora_rank: Option<usize>,
    /// LoRA α (`lora.alpha`; default 8 as in PEFT): the adapters' scale is α/r.
    #[arg(long)]
    pub lora_alpha: Option<f64>,
    /// Adapted layers, comma-separated: q,k,v,o,gate,up,down (default all).
    #[arg(long)]
    pub lora_targets: Option<String>,
    /// rsLoRA scaling α/√r (`lora.rslora`).
    #[arg(long)]
    pub rslora: bool,
    /// Start from this PEFT adapter directory (`lora.adapter`).
    #[arg(long)]
    pub adapter: Option<String>,
    /// Export the merged full model instead of the PEFT adapter (`lora.merge`).
    #[arg(long)]
    pub merge: bool,
    /// Offer these tools, comma-separated (`tools.enabled`): `calculator` and the names of
    /// `[[tools.external]]` commands in the config. Rollouts become multi-turn.
    #[arg(long)]
    pub tools: Option<String>,
    /// Set any config key: `--set trainer.num_minibatches=2 --set task.digits=2`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Stop as if interrupted after this many steps (checkpoint, exit non-zero): for tests.
    #[arg(long, hide = true)]
    pub stop_after: Option<u64>,
    /// Wait at this point until interrupted (`before-step-1`, `train:N`, `finish`): for tests.
    #[arg(long, hide = true)]
    pub hold_at: Option<String>,
}

impl TrainArgs {
    /// The config keys the flags set, in flag order, then each `--set`.
    fn overrides(&self) -> Result<Vec<Override>> {
        let flags = [
            ("model", flag(&self.model)),
            ("data", flag(&self.data)),
            ("algo", flag(&self.algo)),
            ("optimizer", flag(&self.optimizer)),
            ("group_size", flag(&self.group_size)),
            ("prompts_per_step", flag(&self.prompts_per_step)),
            ("max_steps", flag(&self.max_steps)),
            ("max_new_tokens", flag(&self.max_new_tokens)),
            ("lr", flag(&self.lr)),
            ("seed", flag(&self.seed)),
            ("max_staleness", flag(&self.max_staleness)),
            ("device", flag(&self.device)),
            ("on_long_prompt", flag(&self.on_long_prompt)),
            ("lora.rank", flag(&self.lora_rank)),
            ("lora.alpha", flag(&self.lora_alpha)),
            ("lora.targets", flag(&self.lora_targets_list())),
            ("lora.rslora", flag(&self.rslora.then_some(true))),
            ("lora.adapter", flag(&self.adapter)),
            ("lora.merge", flag(&self.merge.then_some(true))),
            ("tools.enabled", flag(&self.tools_list())),
        ];
        let set_by_flags = flags
            .into_iter()
            .filter_map(|(key, value)| value.map(|value| Override::flag(key, value?)));
        set_by_flags
            .chain(self.set.iter().map(|kv| Override::set(kv)))
            .collect()
    }
}

impl TrainArgs {
    fn tools_list(&self) -> Option<Vec<String>> {
        crate::tools::split_names(self.tools.as_deref())
    }

    fn lora_targets_list(&self) -> Option<Vec<String>> {
        self.lora_targets
            .as_ref()
            .map(|s| s.split(',').map(|t| t.trim().to_string()).collect())
    }
}

/// A flag's value as a config value, when given.
fn flag<T: Serialize>(value: &Option<T>) -> Option<Result<toml::Value>> {
    value
        .as_ref()
        .map(|v| toml::Value::try_from(v).context("a flag's value"))
}

pub fn train(args: &TrainArgs) -> Result<()> {
    let (cfg, dir) = RunDir::check(args)?;
    let mut run = Run::load(cfg, dir)?;
    // Everything is checked: only now write into the run directory.
    let interrupt = Interrupt::install(args.stop_after, args.hold_at.clone());
    run.dir.create(&run.cfg)?;
    let start = run.restore()?;
    if start.step == 0 && run.cfg.eval_size > 0 && !interrupt.requested() {
        run.evaluate(0)?;
    }
    interrupt.hold("before-step-1");
    let pipeline = run.start_pipeline(&start, interrupt.flag())?;
    let started = Instant::now();
    let end = step_loop::run_steps(&mut run, &pipeline, start, &interrupt, started)?;
    finish::finish(run, pipeline, end, started, &interrupt)
}

/// The run's data, its prompts checked against the model's context and the KV pools of the
/// generator (training prompts, when `train` is set) and of the evaluator (held-out prompts),
/// before anything runs (`on_long_prompt`).
pub(crate) fn load_dataset(
    cfg: &RunConfig,
    loaded: &rlvr_models::LoadedModel,
    train: bool,
) -> Result<Dataset> {
    let model = &loaded.model;
    let eval_limit = PromptLimit::new(model, &eval::engine_config(cfg), cfg.max_new_tokens)?;
    let train_limit = match train {
        true => Some(PromptLimit::new(
            model,
            &cfg.engine_config(),
            cfg.max_new_tokens,
        )?),
        false => None,
    };
    let mut dataset = Dataset::load(cfg)?;
    dataset.fit_prompts(&loaded.tokenizer, cfg, train_limit.as_ref(), &eval_limit)?;
    Ok(dataset)
}

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// `arithmetic`, `gsm8k` or a JSONL file (its held-out part is evaluated).
    #[arg(long, default_value = "arithmetic")]
    pub data: String,
    /// Samples per problem for pass@k / mean@k.
    #[arg(short = 'n', long = "n", default_value_t = 0)]
    pub k: usize,
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    #[arg(long, default_value_t = 256)]
    pub max_new_tokens: usize,
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

pub fn eval_cmd(args: &EvalArgs) -> Result<()> {
    let mut overrides = vec![Override {
        source: "rlvr eval's flags".into(),
        value: json!({
            "data": args.data,
            "eval_size": args.size,
            "eval_k": args.k,
            "max_new_tokens": args.max_new_tokens,
            "model": args.model.model,
        }),
    }];
    for kv in &args.set {
        overrides.push(Override::set(kv)?);
    }
    let cfg = RunConfig::build(None, &overrides)?;
    let loaded = args.model.load()?;
    let dataset = load_dataset(&cfg, &loaded, false)?;
    let evaluator = Evaluator::new(&dataset, &loaded.tokenizer, &cfg)?;
    let eos = loaded.eos_ids();
    let model = Arc::new(loaded.model);
    let result = evaluator.run(&model, &loaded.tokenizer, &cfg, &eos)?;
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}
