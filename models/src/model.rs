//! One parametrised decoder for Llama / SmolLM2 / Qwen2 / Qwen3. Weights are candle `Var`s with
//! HF names; the forward pass takes an injected [`Attention`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use std::ops::{Add, Div, Mul, Neg, Sub};

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Storage, WithDType};
use candle_core::{DType, Device, Tensor, Var, D};

use crate::attention::{Attention, CausalAttention};
use crate::config::ModelConfig;
use crate::error::{CandleContext, ModelError, Result};

/// How the forward pass runs: `Train` records the autograd graph and uses only ops with a
/// backward; `Inference` reads detached views of the same storage and uses fused kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Train,
    Inference,
}

/// The expected HF tensor names and shapes for a config.
pub fn expected_tensors(cfg: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let h = cfg.hidden_size;
    let q = cfg.num_heads * cfg.head_dim;
    let kv = cfg.num_kv_heads * cfg.head_dim;
    let mut v = vec![(
        "model.embed_tokens.weight".to_string(),
        vec![cfg.vocab_size, h],
    )];
    for l in 0..cfg.num_layers {
        let p = format!("model.layers.{l}");
        v.push((format!("{p}.input_layernorm.weight"), vec![h]));
        v.push((format!("{p}.self_attn.q_proj.weight"), vec![q, h]));
        v.push((format!("{p}.self_attn.k_proj.weight"), vec![kv, h]));
        v.push((format!("{p}.self_attn.v_proj.weight"), vec![kv, h]));
        if cfg.qkv_bias {
            v.push((format!("{p}.self_attn.q_proj.bias"), vec![q]));
            v.push((format!("{p}.self_attn.k_proj.bias"), vec![kv]));
            v.push((format!("{p}.self_attn.v_proj.bias"), vec![kv]));
        }
        if cfg.qk_norm {
            v.push((format!("{p}.self_attn.q_norm.weight"), vec![cfg.head_dim]));
            v.push((format!("{p}.self_attn.k_norm.weight"), vec![cfg.head_dim]));
        }
        v.push((format!("{p}.self_attn.o_proj.weight"), vec![h, q]));
        if cfg.o_bias {
            v.push((format!("{p}.self_attn.o_proj.bias"), vec![h]));
        }
        v.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
        v.push((
            format!("{p}.mlp.gate_proj.weight"),
            vec![cfg.intermediate_size, h],
        ));
        v.push((
            format!("{p}.mlp.up_proj.weight"),
            vec![cfg.intermediate_size, h],
        ));
        v.push((
            format!("{p}.mlp.down_proj.weight"),
            vec![h, cfg.intermediate_size],
        ));
    }
    v.push(("model.norm.weight".to_string(), vec![h]));
    if !cfg.tie_word_embeddings {
        v.push(("lm_head.weight".to_string(), vec![cfg.vocab_size, h]));
    }
    v
}

struct LayerIdx {
    input_norm: usize,
    q: usize,
    k: usize,
    v: usize,
    q_bias: Option<[usize; 3]>,
    qk_norm: Option<[usize; 2]>,
    o: usize,
    o_bias: Option<usize>,
    post_norm: usize,
    gate: usize,
    up: usize,
    down: usize,
}

/// The decoder: a config plus its parameters as `Var`s, in a stable order with HF names.
pub struct Model {
    pub config: ModelConfig,
    names: Vec<String>,
    vars: Vec<Var>,
    layers: Vec<LayerIdx>,
    embed: usize,
    norm: usize,
    lm_head: usize,
    inv_freq: Tensor,
    device: Device,
    dtype: DType,
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
        let mut index = HashMap::new();
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
            let var = Var::from_tensor(&t).ctx(|| format!("tensor {name}"))?;
            index.insert(name.clone(), names.len());
            names.push(name);
            vars.push(var);
        }
        let idx = |n: &str| index[n];
        let layers = (0..config.num_layers)
            .map(|l| {
                let p = format!("model.layers.{l}");
                LayerIdx {
                    input_norm: idx(&format!("{p}.input_layernorm.weight")),
                    q: idx(&format!("{p}.self_attn.q_proj.weight")),
                    k: idx(&format!("{p}.self_attn.k_proj.weight")),
                    v: idx(&format!("{p}.self_attn.v_proj.weight")),
                    q_bias: config.qkv_bias.then(|| {
                        [
                            idx(&format!("{p}.self_attn.q_proj.bias")),
                            idx(&format!("{p}.self_attn.k_proj.bias")),
                            idx(&format!("{p}.self_attn.v_proj.bias")),
                        ]
                    }),
                    qk_norm: config.qk_norm.then(|| {
                        [
                            idx(&format!("{p}.self_attn.q_norm.weight")),
                            idx(&format!("{p}.self_attn.k_norm.weight")),
                        ]
                    }),
                    o: idx(&format!("{p}.self_attn.o_proj.weight")),
                    o_bias: config
                        .o_bias
                        .then(|| idx(&format!("{p}.self_attn.o_proj.bias"))),
                    post_norm: idx(&format!("{p}.post_attention_layernorm.weight")),
                    gate: idx(&format!("{p}.mlp.gate_proj.weight")),
                    up: idx(&format!("{p}.mlp.up_proj.weight")),
                    down: idx(&format!("{p}.mlp.down_proj.weight")),
                }
            })
            .collect();
        let embed = idx("model.embed_tokens.weight");
        let lm_head = if config.tie_word_embeddings {
            embed
        } else {
            idx("lm_head.weight")
        };
        let inv_freq = Tensor::new(config.rope_inv_freq(), device)?;
        Ok(Model {
            norm: idx("model.norm.weight"),
            config,
            names,
            vars,
            layers,
            embed,
            lm_head,
            inv_freq,
            device: device.clone(),
            dtype,
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

    fn w(&self, i: usize, mode: Mode) -> Tensor {
        match mode {
            Mode::Train => self.vars[i].as_tensor().clone(),
            Mode::Inference => self.vars[i].as_detached_tensor(),
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

    /// Final hidden states `[b, s, hidden]` (after the last norm).
    pub fn hidden(
        &self,
        input_ids: &Tensor,
        positions: &Tensor,
        attn: &mut dyn Attention,
        mode: Mode,
    ) -> Result<Tensor> {
        self.hidden_impl(input_ids, positions, attn, mode, false, None)
            .ctx(|| "decoder forward".to_string())
    }

    /// `detach`: read detached weights (no autograd graph) whatever the mode, so that a Train
    /// mode forward gives the training numerics without recording a graph. `tape`: also keep
    /// what [`Model::backward_hidden`] reads (Train numerics, detached, CPU kernels only).
    fn hidden_impl(
        &self,
        input_ids: &Tensor,
        positions: &Tensor,
        attn: &mut dyn Attention,
        mode: Mode,
        detach: bool,
        mut tape: Option<&mut HiddenTape>,
    ) -> candle_core::Result<Tensor> {
        let cfg = &self.config;
        let (b, s) = input_ids.dims2()?;
        let eps = cfg.rms_norm_eps as f32;
        let fused = mode == Mode::Inference;
        let wmode = if detach || tape.is_some() {
            Mode::Inference
        } else {
            mode
        };
        let (cos, sin) = self.rope_tables(positions)?;
        let rope = |x: &Tensor| -> candle_core::Result<Tensor> {
            if fused {
                candle_nn::rotary_emb::rope_thd(&x.contiguous()?, &cos, &sin)
            } else {
                rope_train(x, &cos, &sin)
            }
        };
        let norm = |x: &Tensor, w: &Tensor| -> candle_core::Result<Tensor> {
            if fused {
                candle_nn::ops::rms_norm(&x.contiguous()?, w, eps)
            } else {
                rms_norm_train(x, w, eps)
            }
        };
        let linear = if fused { linear } else { linear_train };
        let embed = self.w(self.embed, wmode);
        let ids = input_ids.flatten_all()?;
        let mut x = embed.embedding(&ids)?.reshape((b, s, ()))?;
        if let Some(t) = tape.as_deref_mut() {
            t.ids = Some(ids);
            t.cos = Some(cos.clone());
            t.sin = Some(sin.clone());
        }
        let (nh, nkv, hd) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        for (li, l) in self.layers.iter().enumerate() {
            let x_in = x.clone();
            let h1 = norm(&x, &self.w(l.input_norm, wmode))?;
            let bias = |i: Option<usize>| i.map(|i| self.w(i, wmode));
            let (qb, kb, vb) = match l.q_bias {
                Some([q, k, v]) => (Some(q), Some(k), Some(v)),
                None => (None, None, None),
            };
            let q0 =
                linear(&h1, &self.w(l.q, wmode), bias(qb).as_ref())?.reshape((b, s, nh, hd))?;
            let k0 =
                linear(&h1, &self.w(l.k, wmode), bias(kb).as_ref())?.reshape((b, s, nkv, hd))?;
            let v =
                linear(&h1, &self.w(l.v, wmode), bias(vb).as_ref())?.reshape((b, s, nkv, hd))?;
            let (q, k) = match l.qk_norm {
                Some([qn, kn]) => (
                    norm(&q0, &self.w(qn, wmode))?,
                    norm(&k0, &self.w(kn, wmode))?,
                ),
                None => (q0.clone(), k0.clone()),
            };
            let q = rope(&q)?;
            let k = rope(&k)?;
            let (a, parts) = match tape.as_deref() {
                Some(t) => {
                    let mut p = crate::attention::causal_kernel_attention(
                        &q, &k, &v, &t.lengths, t.seq, false,
                    )?;
                    p.probs = None;
                    (p.out.clone(), Some(p))
                }
                None => (attn.attend(li, &q, &k, &v)?, None),
            };
            let a = a.reshape((b, s, nh * hd))?;
            let o = linear(&a, &self.w(l.o, wmode), bias(l.o_bias).as_ref())?;
            x = (x + o)?;
            let x_mid = x.clone();
            let h2 = norm(&x, &self.w(l.post_norm, wmode))?;
            let g = linear(&h2, &self.w(l.gate, wmode), None)?;
            let u = linear(&h2, &self.w(l.up, wmode), None)?;
            let gu = if fused {
                (g.silu()? * &u)?
            } else {
                swiglu_train(&g, &u)?
            };
            let m = linear(&gu, &self.w(l.down, wmode), None)?;
            x = (x + m)?;
            if let (Some(t), Some(attn)) = (tape.as_deref_mut(), parts) {
                let qk = l.qk_norm.is_some();
                // The norms' outputs and silu(g)·u are recomputed by the backward.
                drop((h1, h2, gu));
                t.layers.push(LayerTape {
                    x_in,
                    q0: qk.then_some(q0),
                    k0: qk.then_some(k0),
                    attn,
                    a,
                    x_mid,
                    g,
                    u,
                });
            }
        }
        if let Some(t) = tape {
            t.x_final = Some(x.clone());
        }
        norm(&x, &self.w(self.norm, wmode))
    }

    /// Project hidden states `[b, s, hidden]` to logits `[b, s, vocab]` in f32.
    pub fn logits_from_hidden(&self, hidden: &Tensor, mode: Mode) -> Result<Tensor> {
        let lin = match mode {
            Mode::Train => linear_train,
            Mode::Inference => linear,
        };
        lin(hidden, &self.w(self.lm_head, mode), None)
            .and_then(|t| t.to_dtype(DType::F32))
            .ctx(|| "lm head".to_string())
    }

    /// Inference-mode logits `[b, s, vocab]` in the model's dtype (no cast: bf16 logits leave a
    /// GPU in half the bytes; widening them to f32 anywhere gives the same values).
    pub fn logits_from_hidden_native(&self, hidden: &Tensor) -> Result<Tensor> {
        linear(hidden, &self.w(self.lm_head, Mode::Inference), None).ctx(|| "lm head".to_string())
    }

    /// [`Model::logits_from_hidden`] in Train mode numerics without an autograd graph (bit
    /// identical values).
    pub fn logits_from_hidden_no_grad(&self, hidden: &Tensor) -> Result<Tensor> {
        linear_train(hidden, &self.w(self.lm_head, Mode::Inference), None)
            .and_then(|t| t.to_dtype(DType::F32))
            .ctx(|| "lm head".to_string())
    }

    /// Logits `[b, s, vocab]` (f32) with an injected attention.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        positions: &Tensor,
        attn: &mut dyn Attention,
        mode: Mode,
    ) -> Result<Tensor> {
        let h = self.hidden(input_ids, positions, attn, mode)?;
        self.logits_from_hidden(&h, mode)
    }

    /// Full-sequence forward of a right-padded batch of token id rows (no cache).
    pub fn forward_padded(&self, rows: &[Vec<u32>], pad_id: u32, mode: Mode) -> Result<Tensor> {
        let h = self.hidden_padded(rows, pad_id, mode)?;
        self.logits_from_hidden(&h, mode)
    }

    /// Final hidden states `[b, s, hidden]` of a right-padded batch of token id rows (no cache):
    /// [`Model::forward_padded`] without the LM head, e.g. to project only some positions.
    pub fn hidden_padded(&self, rows: &[Vec<u32>], pad_id: u32, mode: Mode) -> Result<Tensor> {
        self.hidden_padded_impl(rows, pad_id, mode, false)
    }

    /// [`Model::hidden_padded`] in Train mode numerics without recording an autograd graph
    /// (bit-identical values, much less memory): for no-grad passes that must match training.
    pub fn hidden_padded_no_grad(
        &self,
        rows: &[Vec<u32>],
        pad_id: u32,
        mode: Mode,
    ) -> Result<Tensor> {
        self.hidden_padded_impl(rows, pad_id, mode, true)
    }

    fn hidden_padded_impl(
        &self,
        rows: &[Vec<u32>],
        pad_id: u32,
        mode: Mode,
        detach: bool,
    ) -> Result<Tensor> {
        let (ids, pos, lengths, s) = pad_batch(rows, pad_id, &self.device)?;
        let mut attn = CausalAttention::new(&lengths, s, self.dtype, &self.device)?;
        if mode == Mode::Inference {
            attn = attn.inference();
        }
        self.hidden_impl(&ids, &pos, &mut attn, mode, detach, None)
            .ctx(|| "decoder forward".to_string())
    }

    /// Whether [`Model::hidden_padded_taped`] and [`Model::backward_hidden`] (the hand-written
    /// backward) run on this model's device and dtype (the CPU, f32 / f64).
    pub fn supports_taped_backward(&self) -> bool {
        cpu_kernels(&self.device, self.dtype)
    }

    /// Train mode hidden states `[b, s, hidden]` of a right-padded batch, bit-identical to
    /// [`Model::hidden_padded`] in Train mode but without an autograd graph, and the activations
    /// the hand-written backward [`Model::backward_hidden`] needs. CPU f32 / f64 only (see
    /// [`Model::supports_taped_backward`]).
    pub fn hidden_padded_taped(
        &self,
        rows: &[Vec<u32>],
        pad_id: u32,
    ) -> Result<(Tensor, HiddenTape)> {
        if !self.supports_taped_backward() {
            return Err(ModelError::Candle {
                context: "taped forward".into(),
                source: candle_core::Error::Msg(format!(
                    "the hand-written backward needs a CPU f32/f64 model, not {:?} {:?}",
                    self.device.location(),
                    self.dtype
                )),
            });
        }
        let (ids, pos, lengths, s) = pad_batch(rows, pad_id, &self.device)?;
        let mut attn = CausalAttention::new(&lengths, s, self.dtype, &self.device)?;
        let mut tape = HiddenTape {
            lengths,
            seq: s,
            ids: None,
            cos: None,
            sin: None,
            layers: Vec::with_capacity(self.layers.len()),
            x_final: None,
        };
        let h = self
            .hidden_impl(&ids, &pos, &mut attn, Mode::Train, true, Some(&mut tape))
            .ctx(|| "decoder forward".to_string())?;
        Ok((h, tape))
    }

    /// The hand-written backward of [`Model::hidden_padded_taped`]: given dL/d(hidden) `[b, s,
    /// hidden]`, the gradient of every parameter, in [`Model::vars`] order (`None`: no gradient,
    /// e.g. an untied LM head).
    pub fn backward_hidden(
        &self,
        tape: HiddenTape,
        d_hidden: &Tensor,
    ) -> Result<Vec<Option<Tensor>>> {
        self.backward_hidden_impl(tape, d_hidden)
            .ctx(|| "decoder backward".to_string())
    }

    fn backward_hidden_impl(
        &self,
        tape: HiddenTape,
        d_hidden: &Tensor,
    ) -> candle_core::Result<Vec<Option<Tensor>>> {
        let cfg = &self.config;
        let eps = cfg.rms_norm_eps;
        let (b, s) = (tape.lengths.len(), tape.seq);
        let (nh, nkv, hd) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        let w = |i: usize| self.vars[i].as_detached_tensor();
        let mut grads: Vec<Option<Tensor>> = vec![None; self.vars.len()];
        let (Some(x_final), Some(ids), Some(cos), Some(sin)) =
            (tape.x_final, tape.ids, tape.cos, tape.sin)
        else {
            candle_core::bail!("incomplete tape");
        };
        let d_hidden = d_hidden
            .detach()
            .to_dtype(self.dtype)?
            .reshape((b, s, ()))?;
        // Final norm.
        let (mut dx, dw) = rms_norm_backward(&x_final, &w(self.norm), &d_hidden, eps, None)?;
        grads[self.norm] = Some(dw);
        let epsf = cfg.rms_norm_eps as f32;
        // Each layer's tape is dropped once its backward is done.
        for (l, t) in self.layers.iter().zip(tape.layers).rev() {
            // MLP: x = x_mid + down(swiglu(gate(h2), up(h2))), h2 = norm(x_mid).
            let gu = swiglu_train(&t.g, &t.u)?;
            grads[l.down] = Some(linear_dw(&dx, &gu)?);
            drop(gu);
            let d_gu = linear_dx(&dx, &w(l.down))?;
            let (d_g, d_u) = swiglu_backward(&t.g, &t.u, &d_gu)?;
            drop(d_gu);
            let h2 = rms_norm_train(&t.x_mid, &w(l.post_norm), epsf)?;
            grads[l.gate] = Some(linear_dw(&d_g, &h2)?);
            grads[l.up] = Some(linear_dw(&d_u, &h2)?);
            drop(h2);
            let d_h2 = (linear_dx(&d_g, &w(l.gate))? + linear_dx(&d_u, &w(l.up))?)?;
            let (d_mid, dw) = rms_norm_backward(&t.x_mid, &w(l.post_norm), &d_h2, eps, Some(&dx))?;
            grads[l.post_norm] = Some(dw);
            // Attention: x_mid = x_in + o_proj(attn(rope(q), rope(k), v)), q, k, v of norm(x_in).
            grads[l.o] = Some(linear_dw(&d_mid, &t.a)?);
            if let Some(ob) = l.o_bias {
                grads[ob] = Some(bias_grad(&d_mid)?);
            }
            let d_a = linear_dx(&d_mid, &w(l.o))?.reshape((b, s, nh, hd))?;
            let (d_q, d_k, d_v) =
                crate::attention::causal_kernel_attention_bwd(&t.attn, &d_a, &tape.lengths, s)?;
            drop(d_a);
            let d_q = rope_backward(&d_q, &cos, &sin)?;
            let d_k = rope_backward(&d_k, &cos, &sin)?;
            let (d_q, d_k) = match (l.qk_norm, &t.q0, &t.k0) {
                (Some([qn, kn]), Some(q0), Some(k0)) => {
                    let (d_q, dwq) = rms_norm_backward(q0, &w(qn), &d_q, eps, None)?;
                    let (d_k, dwk) = rms_norm_backward(k0, &w(kn), &d_k, eps, None)?;
                    grads[qn] = Some(dwq);
                    grads[kn] = Some(dwk);
                    (d_q, d_k)
                }
                _ => (d_q, d_k),
            };
            let d_q = d_q.reshape((b, s, nh * hd))?;
            let d_k = d_k.reshape((b, s, nkv * hd))?;
            let d_v = d_v.reshape((b, s, nkv * hd))?;
            let h1 = rms_norm_train(&t.x_in, &w(l.input_norm), epsf)?;
            grads[l.q] = Some(linear_dw(&d_q, &h1)?);
            grads[l.k] = Some(linear_dw(&d_k, &h1)?);
            grads[l.v] = Some(linear_dw(&d_v, &h1)?);
            drop(h1);
            if let Some([qb, kb, vb]) = l.q_bias {
                grads[qb] = Some(bias_grad(&d_q)?);
                grads[kb] = Some(bias_grad(&d_k)?);
                grads[vb] = Some(bias_grad(&d_v)?);
            }
            let d_h1 = ((linear_dx(&d_q, &w(l.q))? + linear_dx(&d_k, &w(l.k))?)?
                + linear_dx(&d_v, &w(l.v))?)?;
            let (d_in, dw) =
                rms_norm_backward(&t.x_in, &w(l.input_norm), &d_h1, eps, Some(&d_mid))?;
            grads[l.input_norm] = Some(dw);
            dx = d_in;
        }
        // Embedding rows.
        let e = w(self.embed);
        grads[self.embed] = Some(embedding_backward(&e, &ids, &dx)?);
        Ok(grads)
    }
}

/// One layer's activations for the hand-written backward (cheap ones are recomputed).
struct LayerTape {
    x_in: Tensor,
    q0: Option<Tensor>,
    k0: Option<Tensor>,
    attn: crate::attention::AttnParts,
    a: Tensor,
    x_mid: Tensor,
    g: Tensor,
    u: Tensor,
}

/// What [`Model::backward_hidden`] reads from a [`Model::hidden_padded_taped`] forward.
pub struct HiddenTape {
    lengths: Vec<usize>,
    seq: usize,
    ids: Option<Tensor>,
    cos: Option<Tensor>,
    sin: Option<Tensor>,
    layers: Vec<LayerTape>,
    x_final: Option<Tensor>,
}

/// Right-pad rows into `[b, s]` ids and positions; returns (ids, positions, lengths, s).
pub fn pad_batch(
    rows: &[Vec<u32>],
    pad_id: u32,
    device: &Device,
) -> Result<(Tensor, Tensor, Vec<usize>, usize)> {
    let b = rows.len();
    let s = rows.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let mut ids = vec![pad_id; b * s];
    let mut pos = vec![0u32; b * s];
    for (i, r) in rows.iter().enumerate() {
        ids[i * s..i * s + r.len()].copy_from_slice(r);
        for (j, p) in pos[i * s..(i + 1) * s].iter_mut().enumerate() {
            *p = j as u32;
        }
    }
    let lengths = rows.iter().map(Vec::len).collect();
    Ok((
        Tensor::from_vec(ids, (b, s), device)?,
        Tensor::from_vec(pos, (b, s), device)?,
        lengths,
        s,
    ))
}

/// `x @ w.T + b` for x of any rank ≥ 2, as one matmul.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> candle_core::Result<Tensor> {
    linear_impl(x, w, b, 256)
}

/// [`linear`] as the Train mode forward runs it. Measured on the CPU (2 threads), W·xᵀ (plus
/// the transposing copy) is up to ~2× faster for ≤ 16–32 rows, but from ~64 rows on x·Wᵀ is as
/// fast or faster (the LM head at 256 rows: 2.5×), so training switches at 32 rows.
pub fn linear_train(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> candle_core::Result<Tensor> {
    linear_impl(x, w, b, 32)
}

fn linear_impl(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    max_small_rows: usize,
) -> candle_core::Result<Tensor> {
    let dims = x.dims().to_vec();
    let last = dims[dims.len() - 1];
    let rows: usize = dims[..dims.len() - 1].iter().product();
    let x2 = x.reshape((rows, last))?;
    // For few rows (decode steps), W·xᵀ packs the small operand instead of the weight
    // matrix and runs 20–50% faster on CPU; for many rows x·Wᵀ is as good or better.
    let y = if rows <= max_small_rows && !w.device().is_cuda() {
        w.matmul(&x2.t()?)?.t()?.contiguous()?
    } else {
        x2.matmul(&w.t()?)?
    };
    let y = match b {
        Some(b) => y.broadcast_add(b)?,
        None => y,
    };
    let mut out = dims;
    let n = out.len();
    out[n - 1] = w.dim(0)?;
    y.reshape(out)
}

/// RMSNorm from primitive ops (candle's fused one has no backward); statistics in f32.
pub fn rms_norm_composed(x: &Tensor, w: &Tensor, eps: f32) -> candle_core::Result<Tensor> {
    let dtype = x.dtype();
    let xf = x.to_dtype(DType::F32)?;
    let ms = xf.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = xf.broadcast_mul(&(ms + eps as f64)?.sqrt()?.recip()?)?;
    normed.to_dtype(dtype)?.broadcast_mul(w)
}

/// Rotate-half RoPE on `[b, s, heads, d]` with cos/sin `[b, s, d/2]`, from primitive ops.
pub fn rope_composed(x: &Tensor, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    let cos = Tensor::cat(&[cos, cos], D::Minus1)?.unsqueeze(2)?;
    let sin = Tensor::cat(&[sin, sin], D::Minus1)?.unsqueeze(2)?;
    let x1 = x.narrow(D::Minus1, 0, d / 2)?;
    let x2 = x.narrow(D::Minus1, d / 2, d / 2)?;
    let rot = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
    x.broadcast_mul(&cos)? + rot.broadcast_mul(&sin)?
}

// ---------------------------------------------------------------------------------------------
// CPU kernels with hand-written backward for the training forward (Train mode on a CPU device,
// f32 / f64). Each replaces a chain of composed candle ops (and their temporaries) by one
// row-parallel pass; other devices and dtypes keep the composed ops. The backward of every
// kernel is tested against autograd through the composed version.

/// The float types the CPU kernels support.
pub(crate) trait Real:
    WithDType
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
{
    fn exp(self) -> Self;
    fn fmax(self, o: Self) -> Self;
}

macro_rules! real {
    ($t:ty) => {
        impl Real for $t {
            #[inline(always)]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline(always)]
            fn fmax(self, o: Self) -> Self {
                <$t>::max(self, o)
            }
        }
    };
}
real!(f32);
real!(f64);

/// Whether the fused CPU kernels handle tensors of this device and dtype.
pub(crate) fn cpu_kernels(device: &Device, dtype: DType) -> bool {
    device.is_cpu() && matches!(dtype, DType::F32 | DType::F64)
}

fn kernel_threads() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| candle_core::utils::get_num_threads().max(1))
}

/// How many threads a row-parallel kernel uses: one per ~32k units of work, at most one per row
/// and one per core.
fn threads_for(rows: usize, work_per_row: usize) -> usize {
    const MIN_WORK: usize = 1 << 15;
    let by_work = rows.saturating_mul(work_per_row.max(1)) / MIN_WORK;
    kernel_threads().min(rows).min(by_work).max(1)
}

/// Split `out` into blocks of whole rows of `row_len` and run `f(first_row, block)` on each,
/// on scoped threads when the work is large enough to pay for them; returns the blocks' results
/// in order. The split depends only on the sizes and the thread count, so results are
/// deterministic on a given machine.
pub(crate) fn par_rows_map<T: Send, R: Send>(
    out: &mut [T],
    row_len: usize,
    work_per_row: usize,
    f: impl Fn(usize, &mut [T]) -> R + Sync,
) -> Vec<R> {
    let row_len = row_len.max(1);
    let rows = out.len() / row_len;
    let n = threads_for(rows, work_per_row);
    if n == 1 {
        return vec![f(0, out)];
    }
    let per = rows.div_ceil(n);
    std::thread::scope(|s| {
        let mut chunks = out.chunks_mut(per * row_len).enumerate();
        let first = chunks.next();
        let handles: Vec<_> = chunks
            .map(|(i, c)| {
                let f = &f;
                s.spawn(move || f(i * per, c))
            })
            .collect();
        let mut res = Vec::with_capacity(n);
        if let Some((_, c)) = first {
            res.push(f(0, c));
        }
        for h in handles {
            res.push(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
        }
        res
    })
}

/// [`par_rows`] over two outputs of the same length, split identically.
pub(crate) fn par_rows2<T: Send>(
    a: &mut [T],
    b: &mut [T],
    row_len: usize,
    work_per_row: usize,
    f: impl Fn(usize, &mut [T], &mut [T]) + Sync,
) {
    assert_eq!(a.len(), b.len());
    let row_len = row_len.max(1);
    let rows = a.len() / row_len;
    let n = threads_for(rows, work_per_row);
    if n == 1 {
        f(0, a, b);
        return;
    }
    let per = rows.div_ceil(n);
    std::thread::scope(|s| {
        let mut it = a
            .chunks_mut(per * row_len)
            .zip(b.chunks_mut(per * row_len))
            .enumerate();
        let first = it.next();
        for (i, (x, y)) in it {
            let f = &f;
            s.spawn(move || f(i * per, x, y));
        }
        if let Some((_, (x, y))) = first {
            f(0, x, y);
        }
    });
}

/// [`par_rows_map`] without results.
pub(crate) fn par_rows<T: Send>(
    out: &mut [T],
    row_len: usize,
    work_per_row: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    par_rows_map(out, row_len, work_per_row, f);
}

/// The contiguous CPU slice of a storage/layout pair.
pub(crate) fn cpu_slice<'a, T: WithDType>(
    s: &'a CpuStorage,
    l: &Layout,
) -> candle_core::Result<&'a [T]> {
    let Some((a, b)) = l.contiguous_offsets() else {
        candle_core::bail!("fused cpu kernel: input is not contiguous");
    };
    Ok(&T::cpu_storage_as_slice(s)?[a..b])
}

/// Run `f` on the host slice of a (made contiguous) CPU tensor.
pub(crate) fn with_host<T: WithDType, R>(
    t: &Tensor,
    f: impl FnOnce(&[T]) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    let t = t.contiguous()?;
    let (st, l) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*st else {
        candle_core::bail!("fused cpu kernel: tensor is not on the cpu");
    };
    f(cpu_slice(cpu, l)?)
}

/// Dispatch a CPU kernel on the dtype of its first input.
macro_rules! dispatch_real {
    ($storage:expr, $f:ident ( $($arg:expr),* )) => {
        match $storage {
            CpuStorage::F32(_) => $f::<f32>($($arg),*),
            CpuStorage::F64(_) => $f::<f64>($($arg),*),
            s => candle_core::bail!(
                "fused cpu kernel: unsupported dtype {:?}",
                candle_core::backend::BackendStorage::dtype(s)
            ),
        }
    };
}
pub(crate) use dispatch_real;

macro_rules! dispatch_dtype {
    ($dtype:expr, $f:ident ( $($arg:expr),* )) => {
        match $dtype {
            DType::F32 => $f::<f32>($($arg),*),
            DType::F64 => $f::<f64>($($arg),*),
            d => candle_core::bail!("fused cpu kernel: unsupported dtype {d:?}"),
        }
    };
}
pub(crate) use dispatch_dtype;

/// RMSNorm over the last dim with weight `[h]`: `y = x · rsqrt(mean(x²) + eps) · w`. Statistics
/// are accumulated in f64.
struct RmsNormOp {
    eps: f64,
}

#[inline(always)]
fn rms_scale<T: Real>(x: &[T], eps: f64) -> T {
    let ss: f64 = x.iter().map(|&v| v.to_f64() * v.to_f64()).sum();
    T::from_f64(1.0 / (ss / x.len() as f64 + eps).sqrt())
}

fn rms_norm_fwd<T: Real>(
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
    eps: f64,
) -> candle_core::Result<(CpuStorage, Shape)> {
    let x = cpu_slice::<T>(s1, l1)?;
    let w = cpu_slice::<T>(s2, l2)?;
    let h = w.len();
    if h == 0 || x.len() % h != 0 || l1.dims().last() != Some(&h) {
        candle_core::bail!("rms_norm: x {:?} vs w {:?}", l1.dims(), l2.dims());
    }
    let mut out = vec![T::from_f64(0.0); x.len()];
    par_rows(&mut out, h, 3 * h, |r0, o| {
        for (xr, or) in x[r0 * h..].chunks_exact(h).zip(o.chunks_exact_mut(h)) {
            let r = rms_scale(xr, eps);
            for ((o, &xv), &wv) in or.iter_mut().zip(xr).zip(w) {
                *o = xv * r * wv;
            }
        }
    });
    Ok((T::to_cpu_storage_owned(out), l1.shape().clone()))
}

/// RMSNorm backward: (dx [+ resid], dw).
fn rms_norm_bwd<T: Real>(
    x: &Tensor,
    w: &Tensor,
    g: &Tensor,
    eps: f64,
    resid: Option<&Tensor>,
) -> candle_core::Result<(Tensor, Tensor)> {
    let mut dx: Vec<T> = match resid {
        Some(r) => r.to_dtype(T::DTYPE)?.flatten_all()?.to_vec1::<T>()?,
        None => vec![T::from_f64(0.0); x.elem_count()],
    };
    if dx.len() != x.elem_count() || g.elem_count() != x.elem_count() {
        candle_core::bail!("rms_norm backward: sizes {:?} {:?}", x.dims(), g.dims());
    }
    let dw = with_host::<T, _>(x, |xs| {
        with_host::<T, _>(w, |ws| {
            with_host::<T, _>(g, |gs| {
                let h = ws.len();
                // dw: f64 partial sums per block of rows, added in block order.
                let parts = par_rows_map(&mut dx, h, 6 * h, |r0, d| {
                    let mut dwp = vec![0f64; h];
                    for (i, dr) in d.chunks_exact_mut(h).enumerate() {
                        let off = (r0 + i) * h;
                        let (xr, gr) = (&xs[off..off + h], &gs[off..off + h]);
                        let r = rms_scale(xr, eps);
                        let mut c = 0f64;
                        for j in 0..h {
                            let n = xr[j] * r;
                            c += (gr[j] * ws[j] * n).to_f64();
                            dwp[j] += (gr[j] * n).to_f64();
                        }
                        let c = T::from_f64(c / h as f64);
                        for j in 0..h {
                            dr[j] += r * (gr[j] * ws[j] - xr[j] * r * c);
                        }
                    }
                    dwp
                });
                Ok((0..h)
                    .map(|j| T::from_f64(parts.iter().map(|p| p[j]).sum()))
                    .collect::<Vec<T>>())
            })
        })
    })?;
    Ok((
        Tensor::from_vec(dx, x.shape(), x.device())?,
        Tensor::from_vec(dw, w.shape(), w.device())?,
    ))
}

impl CustomOp2 for RmsNormOp {
    fn name(&self) -> &'static str {
        "rlvr-rms-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        dispatch_real!(s1, rms_norm_fwd(s1, l1, s2, l2, self.eps))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw) = dispatch_dtype!(x.dtype(), rms_norm_bwd(x, w, g, self.eps, None))?;
        Ok((Some(dx), Some(dw)))
    }
}

/// RMSNorm backward for the hand-written decoder backward: (dx + resid, dw).
fn rms_norm_backward(
    x: &Tensor,
    w: &Tensor,
    g: &Tensor,
    eps: f64,
    resid: Option<&Tensor>,
) -> candle_core::Result<(Tensor, Tensor)> {
    dispatch_dtype!(x.dtype(), rms_norm_bwd(x, w, g, eps, resid))
}

/// Gradient of `W` in `y = x·Wᵀ` (rows of any leading shape): `dyᵀ·x`, `[out, in]`.
fn linear_dw(dy: &Tensor, x: &Tensor) -> candle_core::Result<Tensor> {
    let out = dy.dim(D::Minus1)?;
    let inp = x.dim(D::Minus1)?;
    let dy2 = dy.reshape(((), out))?;
    let x2 = x.reshape(((), inp))?;
    dy2.t()?.matmul(&x2)
}

/// Gradient of `x` in `y = x·Wᵀ`: `dy·W`, shaped like x.
fn linear_dx(dy: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    let mut dims = dy.dims().to_vec();
    let out = dims[dims.len() - 1];
    let dx = dy.reshape(((), out))?.matmul(w)?;
    let n = dims.len();
    dims[n - 1] = w.dim(1)?;
    dx.reshape(dims)
}

/// Gradient of the bias in `y = x·Wᵀ + b`: the sum of dy over rows.
fn bias_grad(dy: &Tensor) -> candle_core::Result<Tensor> {
    let out = dy.dim(D::Minus1)?;
    dy.reshape(((), out))?.sum(0)
}

fn swiglu_backward(g: &Tensor, u: &Tensor, d: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
    dispatch_dtype!(g.dtype(), swiglu_bwd(g, u, d))
}

fn rope_backward(d: &Tensor, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
    d.contiguous()?.apply_op1_no_bwd(&RopeOp {
        cos: cos.contiguous()?,
        sin: sin.contiguous()?,
        inverse: true,
    })
}

/// Gradient of the embedding table from the gradient of its looked-up rows.
fn embedding_backward(e: &Tensor, ids: &Tensor, dx: &Tensor) -> candle_core::Result<Tensor> {
    fn go<T: Real>(e: &Tensor, ids: &[u32], dx: &Tensor) -> candle_core::Result<Tensor> {
        let (v, h) = e.dims2()?;
        let mut out = vec![T::from_f64(0.0); v * h];
        with_host::<T, _>(dx, |d| {
            if d.len() != ids.len() * h {
                candle_core::bail!(
                    "embedding backward: {} rows for {} ids",
                    d.len() / h,
                    ids.len()
                );
            }
            for (&id, row) in ids.iter().zip(d.chunks_exact(h)) {
                let dst = &mut out[id as usize * h..(id as usize + 1) * h];
                for (o, &g) in dst.iter_mut().zip(row) {
                    *o += g;
                }
            }
            Ok(())
        })?;
        Tensor::from_vec(out, (v, h), e.device())
    }
    let ids = ids.flatten_all()?.to_vec1::<u32>()?;
    dispatch_dtype!(e.dtype(), go(e, &ids, dx))
}

/// RMSNorm with a backward: the fused CPU kernel for f32/f64 on the CPU, else the composed ops.
pub fn rms_norm_train(x: &Tensor, w: &Tensor, eps: f32) -> candle_core::Result<Tensor> {
    if cpu_kernels(x.device(), x.dtype()) && w.dtype() == x.dtype() {
        x.contiguous()?
            .apply_op2(&w.contiguous()?, RmsNormOp { eps: eps as f64 })
    } else {
        rms_norm_composed(x, w, eps)
    }
}

/// Rotate-half RoPE on contiguous `[b, s, heads, d]` with cos/sin `[b, s, d/2]`; `inverse`
/// rotates by −θ (the backward of the forward rotation).
struct RopeOp {
    cos: Tensor,
    sin: Tensor,
    inverse: bool,
}

fn rope_fwd<T: Real>(
    s: &CpuStorage,
    l: &Layout,
    cos: &Tensor,
    sin: &Tensor,
    inverse: bool,
) -> candle_core::Result<(CpuStorage, Shape)> {
    let x = cpu_slice::<T>(s, l)?;
    let (b, sq, heads, d) = l.shape().dims4()?;
    let half = d / 2;
    if cos.dims() != [b, sq, half] || sin.dims() != [b, sq, half] || d % 2 != 0 {
        candle_core::bail!("rope: x {:?} vs cos {:?}", l.dims(), cos.dims());
    }
    let mut out = vec![T::from_f64(0.0); x.len()];
    with_host::<T, _>(cos, |cs| {
        with_host::<T, _>(sin, |ss| {
            let row = heads * d;
            par_rows(&mut out, row, 3 * row, |r0, o| {
                for (i, orow) in o.chunks_exact_mut(row).enumerate() {
                    let r = r0 + i;
                    let (c, sn) = (&cs[r * half..(r + 1) * half], &ss[r * half..(r + 1) * half]);
                    let xr = &x[r * row..(r + 1) * row];
                    for (xh, oh) in xr.chunks_exact(d).zip(orow.chunks_exact_mut(d)) {
                        let (x1, x2) = xh.split_at(half);
                        let (o1, o2) = oh.split_at_mut(half);
                        for k in 0..half {
                            let s = if inverse { -sn[k] } else { sn[k] };
                            o1[k] = x1[k] * c[k] - x2[k] * s;
                            o2[k] = x2[k] * c[k] + x1[k] * s;
                        }
                    }
                }
            });
            Ok(())
        })
    })?;
    Ok((T::to_cpu_storage_owned(out), l.shape().clone()))
}

impl CustomOp1 for RopeOp {
    fn name(&self) -> &'static str {
        "rlvr-rope"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        dispatch_real!(s, rope_fwd(s, l, &self.cos, &self.sin, self.inverse))
    }

    fn bwd(&self, _x: &Tensor, _res: &Tensor, g: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let inv = RopeOp {
            cos: self.cos.clone(),
            sin: self.sin.clone(),
            inverse: !self.inverse,
        };
        Ok(Some(g.contiguous()?.apply_op1_no_bwd(&inv)?))
    }
}

/// Rotate-half RoPE with a backward: the fused CPU kernel for f32/f64 on the CPU, else the
/// composed ops. `x` `[b, s, heads, d]`, cos/sin `[b, s, d/2]`.
pub fn rope_train(x: &Tensor, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
    if cpu_kernels(x.device(), x.dtype()) && cos.dtype() == x.dtype() && sin.dtype() == x.dtype() {
        x.contiguous()?.apply_op1(RopeOp {
            cos: cos.contiguous()?.detach(),
            sin: sin.contiguous()?.detach(),
            inverse: false,
        })
    } else {
        rope_composed(x, cos, sin)
    }
}

/// `silu(g) · u` (SwiGLU) with a backward.
struct SwiGluOp;

fn swiglu_fwd<T: Real>(
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
) -> candle_core::Result<(CpuStorage, Shape)> {
    let g = cpu_slice::<T>(s1, l1)?;
    let u = cpu_slice::<T>(s2, l2)?;
    if l1.dims() != l2.dims() {
        candle_core::bail!("swiglu: {:?} vs {:?}", l1.dims(), l2.dims());
    }
    let one = T::from_f64(1.0);
    let mut out = vec![T::from_f64(0.0); g.len()];
    let row = *l1.dims().last().unwrap_or(&1);
    par_rows(&mut out, row, 8 * row, |r0, o| {
        let off = r0 * row;
        for ((o, &gv), &uv) in o.iter_mut().zip(&g[off..]).zip(&u[off..]) {
            *o = gv / (one + (-gv).exp()) * uv;
        }
    });
    Ok((T::to_cpu_storage_owned(out), l1.shape().clone()))
}

fn swiglu_bwd<T: Real>(
    g: &Tensor,
    u: &Tensor,
    grad: &Tensor,
) -> candle_core::Result<(Tensor, Tensor)> {
    let one = T::from_f64(1.0);
    with_host::<T, _>(g, |gs| {
        with_host::<T, _>(u, |us| {
            with_host::<T, _>(grad, |ds| {
                let n = gs.len();
                let mut dg = vec![T::from_f64(0.0); n];
                let mut du = vec![T::from_f64(0.0); n];
                par_rows2(&mut dg, &mut du, 1, 12, |k0, a, b| {
                    for (i, (a, b)) in a.iter_mut().zip(b.iter_mut()).enumerate() {
                        let k = k0 + i;
                        let (gv, uv, dv) = (gs[k], us[k], ds[k]);
                        let s = one / (one + (-gv).exp());
                        *a = dv * uv * s * (one + gv * (one - s));
                        *b = dv * gv * s;
                    }
                });
                Ok((
                    Tensor::from_vec(dg, g.shape(), g.device())?,
                    Tensor::from_vec(du, u.shape(), u.device())?,
                ))
            })
        })
    })
}

impl CustomOp2 for SwiGluOp {
    fn name(&self) -> &'static str {
        "rlvr-swiglu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        dispatch_real!(s1, swiglu_fwd(s1, l1, s2, l2))
    }

    fn bwd(
        &self,
        g: &Tensor,
        u: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (dg, du) = dispatch_dtype!(g.dtype(), swiglu_bwd(g, u, grad))?;
        Ok((Some(dg), Some(du)))
    }
}

/// `silu(g) · u` with a backward: the fused CPU kernel for f32/f64 on the CPU, else the composed
/// ops.
pub fn swiglu_train(g: &Tensor, u: &Tensor) -> candle_core::Result<Tensor> {
    if cpu_kernels(g.device(), g.dtype()) && u.dtype() == g.dtype() && g.dims() == u.dims() {
        g.contiguous()?.apply_op2(&u.contiguous()?, SwiGluOp)
    } else {
        g.silu()? * u
    }
}

#[cfg(test)]
pub(crate) mod kernel_tests {
    use super::*;
    use candle_core::Var;

    pub(crate) fn randt(shape: &[usize], seed: u64, scale: f64, dtype: DType) -> Tensor {
        let n: usize = shape.iter().product();
        let mut r = crate::rng::SplitMix64::new(seed);
        let v: Vec<f64> = (0..n).map(|_| r.normal() as f32 as f64 * scale).collect();
        Tensor::from_vec(v, shape, &Device::Cpu)
            .unwrap()
            .to_dtype(dtype)
            .unwrap()
    }

    pub(crate) fn close(a: &Tensor, b: &Tensor, tol: f64, what: &str) {
        assert_eq!(a.dims(), b.dims(), "{what}");
        let f = |t: &Tensor| -> Vec<f64> {
            t.to_dtype(DType::F64)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        let (a, b) = (f(a), f(b));
        let scale = b.iter().fold(1e-30f64, |m, x| m.max(x.abs()));
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!(
                (x - y).abs() <= tol * scale,
                "{what}[{i}]: {x} vs {y} (scale {scale})"
            );
        }
    }

    /// Values and gradients (of `Σ y · R` for a random R) of a kernel against its composed
    /// version, for each input.
    pub(crate) fn check(
        inputs: &[Tensor],
        fused: impl Fn(&[Tensor]) -> Tensor,
        composed: impl Fn(&[Tensor]) -> Tensor,
        tol: f64,
        what: &str,
    ) {
        let vars: Vec<Var> = inputs
            .iter()
            .map(|t| Var::from_tensor(t).unwrap())
            .collect();
        let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let y = fused(&ts);
        let y0 = composed(&ts);
        close(&y, &y0, tol, &format!("{what} value"));
        let r = randt(y.dims(), 99, 1.0, y.dtype());
        let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let g0 = (&y0 * &r).unwrap().sum_all().unwrap().backward().unwrap();
        for (i, t) in ts.iter().enumerate() {
            close(
                g.get(t).unwrap(),
                g0.get(t).unwrap(),
                tol,
                &format!("{what} grad {i}"),
            );
        }
    }

    #[test]
    fn rms_norm_kernel_matches_composed() {
        for dtype in [DType::F64, DType::F32] {
            // f32 composed statistics vs f64 accumulation: f32 round-off.
            let tol = if dtype == DType::F64 { 1e-6 } else { 1e-5 };
            for shape in [vec![3, 5, 16], vec![2, 300, 64]] {
                let h = shape[2];
                let x = randt(&shape, 1, 2.0, dtype);
                let w = (randt(&[h], 2, 0.2, dtype) + 1.0).unwrap();
                check(
                    &[x, w],
                    |t| rms_norm_train(&t[0], &t[1], 1e-5).unwrap(),
                    |t| rms_norm_composed(&t[0], &t[1], 1e-5).unwrap(),
                    tol,
                    "rms_norm",
                );
            }
        }
    }

    #[test]
    fn rope_kernel_matches_composed() {
        for dtype in [DType::F64, DType::F32] {
            let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
            let (b, s, heads, d) = (2, 7, 3, 8);
            let x = randt(&[b, s, heads, d], 3, 1.0, dtype);
            let ang = randt(&[b, s, d / 2], 4, 3.0, DType::F64);
            let (cos, sin) = (
                ang.cos().unwrap().to_dtype(dtype).unwrap(),
                ang.sin().unwrap().to_dtype(dtype).unwrap(),
            );
            check(
                &[x],
                |t| rope_train(&t[0], &cos, &sin).unwrap(),
                |t| rope_composed(&t[0], &cos, &sin).unwrap(),
                tol,
                "rope",
            );
        }
    }

    #[test]
    fn swiglu_kernel_matches_composed() {
        for dtype in [DType::F64, DType::F32] {
            let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
            for shape in [vec![3, 4, 10], vec![2, 100, 400]] {
                let g = randt(&shape, 5, 3.0, dtype);
                let u = randt(&shape, 6, 1.0, dtype);
                check(
                    &[g, u],
                    |t| swiglu_train(&t[0], &t[1]).unwrap(),
                    |t| (t[0].silu().unwrap() * &t[1]).unwrap(),
                    tol,
                    "swiglu",
                );
            }
        }
    }

    fn tiny(qkv_bias: bool, o_bias: bool, qk_norm: bool, tie: bool) -> crate::config::ModelConfig {
        crate::config::ModelConfig {
            intermediate_size: 48,
            rms_norm_eps: 1e-5,
            max_position_embeddings: 64,
            tie_word_embeddings: tie,
            qkv_bias,
            o_bias,
            qk_norm,
            bos_token_id: None,
            eos_token_ids: vec![],
            ..crate::config::ModelConfig::tiny(crate::config::Architecture::Llama, 50, 32, 2)
        }
    }

    /// The hand-written decoder backward against candle's autograd through the Train mode
    /// forward: same hidden states (bit for bit) and the same gradient for every parameter,
    /// for each architecture option, in f64 and f32.
    #[test]
    fn taped_backward_matches_autograd() {
        let rows = vec![
            vec![1, 2, 3, 4, 5, 6, 7],
            vec![7, 8, 9],
            vec![9, 10, 11, 12, 13, 1, 2],
        ];
        for (qkv_bias, o_bias, qk_norm, tie) in [
            (false, false, false, true),
            (true, false, false, false),
            (false, true, true, true),
        ] {
            for dtype in [DType::F64, DType::F32] {
                let tol = if dtype == DType::F64 { 1e-9 } else { 2e-4 };
                let m = Model::random(tiny(qkv_bias, o_bias, qk_norm, tie), 5, dtype, &Device::Cpu)
                    .unwrap();
                let h = m.hidden_padded(&rows, 0, Mode::Train).unwrap();
                let r = randt(h.dims(), 7, 1.0, dtype);
                let g = (&h * &r).unwrap().sum_all().unwrap().backward().unwrap();
                let (h2, tape) = m.hidden_padded_taped(&rows, 0).unwrap();
                assert!(!h2.track_op());
                close(&h2, &h, 0.0, "taped hidden");
                let grads = m.backward_hidden(tape, &r).unwrap();
                for ((name, v), gt) in m.named_vars().zip(&grads) {
                    let what = format!("{name} ({qkv_bias} {o_bias} {qk_norm} {tie} {dtype:?})");
                    match (gt, g.get(v.as_tensor())) {
                        (Some(a), Some(b)) => close(a, b, tol, &what),
                        (None, None) => assert_eq!(name, "lm_head.weight"),
                        (a, b) => panic!("{what}: {:?} vs {:?}", a.is_some(), b.is_some()),
                    }
                }
            }
        }
    }

    /// A whole Train mode forward with the kernels against the same model on a device-like
    /// path without them is covered by the golden and finite-difference tests; here the padded
    /// hidden states with and without a graph must be bit-identical.
    #[test]
    fn no_grad_hidden_is_bit_identical() {
        let cfg = crate::config::ModelConfig {
            rms_norm_eps: 1e-5,
            max_position_embeddings: 64,
            qk_norm: true,
            bos_token_id: None,
            eos_token_ids: vec![],
            ..crate::config::ModelConfig::tiny(crate::config::Architecture::Llama, 50, 32, 2)
        };
        let m = Model::random(cfg, 3, DType::F32, &Device::Cpu).unwrap();
        let rows = vec![vec![1, 2, 3, 4, 5], vec![7, 8], vec![9, 10, 11]];
        let a = m.hidden_padded(&rows, 0, Mode::Train).unwrap();
        let b = m.hidden_padded_no_grad(&rows, 0, Mode::Train).unwrap();
        let bits = |t: &Tensor| -> Vec<u32> {
            t.flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .into_iter()
                .map(f32::to_bits)
                .collect()
        };
        assert_eq!(bits(&a), bits(&b));
        // Train and Inference numerics agree closely.
        let c = m.hidden_padded(&rows, 0, Mode::Inference).unwrap();
        close(&a, &c, 1e-4, "train vs inference hidden");
    }
}
