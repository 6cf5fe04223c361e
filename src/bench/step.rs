//! `rlvr bench step`: a few RL steps of the default run (or a configured one) through `rlvr
//! train` itself, in a temporary run directory; one JSON line with the step time and its split,
//! read back from the run's metrics.jsonl.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde_json::{json, Value};

use crate::common::{device, peak_rss_mb};
use crate::train::{train, RunConfig, TrainArgs};

#[derive(clap::Args, Debug)]
pub struct StepArgs {
    #[arg(long, default_value = "default")]
    pub model: String,
    /// cpu, cuda or cuda:N (default: cuda when built with it and a GPU is present).
    #[arg(long)]
    pub device: Option<String>,
    #[arg(long, default_value_t = 3)]
    pub steps: u64,
    /// Config overrides, as for `rlvr train --set`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

pub fn run(args: &StepArgs) -> Result<()> {
    let run_dir = std::env::temp_dir().join(format!("rlvr-bench-step-{}", std::process::id()));
    train(&train_args(args, run_dir.clone()))?;
    let metrics = StepLines::read(&run_dir.join("metrics.jsonl"))?;
    let cfg = RunConfig::build(Some(&run_dir.join("config.toml")), &[])?;
    let report = report(args, &cfg, &metrics)?;
    let _ = std::fs::remove_dir_all(&run_dir);
    println!("{report}");
    Ok(())
}

/// The run: no evaluation, export or checkpoints (they are not part of a step), in `run_dir`.
fn train_args(args: &StepArgs, run_dir: PathBuf) -> TrainArgs {
    let mut set: Vec<String> = vec![
        "eval_size=0".into(),
        "export_dtype=\"none\"".into(),
        "checkpoint_every=0".into(),
    ];
    set.extend(args.set.iter().cloned());
    TrainArgs {
        model: Some(args.model.clone()),
        device: args.device.clone(),
        max_steps: Some(args.steps.max(1)),
        out: Some(run_dir),
        force: true,
        set,
        ..Default::default()
    }
}

fn report(args: &StepArgs, cfg: &RunConfig, metrics: &StepLines) -> Result<Value> {
    let mean = |key: &str| metrics.mean(key);
    let step_s = mean("generation_s") + mean("verification_s") + mean("train_s");
    Ok(json!({
        "bench": "step",
        "model": args.model,
        "steps": metrics.lines.len(),
        "prompts_per_step": cfg.prompts_per_step,
        "group_size": cfg.group_size,
        "max_new_tokens": cfg.max_new_tokens,
        "step_s": step_s,
        "generation_s": mean("generation_s"),
        "verification_s": mean("verification_s"),
        "train_s": mean("train_s"),
        "train_proximal_s": metrics.mean_timing_s("proximal_ms"),
        "train_forward_backward_s": metrics.mean_timing_s("forward_backward_ms"),
        "train_optimizer_s": metrics.mean_timing_s("optimizer_ms"),
        "generated_tokens_per_step": mean("generated_tokens"),
        "generation_tokens_per_s": mean("generation_tokens_per_s"),
        "trained_tokens_per_s": mean("response_tokens") / mean("train_s").max(1e-9),
        "device": format!("{:?}", device(cfg.device.as_deref())?),
        "dtype": cfg.dtype.clone().unwrap_or_else(|| "default (f32 on CPU, bf16 on CUDA)".into()),
        "optimizer": format!("{:?}", cfg.trainer.optimizer.kind),
        // Rollout (runtime) vs trainer log-probs of the same tokens (see StepMetrics.mismatch).
        "rollout_trainer_mismatch_k3_mean": mean("mismatch_k3"),
        "rollout_trainer_logprob_max_abs_diff": metrics.max(&["max_abs_diff"]),
        "train_peak_memory_mb": metrics.max(&["timings", "peak_memory_mb"]),
        "peak_rss_mb": peak_rss_mb(),
        "per_step": metrics.per_step(),
    }))
}

/// The run's metrics.jsonl, one value per step.
struct StepLines {
    lines: Vec<Value>,
}

impl StepLines {
    fn read(path: &Path) -> Result<Self> {
        let lines = std::fs::read_to_string(path)?
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect();
        Ok(Self { lines })
    }

    /// The numbers at `path` (keys into nested objects) of every step that has one.
    fn values<'a>(&'a self, path: &'a [&str]) -> impl Iterator<Item = f64> + 'a {
        self.lines.iter().filter_map(move |line| {
            path.iter()
                .try_fold(line, |value, key| value.get(key))
                .and_then(Value::as_f64)
        })
    }

    /// Sum over the steps that have `key`, divided by all steps.
    fn mean(&self, key: &str) -> f64 {
        self.values(&[key]).sum::<f64>() / self.lines.len().max(1) as f64
    }

    /// A `timings` entry (milliseconds) as a per-step mean in seconds.
    fn mean_timing_s(&self, key: &str) -> f64 {
        self.values(&["timings", key]).sum::<f64>() / self.lines.len().max(1) as f64 / 1000.0
    }

    fn max(&self, path: &[&str]) -> f64 {
        self.values(path).fold(0.0f64, f64::max)
    }

    fn per_step(&self) -> Vec<Value> {
        self.lines
            .iter()
            .map(|line| {
                json!({
                    "step": line.get("step"),
                    "generation_s": line.get("generation_s"),
                    "train_s": line.get("train_s"),
                    "reward_mean": line.get("reward_mean"),
                })
            })
            .collect()
    }
}
