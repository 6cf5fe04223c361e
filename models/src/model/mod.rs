//! One parametrised decoder for Llama / SmolLM2 / Qwen2 / Qwen3. Weights are candle `Var`s with
//! HF names; the forward pass takes an injected [`Attention`](crate::Attention).
//!
//! Owns: the parameters (`Var`s in a stable order with HF names), the forward pass
//! ([`forward`]), and the hand-written backward of the training forward ([`backward`]). Must
//! not know any KV cache, scheduler or loss: callers inject attention and read hidden states,
//! logits or gradients.

mod backward;
mod forward;
pub mod lora;
mod params;
mod recompute;
mod trainable;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var, D};

use crate::config::ModelConfig;
use crate::error::{CandleContext, ModelError, Result};
use crate::kernels::cpu_kernels;

pub use backward::HiddenTape;
pub use forward::{Batch, Forward, Grad, Hidden, Numerics};
pub use lora::{parse_targets, peft_name, Lora, LoraConfig, LoraTarget};
pub use params::expected_tensors;
use params::{LayerParams, EMBED, FINAL_NORM, LM_HEAD};

/// The decoder: a config plus its parameters as `Var`s, in a stable order with HF names.
pub struct Model {
    pub config: ModelConfig,
    names: Vec<String>,
    vars: Vec<Var>,
    layers: Vec<LayerParams>,
    embed: usize,
    norm: usize,
    lm_head: usize,
    inv_freq: Tensor,
    device: Device,
    dtype: DType,
    /// LoRA adapters: when present, the base weights are frozen and the adapters are the
    /// trainable parameters (see `trainable.rs`).
    lora: Option<Lora>,
}

impl Model {
    /// Build from named tensors (any float dtype, any device), validating names and shapes.
    /// `origin` names the file the tensors came from, for errors.
    pub fn from_tensors(
        config: ModelConfig,
        mut tensors: HashMap<String, Tensor>,
        dtype: DType,
        device: &Device,
        origin: &Path,
    ) -> Result<Self> {
        let expected = expected_tensors(&config);
        let mut names = Vec::with_capacity(expected.len());
        let mut vars = Vec::with_capacity(expected.len());
        for (name, shape) in expected {
            let t = tensors
                .remove(&name)
                .ok_or_else(|| ModelError::MissingTensor {
                    path: origin.into(),
                    name: name.clone(),
                })?;
            if t.dims() != shape.as_slice() {
                return Err(ModelError::WrongShape {
                    path: origin.into(),
                    name,
                    got: t.dims().to_vec(),
                    expected: shape,
                });
            }
            let t = t
                .to_device(device)
                .and_then(|t| t.to_dtype(dtype))
                .and_then(|t| t.contiguous())
                .ctx(|| format!("{}: tensor {name}", origin.display()))?;
            vars.push(Var::from_tensor(&t).ctx(|| format!("tensor {name}"))?);
            names.push(name);
        }
        let index: HashMap<&str, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        let find = |n: &str| index.get(n).copied();
        let layers = (0..config.num_layers)
            .map(|l| LayerParams::new(l, find))
            .collect();
        // Every name below was in `expected`, so it is in `index`.
        let embed = index[EMBED];
        let norm = index[FINAL_NORM];
        let lm_head = find(LM_HEAD).unwrap_or(embed);
        let inv_freq = Tensor::new(config.rope_inv_freq(), device)?;
        Ok(Model {
            config,
            names,
            vars,
            layers,
            embed,
            norm,
            lm_head,
            inv_freq,
            device: device.clone(),
            dtype,
            lora: None,
        })
    }

    /// A model with random weights (normal, std 0.02; norms at 1), for tests and benchmarks.
    pub fn random(config: ModelConfig, seed: u64, dtype: DType, device: &Device) -> Result<Self> {
        let mut rng = crate::rng::SplitMix64::new(seed);
        let mut tensors = HashMap::new();
        for (name, shape) in expected_tensors(&config) {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = if name.ends_with("norm.weight") {
                (0..n).map(|_| 1.0 + 0.1 * rng.normal() as f32).collect()
            } else {
                (0..n).map(|_| 0.02 * rng.normal() as f32).collect()
            };
            tensors.insert(name, Tensor::from_vec(data, shape, &Device::Cpu)?);
        }
        Self::from_tensors(config, tensors, dtype, device, &PathBuf::from("<random>"))
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Parameters in a stable order with their HF names (a tied LM head appears once, as the
    /// embedding).
    pub fn named_vars(&self) -> impl Iterator<Item = (&str, &Var)> {
        self.names.iter().map(String::as_str).zip(self.vars.iter())
    }

    pub fn vars(&self) -> &[Var] {
        &self.vars
    }

    /// Index in [`Model::vars`] of the LM head weight (the embedding when tied).
    pub fn lm_head_index(&self) -> usize {
        self.lm_head
    }

    pub fn num_parameters(&self) -> usize {
        self.vars.iter().map(|v| v.elem_count()).sum()
    }

    /// Current weights as named tensors (detached views), e.g. for saving.
    pub fn state_dict(&self) -> BTreeMap<String, Tensor> {
        self.named_vars()
            .map(|(n, v)| (n.to_string(), v.as_detached_tensor()))
            .collect()
    }

    /// Whether the taped forward ([`Grad::Tape`]) and [`Model::backward_hidden`] (the
    /// hand-written backward) run on this model's device and dtype (the CPU, f32 / f64).
    pub fn supports_taped_backward(&self) -> bool {
        cpu_kernels(&self.device, self.dtype)
    }

    /// Parameter `i`: tracked by autograd when `attached` (and the base is not frozen under LoRA
    /// adapters), else a detached view of the same storage.
    fn weight(&self, i: usize, attached: bool) -> Tensor {
        if attached && self.lora.is_none() {
            self.vars[i].as_tensor().clone()
        } else {
            self.vars[i].as_detached_tensor()
        }
    }

    /// RoPE cos/sin for `positions` `[b, s]` (u32): each `[b, s, head_dim/2]`, f32 math.
    pub fn rope_tables(&self, positions: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let pos = positions.to_dtype(DType::F32)?.unsqueeze(D::Minus1)?;
        let freqs = pos.broadcast_mul(&self.inv_freq.reshape((1, 1, ()))?)?;
        Ok((
            freqs.cos()?.to_dtype(self.dtype)?,
            freqs.sin()?.to_dtype(self.dtype)?,
        ))
    }
}

/// Right-pad rows into `[b, s]` ids and positions; returns (ids, positions, lengths, s).
pub fn pad_batch(
    rows: &[Vec<u32>],
    pad_id: u32,
    device: &Device,
) -> Result<(Tensor, Tensor, Vec<usize>, usize)> {
    let batch = rows.len();
    let seq_len = rows.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let mut ids = vec![pad_id; batch * seq_len];
    let mut pos = vec![0u32; batch * seq_len];
    for (i, r) in rows.iter().enumerate() {
        ids[i * seq_len..i * seq_len + r.len()].copy_from_slice(r);
        for (j, p) in pos[i * seq_len..(i + 1) * seq_len].iter_mut().enumerate() {
            *p = j as u32;
        }
    }
    let lengths = rows.iter().map(Vec::len).collect();
    Ok((
        Tensor::from_vec(ids, (batch, seq_len), device)?,
        Tensor::from_vec(pos, (batch, seq_len), device)?,
        lengths,
        seq_len,
    ))
}

#[cfg(test)]
mod lora_tests;
#[cfg(test)]
mod tests;
