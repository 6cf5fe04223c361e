//! The hand-written backward of the training forward (CPU f32 / f64): what the taped forward
//! keeps ([`HiddenTape`]) and [`Model::backward_hidden`], layer by layer in reverse, each
//! layer's activations dropped as soon as its backward is done (with activation recomputation,
//! each run of layers is first recomputed from its saved input: `recompute.rs`). Under LoRA the
//! base weights get no gradient (their dW matmuls are skipped) and the adapters get theirs.
//! Checked against candle's autograd through the same forward.

use candle_core::Tensor;

use super::params::LayerSlot::{self, *};
use super::{LayerParams, Model};
use crate::attention::{causal_kernel_attention_bwd, AttnParts};
use crate::error::{CandleContext, Result};
use crate::kernels::embedding::embedding_backward;
use crate::kernels::rms_norm::rms_norm_backward;
use crate::kernels::rope::rope_backward;
use crate::kernels::swiglu::swiglu_backward;
use crate::ops::{bias_grad, linear_dw, linear_dx, rms_norm_train, swiglu_train};
use crate::packed::attention::{packed_kernel_attention_bwd, PackedIndex};

type Result2 = candle_core::Result<Tensor>;

/// One layer's activations for the hand-written backward (cheap ones are recomputed).
pub(super) struct LayerTape {
    pub x_in: Tensor,
    /// q and k before their norms (Qwen3's q/k norm only).
    pub q0: Option<Tensor>,
    pub k0: Option<Tensor>,
    pub attn: AttnParts,
    /// The attention output before `o_proj`, `[b, s, heads·d]`.
    pub a: Tensor,
    /// The residual stream between the attention and MLP blocks.
    pub x_mid: Tensor,
    pub g: Tensor,
    pub u: Tensor,
}

/// What [`Model::backward_hidden`] reads from a taped forward ([`super::Grad::Tape`]).
pub struct HiddenTape {
    pub(super) lengths: Vec<usize>,
    pub(super) seq_len: usize,
    ids: Option<Tensor>,
    cos: Option<Tensor>,
    sin: Option<Tensor>,
    pub(super) layers: Vec<LayerTape>,
    /// With recomputation every k layers: the inputs of layers 0, k, 2k, …
    pub(super) recompute_every: Option<usize>,
    pub(super) checkpoints: Vec<Tensor>,
    pub(super) x_final: Option<Tensor>,
    /// The packed layout's attention indices (`None`: right-padded rows).
    pub(super) packed: Option<PackedIndex>,
}

impl HiddenTape {
    pub(super) fn new(
        lengths: Vec<usize>,
        seq_len: usize,
        num_layers: usize,
        recompute_every: Option<usize>,
    ) -> Self {
        let kept = if recompute_every.is_some() {
            0
        } else {
            num_layers
        };
        HiddenTape {
            lengths,
            seq_len,
            ids: None,
            cos: None,
            sin: None,
            layers: Vec::with_capacity(kept),
            recompute_every,
            checkpoints: Vec::new(),
            x_final: None,
            packed: None,
        }
    }

    /// Whether each layer's activations are kept (no recomputation).
    pub(super) fn keeps_layers(&self) -> bool {
        self.recompute_every.is_none()
    }

    /// Keep `x`, the input of layer `index`, if it starts a run of recomputed layers.
    pub(super) fn record_checkpoint(&mut self, index: usize, x: &Tensor) {
        if let Some(k) = self.recompute_every {
            if index.is_multiple_of(k.max(1)) {
                self.checkpoints.push(x.clone());
            }
        }
    }

    pub(super) fn record_inputs(&mut self, ids: Tensor, cos: Tensor, sin: Tensor) {
        self.ids = Some(ids);
        self.cos = Some(cos);
        self.sin = Some(sin);
    }
}

/// The gradients flowing back through one layer.
pub(super) struct LayerBackward<'a> {
    model: &'a Model,
    /// Base weights' gradients ([`Model::vars`] order); untouched when `frozen`.
    grads: &'a mut [Option<Tensor>],
    /// Adapters' gradients ([`crate::model::Lora::vars`] order; empty without LoRA).
    lora_grads: &'a mut [Option<Tensor>],
    frozen: bool,
    /// The layer being differentiated.
    layer: usize,
    cos: &'a Tensor,
    sin: &'a Tensor,
    lengths: &'a [usize],
    seq_len: usize,
    packed: Option<&'a PackedIndex>,
}

impl Model {
    /// The hand-written backward of a taped forward: given dL/d(hidden) `[b, s, hidden]`, the
    /// gradient of every trainable parameter, in [`Model::trainable`] order (`None`: no
    /// gradient, e.g. an untied LM head).
    pub fn backward_hidden(
        &self,
        tape: HiddenTape,
        d_hidden: &Tensor,
    ) -> Result<Vec<Option<Tensor>>> {
        self.backward_layers(tape, d_hidden)
            .ctx(|| "decoder backward".to_string())
    }

    fn backward_layers(
        &self,
        tape: HiddenTape,
        d_hidden: &Tensor,
    ) -> candle_core::Result<Vec<Option<Tensor>>> {
        let (b, s) = (tape.lengths.len(), tape.seq_len);
        let frozen = self.lora.is_some();
        let mut grads: Vec<Option<Tensor>> = vec![None; self.vars.len()];
        let mut lora_grads = vec![None; self.lora.as_ref().map_or(0, |l| l.vars().len())];
        let (Some(x_final), Some(ids), Some(cos), Some(sin)) =
            (tape.x_final, tape.ids, tape.cos, tape.sin)
        else {
            candle_core::bail!("incomplete tape");
        };
        let d_hidden = d_hidden
            .detach()
            .to_dtype(self.dtype)?
            .reshape((b, s, ()))?;
        let eps = self.config.rms_norm_eps;
        let (mut dx, dw) = rms_norm_backward(
            &x_final,
            &self.weight(self.norm, false),
            &d_hidden,
            eps,
            None,
        )?;
        if !frozen {
            grads[self.norm] = Some(dw);
        }
        let mut step = LayerBackward {
            model: self,
            grads: &mut grads,
            lora_grads: &mut lora_grads,
            frozen,
            layer: 0,
            cos: &cos,
            sin: &sin,
            lengths: &tape.lengths,
            seq_len: s,
            packed: tape.packed.as_ref(),
        };
        let n = self.layers.len();
        let k = tape.recompute_every.unwrap_or(n).max(1);
        let (mut stored, mut checkpoints) = (tape.layers, tape.checkpoints);
        let mut end = n;
        // Runs of k layers from the last; each layer's tape is dropped once its backward is done.
        while end > 0 {
            let start = (end - 1) / k * k;
            let mut run = match tape.recompute_every {
                Some(_) => {
                    let Some(x) = checkpoints.pop() else {
                        candle_core::bail!("incomplete tape: no input saved for layer {start}");
                    };
                    self.recompute_layers(start..end, x, &step)?
                }
                None => stored.split_off(start),
            };
            while let Some(t) = run.pop() {
                step.layer = start + run.len();
                let l = &self.layers[step.layer];
                let d_mid = step.mlp(l, &t, &dx)?;
                dx = step.attention(l, &t, &d_mid)?;
            }
            end = start;
        }
        if frozen {
            return Ok(lora_grads);
        }
        let table = self.weight(self.embed, false);
        grads[self.embed] = Some(embedding_backward(&table, &ids, &dx)?);
        Ok(grads)
    }
}

impl LayerBackward<'_> {
    fn w(&self, i: usize) -> Tensor {
        self.model.weight(i, false)
    }

    pub(super) fn cos_sin(&self) -> (&Tensor, &Tensor) {
        (self.cos, self.sin)
    }

    pub(super) fn lengths(&self) -> (&[usize], usize) {
        (self.lengths, self.seq_len)
    }

    /// The packed layout's attention indices (`None`: right-padded rows).
    pub(super) fn packed(&self) -> Option<&PackedIndex> {
        self.packed
    }

    /// Store a base weight's gradient, computed only when the base trains.
    fn set_grad(
        &mut self,
        i: usize,
        f: impl FnOnce() -> candle_core::Result<Tensor>,
    ) -> candle_core::Result<()> {
        if !self.frozen {
            self.grads[i] = Some(f()?);
        }
        Ok(())
    }

    /// The backward of the projection `slot` (`y = x·Wᵀ` plus its adapter, if any) for `dy`:
    /// stores dW (or dA, dB) and returns dx.
    fn proj(&mut self, l: &LayerParams, slot: LayerSlot, x: &Tensor, dy: &Tensor) -> Result2 {
        let w = l.at(slot);
        self.set_grad(w, || linear_dw(dy, x))?;
        let dx = linear_dx(dy, &self.w(w))?;
        let Some(lora) = &self.model.lora else {
            return Ok(dx);
        };
        let Some(i) = lora.find(self.layer, slot) else {
            return Ok(dx);
        };
        let (d_a, d_b, d_x) = lora.backward(i, x, dy)?;
        self.lora_grads[i] = Some(d_a);
        self.lora_grads[i + 1] = Some(d_b);
        dx + d_x
    }

    fn eps(&self) -> f64 {
        self.model.config.rms_norm_eps
    }

    /// `x = x_mid + down(swiglu(gate(h2), up(h2)))`, `h2 = norm(x_mid)`: returns d(x_mid).
    fn mlp(&mut self, l: &LayerParams, t: &LayerTape, dx: &Tensor) -> candle_core::Result<Tensor> {
        let gu = swiglu_train(&t.g, &t.u)?;
        let d_gu = self.proj(l, Down, &gu, dx)?;
        drop(gu);
        let (d_g, d_u) = swiglu_backward(&t.g, &t.u, &d_gu)?;
        drop(d_gu);
        let h2 = rms_norm_train(&t.x_mid, &self.w(l.at(PostNorm)), self.eps() as f32)?;
        let d_h2 = (self.proj(l, Gate, &h2, &d_g)? + self.proj(l, Up, &h2, &d_u)?)?;
        drop(h2);
        let (d_mid, dw) = rms_norm_backward(
            &t.x_mid,
            &self.w(l.at(PostNorm)),
            &d_h2,
            self.eps(),
            Some(dx),
        )?;
        self.set_grad(l.at(PostNorm), || Ok(dw))?;
        Ok(d_mid)
    }

    /// `x_mid = x_in + o_proj(attn(rope(q), rope(k), v))`, q, k, v of `norm(x_in)`: returns
    /// d(x_in).
    fn attention(
        &mut self,
        l: &LayerParams,
        t: &LayerTape,
        d_mid: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let cfg = &self.model.config;
        let (b, s) = (self.lengths.len(), self.seq_len);
        let (nh, nkv, hd) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        if let Some(ob) = l.get(OBias) {
            self.set_grad(ob, || bias_grad(d_mid))?;
        }
        let d_a = self.proj(l, O, &t.a, d_mid)?.reshape((b, s, nh, hd))?;
        let (d_q, d_k, d_v) = match self.packed {
            Some(index) => packed_kernel_attention_bwd(&t.attn, &d_a, index)?,
            None => causal_kernel_attention_bwd(&t.attn, &d_a, self.lengths, s)?,
        };
        drop(d_a);
        let d_q = rope_backward(&d_q, self.cos, self.sin)?;
        let d_k = rope_backward(&d_k, self.cos, self.sin)?;
        let (d_q, d_k) = self.qk_norm_backward(l, t, d_q, d_k)?;
        let d_q = d_q.reshape((b, s, nh * hd))?;
        let d_k = d_k.reshape((b, s, nkv * hd))?;
        let d_v = d_v.reshape((b, s, nkv * hd))?;
        for (slot, d) in [(QBias, &d_q), (KBias, &d_k), (VBias, &d_v)] {
            if let Some(i) = l.get(slot) {
                self.set_grad(i, || bias_grad(d))?;
            }
        }
        let h1 = rms_norm_train(&t.x_in, &self.w(l.at(InputNorm)), self.eps() as f32)?;
        let d_h1 = ((self.proj(l, Q, &h1, &d_q)? + self.proj(l, K, &h1, &d_k)?)?
            + self.proj(l, V, &h1, &d_v)?)?;
        drop(h1);
        let (d_in, dw) = rms_norm_backward(
            &t.x_in,
            &self.w(l.at(InputNorm)),
            &d_h1,
            self.eps(),
            Some(d_mid),
        )?;
        self.set_grad(l.at(InputNorm), || Ok(dw))?;
        Ok(d_in)
    }

    /// Through Qwen3's q/k norms, when the layer has them.
    fn qk_norm_backward(
        &mut self,
        l: &LayerParams,
        t: &LayerTape,
        d_q: Tensor,
        d_k: Tensor,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let (Some(qn), Some(kn), Some(q0), Some(k0)) = (l.get(QNorm), l.get(KNorm), &t.q0, &t.k0)
        else {
            return Ok((d_q, d_k));
        };
        let (d_q, dwq) = rms_norm_backward(q0, &self.w(qn), &d_q, self.eps(), None)?;
        let (d_k, dwk) = rms_norm_backward(k0, &self.w(kn), &d_k, self.eps(), None)?;
        self.set_grad(qn, || Ok(dwq))?;
        self.set_grad(kn, || Ok(dwk))?;
        Ok((d_q, d_k))
    }
}
