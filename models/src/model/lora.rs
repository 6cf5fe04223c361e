//! LoRA adapters on the decoder's linear layers, in PEFT's layout and initialisation: for a
//! target `y = x·Wᵀ`, `y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ` with `A` `[r, in]` kaiming-uniform (PEFT's
//! `a = √5`, i.e. U(±1/√in)), `B` `[out, r]` zero and `s = α/r` (rsLoRA: `α/√r`).
//!
//! Owns the adapter configuration, the adapter `Var`s (PEFT tensor names, a stable order) and the
//! low-rank term's forward and backward. Must not know the optimizer, files or the engine: the
//! decoder's forward calls [`Lora::delta`] next to each base projection, so whoever runs the
//! model (trainer or engine) applies the same `Var`s unmerged.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use candle_core::{DType, Device, Tensor, Var};
use serde::{Deserialize, Serialize};

use super::params::LayerSlot;
use crate::config::ModelConfig;
use crate::ops::{linear, linear_dw, linear_dx, linear_train};
use crate::rng::SplitMix64;

/// A linear layer LoRA can adapt (PEFT's module names `q_proj` … `down_proj`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoraTarget {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

impl LoraTarget {
    pub const ALL: [LoraTarget; 7] = [
        LoraTarget::Q,
        LoraTarget::K,
        LoraTarget::V,
        LoraTarget::O,
        LoraTarget::Gate,
        LoraTarget::Up,
        LoraTarget::Down,
    ];

    /// The HF/PEFT module name (`q_proj`, …).
    pub fn module(self) -> &'static str {
        match self {
            LoraTarget::Q => "q_proj",
            LoraTarget::K => "k_proj",
            LoraTarget::V => "v_proj",
            LoraTarget::O => "o_proj",
            LoraTarget::Gate => "gate_proj",
            LoraTarget::Up => "up_proj",
            LoraTarget::Down => "down_proj",
        }
    }

    pub(crate) fn slot(self) -> LayerSlot {
        match self {
            LoraTarget::Q => LayerSlot::Q,
            LoraTarget::K => LayerSlot::K,
            LoraTarget::V => LayerSlot::V,
            LoraTarget::O => LayerSlot::O,
            LoraTarget::Gate => LayerSlot::Gate,
            LoraTarget::Up => LayerSlot::Up,
            LoraTarget::Down => LayerSlot::Down,
        }
    }

    /// `self_attn.q_proj`, `mlp.up_proj`, …: the module's path under `model.layers.{l}.`.
    pub fn path(self) -> String {
        let block = match self {
            LoraTarget::Q | LoraTarget::K | LoraTarget::V | LoraTarget::O => "self_attn",
            _ => "mlp",
        };
        format!("{block}.{}", self.module())
    }
}

impl fmt::Display for LoraTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.module();
        f.write_str(&s[..s.len() - "_proj".len()])
    }
}

impl FromStr for LoraTarget {
    type Err = String;

    /// `q`, `q_proj`, `gate`, `gate_proj`, …
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        LoraTarget::ALL
            .into_iter()
            .find(|x| t == x.module() || t == x.to_string())
            .ok_or_else(|| {
                format!("unknown LoRA target {s:?} (expected q, k, v, o, gate, up, down)")
            })
    }
}

/// Parse a comma-separated target list (`q,k,v,o,gate,up,down`, `all`).
pub fn parse_targets(s: &str) -> Result<Vec<LoraTarget>, String> {
    if s.trim() == "all" || s.trim() == "all-linear" {
        return Ok(LoraTarget::ALL.to_vec());
    }
    let mut out: Vec<LoraTarget> = s
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    out.sort();
    out.dedup();
    if out.is_empty() {
        return Err(format!("no LoRA targets in {s:?}"));
    }
    Ok(out)
}

/// PEFT's `LoraConfig` as rlvr uses it (dropout 0, no bias adapters).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoraConfig {
    /// r.
    pub rank: usize,
    /// α (PEFT's `lora_alpha`, default 8).
    pub alpha: f64,
    /// The adapted layers (default: every linear layer of the decoder, PEFT's `all-linear`
    /// without the LM head).
    pub targets: Vec<LoraTarget>,
    /// rsLoRA: scale `α/√r` instead of `α/r`.
    pub rslora: bool,
    /// Seed of A's initialisation.
    pub seed: u64,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            rank: 8,
            alpha: 8.0,
            targets: LoraTarget::ALL.to_vec(),
            rslora: false,
            seed: 0,
        }
    }
}

impl LoraConfig {
    /// `s`: `α/r`, or `α/√r` with rsLoRA.
    pub fn scale(&self) -> f64 {
        let r = self.rank as f64;
        if self.rslora {
            self.alpha / r.sqrt()
        } else {
            self.alpha / r
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.rank == 0 {
            return Err("lora.rank must be ≥ 1".into());
        }
        if !self.alpha.is_finite() {
            return Err(format!("lora.alpha must be finite, got {}", self.alpha));
        }
        if self.targets.is_empty() {
            return Err("lora.targets is empty".into());
        }
        Ok(())
    }
}

/// PEFT's tensor name of a target's A or B in layer `layer` (as in `adapter_model.safetensors`).
pub fn peft_name(layer: usize, target: LoraTarget, b: bool) -> String {
    let ab = if b { "lora_B" } else { "lora_A" };
    format!(
        "base_model.model.model.layers.{layer}.{}.{ab}.weight",
        target.path()
    )
}

/// The adapters of one model: `Var`s in (layer, target, A then B) order, PEFT names.
pub struct Lora {
    pub config: LoraConfig,
    scale: f64,
    names: Vec<String>,
    vars: Vec<Var>,
    /// Per layer and [`LayerSlot`]: the index of A (B follows it).
    index: Vec<HashMap<LayerSlot, usize>>,
}

impl Lora {
    /// Fresh adapters: A ~ U(±1/√in) (PEFT's kaiming-uniform with a = √5), B = 0.
    pub(crate) fn init(
        config: LoraConfig,
        model: &ModelConfig,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let mut rng = SplitMix64::new(config.seed);
        let mut tensors = HashMap::new();
        for (layer, target, (out, inp)) in Self::shapes(&config, model) {
            let bound = 1.0 / (inp as f64).sqrt();
            let a: Vec<f32> = (0..config.rank * inp)
                .map(|_| ((2.0 * rng.uniform() - 1.0) * bound) as f32)
                .collect();
            let a = Tensor::from_vec(a, (config.rank, inp), &Device::Cpu)?;
            let b = Tensor::zeros((out, config.rank), DType::F32, &Device::Cpu)?;
            tensors.insert(peft_name(layer, target, false), a);
            tensors.insert(peft_name(layer, target, true), b);
        }
        Self::from_tensors(config, model, tensors, dtype, device)
    }

    /// Every adapter's (layer, target, (out, in)) in parameter order.
    fn shapes(
        config: &LoraConfig,
        model: &ModelConfig,
    ) -> Vec<(usize, LoraTarget, (usize, usize))> {
        let h = model.hidden_size;
        let q = model.num_heads * model.head_dim;
        let kv = model.num_kv_heads * model.head_dim;
        let ff = model.intermediate_size;
        let mut targets = config.targets.clone();
        targets.sort();
        targets.dedup();
        let mut out = Vec::new();
        for layer in 0..model.num_layers {
            for &t in &targets {
                let shape = match t {
                    LoraTarget::Q => (q, h),
                    LoraTarget::K | LoraTarget::V => (kv, h),
                    LoraTarget::O => (h, q),
                    LoraTarget::Gate | LoraTarget::Up => (ff, h),
                    LoraTarget::Down => (h, ff),
                };
                out.push((layer, t, shape));
            }
        }
        out
    }

    /// Adapters from named tensors (PEFT names), checking every name and shape.
    pub(crate) fn from_tensors(
        config: LoraConfig,
        model: &ModelConfig,
        mut tensors: HashMap<String, Tensor>,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let r = config.rank;
        let mut names = Vec::new();
        let mut vars = Vec::new();
        let mut index = vec![HashMap::new(); model.num_layers];
        for (layer, target, (out, inp)) in Self::shapes(&config, model) {
            index[layer].insert(target.slot(), vars.len());
            for (is_b, shape) in [(false, [r, inp]), (true, [out, r])] {
                let name = peft_name(layer, target, is_b);
                let t = tensors
                    .remove(&name)
                    .ok_or_else(|| candle_core::Error::Msg(format!("missing tensor {name}")))?;
                if t.dims() != shape {
                    candle_core::bail!(
                        "tensor {name} has shape {:?}, expected {shape:?}",
                        t.dims()
                    );
                }
                let t = t.to_device(device)?.to_dtype(dtype)?.contiguous()?;
                vars.push(Var::from_tensor(&t)?);
                names.push(name);
            }
        }
        if let Some(extra) = tensors.keys().min() {
            candle_core::bail!("unexpected tensor {extra} (not an adapter of this configuration)");
        }
        Ok(Lora {
            scale: config.scale(),
            config,
            names,
            vars,
            index,
        })
    }

    pub fn named_vars(&self) -> impl Iterator<Item = (&str, &Var)> {
        self.names.iter().map(String::as_str).zip(self.vars.iter())
    }

    pub fn vars(&self) -> &[Var] {
        &self.vars
    }

    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// The index of `slot`'s A in layer `layer` (B is the next one), if adapted.
    pub(crate) fn find(&self, layer: usize, slot: LayerSlot) -> Option<usize> {
        self.index.get(layer).and_then(|m| m.get(&slot)).copied()
    }

    fn tensor(&self, i: usize, attached: bool) -> Tensor {
        if attached {
            self.vars[i].as_tensor().clone()
        } else {
            self.vars[i].as_detached_tensor()
        }
    }

    /// `s·(x·Aᵀ)·Bᵀ` for the adapter at index `i` (`train`: the training matmuls; `attached`:
    /// recorded by autograd).
    pub(crate) fn delta(
        &self,
        i: usize,
        x: &Tensor,
        train: bool,
        attached: bool,
    ) -> candle_core::Result<Tensor> {
        let lin = if train { linear_train } else { linear };
        let (a, b) = (self.tensor(i, attached), self.tensor(i + 1, attached));
        let t = lin(x, &a, None)?;
        lin(&t, &b, None)?.affine(self.scale, 0.0)
    }

    /// The backward of [`Lora::delta`] for `dy`: (dA, dB, dx).
    pub(crate) fn backward(
        &self,
        i: usize,
        x: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
        let (a, b) = (self.tensor(i, false), self.tensor(i + 1, false));
        let t = linear_train(x, &a, None)?;
        let d_b = linear_dw(dy, &t)?.affine(self.scale, 0.0)?;
        let d_t = linear_dx(dy, &b)?.affine(self.scale, 0.0)?;
        let d_a = linear_dw(&d_t, x)?;
        let d_x = linear_dx(&d_t, &a)?;
        Ok((d_a, d_b, d_x))
    }
}
