//! The hand-written backward of the training forward (CPU f32 / f64): what the taped forward
//! keeps ([`HiddenTape`]) and [`Model::backward_hidden`], layer by layer in reverse, each
//! layer's activations dropped as soon as its backward is done. Checked against candle's
//! autograd through the same forward.

use candle_core::Tensor;

use super::params::LayerSlot::*;
use super::{LayerParams, Model};
use crate::attention::{causal_kernel_attention_bwd, AttnParts};
use crate::error::{CandleContext, Result};
use crate::kernels::embedding::embedding_backward;
use crate::kernels::rms_norm::rms_norm_backward;
use crate::kernels::rope::rope_backward;
use crate::kernels::swiglu::swiglu_backward;
use crate::ops::{bias_grad, linear_dw, linear_dx, rms_norm_train, swiglu_train};
use crate::packed::attention::{packed_kernel_attention_bwd, PackedIndex};

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
    pub(super) x_final: Option<Tensor>,
    /// The packed layout's attention indices (`None`: right-padded rows).
    pub(super) packed: Option<PackedIndex>,
}

impl HiddenTape {
    pub(super) fn new(lengths: Vec<usize>, seq_len: usize, num_layers: usize) -> Self {
        HiddenTape {
            lengths,
            seq_len,
            ids: None,
            cos: None,
            sin: None,
            layers: Vec::with_capacity(num_layers),
            x_final: None,
            packed: None,
        }
    }

    pub(super) fn record_inputs(&mut self, ids: Tensor, cos: Tensor, sin: Tensor) {
        self.ids = Some(ids);
        self.cos = Some(cos);
        self.sin = Some(sin);
    }
}

/// The gradients flowing back through one layer.
struct LayerBackward<'a> {
    model: &'a Model,
    grads: &'a mut [Option<Tensor>],
    cos: &'a Tensor,
    sin: &'a Tensor,
    lengths: &'a [usize],
    seq_len: usize,
    packed: Option<&'a PackedIndex>,
}

impl Model {
    /// The hand-written backward of a taped forward: given dL/d(hidden) `[b, s, hidden]`, the
    /// gradient of every parameter, in [`Model::vars`] order (`None`: no gradient, e.g. an
    /// untied LM head).
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
        let eps = self.config.rms_norm_eps;
        let (mut dx, dw) = rms_norm_backward(
            &x_final,
            &self.weight(self.norm, false),
            &d_hidden,
            eps,
            None,
        )?;
        grads[self.norm] = Some(dw);
        let mut step = LayerBackward {
            model: self,
            grads: &mut grads,
            cos: &cos,
            sin: &sin,
            lengths: &tape.lengths,
            seq_len: s,
            packed: tape.packed.as_ref(),
        };
        // Each layer's tape is dropped once its backward is done.
        for (l, t) in self.layers.iter().zip(tape.layers).rev() {
            let d_mid = step.mlp(l, &t, &dx)?;
            dx = step.attention(l, &t, &d_mid)?;
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

    fn eps(&self) -> f64 {
        self.model.config.rms_norm_eps
    }

    /// `x = x_mid + down(swiglu(gate(h2), up(h2)))`, `h2 = norm(x_mid)`: returns d(x_mid).
    fn mlp(&mut self, l: &LayerParams, t: &LayerTape, dx: &Tensor) -> candle_core::Result<Tensor> {
        let gu = swiglu_train(&t.g, &t.u)?;
        self.grads[l.at(Down)] = Some(linear_dw(dx, &gu)?);
        drop(gu);
        let d_gu = linear_dx(dx, &self.w(l.at(Down)))?;
        let (d_g, d_u) = swiglu_backward(&t.g, &t.u, &d_gu)?;
        drop(d_gu);
        let h2 = rms_norm_train(&t.x_mid, &self.w(l.at(PostNorm)), self.eps() as f32)?;
        self.grads[l.at(Gate)] = Some(linear_dw(&d_g, &h2)?);
        self.grads[l.at(Up)] = Some(linear_dw(&d_u, &h2)?);
        drop(h2);
        let d_h2 = (linear_dx(&d_g, &self.w(l.at(Gate)))? + linear_dx(&d_u, &self.w(l.at(Up)))?)?;
        let (d_mid, dw) = rms_norm_backward(
            &t.x_mid,
            &self.w(l.at(PostNorm)),
            &d_h2,
            self.eps(),
            Some(dx),
        )?;
        self.grads[l.at(PostNorm)] = Some(dw);
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
        self.grads[l.at(O)] = Some(linear_dw(d_mid, &t.a)?);
        if let Some(ob) = l.get(OBias) {
            self.grads[ob] = Some(bias_grad(d_mid)?);
        }
        let d_a = linear_dx(d_mid, &self.w(l.at(O)))?.reshape((b, s, nh, hd))?;
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
        let h1 = rms_norm_train(&t.x_in, &self.w(l.at(InputNorm)), self.eps() as f32)?;
        self.grads[l.at(Q)] = Some(linear_dw(&d_q, &h1)?);
        self.grads[l.at(K)] = Some(linear_dw(&d_k, &h1)?);
        self.grads[l.at(V)] = Some(linear_dw(&d_v, &h1)?);
        drop(h1);
        for (slot, d) in [(QBias, &d_q), (KBias, &d_k), (VBias, &d_v)] {
            if let Some(i) = l.get(slot) {
                self.grads[i] = Some(bias_grad(d)?);
            }
        }
        let d_h1 = ((linear_dx(&d_q, &self.w(l.at(Q)))? + linear_dx(&d_k, &self.w(l.at(K)))?)?
            + linear_dx(&d_v, &self.w(l.at(V)))?)?;
        let (d_in, dw) = rms_norm_backward(
            &t.x_in,
            &self.w(l.at(InputNorm)),
            &d_h1,
            self.eps(),
            Some(d_mid),
        )?;
        self.grads[l.at(InputNorm)] = Some(dw);
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
        self.grads[qn] = Some(dwq);
        self.grads[kn] = Some(dwk);
        Ok((d_q, d_k))
    }
}
