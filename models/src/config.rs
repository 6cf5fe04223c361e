//! Model configuration: one parametrised decoder for Llama / SmolLM2 / Qwen2 / Qwen3,
//! read from HF `config.json` or GGUF metadata and written back as HF `config.json`.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{ModelError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    /// Llama 2/3.x and SmolLM2 (HF `model_type = "llama"`).
    Llama,
    /// Qwen2 / Qwen2.5: bias on q, k, v.
    Qwen2,
    /// Qwen3: RMSNorm on q and k per head, no bias.
    Qwen3,
}

impl Architecture {
    pub fn model_type(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Qwen2 => "qwen2",
            Architecture::Qwen3 => "qwen3",
        }
    }

    pub fn hf_class(self) -> &'static str {
        match self {
            Architecture::Llama => "LlamaForCausalLM",
            Architecture::Qwen2 => "Qwen2ForCausalLM",
            Architecture::Qwen3 => "Qwen3ForCausalLM",
        }
    }

    pub fn parse(model_type: &str) -> Option<Self> {
        match model_type {
            "llama" | "smollm2" | "smollm" => Some(Architecture::Llama),
            "qwen2" => Some(Architecture::Qwen2),
            "qwen3" => Some(Architecture::Qwen3),
            _ => None,
        }
    }
}

/// Llama-3 style frequency-dependent RoPE scaling (`rope_type = "llama3"`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Llama3RopeScaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub arch: Architecture,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: Option<Llama3RopeScaling>,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// Bias on the q, k, v projections (Qwen2; Llama with `attention_bias`).
    pub qkv_bias: bool,
    /// Bias on the output projection (Llama with `attention_bias`).
    pub o_bias: bool,
    /// Per-head RMSNorm on q and k before RoPE (Qwen3).
    pub qk_norm: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
}

/// `(num_attention_heads, num_key_value_heads, head_dim)` of an HF config, checked for GQA
/// grouping and RoPE's even head dimension.
fn head_layout(
    v: &Value,
    hidden_size: usize,
    err: &dyn Fn(String) -> ModelError,
) -> Result<(usize, usize, usize)> {
    let num_heads = get_usize(v, "num_attention_heads")
        .ok_or_else(|| err("missing or non-integer field `num_attention_heads`".into()))?;
    let num_kv_heads = get_usize(v, "num_key_value_heads").unwrap_or(num_heads);
    if num_heads == 0 || num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
        return Err(err(format!(
            "num_attention_heads {num_heads} must be a positive multiple of num_key_value_heads {num_kv_heads}"
        )));
    }
    let head_dim = match v.get("head_dim") {
        Some(Value::Number(n)) => n
            .as_u64()
            .map(|x| x as usize)
            .ok_or_else(|| err("`head_dim` is not an integer".into()))?,
        _ => {
            if !hidden_size.is_multiple_of(num_heads) {
                return Err(err(format!(
                    "hidden_size {hidden_size} not divisible by num_attention_heads {num_heads}"
                )));
            }
            hidden_size / num_heads
        }
    };
    if head_dim % 2 != 0 {
        return Err(err(format!("head_dim {head_dim} must be even for RoPE")));
    }
    Ok((num_heads, num_kv_heads, head_dim))
}

/// RoPE base and scaling of an HF config (transformers 5 moved both under `rope_parameters`).
fn rope_from_hf(
    v: &Value,
    err: &dyn Fn(String) -> ModelError,
) -> Result<(f64, Option<Llama3RopeScaling>)> {
    let rope_params = v.get("rope_parameters").filter(|p| p.is_object());
    let rope_theta = get_f64(v, "rope_theta")
        .or_else(|| rope_params.and_then(|p| get_f64(p, "rope_theta")))
        .unwrap_or(10000.0);
    let Some(s) = v
        .get("rope_scaling")
        .filter(|s| s.is_object())
        .or(rope_params)
    else {
        return Ok((rope_theta, None));
    };
    let ty = s
        .get("rope_type")
        .or_else(|| s.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let scaling = match ty {
        "default" => None,
        "llama3" => Some(Llama3RopeScaling {
            factor: get_f64(s, "factor")
                .ok_or_else(|| err("rope_scaling.factor missing".into()))?,
            low_freq_factor: get_f64(s, "low_freq_factor").unwrap_or(1.0),
            high_freq_factor: get_f64(s, "high_freq_factor").unwrap_or(4.0),
            original_max_position_embeddings: get_usize(s, "original_max_position_embeddings")
                .unwrap_or(8192),
        }),
        other => {
            return Err(err(format!(
                "unsupported rope_scaling type {other:?} (supported: default, llama3)"
            )))
        }
    };
    Ok((rope_theta, scaling))
}

fn get_usize(v: &Value, key: &str) -> Option<usize> {
    v.get(key).and_then(Value::as_u64).map(|x| x as usize)
}

fn get_f64(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

fn token_ids(v: Option<&Value>) -> Vec<u32> {
    match v {
        Some(Value::Number(n)) => n.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_u64)
            .map(|x| x as u32)
            .collect(),
        _ => vec![],
    }
}

/// Shapes of real models for speed measurements with random weights (`random:<name>`).
pub const PRESETS: [&str; 5] = [
    "smollm2-135m",
    "qwen2-0.5b",
    "qwen2.5-1.5b",
    "qwen2.5-3b",
    "qwen3-0.6b",
];

impl ModelConfig {
    /// A small decoder of `arch` for tests, examples and smoke runs: 4 heads over 2 KV heads of
    /// `hidden_size / 4` dims, an MLP of `2 · hidden_size`, tied embeddings, BOS 1 / EOS 2, and
    /// the architecture's own q/k/v bias (Qwen2) or q/k norm (Qwen3).
    pub fn tiny(
        arch: Architecture,
        vocab_size: usize,
        hidden_size: usize,
        num_layers: usize,
    ) -> Self {
        ModelConfig {
            arch,
            vocab_size,
            hidden_size,
            intermediate_size: 2 * hidden_size,
            num_layers,
            num_heads: 4,
            num_kv_heads: 2,
            head_dim: hidden_size / 4,
            rms_norm_eps: 1e-6,
            rope_theta: 10_000.0,
            rope_scaling: None,
            max_position_embeddings: 512,
            tie_word_embeddings: true,
            qkv_bias: arch == Architecture::Qwen2,
            o_bias: false,
            qk_norm: arch == Architecture::Qwen3,
            bos_token_id: Some(1),
            eos_token_ids: vec![2],
        }
    }

    /// The config of a known model shape (see [`PRESETS`]): SmolLM2-135M-Instruct, Qwen2-0.5B,
    /// Qwen2.5-1.5B, Qwen2.5-3B and Qwen3-0.6B as their HF `config.json` give them.
    pub fn preset(name: &str) -> Option<Self> {
        let llama = |vocab, hidden, inter, layers, heads, kv, theta| ModelConfig {
            arch: Architecture::Llama,
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: inter,
            num_layers: layers,
            num_heads: heads,
            num_kv_heads: kv,
            head_dim: hidden / heads,
            rms_norm_eps: 1e-5,
            rope_theta: theta,
            rope_scaling: None,
            max_position_embeddings: 8192,
            tie_word_embeddings: true,
            qkv_bias: false,
            o_bias: false,
            qk_norm: false,
            bos_token_id: Some(1),
            eos_token_ids: vec![2],
        };
        let qwen2 = |hidden, inter, layers, heads, kv| ModelConfig {
            arch: Architecture::Qwen2,
            rms_norm_eps: 1e-6,
            max_position_embeddings: 32768,
            qkv_bias: true,
            bos_token_id: Some(151643),
            eos_token_ids: vec![151645],
            ..llama(151936, hidden, inter, layers, heads, kv, 1_000_000.0)
        };
        Some(match name {
            "smollm2-135m" => llama(49152, 576, 1536, 30, 9, 3, 100_000.0),
            "qwen2-0.5b" => qwen2(896, 4864, 24, 14, 2),
            "qwen2.5-1.5b" => qwen2(1536, 8960, 28, 12, 2),
            "qwen2.5-3b" => qwen2(2048, 11008, 36, 16, 2),
            "qwen3-0.6b" => ModelConfig {
                arch: Architecture::Qwen3,
                head_dim: 128,
                qkv_bias: false,
                qk_norm: true,
                max_position_embeddings: 40960,
                ..qwen2(1024, 3072, 28, 16, 8)
            },
            _ => return None,
        })
    }

    /// Parse an HF `config.json`.
    pub fn from_hf_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        Self::from_hf_json(&text, path)
    }

    pub fn from_hf_json(text: &str, path: &Path) -> Result<Self> {
        let err = |msg: String| ModelError::Config {
            path: path.into(),
            msg,
        };
        let v: Value = serde_json::from_str(text).map_err(|e| err(format!("not JSON: {e}")))?;
        if !v.is_object() {
            return Err(err("top level is not a JSON object".into()));
        }
        let model_type = v
            .get("model_type")
            .and_then(Value::as_str)
            .ok_or_else(|| err("missing string field `model_type`".into()))?;
        let arch =
            Architecture::parse(model_type).ok_or_else(|| ModelError::UnknownArchitecture {
                path: path.into(),
                model_type: model_type.into(),
            })?;
        let need = |key: &str| {
            get_usize(&v, key).ok_or_else(|| err(format!("missing or non-integer field `{key}`")))
        };
        let hidden_size = need("hidden_size")?;
        let (num_heads, num_kv_heads, head_dim) = head_layout(&v, hidden_size, &err)?;
        let (rope_theta, rope_scaling) = rope_from_hf(&v, &err)?;
        let attention_bias = v
            .get("attention_bias")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let (qkv_bias, o_bias, qk_norm) = match arch {
            Architecture::Llama => (attention_bias, attention_bias, false),
            Architecture::Qwen2 => (true, false, false),
            Architecture::Qwen3 => (attention_bias, attention_bias, true),
        };
        Ok(ModelConfig {
            arch,
            vocab_size: need("vocab_size")?,
            hidden_size,
            intermediate_size: need("intermediate_size")?,
            num_layers: need("num_hidden_layers")?,
            num_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: get_f64(&v, "rms_norm_eps").unwrap_or(1e-6),
            rope_theta,
            rope_scaling,
            max_position_embeddings: get_usize(&v, "max_position_embeddings").unwrap_or(4096),
            tie_word_embeddings: v
                .get("tie_word_embeddings")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            qkv_bias,
            o_bias,
            qk_norm,
            bos_token_id: v
                .get("bos_token_id")
                .and_then(Value::as_u64)
                .map(|x| x as u32),
            eos_token_ids: token_ids(v.get("eos_token_id")),
        })
    }

    /// The HF `config.json` transformers would write for this model.
    pub fn to_hf_json(&self, torch_dtype: &str) -> Value {
        let mut v = json!({
            "architectures": [self.arch.hf_class()],
            "model_type": self.arch.model_type(),
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "torch_dtype": torch_dtype,
            "use_cache": true,
            "initializer_range": 0.02,
        });
        let obj = v.as_object_mut().expect("json! object");
        obj.insert(
            "rope_scaling".into(),
            match &self.rope_scaling {
                Some(s) => json!({
                    "rope_type": "llama3",
                    "factor": s.factor,
                    "low_freq_factor": s.low_freq_factor,
                    "high_freq_factor": s.high_freq_factor,
                    "original_max_position_embeddings": s.original_max_position_embeddings,
                }),
                None => Value::Null,
            },
        );
        match self.arch {
            Architecture::Llama => {
                obj.insert("attention_bias".into(), json!(self.qkv_bias));
                obj.insert("mlp_bias".into(), json!(false));
            }
            Architecture::Qwen2 => {
                obj.insert("use_sliding_window".into(), json!(false));
                obj.insert("sliding_window".into(), Value::Null);
            }
            Architecture::Qwen3 => {
                obj.insert("attention_bias".into(), json!(self.qkv_bias));
            }
        }
        if let Some(b) = self.bos_token_id {
            obj.insert("bos_token_id".into(), json!(b));
        }
        match self.eos_token_ids.as_slice() {
            [] => {}
            [one] => {
                obj.insert("eos_token_id".into(), json!(one));
            }
            many => {
                obj.insert("eos_token_id".into(), json!(many));
            }
        }
        v
    }

    /// Number of parameters (counting a tied embedding once).
    pub fn num_parameters(&self) -> usize {
        let h = self.hidden_size;
        let q = self.num_heads * self.head_dim;
        let kv = self.num_kv_heads * self.head_dim;
        let mut layer = h * q + 2 * h * kv + q * h + 3 * h * self.intermediate_size + 2 * h;
        if self.qkv_bias {
            layer += q + 2 * kv;
        }
        if self.o_bias {
            layer += h;
        }
        if self.qk_norm {
            layer += 2 * self.head_dim;
        }
        let mut n = self.vocab_size * h + self.num_layers * layer + h;
        if !self.tie_word_embeddings {
            n += self.vocab_size * h;
        }
        n
    }

    /// RoPE inverse frequencies, with Llama-3 scaling applied when configured.
    pub fn rope_inv_freq(&self) -> Vec<f32> {
        let d = self.head_dim;
        let base: Vec<f64> = (0..d / 2)
            .map(|i| 1.0 / self.rope_theta.powf((2 * i) as f64 / d as f64))
            .collect();
        let Some(s) = self.rope_scaling else {
            return base.into_iter().map(|x| x as f32).collect();
        };
        let old_ctx = s.original_max_position_embeddings as f64;
        let low_wavelen = old_ctx / s.low_freq_factor;
        let high_wavelen = old_ctx / s.high_freq_factor;
        base.into_iter()
            .map(|f| {
                let wavelen = 2.0 * std::f64::consts::PI / f;
                let scaled = if wavelen > low_wavelen {
                    f / s.factor
                } else if wavelen < high_wavelen {
                    f
                } else {
                    let smooth = (old_ctx / wavelen - s.low_freq_factor)
                        / (s.high_freq_factor - s.low_freq_factor);
                    (1.0 - smooth) * f / s.factor + smooth * f
                };
                scaled as f32
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_have_the_real_models_parameter_counts() {
        // Counts of the published checkpoints (tied embeddings counted once).
        for (name, want) in [
            ("smollm2-135m", 134_515_008usize),
            ("qwen2-0.5b", 494_032_768),
            ("qwen2.5-1.5b", 1_543_714_304),
            ("qwen2.5-3b", 3_085_938_688),
            ("qwen3-0.6b", 596_049_920),
        ] {
            let cfg = ModelConfig::preset(name).unwrap();
            let n: usize = crate::model::expected_tensors(&cfg)
                .iter()
                .map(|(_, s)| s.iter().product::<usize>())
                .sum();
            assert_eq!(n, want, "{name}");
        }
        assert!(ModelConfig::preset("gpt2").is_none());
        assert_eq!(PRESETS.len(), 5);
    }

    fn llama3(scaling: Option<Llama3RopeScaling>) -> ModelConfig {
        ModelConfig {
            arch: Architecture::Llama,
            vocab_size: 8,
            hidden_size: 4096,
            intermediate_size: 8,
            num_layers: 1,
            num_heads: 32,
            num_kv_heads: 8,
            head_dim: 128,
            rms_norm_eps: 1e-5,
            rope_theta: 500000.0,
            rope_scaling: scaling,
            max_position_embeddings: 131072,
            tie_word_embeddings: false,
            qkv_bias: false,
            o_bias: false,
            qk_norm: false,
            bos_token_id: None,
            eos_token_ids: vec![],
        }
    }

    /// Llama-3.1's scaling: wavelengths shorter than original_ctx/high_freq_factor keep their
    /// frequency, longer than original_ctx/low_freq_factor are divided by `factor`, and the band
    /// between is a smooth interpolation.
    #[test]
    fn llama3_rope_scaling_bands() {
        let s = Llama3RopeScaling {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192,
        };
        let base = llama3(None).rope_inv_freq();
        let scaled = llama3(Some(s)).rope_inv_freq();
        assert_eq!(base.len(), 64);
        for (b, x) in base.iter().zip(&scaled) {
            let wavelen = 2.0 * std::f64::consts::PI / *b as f64;
            let ratio = *x as f64 / *b as f64;
            if wavelen < 8192.0 / 4.0 {
                assert!(
                    (ratio - 1.0).abs() < 1e-6,
                    "high frequency changed: {ratio}"
                );
            } else if wavelen > 8192.0 {
                assert!(
                    (ratio - 1.0 / 8.0).abs() < 1e-6,
                    "low frequency not divided by 8: {ratio}"
                );
            } else {
                assert!(
                    ratio > 1.0 / 8.0 - 1e-9 && ratio < 1.0 + 1e-9,
                    "band ratio {ratio}"
                );
            }
        }
        // Monotone: frequencies keep decreasing along the head dimension.
        assert!(scaled.windows(2).all(|w| w[1] <= w[0]));
        // Parsed from an HF config the same way.
        let json = r#"{"model_type":"llama","hidden_size":4096,"intermediate_size":8,"num_hidden_layers":1,
            "num_attention_heads":32,"num_key_value_heads":8,"vocab_size":8,"rope_theta":500000.0,
            "rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,
            "original_max_position_embeddings":8192}}"#;
        let cfg = ModelConfig::from_hf_json(json, Path::new("config.json")).unwrap();
        assert_eq!(cfg.rope_scaling, Some(s));
        assert_eq!(cfg.rope_inv_freq(), scaled);
        let round =
            ModelConfig::from_hf_json(&cfg.to_hf_json("float32").to_string(), Path::new("c"))
                .unwrap();
        assert_eq!(round, cfg);
    }
}
