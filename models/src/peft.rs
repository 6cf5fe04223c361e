//! PEFT adapter directories, in and out: `adapter_config.json` (PEFT's `LoraConfig`) and
//! `adapter_model.safetensors` with PEFT's tensor names
//! (`base_model.model.model.layers.{l}.self_attn.q_proj.lora_A.weight`), the directory
//! `peft.PeftModel.from_pretrained(base, dir)` loads over the base model.
//!
//! Owns the file format. Must not know training: it writes the tensors it is handed and reads
//! back a [`LoraConfig`] and named tensors for [`crate::Model::load_lora`].

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Tensor};
use serde_json::{json, Value};

use crate::error::{ModelError, Result};
use crate::model::{parse_targets, LoraConfig, LoraTarget};
use crate::weights;

pub const ADAPTER_CONFIG: &str = "adapter_config.json";
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";

/// PEFT's `adapter_config.json` for `config` over the base model `base` (a Hub id or path).
pub fn adapter_config_json(config: &LoraConfig, base: &str) -> Value {
    let modules: Vec<&str> = config.targets.iter().map(|t| t.module()).collect();
    json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base,
        "r": config.rank,
        "lora_alpha": config.alpha,
        "lora_dropout": 0.0,
        "target_modules": modules,
        "use_rslora": config.rslora,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "modules_to_save": null,
        "layers_to_transform": null,
        "layers_pattern": null,
        "rank_pattern": {},
        "alpha_pattern": {},
        "use_dora": false,
    })
}

/// Write a PEFT adapter directory: the config and the adapters (PEFT names) in `dtype`.
pub fn save_adapter(
    config: &LoraConfig,
    tensors: &BTreeMap<String, Tensor>,
    base: &str,
    dir: &Path,
    dtype: DType,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let path = dir.join(ADAPTER_CONFIG);
    let text = serde_json::to_string_pretty(&adapter_config_json(config, base)).map_err(|e| {
        ModelError::Config {
            path: path.clone(),
            msg: e.to_string(),
        }
    })?;
    std::fs::write(&path, text).map_err(|e| ModelError::io(&path, e))?;
    weights::save_safetensors(tensors, dtype, &dir.join(ADAPTER_WEIGHTS))
}

/// Read a PEFT LoRA adapter directory: its configuration (seed 0) and tensors (CPU, as stored).
/// Features rlvr does not implement (DoRA, per-module ranks, bias or extra trained modules,
/// layer subsets) are errors naming the key.
pub fn load_adapter(dir: &Path) -> Result<(LoraConfig, HashMap<String, Tensor>)> {
    let path = dir.join(ADAPTER_CONFIG);
    let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| ModelError::Config {
        path: path.clone(),
        msg: e.to_string(),
    })?;
    let config = parse_config(&v).map_err(|msg| ModelError::Config {
        path: path.clone(),
        msg,
    })?;
    let wpath = dir.join(ADAPTER_WEIGHTS);
    if !wpath.is_file() && dir.join("adapter_model.bin").is_file() {
        return Err(ModelError::Safetensors {
            path: dir.join("adapter_model.bin"),
            msg: "pickled adapters are not read: save the adapter with safe_serialization=True"
                .into(),
        });
    }
    let tensors = weights::load_safetensors_file(&wpath)?;
    Ok((config, tensors))
}

/// The [`LoraConfig`] of a parsed `adapter_config.json`.
fn parse_config(v: &Value) -> std::result::Result<LoraConfig, String> {
    let key = |k: &str| v.get(k).filter(|x| !x.is_null());
    match key("peft_type").and_then(Value::as_str) {
        Some("LORA") => {}
        other => {
            return Err(format!(
                "peft_type {other:?}: only LORA adapters are supported"
            ))
        }
    }
    let rank = key("r")
        .and_then(Value::as_u64)
        .ok_or("key r: expected a positive integer")? as usize;
    let alpha = key("lora_alpha")
        .and_then(Value::as_f64)
        .ok_or("key lora_alpha: expected a number")?;
    let targets = match key("target_modules") {
        Some(Value::String(s)) => parse_targets(s)?,
        Some(Value::Array(a)) => {
            let names: Vec<&str> = a.iter().filter_map(Value::as_str).collect();
            parse_targets(&names.join(","))?
        }
        _ => return Err("key target_modules: expected a list of module names".into()),
    };
    for (k, ok) in [
        ("use_dora", key("use_dora").is_none_or(|x| x == false)),
        ("bias", key("bias").is_none_or(|x| x == "none")),
        ("modules_to_save", key("modules_to_save").is_none()),
        ("layers_to_transform", key("layers_to_transform").is_none()),
        (
            "rank_pattern",
            key("rank_pattern").is_none_or(is_empty_object),
        ),
        (
            "alpha_pattern",
            key("alpha_pattern").is_none_or(is_empty_object),
        ),
        (
            "fan_in_fan_out",
            key("fan_in_fan_out").is_none_or(|x| x == false),
        ),
    ] {
        if !ok {
            return Err(format!("key {k}: {} is not supported by rlvr", v[k]));
        }
    }
    let config = LoraConfig {
        rank,
        alpha,
        targets,
        rslora: key("use_rslora").and_then(Value::as_bool).unwrap_or(false),
        seed: 0,
    };
    config.validate()?;
    Ok(config)
}

fn is_empty_object(v: &Value) -> bool {
    v.as_object().is_some_and(|o| o.is_empty())
}

/// The PEFT module names of `targets` (for messages).
pub fn module_names(targets: &[LoraTarget]) -> String {
    targets
        .iter()
        .map(|t| t.module())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Architecture, ModelConfig};
    use crate::testing::f64_bits;
    use crate::Model;
    use candle_core::Device;

    #[test]
    fn an_adapter_round_trips_and_unsupported_features_are_named() {
        let cfg = ModelConfig::tiny(Architecture::Qwen2, 40, 16, 2);
        let mut m = Model::random(cfg.clone(), 1, DType::F32, &Device::Cpu).unwrap();
        let lc = LoraConfig {
            rank: 2,
            alpha: 4.0,
            targets: vec![LoraTarget::Q, LoraTarget::Down],
            rslora: true,
            seed: 9,
        };
        m.attach_lora(lc.clone()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        save_adapter(
            &lc,
            &m.trainable_state_dict(),
            "base",
            dir.path(),
            DType::F32,
        )
        .unwrap();
        let names: Vec<String> = m.trainable_state_dict().into_keys().collect();
        assert!(
            names.contains(&"base_model.model.model.layers.1.mlp.down_proj.lora_B.weight".into())
        );
        let (back, tensors) = load_adapter(dir.path()).unwrap();
        assert_eq!(
            back,
            LoraConfig {
                seed: 0,
                ..lc.clone()
            }
        );
        let mut m2 = Model::random(cfg, 1, DType::F32, &Device::Cpu).unwrap();
        m2.load_lora(back, tensors, dir.path()).unwrap();
        for ((n, a), (_, b)) in m.trainable().into_iter().zip(m2.trainable()) {
            let (a, b) = (a.as_detached_tensor(), b.as_detached_tensor());
            assert_eq!(f64_bits(&a), f64_bits(&b), "{n}");
        }
        let mut v = adapter_config_json(&lc, "base");
        v["use_dora"] = json!(true);
        let e = parse_config(&v).unwrap_err();
        assert!(e.contains("use_dora"), "{e}");
        let mut v = adapter_config_json(&lc, "base");
        v["target_modules"] = json!(["q_proj", "lm_head"]);
        assert!(parse_config(&v).unwrap_err().contains("lm_head"));
    }
}
