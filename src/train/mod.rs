//! `rlvr train` and `rlvr eval`: the main job.

mod config;
mod eval;
mod pipeline;
mod plots;
mod task;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use rlvr_models::LoadedModel;
use rlvr_runtime::EngineConfig;
use rlvr_trainer::Trainer;
use serde_json::{json, Value};

pub use config::RunConfig;
use eval::{evaluate, EvalResult, EvalSpec};
use pipeline::{Buffer, Event, GeneratorSpec, Pipeline};
use task::{encode_problem, Dataset, Problem};

use crate::common::ModelArgs;

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
    /// Set any config key: `--set trainer.num_minibatches=2 --set task.digits=2`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Stop as if interrupted after this many steps (checkpoint, exit non-zero): for tests.
    #[arg(long, hide = true)]
    pub stop_after: Option<u64>,
}

impl TrainArgs {
    fn overrides(&self) -> Result<Vec<Value>> {
        let mut o = vec![];
        let mut put = |k: &str, v: Value| o.push(json!({ k: v }));
        if let Some(v) = &self.model {
            put("model", json!(v));
        }
        if let Some(v) = &self.data {
            put("data", json!(v));
        }
        if let Some(v) = &self.algo {
            put("algo", json!(v));
        }
        if let Some(v) = &self.optimizer {
            put("optimizer", json!(v));
        }
        if let Some(v) = self.group_size {
            put("group_size", json!(v));
        }
        if let Some(v) = self.prompts_per_step {
            put("prompts_per_step", json!(v));
        }
        if let Some(v) = self.max_steps {
            put("max_steps", json!(v));
        }
        if let Some(v) = self.max_new_tokens {
            put("max_new_tokens", json!(v));
        }
        if let Some(v) = self.lr {
            put("lr", json!(v));
        }
        if let Some(v) = self.seed {
            put("seed", json!(v));
        }
        if let Some(v) = self.max_staleness {
            put("max_staleness", json!(v));
        }
        if let Some(v) = &self.device {
            put("device", json!(v));
        }
        for s in &self.set {
            o.push(config::parse_set(s)?);
        }
        Ok(o)
    }
}

fn default_run_dir() -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    PathBuf::from("runs").join(format!("run-{secs}"))
}

fn load_model(cfg: &RunConfig) -> Result<LoadedModel> {
    ModelArgs {
        model: cfg.model.clone(),
        revision: None,
        device: cfg.device.clone(),
        dtype: cfg.dtype.clone(),
    }
    .load()
}

fn engine_config(cfg: &RunConfig) -> EngineConfig {
    EngineConfig {
        block_size: cfg.engine.block_size,
        kv_cache_bytes: cfg.engine.kv_cache_mb << 20,
        num_blocks: None,
        gpu_memory_fraction: (cfg.engine.gpu_memory_fraction > 0.0)
            .then_some(cfg.engine.gpu_memory_fraction),
        max_batch_tokens: cfg.engine.max_batch_tokens,
        max_num_seqs: cfg.engine.max_num_seqs,
    }
}

/// Append one JSON line to a file.
fn append_jsonl(path: &Path, v: &Value) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(f, "{v}").with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Keep only the lines whose `step` is ≤ `max_step` (a resumed run rewrites what came after
/// its checkpoint).
fn truncate_jsonl(path: &Path, max_step: u64) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .and_then(|v| v.get("step").and_then(Value::as_u64))
                .is_some_and(|s| s <= max_step)
        })
        .collect();
    let mut out = kept.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    std::fs::write(path, out).with_context(|| format!("rewriting {}", path.display()))
}

struct Evaluator {
    problems: Vec<Problem>,
    prompts: Vec<Vec<u32>>,
}

impl Evaluator {
    fn run(
        &self,
        m: &Arc<rlvr_models::Model>,
        tok: &rlvr_models::TextTokenizer,
        cfg: &RunConfig,
        eos: &[u32],
    ) -> Result<EvalResult> {
        let vc = cfg.verifier();
        evaluate(
            m,
            tok,
            EngineConfig {
                // A second pool beside the generator's: a fixed size, not a share of the GPU.
                kv_cache_bytes: (cfg.engine.kv_cache_mb << 20) / 2,
                gpu_memory_fraction: None,
                ..engine_config(cfg)
            },
            &EvalSpec {
                prompts: &self.prompts,
                problems: &self.problems,
                k: cfg.eval_k,
                temperature: cfg.temperature,
                max_new_tokens: cfg.max_new_tokens,
                eos: eos.to_vec(),
                seed: cfg.seed ^ 0xE7A1,
                verifier: &vc,
            },
        )
    }
}

pub fn train(args: &TrainArgs) -> Result<()> {
    let overrides = args.overrides()?;
    let (cfg, run_dir, resuming) = match &args.resume {
        Some(dir) => {
            let file = dir.join("config.toml");
            if !file.is_file() {
                bail!("{} holds no run (no config.toml) to resume", dir.display());
            }
            (
                RunConfig::build(Some(&file), &overrides)?,
                dir.clone(),
                true,
            )
        }
        None => {
            let cfg = RunConfig::build(args.config.as_deref(), &overrides)?;
            let dir = args.out.clone().unwrap_or_else(default_run_dir);
            if dir.join("config.toml").exists() {
                if !args.force {
                    bail!(
                        "{} already holds a run: continue it with `rlvr train --resume {}`, or pass --force to overwrite it",
                        dir.display(),
                        dir.display()
                    );
                }
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("removing {}", dir.display()))?;
            }
            (cfg, dir, false)
        }
    };
    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    std::fs::write(run_dir.join("config.toml"), cfg.to_toml()?).context("writing config.toml")?;
    let ckpt_root = run_dir.join("checkpoints");
    let metrics_path = run_dir.join("metrics.jsonl");
    let eval_path = run_dir.join("eval.jsonl");

    let loaded = load_model(&cfg)?;
    if cfg.chat && loaded.tokenizer.chat_template.is_none() {
        bail!(
            "model {:?} has no chat template: set `chat = false` (or --set chat=false) to use raw prompts",
            cfg.model
        );
    }
    let dataset = Arc::new(Dataset::load(&cfg)?);
    let eval_problems = dataset.eval_set(cfg.eval_size);
    let evaluator = Evaluator {
        prompts: eval_problems
            .iter()
            .map(|p| encode_problem(&loaded.tokenizer, &cfg, p))
            .collect::<Result<_>>()?,
        problems: eval_problems,
    };
    let eos = loaded.eos_ids();
    let tokenizer = loaded.tokenizer.clone();
    let generation_config = loaded.generation_config.clone();
    let model = Arc::new(loaded.model);
    let weights_lock = Arc::new(RwLock::new(()));
    let mut trainer =
        Trainer::new(model.clone(), cfg.trainer.clone())?.with_weight_lock(weights_lock.clone());

    let mut buffer = Buffer::default();
    let mut step = 0u64;
    if resuming {
        if let Some(ck) = rlvr_trainer::latest_checkpoint(&ckpt_root)? {
            let cursor = trainer.load_checkpoint(&ck)?;
            step = trainer.train_step_count();
            if let Some(p) = cursor.get("pending") {
                buffer =
                    serde_json::from_value(p.clone()).context("checkpoint: pending batches")?;
            }
            eprintln!(
                "rlvr: resuming {} from {} (step {step})",
                run_dir.display(),
                ck.display()
            );
        } else {
            eprintln!(
                "rlvr: {} has no checkpoint yet: starting from step 0",
                run_dir.display()
            );
        }
        truncate_jsonl(&metrics_path, step)?;
        truncate_jsonl(&eval_path, step)?;
    }

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        // A second Ctrl-C kills at once.
        let _ = ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!(
                "\nrlvr: interrupted: finishing the current step, then writing a checkpoint…"
            );
        });
    }

    let log_eval = |step: u64, r: &EvalResult| -> Result<()> {
        let mut v = serde_json::to_value(r)?;
        v["step"] = json!(step);
        append_jsonl(&eval_path, &v)?;
        eprintln!(
            "rlvr: eval @ step {step}: greedy accuracy {:.3}{} on {} held-out problems ({:.1}s)",
            r.greedy_accuracy,
            if r.k > 0 {
                format!(
                    ", mean@{k} {:.3}, pass@{k} {:.3}",
                    r.mean_at_k,
                    r.pass_at_k,
                    k = r.k
                )
            } else {
                String::new()
            },
            r.problems,
            r.wall_s
        );
        Ok(())
    };
    if step == 0 && cfg.eval_size > 0 {
        log_eval(0, &evaluator.run(&model, &tokenizer, &cfg, &eos)?)?;
    }

    let first_gen = step + buffer.batches.len() as u64;
    let pipeline = Pipeline::start(GeneratorSpec {
        model: model.clone(),
        tokenizer: tokenizer.clone(),
        dataset: dataset.clone(),
        cfg: cfg.clone(),
        engine: engine_config(&cfg),
        eos: eos.clone(),
        weights_lock: weights_lock.clone(),
        stop: stop.clone(),
        next_batch: first_gen,
        trained: step,
    })?;

    let tty = std::io::stdout().is_terminal();
    let bar = if tty {
        let b = indicatif::ProgressBar::new(cfg.max_steps);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  ETA {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.set_position(step);
        Some(b)
    } else {
        None
    };
    let run_start = Instant::now();
    let mut generator_end: Option<u64> = None;
    let mut interrupted = false;
    let b = cfg.prompts_per_step;
    let cursor = |buffer: &Buffer| json!({ "pending": buffer });
    while step < cfg.max_steps {
        // Wait for batch `step` and (for determinism) batch `step + k`.
        let need_until = (step + cfg.max_staleness).min(cfg.max_steps - 1);
        let t_wait = Instant::now();
        while !(step..=need_until)
            .all(|n| buffer.complete(n, b) || generator_end.is_some_and(|e| n >= e))
        {
            match pipeline.events.recv() {
                Ok(Event::Scored(job)) => buffer.push(*job),
                Ok(Event::GeneratorDone(e)) => generator_end = Some(e),
                Ok(Event::Failed(e)) => bail!("generation failed: {e}"),
                Err(_) => bail!("the generator stopped unexpectedly"),
            }
        }
        let wait_s = t_wait.elapsed().as_secs_f64();
        if !buffer.complete(step, b) {
            eprintln!("rlvr: the dataset is exhausted after {step} steps");
            break;
        }
        if stop.load(Ordering::SeqCst) || args.stop_after.is_some_and(|s| step >= s) {
            interrupted = true;
            break;
        }
        let jobs = buffer.take(step);
        let groups: Vec<_> = jobs.iter().map(|j| j.group.clone()).collect();
        let t_train = Instant::now();
        let m = trainer.train_step(&groups)?;
        let train_s = t_train.elapsed().as_secs_f64();
        step += 1;
        pipeline.trained(step);

        let rewards: Vec<f64> = groups
            .iter()
            .flat_map(|g| g.samples.iter().map(|s| s.reward))
            .collect();
        let n = rewards.len().max(1) as f64;
        let mean = rewards.iter().sum::<f64>() / n;
        let std = (rewards.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n).sqrt();
        let correct = jobs
            .iter()
            .flat_map(|j| j.correct.iter())
            .filter(|c| **c)
            .count() as f64
            / n;
        let boxed = jobs
            .iter()
            .flat_map(|j| j.boxed.iter())
            .filter(|c| **c)
            .count() as f64
            / n;
        let resp_len = groups
            .iter()
            .flat_map(|g| g.samples.iter().map(|s| s.completion_ids.len()))
            .sum::<usize>() as f64
            / n;
        let gen_s = jobs.first().map(|j| j.gen_s).unwrap_or(0.0);
        let gen_tokens = jobs.first().map(|j| j.generated_tokens).unwrap_or(0);
        let verify_s: f64 = jobs.iter().map(|j| j.verify_s).sum();
        let mut line = json!({
            "step": step,
            "reward_mean": mean,
            "reward_std": std,
            "accuracy": correct,
            "boxed_frac": boxed,
            "response_length": resp_len,
            "staleness_max": jobs.iter().map(|j| (step - 1).saturating_sub(j.group.t_start)).max().unwrap_or(0),
            "generation_s": gen_s,
            "verification_s": verify_s,
            "train_s": train_s,
            "wait_s": wait_s,
            "generated_tokens": gen_tokens,
            "generation_tokens_per_s": gen_tokens as f64 / gen_s.max(1e-9),
            "elapsed_s": run_start.elapsed().as_secs_f64(),
        });
        if let (Some(o), Value::Object(t)) = (line.as_object_mut(), serde_json::to_value(&m)?) {
            for (k, v) in t {
                o.entry(k).or_insert(v);
            }
        }
        append_jsonl(&metrics_path, &line)?;
        if let Err(e) = plots::draw_all(&run_dir) {
            eprintln!("rlvr: plots not updated: {e:#}");
        }
        let summary = format!(
            "step {step}/{}: reward {mean:.3} acc {correct:.3} len {resp_len:.1} H {:.3} s2t {:.1e} clip {:.3} | gen {gen_s:.1}s train {train_s:.1}s {:.0} tok/s",
            cfg.max_steps,
            m.entropy_mean,
            m.s2t_masked_frac,
            m.clip_frac,
            gen_tokens as f64 / gen_s.max(1e-9)
        );
        match &bar {
            Some(b) => {
                b.set_position(step);
                b.set_message(summary);
            }
            // Logs go to stderr: stdout stays machine-readable (`rlvr bench step` prints JSON).
            None => eprintln!("{summary}"),
        }
        if cfg.checkpoint_every > 0 && step % cfg.checkpoint_every == 0 && step < cfg.max_steps {
            trainer.save_checkpoint(&ckpt_root, &cursor(&buffer), cfg.keep_checkpoints)?;
        }
        if cfg.eval_every > 0
            && step % cfg.eval_every == 0
            && step < cfg.max_steps
            && cfg.eval_size > 0
        {
            log_eval(step, &evaluator.run(&model, &tokenizer, &cfg, &eos)?)?;
        }
    }
    if let Some(b) = &bar {
        b.finish();
    }
    // Batches generated but not trained go into the checkpoint.
    while let Ok(ev) = pipeline.events.try_recv() {
        if let Event::Scored(job) = ev {
            if job.batch >= step && job.batch <= step + cfg.max_staleness {
                buffer.push(*job);
            }
        }
    }
    buffer
        .batches
        .retain(|n, v| *n >= step && *n < step + cfg.max_staleness.max(1) && v.len() == b);
    if interrupted {
        let ck = trainer.save_checkpoint(&ckpt_root, &cursor(&buffer), cfg.keep_checkpoints)?;
        pipeline.shutdown(false);
        eprintln!(
            "rlvr: stopped at step {step}; checkpoint {}. Resume with: rlvr train --resume {}",
            ck.display(),
            run_dir.display()
        );
        std::process::exit(130);
    }
    pipeline.shutdown(true);
    trainer.save_checkpoint(
        &ckpt_root,
        &cursor(&Buffer::default()),
        cfg.keep_checkpoints,
    )?;
    if cfg.eval_size > 0 {
        log_eval(step, &evaluator.run(&model, &tokenizer, &cfg, &eos)?)?;
    }
    if let Err(e) = plots::draw_all(&run_dir) {
        eprintln!("rlvr: plots not updated: {e:#}");
    }
    if cfg.export_dtype != "none" {
        let dtype = if cfg.export_dtype == "bf16" {
            candle_core::DType::BF16
        } else {
            candle_core::DType::F32
        };
        let out = run_dir.join("final");
        rlvr_models::save_hf_dir_with(
            &model,
            &trainer.full_precision_state_dict(),
            &tokenizer,
            generation_config.as_ref(),
            &eos,
            &out,
            dtype,
        )?;
        eprintln!("rlvr: exported the trained model to {}", out.display());
    }
    eprintln!(
        "rlvr: done: {step} steps in {:.1}s; run directory {}",
        run_start.elapsed().as_secs_f64(),
        run_dir.display()
    );
    Ok(())
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

pub fn eval_cmd(a: &EvalArgs) -> Result<()> {
    let mut overrides = vec![
        json!({ "data": a.data, "eval_size": a.size, "eval_k": a.k, "max_new_tokens": a.max_new_tokens, "model": a.model.model }),
    ];
    for s in &a.set {
        overrides.push(config::parse_set(s)?);
    }
    let cfg = RunConfig::build(None, &overrides)?;
    let m = a.model.load()?;
    let dataset = Dataset::load(&cfg)?;
    let problems = dataset.eval_set(cfg.eval_size);
    let prompts = problems
        .iter()
        .map(|p| encode_problem(&m.tokenizer, &cfg, p))
        .collect::<Result<_>>()?;
    let eos = m.eos_ids();
    let ev = Evaluator { problems, prompts };
    let model = Arc::new(m.model);
    let r = ev.run(&model, &m.tokenizer, &cfg, &eos)?;
    println!("{}", serde_json::to_string(&r)?);
    Ok(())
}
