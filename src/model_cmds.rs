//! `rlvr pull`, `rlvr score`, `rlvr export`.

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

pub fn pull(a: &PullArgs) -> Result<()> {
    let args = ModelArgs {
        model: a.model.clone(),
        revision: a.revision.clone(),
        device: Some("cpu".into()),
        dtype: Some("f32".into()),
    };
    let m = args.load()?;
    let cfg = &m.model.config;
    println!(
        "{}",
        json!({
            "model": a.model,
            "path": m.source.path(),
            "source": m.description,
            "architecture": cfg.arch.model_type(),
            "parameters": m.model.num_parameters(),
            "layers": cfg.num_layers,
            "hidden_size": cfg.hidden_size,
            "vocab_size": cfg.vocab_size,
            "chat_template": m.tokenizer.chat_template.is_some(),
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
}

/// Token ids of one score input line (prompt chat-rendered unless `"chat": false`).
pub fn score_ids(m: &LoadedModel, v: &Value) -> Result<Vec<u32>> {
    if let Some(ids) = input_ids(v, m.model.config.vocab_size)? {
        return Ok(ids);
    }
    let prompt = v
        .get("prompt")
        .and_then(Value::as_str)
        .context("each line needs `input_ids`, or `prompt` (+ optional `completion`)")?;
    let completion = v.get("completion").and_then(Value::as_str).unwrap_or("");
    let chat = v.get("chat").and_then(Value::as_bool).unwrap_or(true);
    let mut ids = m.tokenizer.encode_prompt(prompt, chat)?;
    ids.extend(m.tokenizer.encode(completion, false)?);
    Ok(ids)
}

/// Log-prob of token i+1 given ≤ i and the entropy at i, for each row (length n−1 each).
pub fn score_rows(m: &LoadedModel, rows: &[Vec<u32>]) -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
    let logits = m
        .model
        .forward(Batch::padded(rows, 0), Forward::INFERENCE)?;
    let mut out = Vec::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        let l = logits.get(i)?;
        out.push(rlvr_models::logprobs::sequence_scores(&l, r)?);
    }
    Ok(out)
}

pub fn score(a: &ScoreArgs) -> Result<()> {
    let m = a.model.load()?;
    let lines = read_jsonl(&a.input)?;
    let mut rows = Vec::with_capacity(lines.len());
    for (i, v) in lines.iter().enumerate() {
        let ids =
            score_ids(&m, v).with_context(|| format!("{}: entry {}", a.input.display(), i + 1))?;
        if ids.is_empty() {
            bail!("{}: entry {}: no tokens", a.input.display(), i + 1);
        }
        rows.push(ids);
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for chunk in rows.chunks(a.batch_size.max(1)) {
        for (ids, (lp, ent)) in chunk.iter().zip(score_rows(&m, chunk)?) {
            writeln!(
                out,
                "{}",
                json!({ "input_ids": ids, "logprobs": lp, "entropies": ent })
            )?;
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

pub fn export(a: &ExportArgs) -> Result<()> {
    let m = a.model.load()?;
    let dtype = match a.save_dtype.as_str() {
        "f32" | "float32" => DType::F32,
        "bf16" | "bfloat16" => DType::BF16,
        "f16" | "float16" => DType::F16,
        other => bail!("--save-dtype {other:?}: expected f32, bf16 or f16"),
    };
    m.save_hf(&a.out, dtype)
        .with_context(|| format!("exporting to {}", a.out.display()))?;
    eprintln!(
        "rlvr: wrote {} ({} parameters, {:?})",
        a.out.display(),
        m.model.num_parameters(),
        dtype
    );
    Ok(())
}
