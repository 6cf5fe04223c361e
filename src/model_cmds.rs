//! `rlvr pull`, `rlvr score`, `rlvr export`: thin commands over the models crate (resolve and
//! load, per-token scores, HF export). They own flags and output, not the model code.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use candle_core::DType;
use rlvr_models::{Batch, Forward, LoadedModel};
use serde_json::{json, Value};

use crate::common::{input_ids, read_jsonl, ModelArgs};

#[derive(clap::Args, Debug)]
pub struct PullArgs {
    /// Model to resolve: HF directory, .gguf, Hub id or `default`.
    pub model: String,
    #[arg(long)]
    pub revision: Option<String>,
}

pub fn pull(args: &PullArgs) -> Result<()> {
    let model_args = ModelArgs {
        adapter: None,
        model: args.model.clone(),
        revision: args.revision.clone(),
        device: Some("cpu".into()),
        dtype: Some("f32".into()),
    };
    let loaded = model_args.load()?;
    let cfg = &loaded.model.config;
    println!(
        "{}",
        json!({
            "model": args.model,
            "path": loaded.source.path(),
            "source": loaded.description,
            "architecture": cfg.arch.model_type(),
            "parameters": loaded.model.num_parameters(),
            "layers": cfg.num_layers,
            "hidden_size": cfg.hidden_size,
            "vocab_size": cfg.vocab_size,
            "chat_template": loaded.tokenizer.chat_template.is_some(),
        })
    );
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// JSONL: {"input_ids": [...]} or {"prompt": "...", "completion": "...", "chat": true}.
    #[arg(long)]
    pub input: PathBuf,
    /// Sequences per forward pass.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Also write every position's logits (`"logits"`: one vocabulary-sized row per token).
    #[arg(long)]
    pub logits: bool,
}

/// Token ids of one score input line (prompt chat-rendered unless `"chat": false`).
pub fn score_ids(loaded: &LoadedModel, line: &Value) -> Result<Vec<u32>> {
    if let Some(ids) = input_ids(line, loaded.model.config.vocab_size)? {
        return Ok(ids);
    }
    let prompt = line
        .get("prompt")
        .and_then(Value::as_str)
        .context("each line needs `input_ids`, or `prompt` (+ optional `completion`)")?;
    let completion = line.get("completion").and_then(Value::as_str).unwrap_or("");
    let chat = line.get("chat").and_then(Value::as_bool).unwrap_or(true);
    let mut ids = loaded.tokenizer.encode_prompt(prompt, chat)?;
    ids.extend(loaded.tokenizer.encode(completion, false)?);
    Ok(ids)
}

/// Log-prob of token i+1 given ≤ i and the entropy at i, for each row (length n−1 each).
pub fn score_rows(loaded: &LoadedModel, rows: &[Vec<u32>]) -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
    let logits = loaded
        .model
        .forward(Batch::padded(rows, 0), Forward::INFERENCE)?;
    let mut out = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let row_logits = logits.get(i)?;
        out.push(rlvr_models::logprobs::sequence_scores(&row_logits, row)?);
    }
    Ok(out)
}

pub fn score(args: &ScoreArgs) -> Result<()> {
    let loaded = args.model.load()?;
    let lines = read_jsonl(&args.input)?;
    let mut rows = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        let entry = || format!("{}: entry {}", args.input.display(), i + 1);
        let ids = score_ids(&loaded, line).with_context(entry)?;
        if ids.is_empty() {
            bail!("{}: no tokens", entry());
        }
        rows.push(ids);
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for chunk in rows.chunks(args.batch_size.max(1)) {
        let logits = match args.logits {
            true => Some(
                loaded
                    .model
                    .forward(Batch::padded(chunk, 0), Forward::INFERENCE)?,
            ),
            false => None,
        };
        for (i, (ids, (logprobs, entropies))) in
            chunk.iter().zip(score_rows(&loaded, chunk)?).enumerate()
        {
            let mut line =
                json!({ "input_ids": ids, "logprobs": logprobs, "entropies": entropies });
            if let Some(l) = &logits {
                let rows: Vec<Vec<f32>> = l.get(i)?.narrow(0, 0, ids.len())?.to_vec2()?;
                line["logits"] = json!(rows);
            }
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Output directory (created).
    #[arg(long)]
    pub out: PathBuf,
    /// Weight dtype in the export: f32 or bf16.
    #[arg(long, default_value = "f32")]
    pub save_dtype: String,
}

pub fn export(args: &ExportArgs) -> Result<()> {
    let loaded = args.model.load()?;
    let dtype = match args.save_dtype.as_str() {
        "f32" | "float32" => DType::F32,
        "bf16" | "bfloat16" => DType::BF16,
        "f16" | "float16" => DType::F16,
        other => bail!("--save-dtype {other:?}: expected f32, bf16 or f16"),
    };
    loaded
        .save_hf(&args.out, dtype)
        .with_context(|| format!("exporting to {}", args.out.display()))?;
    eprintln!(
        "rlvr: wrote {} ({} parameters, {:?})",
        args.out.display(),
        loaded.model.num_parameters(),
        dtype
    );
    Ok(())
}
