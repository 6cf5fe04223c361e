//! `rlvr generate`: sample completions with the paged runtime.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use rlvr_models::LoadedModel;
use rlvr_runtime::{Engine, EngineConfig, Request, SamplingParams};
use serde_json::{json, Value};

use crate::common::{input_ids, read_jsonl, ModelArgs};

#[derive(clap::Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Samples per prompt (G).
    #[arg(short = 'n', long = "n", default_value_t = 1)]
    pub n: usize,
    #[arg(long, default_value_t = 256)]
    pub max_new_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f32,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// 0 = off.
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    #[arg(long, default_value_t = 0.0)]
    pub min_p: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stop when this string appears (repeatable).
    #[arg(long = "stop")]
    pub stop: Vec<String>,
    /// Keep generating through EOS.
    #[arg(long)]
    pub ignore_eos: bool,
}

impl SamplingArgs {
    pub fn params(&self, eos: Vec<u32>) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            min_p: self.min_p,
            seed: self.seed,
            max_new_tokens: self.max_new_tokens,
            stop_token_ids: eos,
            stop_strings: self.stop.clone(),
            ignore_eos: self.ignore_eos,
        }
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct EngineArgs {
    /// KV cache memory budget in MiB (default 1024; on CUDA only when given and
    /// --gpu-memory-fraction is not).
    #[arg(long)]
    pub kv_cache_mb: Option<usize>,
    /// CUDA: size the KV pool so that this process uses at most this fraction of the GPU's
    /// memory (default 0.9 unless --kv-cache-mb is given).
    #[arg(long)]
    pub gpu_memory_fraction: Option<f64>,
    /// Tokens per KV block.
    #[arg(long, default_value_t = 16)]
    pub block_size: usize,
    /// Samples decoded together at most.
    #[arg(long, default_value_t = 256)]
    pub max_num_seqs: usize,
    /// Prompt tokens per prefill step.
    #[arg(long, default_value_t = 2048)]
    pub max_batch_tokens: usize,
}

impl EngineArgs {
    pub fn config(&self) -> EngineConfig {
        EngineConfig {
            block_size: self.block_size,
            kv_cache_bytes: self.kv_cache_mb.unwrap_or(1024) << 20,
            num_blocks: None,
            gpu_memory_fraction: match (self.gpu_memory_fraction, self.kv_cache_mb) {
                (Some(f), _) => Some(f),
                (None, Some(_)) => None,
                (None, None) => Some(0.9),
            },
            max_batch_tokens: self.max_batch_tokens,
            max_num_seqs: self.max_num_seqs,
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// One prompt.
    #[arg(long, conflicts_with = "prompts")]
    pub prompt: Option<String>,
    /// JSONL of prompts: {"prompt": "..."} (or "question"/"problem"), or {"input_ids": [...]}.
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Render prompts with the chat template (default).
    #[arg(long, overrides_with = "no_chat")]
    pub chat: bool,
    /// Use prompts as raw text.
    #[arg(long)]
    pub no_chat: bool,
    /// One JSON line per completion, with token ids, log-probs and entropies.
    #[arg(long)]
    pub json: bool,
}

/// Token ids of one prompt line or text.
pub fn prompt_ids(m: &LoadedModel, v: &Value, chat: bool) -> Result<Vec<u32>> {
    if let Some(ids) = input_ids(v, m.model.config.vocab_size)? {
        return Ok(ids);
    }
    let text = ["prompt", "question", "problem"]
        .iter()
        .find_map(|k| v.get(*k).and_then(Value::as_str))
        .context("each line needs `prompt` (or `question` / `problem`) or `input_ids`")?;
    Ok(m.tokenizer.encode_prompt(text, chat)?)
}

pub fn generate(a: &GenerateArgs) -> Result<()> {
    let m = a.model.load()?;
    let chat = !a.no_chat;
    let prompts: Vec<Vec<u32>> = match (&a.prompt, &a.prompts) {
        (Some(p), None) => vec![m.tokenizer.encode_prompt(p, chat)?],
        (None, Some(file)) => read_jsonl(file)?
            .iter()
            .enumerate()
            .map(|(i, v)| {
                prompt_ids(&m, v, chat)
                    .with_context(|| format!("{}: entry {}", file.display(), i + 1))
            })
            .collect::<Result<_>>()?,
        _ => bail!("pass --prompt TEXT or --prompts FILE.jsonl"),
    };
    let params = a.sampling.params(m.eos_ids());
    let tokenizer = m.tokenizer.clone();
    let model = Arc::new(m.model);
    let mut engine = Engine::new(model, Some(tokenizer.clone()), a.engine.config())?;
    let stream = !a.json && prompts.len() == 1 && a.sampling.n == 1;
    if stream {
        // Print text deltas as tokens arrive (decode the whole prefix: merges can change bytes).
        let state = Arc::new(Mutex::new((Vec::<u32>::new(), String::new())));
        let tok = tokenizer.clone();
        let st = state.clone();
        engine.set_on_token(Some(Box::new(move |_, _, t| {
            let mut g = st.lock().unwrap_or_else(|p| p.into_inner());
            g.0.push(t);
            if let Ok(text) = tok.decode(&g.0, true) {
                if text.len() > g.1.len() && text.starts_with(g.1.as_str()) {
                    print!("{}", &text[g.1.len()..]);
                    let _ = std::io::stdout().flush();
                    g.1 = text;
                }
            }
        })));
    }
    let reqs = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| Request {
            prompt_ids: p.clone(),
            params: SamplingParams {
                seed: params.seed.wrapping_add(i as u64),
                ..params.clone()
            },
            n: a.sampling.n,
        })
        .collect();
    let out = engine.generate(reqs)?;
    let stdout = std::io::stdout();
    let mut w = stdout.lock();
    for c in &out {
        if a.json {
            writeln!(
                w,
                "{}",
                json!({
                    "prompt_index": c.request_index,
                    "sample_index": c.sample_index,
                    "prompt_token_ids": c.prompt_token_ids,
                    "text": c.text,
                    "token_ids": c.token_ids,
                    "logprobs": c.logprobs,
                    "sampling_logprobs": c.sampling_logprobs,
                    "entropies": c.entropies,
                    "policy_versions": c.policy_versions,
                    "finish_reason": c.finish_reason.as_str(),
                    "preempted": c.preempted,
                    "prompt_tokens": c.prompt_tokens(),
                    "completion_tokens": c.completion_tokens(),
                })
            )?;
        } else if stream {
            writeln!(w)?;
        } else {
            writeln!(
                w,
                "=== prompt {} sample {} ({}) ===\n{}",
                c.request_index,
                c.sample_index,
                c.finish_reason.as_str(),
                c.text
            )?;
        }
    }
    Ok(())
}
