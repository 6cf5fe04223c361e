//! Which of the model's parameters train: every base weight, or — once LoRA adapters are
//! attached — the adapters only, the base frozen (read detached by every forward, no gradient).
//! Also the adapters' merge into base weights (exports, and the merged-model reference).
//!
//! Owns the switch between full fine-tuning and adapters. Must not know optimizers or files.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Tensor, Var};

use super::lora::{Lora, LoraConfig};
use super::Model;
use crate::error::{CandleContext, ModelError, Result};

impl Model {
    /// Attach fresh adapters (A random, B zero: the logits are the base model's exactly).
    pub fn attach_lora(&mut self, config: LoraConfig) -> Result<()> {
        config.validate().map_err(|msg| ModelError::Candle {
            context: "LoRA configuration".into(),
            source: candle_core::Error::Msg(msg),
        })?;
        let lora = Lora::init(config, &self.config, self.dtype, &self.device)
            .ctx(|| "LoRA adapters".to_string())?;
        self.lora = Some(lora);
        Ok(())
    }

    /// Attach adapters from PEFT-named tensors (an `adapter_model.safetensors`; `origin` names
    /// it in errors): every adapter of `config` must be there with its shape, and nothing else.
    pub fn load_lora(
        &mut self,
        config: LoraConfig,
        tensors: HashMap<String, Tensor>,
        origin: &Path,
    ) -> Result<()> {
        config.validate().map_err(|msg| ModelError::Config {
            path: origin.into(),
            msg,
        })?;
        let lora = Lora::from_tensors(config, &self.config, tensors, self.dtype, &self.device)
            .map_err(|e| ModelError::Safetensors {
                path: origin.into(),
                msg: e.to_string(),
            })?;
        self.lora = Some(lora);
        Ok(())
    }

    pub fn lora(&self) -> Option<&Lora> {
        self.lora.as_ref()
    }

    /// The parameters that train, in a stable order with their names: the adapters (PEFT
    /// names) under LoRA, else every base weight ([`Model::named_vars`]). Gradients of the
    /// trainer and of [`Model::backward_hidden`] are in this order.
    pub fn trainable(&self) -> Vec<(&str, &Var)> {
        match &self.lora {
            Some(lora) => lora.named_vars().collect(),
            None => self.named_vars().collect(),
        }
    }

    /// Index of the LM head in [`Model::trainable`] (`None` under LoRA: the head is frozen).
    pub fn trainable_lm_head(&self) -> Option<usize> {
        self.lora.is_none().then_some(self.lm_head)
    }

    /// The trainable parameters' current values (detached), by name: what a checkpoint keeps.
    pub fn trainable_state_dict(&self) -> BTreeMap<String, Tensor> {
        self.trainable()
            .into_iter()
            .map(|(n, v)| (n.to_string(), v.as_detached_tensor()))
            .collect()
    }

    /// The base weights with the adapters merged in (`W + s·B·A`, computed in f64), HF names;
    /// the plain [`Model::state_dict`] without adapters.
    pub fn merged_state_dict(&self) -> Result<BTreeMap<String, Tensor>> {
        let mut out = self.state_dict();
        let Some(lora) = &self.lora else {
            return Ok(out);
        };
        for (layer, params) in self.layers.iter().enumerate() {
            for target in &lora.config.targets {
                let slot = target.slot();
                let Some(i) = lora.find(layer, slot) else {
                    continue;
                };
                let name = slot.name(layer);
                let merged = merge_one(&self.vars[params.at(slot)], lora, i)
                    .ctx(|| format!("merging the adapter of {name}"))?;
                out.insert(name, merged);
            }
        }
        Ok(out)
    }
}

/// `W + s·B·A` in f64, back in W's dtype.
fn merge_one(w: &Var, lora: &Lora, i: usize) -> candle_core::Result<Tensor> {
    let f = |v: &Var| v.as_detached_tensor().to_dtype(DType::F64);
    let (a, b) = (f(&lora.vars()[i])?, f(&lora.vars()[i + 1])?);
    let delta = b.matmul(&a)?.affine(lora.scale(), 0.0)?;
    (f(w)? + delta)?.to_dtype(w.dtype())
}
