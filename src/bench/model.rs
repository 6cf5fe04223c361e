//! The model a benchmark runs: a loaded one, or `random:<preset>` (a known shape with random
//! weights, for speed only), and prompts that fit it. Knows nothing of what is measured.

use anyhow::{Context, Result};
use rlvr_models::{Model, ModelConfig, TextTokenizer};

use crate::common::ModelArgs;

/// A benchmark's model: loaded, or `random:<preset>` (no tokenizer).
pub struct BenchModel {
    pub model: Model,
    pub tokenizer: Option<TextTokenizer>,
    pub eos_ids: Vec<u32>,
}

impl BenchModel {
    pub fn load(args: &ModelArgs) -> Result<Self> {
        let Some(name) = args.model.strip_prefix("random:") else {
            let loaded = args.load()?;
            let eos_ids = loaded.eos_ids();
            return Ok(Self {
                model: loaded.model,
                tokenizer: Some(loaded.tokenizer),
                eos_ids,
            });
        };
        let cfg = ModelConfig::preset(name).with_context(|| {
            format!(
                "unknown random model {name:?} (known: {})",
                rlvr_models::config::PRESETS.join(", ")
            )
        })?;
        let device = crate::common::device(args.device.as_deref())?;
        let dtype = crate::common::dtype(args.dtype.as_deref(), &device)?;
        let model = Model::random(cfg, 7, dtype, &device)?;
        eprintln!(
            "rlvr: model random:{name}: {:.1}M parameters, random weights, {dtype:?} on {device:?}",
            model.num_parameters() as f64 / 1e6
        );
        Ok(Self {
            eos_ids: model.config.eos_token_ids.clone(),
            model,
            tokenizer: None,
        })
    }

    /// `n` prompts: chat-rendered arithmetic questions, or for random weights the token ids of
    /// scripts/bench_transformers_gpu.py (lengths 48..55), so both run the same shapes.
    pub fn prompts(&self, n: usize) -> Result<Vec<Vec<u32>>> {
        match &self.tokenizer {
            Some(tokenizer) => arithmetic_prompts(tokenizer, n),
            None => Ok((0..n)
                .map(|i| {
                    (0..48 + i % 8)
                        .map(|j| 3 + ((j * 7 + i * 13) % 90) as u32)
                        .collect()
                })
                .collect()),
        }
    }
}

/// Chat-rendered arithmetic prompts like the default task's.
fn arithmetic_prompts(tokenizer: &TextTokenizer, n: usize) -> Result<Vec<Vec<u32>>> {
    (0..n)
        .map(|i| {
            let (a, b) = (7 + 13 * i % 90, 3 + 29 * i % 70);
            let question = format!("What is {a} + {b}? Put the final answer in \\boxed{{}}.");
            Ok(tokenizer.encode_prompt(&question, true)?)
        })
        .collect()
}
