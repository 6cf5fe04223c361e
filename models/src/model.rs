//! One parametrised decoder for Llama / SmolLM2 / Qwen2 / Qwen3. Weights are candle `Var`s with
//! HF names; the forward pass takes an injected [`Attention`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

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
        let mut rng = SplitMix(seed);
        let mut tensors = HashMap::new();
        for (name, shape) in expected_tensors(&config) {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = if name.ends_with("norm.weight") {
                (0..n).map(|_| 1.0 + 0.1 * rng.normal()).collect()
            } else {
                (0..n).map(|_| 0.02 * rng.normal()).collect()
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
        self.hidden_impl(input_ids, positions, attn, mode)
            .ctx(|| "decoder forward".to_string())
    }

    fn hidden_impl(
        &self,
        input_ids: &Tensor,
        positions: &Tensor,
        attn: &mut dyn Attention,
        mode: Mode,
    ) -> candle_core::Result<Tensor> {
        let cfg = &self.config;
        let (b, s) = input_ids.dims2()?;
        let eps = cfg.rms_norm_eps as f32;
        let fused = mode == Mode::Inference;
        let (cos, sin) = self.rope_tables(positions)?;
        let rope = |x: &Tensor| -> candle_core::Result<Tensor> {
            if fused {
                candle_nn::rotary_emb::rope_thd(&x.contiguous()?, &cos, &sin)
            } else {
                rope_composed(x, &cos, &sin)
            }
        };
        let norm = |x: &Tensor, w: &Tensor| -> candle_core::Result<Tensor> {
            if fused {
                candle_nn::ops::rms_norm(&x.contiguous()?, w, eps)
            } else {
                rms_norm_composed(x, w, eps)
            }
        };
        let embed = self.w(self.embed, mode);
        let mut x = embed
            .embedding(&input_ids.flatten_all()?)?
            .reshape((b, s, ()))?;
        let (nh, nkv, hd) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        for (li, l) in self.layers.iter().enumerate() {
            let h = norm(&x, &self.w(l.input_norm, mode))?;
            let bias = |i: Option<usize>| i.map(|i| self.w(i, mode));
            let (qb, kb, vb) = match l.q_bias {
                Some([q, k, v]) => (Some(q), Some(k), Some(v)),
                None => (None, None, None),
            };
            let q = linear(&h, &self.w(l.q, mode), bias(qb).as_ref())?.reshape((b, s, nh, hd))?;
            let k = linear(&h, &self.w(l.k, mode), bias(kb).as_ref())?.reshape((b, s, nkv, hd))?;
            let v = linear(&h, &self.w(l.v, mode), bias(vb).as_ref())?.reshape((b, s, nkv, hd))?;
            let (q, k) = match l.qk_norm {
                Some([qn, kn]) => (norm(&q, &self.w(qn, mode))?, norm(&k, &self.w(kn, mode))?),
                None => (q, k),
            };
            let q = rope(&q)?;
            let k = rope(&k)?;
            let a = attn.attend(li, &q, &k, &v)?.reshape((b, s, nh * hd))?;
            let a = linear(&a, &self.w(l.o, mode), bias(l.o_bias).as_ref())?;
            x = (x + a)?;
            let h = norm(&x, &self.w(l.post_norm, mode))?;
            let g = linear(&h, &self.w(l.gate, mode), None)?.silu()?;
            let u = linear(&h, &self.w(l.up, mode), None)?;
            let m = linear(&(g * u)?, &self.w(l.down, mode), None)?;
            x = (x + m)?;
        }
        norm(&x, &self.w(self.norm, mode))
    }

    /// Project hidden states `[b, s, hidden]` to logits `[b, s, vocab]` in f32.
    pub fn logits_from_hidden(&self, hidden: &Tensor, mode: Mode) -> Result<Tensor> {
        linear(hidden, &self.w(self.lm_head, mode), None)
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
        let (ids, pos, lengths, s) = pad_batch(rows, pad_id, &self.device)?;
        let mut attn = CausalAttention::new(&lengths, s, self.dtype, &self.device)?;
        if mode == Mode::Inference {
            attn = attn.inference();
        }
        self.forward(&ids, &pos, &mut attn, mode)
    }
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
    let dims = x.dims().to_vec();
    let last = dims[dims.len() - 1];
    let rows: usize = dims[..dims.len() - 1].iter().product();
    let x2 = x.reshape((rows, last))?;
    // For few rows (decode steps), W·xᵀ packs the small operand instead of the weight
    // matrix and runs 20–50% faster on CPU; for many rows x·Wᵀ is as good.
    let y = if rows <= 256 && !w.device().is_cuda() {
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

/// Small deterministic RNG for random test weights (no dependency on `rand`'s stream stability).
pub(crate) struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn normal(&mut self) -> f32 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }
}
