//! A loaded model: decoder + tokenizer + where it came from; and saving it as an HF directory.

use std::path::Path;

use candle_core::{DType, Device};
use serde_json::{json, Value};

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::gguf::{self, GgufFile};
use crate::model::Model;
use crate::source::{resolve, ModelSource, ResolveOptions, Resolved};
use crate::tokenizer::{write_file, TextTokenizer};
use crate::weights;

pub struct LoadedModel {
    pub model: Model,
    pub tokenizer: TextTokenizer,
    pub source: ModelSource,
    pub description: String,
    /// `generation_config.json` if the source had one.
    pub generation_config: Option<Value>,
}

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub dtype: DType,
    pub device: Device,
    pub resolve: ResolveOptions,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            dtype: DType::F32,
            device: Device::Cpu,
            resolve: ResolveOptions::default(),
        }
    }
}

/// Resolve `spec` (path, `.gguf`, Hub id or `default`) and load it.
pub fn load(spec: &str, opts: &LoadOptions) -> Result<LoadedModel> {
    let Resolved {
        source,
        description,
    } = resolve(spec, &opts.resolve)?;
    let mut m = load_source(&source, opts.dtype, &opts.device)?;
    m.description = description;
    Ok(m)
}

pub fn load_source(source: &ModelSource, dtype: DType, device: &Device) -> Result<LoadedModel> {
    match source {
        ModelSource::Dir(dir) => {
            let config = ModelConfig::from_hf_file(&dir.join("config.json"))?;
            let tokenizer = TextTokenizer::from_dir(dir)?;
            let (tensors, origin) = weights::load_dir_tensors(dir)?;
            let model = Model::from_tensors(config, tensors, dtype, device, &origin)?;
            let gen_path = dir.join("generation_config.json");
            let generation_config = std::fs::read_to_string(&gen_path)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok());
            Ok(LoadedModel {
                model,
                tokenizer,
                source: source.clone(),
                description: format!("local directory {}", dir.display()),
                generation_config,
            })
        }
        ModelSource::Gguf(path) => {
            let file = GgufFile::open(path)?;
            let config = file.config()?;
            let tokenizer = TextTokenizer::from_gguf(&file)?;
            let tensors = gguf::load_tensors(&file, &config)?;
            let model = Model::from_tensors(config, tensors, dtype, device, path)?;
            Ok(LoadedModel {
                model,
                tokenizer,
                source: source.clone(),
                description: format!("local GGUF file {}", path.display()),
                generation_config: None,
            })
        }
    }
}

impl LoadedModel {
    /// End-of-sequence ids: the config's, the tokenizer's EOS, and `generation_config.json`'s.
    pub fn eos_ids(&self) -> Vec<u32> {
        let mut ids = self.model.config.eos_token_ids.clone();
        ids.extend(self.tokenizer.eos_id());
        if let Some(g) = &self.generation_config {
            match g.get("eos_token_id") {
                Some(Value::Number(n)) => ids.extend(n.as_u64().map(|x| x as u32)),
                Some(Value::Array(a)) => {
                    ids.extend(a.iter().filter_map(Value::as_u64).map(|x| x as u32))
                }
                _ => {}
            }
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Save as an HF directory transformers loads: config.json, model.safetensors (HF names),
    /// tokenizer files, generation_config.json. `dtype` is F32 or BF16 (or F16).
    pub fn save_hf(&self, dir: &Path, dtype: DType) -> Result<()> {
        save_hf_dir(
            &self.model,
            &self.tokenizer,
            self.generation_config.as_ref(),
            &self.eos_ids(),
            dir,
            dtype,
        )
    }
}

/// With LoRA adapters attached, the weights written are the merged ones (`W + s·B·A`).
pub fn save_hf_dir(
    model: &Model,
    tokenizer: &TextTokenizer,
    generation_config: Option<&Value>,
    eos_ids: &[u32],
    dir: &Path,
    dtype: DType,
) -> Result<()> {
    save_hf_dir_with(
        model,
        &model.merged_state_dict()?,
        tokenizer,
        generation_config,
        eos_ids,
        dir,
        dtype,
    )
}

/// [`save_hf_dir`] with given weights (HF names) in place of the model's own, e.g. a trainer's
/// f32 master copies of bf16 weights.
pub fn save_hf_dir_with(
    model: &Model,
    weights: &std::collections::BTreeMap<String, candle_core::Tensor>,
    tokenizer: &TextTokenizer,
    generation_config: Option<&Value>,
    eos_ids: &[u32],
    dir: &Path,
    dtype: DType,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| ModelError::Io {
        path: dir.into(),
        source,
    })?;
    let torch_dtype = match dtype {
        DType::F32 => "float32",
        DType::BF16 => "bfloat16",
        DType::F16 => "float16",
        other => {
            return Err(ModelError::UnsupportedDType {
                path: dir.into(),
                name: "*".into(),
                dtype: format!("{other:?}"),
            })
        }
    };
    let mut cfg = model.config.clone();
    if cfg.bos_token_id.is_none() {
        cfg.bos_token_id = tokenizer.bos_id();
    }
    if cfg.eos_token_ids.is_empty() {
        cfg.eos_token_ids = eos_ids.to_vec();
    }
    let config = serde_json::to_string_pretty(&cfg.to_hf_json(torch_dtype)).map_err(|e| {
        ModelError::Config {
            path: dir.join("config.json"),
            msg: e.to_string(),
        }
    })?;
    write_file(&dir.join("config.json"), config.as_bytes())?;
    weights::save_safetensors(weights, dtype, &dir.join("model.safetensors"))?;
    tokenizer.save(dir)?;
    let gen = match generation_config {
        Some(g) => g.clone(),
        None => {
            let mut g = json!({ "_from_model_config": true, "transformers_version": "4.46.0" });
            if let Some(b) = cfg.bos_token_id {
                g["bos_token_id"] = json!(b);
            }
            match eos_ids {
                [] => {}
                [one] => g["eos_token_id"] = json!(one),
                many => g["eos_token_id"] = json!(many),
            }
            if let Some(p) = tokenizer.pad_id() {
                g["pad_token_id"] = json!(p);
            }
            g
        }
    };
    let gen = serde_json::to_string_pretty(&gen).map_err(|e| ModelError::Config {
        path: dir.join("generation_config.json"),
        msg: e.to_string(),
    })?;
    write_file(&dir.join("generation_config.json"), gen.as_bytes())
}
