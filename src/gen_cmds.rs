//! `rlvr generate`: sample completions with the paged runtime; and the sampling and engine
//! flags other commands share. Owns flags and printing; the generation is the runtime's.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use rlvr_models::{LoadedModel, TextTokenizer};
use rlvr_runtime::{Completion, Engine, EngineConfig, Request, SamplingParams};
use serde_json::{json, Value};

use crate::common::{input_ids, read_jsonl, ModelArgs};
use crate::prompt_fit::{fit, OnLongPrompt, Prompt, PromptLimit};
use crate::tools::cli::ToolArgs;
use crate::tools::render::{encode_prompt, CallSyntax, ToolFormat};
use crate::tools::rollout::{generate_with_tools, ToolStats};
use crate::tools::Tools;

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
            record_support: false,
            ..Default::default()
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
    /// A prompt longer than the model's context (or the KV pool) minus --max-new-tokens: fail
    /// before generating (default), or leave it out (`prompt_index` keeps counting it).
    #[arg(long, value_enum, default_value_t = OnLongPrompt::Error)]
    pub on_long_prompt: OnLongPrompt,
    #[command(flatten)]
    pub tools: ToolArgs,
}

/// Token ids of one prompt line or text (with the tools offered when `tools` is given).
pub fn prompt_ids(
    loaded: &LoadedModel,
    line: &Value,
    chat: bool,
    tools: Option<&ToolFormat>,
) -> Result<Vec<u32>> {
    if let Some(ids) = input_ids(line, loaded.model.config.vocab_size)? {
        return Ok(ids);
    }
    let text = ["prompt", "question", "problem"]
        .iter()
        .find_map(|key| line.get(*key).and_then(Value::as_str))
        .context("each line needs `prompt` (or `question` / `problem`) or `input_ids`")?;
    encode_prompt(&loaded.tokenizer, text, chat, tools)
}

/// The tools `--tools` / `--tools-config` offer, written for this model; None without tools.
fn tool_setup(args: &GenerateArgs, loaded: &LoadedModel, chat: bool) -> Result<Option<Tools>> {
    let Some(tools) = args.tools.section()?.for_model(&loaded.tokenizer, chat)? else {
        return Ok(None);
    };
    if chat && !tools.1.native() {
        eprintln!(
            "rlvr: this chat template renders no tools; tools go into a system message and \
             results into `tool` turns in the Hermes/Qwen2.5 form"
        );
    } else if let CallSyntax::BareJson { .. } = tools.1.syntax() {
        eprintln!(
            "rlvr: this chat template writes tool calls as bare JSON turns (Llama 3); a turn \
             that is no call ends the sample"
        );
    }
    Ok(Some(tools))
}

pub fn generate(args: &GenerateArgs) -> Result<()> {
    let loaded = args.model.load()?;
    let chat = !args.no_chat;
    let tools = tool_setup(args, &loaded, chat)?;
    let prompts = read_prompts(args, &loaded, chat, tools.as_ref().map(|t| &t.1))?;
    let params = args.sampling.params(loaded.eos_ids());
    let limit = PromptLimit::new(&loaded.model, &args.engine.config(), params.max_new_tokens)?;
    let requests = fitting_requests(args, prompts, &params, &limit)?;
    let index: Vec<usize> = requests.iter().map(|(i, _)| *i).collect();
    let tokenizer = loaded.tokenizer.clone();
    let model = Arc::new(loaded.model);
    let mut engine = Engine::new(model, Some(tokenizer.clone()), args.engine.config())?;
    let requests: Vec<Request> = requests.into_iter().map(|(_, r)| r).collect();
    if let Some((toolbox, format)) = &tools {
        let rollouts = generate_with_tools(&mut engine, requests, &tokenizer, format, toolbox)?;
        let (mut completions, stats): (Vec<_>, Vec<_>) = rollouts
            .into_iter()
            .map(|r| (r.completion, r.stats))
            .unzip();
        for c in &mut completions {
            c.request_index = index[c.request_index];
        }
        return print_tool_completions(&completions, &stats, args.json);
    }
    let stream = !args.json && index.len() == 1 && args.sampling.n == 1;
    if stream {
        engine.set_on_token(Some(print_text_deltas(tokenizer)));
    }
    let mut completions = engine.generate(requests)?;
    for c in &mut completions {
        c.request_index = index[c.request_index];
    }
    print_completions(&completions, args.json, stream)
}

/// One request per prompt that fits under `limit` (the others fail the command or are left
/// out, as `--on-long-prompt` says), with its index among all prompts. Prompt i is seeded with
/// seed + i, whether or not others were left out.
fn fitting_requests(
    args: &GenerateArgs,
    prompts: Vec<Vec<u32>>,
    params: &SamplingParams,
    limit: &PromptLimit,
) -> Result<Vec<(usize, Request)>> {
    let origin = match &args.prompts {
        Some(file) => file.display().to_string(),
        None => "--prompt".to_string(),
    };
    let lengths: Vec<Prompt> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| Prompt {
            label: format!("prompt {i}"),
            tokens: p.len(),
        })
        .collect();
    let keep = fit(&lengths, &origin, "prompts", limit, args.on_long_prompt)?;
    let requests = prompts.into_iter().enumerate().zip(keep);
    Ok(requests
        .filter(|(_, keep)| *keep)
        .map(|((i, prompt_ids), _)| {
            let params = SamplingParams {
                seed: params.seed.wrapping_add(i as u64),
                ..params.clone()
            };
            let n = args.sampling.n;
            (
                i,
                Request {
                    prompt_ids,
                    params,
                    n,
                },
            )
        })
        .collect())
}

/// `--prompt TEXT` or the lines of `--prompts FILE.jsonl`, as token ids.
fn read_prompts(
    args: &GenerateArgs,
    loaded: &LoadedModel,
    chat: bool,
    tools: Option<&ToolFormat>,
) -> Result<Vec<Vec<u32>>> {
    match (&args.prompt, &args.prompts) {
        (Some(prompt), None) => Ok(vec![encode_prompt(&loaded.tokenizer, prompt, chat, tools)?]),
        (None, Some(file)) => read_jsonl(file)?
            .iter()
            .enumerate()
            .map(|(i, line)| {
                prompt_ids(loaded, line, chat, tools)
                    .with_context(|| format!("{}: entry {}", file.display(), i + 1))
            })
            .collect(),
        _ => bail!("pass --prompt TEXT or --prompts FILE.jsonl"),
    }
}

/// A token callback that prints text deltas as tokens arrive (it decodes the whole prefix each
/// time: merges can change earlier bytes).
fn print_text_deltas(tokenizer: TextTokenizer) -> Box<dyn FnMut(usize, usize, u32) + Send> {
    let (mut tokens, mut printed) = (Vec::<u32>::new(), String::new());
    Box::new(move |_, _, token| {
        tokens.push(token);
        if let Ok(text) = tokenizer.decode(&tokens, true) {
            if text.len() > printed.len() && text.starts_with(printed.as_str()) {
                print!("{}", &text[printed.len()..]);
                let _ = std::io::stdout().flush();
                printed = text;
            }
        }
    })
}

/// One JSON line per completion (`--json`), a newline after streamed text, or a text block.
fn print_completions(completions: &[Completion], json: bool, streamed: bool) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for completion in completions {
        if json {
            writeln!(out, "{}", completion_json(completion))?;
        } else if streamed {
            writeln!(out)?;
        } else {
            writeln!(
                out,
                "=== prompt {} sample {} ({}) ===\n{}",
                completion.request_index,
                completion.sample_index,
                completion.finish_reason.as_str(),
                completion.text
            )?;
        }
    }
    Ok(())
}

/// Tool rollouts: the whole conversation after the prompt (tool results included) and what
/// each sample did with tools; with `--json`, per-token `inserted` flags too.
fn print_tool_completions(
    completions: &[Completion],
    stats: &[ToolStats],
    json: bool,
) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for (c, st) in completions.iter().zip(stats) {
        if json {
            let mut line = completion_json(c);
            line["inserted"] = json!(c.generated_mask().iter().map(|g| !g).collect::<Vec<_>>());
            line["tools"] = serde_json::to_value(st)?;
            writeln!(out, "{line}")?;
        } else {
            writeln!(
                out,
                "=== prompt {} sample {} ({}; {} turns, {} tool calls, {} errors, {:.2}s in tools) ===\n{}",
                c.request_index,
                c.sample_index,
                c.finish_reason.as_str(),
                st.turns,
                st.calls,
                st.errors,
                st.tool_s,
                c.text
            )?;
        }
    }
    Ok(())
}

fn completion_json(c: &Completion) -> Value {
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
}
