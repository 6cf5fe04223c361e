//! The decoder's forward pass, behind one entry point ([`Model::hidden`]) whose options say two
//! separate things: which kernels run ([`Numerics`]) and what is kept for a gradient ([`Grad`]).

use candle_core::{DType, Tensor};

use super::backward::{HiddenTape, LayerTape};
use super::params::LayerSlot::{self, *};
use super::{pad_batch, LayerParams, Model};
use crate::attention::{causal_kernel_attention, Attention, AttnParts, CausalAttention};
use crate::error::{CandleContext, ModelError, Result};
use crate::ops::{linear, linear_train, rms_norm_train, rope_train, swiglu_train};
use crate::packed::attention::{packed_kernel_attention, PackedAttention, PackedIndex};
use crate::packed::PackedLayout;

/// Which kernels a forward runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Numerics {
    /// Inference kernels (candle's fused RMSNorm, RoPE and softmax): fastest, no backward.
    Fused,
    /// Ops that have a backward: the training numerics (CPU kernels with hand-written
    /// backward, composed ops elsewhere).
    Train,
}

/// What a forward keeps for a gradient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grad {
    /// Nothing: weights are read as detached views, no autograd graph is recorded.
    None,
    /// candle's autograd graph through the weight `Var`s.
    Autograd,
    /// The activations [`Model::backward_hidden`] reads (no graph; CPU f32/f64 and padded
    /// batches only).
    Tape,
}

/// The options of a forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    pub numerics: Numerics,
    pub grad: Grad,
    /// With [`Grad::Tape`]: keep only the input of every k-th decoder layer and recompute each
    /// run of k layers in the backward (activation recomputation); `None` keeps every layer's
    /// activations.
    pub recompute_every: Option<usize>,
}

impl Forward {
    /// Generation and scoring: fused kernels, no gradient.
    pub const INFERENCE: Self = Self {
        numerics: Numerics::Fused,
        grad: Grad::None,
        recompute_every: None,
    };
    /// Training with candle's autograd.
    pub const TRAIN: Self = Self {
        numerics: Numerics::Train,
        grad: Grad::Autograd,
        recompute_every: None,
    };
    /// The training numerics without a graph (bit-identical values, much less memory): for
    /// no-grad passes that must match training.
    pub const TRAIN_NO_GRAD: Self = Self {
        numerics: Numerics::Train,
        grad: Grad::None,
        recompute_every: None,
    };
    /// The training numerics, keeping the tape of the hand-written backward.
    pub const TRAIN_TAPED: Self = Self {
        numerics: Numerics::Train,
        grad: Grad::Tape,
        recompute_every: None,
    };

    /// This forward with activation recomputation every `k` layers (see
    /// [`Forward::recompute_every`]).
    pub const fn recomputing(self, k: Option<usize>) -> Self {
        Self {
            recompute_every: k,
            ..self
        }
    }

    fn check(self) -> Result<()> {
        if self.recompute_every.is_some() && self.grad != Grad::Tape {
            return Err(invalid(
                "activation recomputation is implemented for the taped forward (Grad::Tape) only",
            ));
        }
        if self.recompute_every == Some(0) {
            return Err(invalid("recompute_every must be ≥ 1"));
        }
        if self.numerics == Numerics::Fused && self.grad != Grad::None {
            return Err(invalid(
                "the fused inference kernels have no backward: use Numerics::Train for gradients",
            ));
        }
        Ok(())
    }

    /// Whether weights are read through their `Var`s (recorded by autograd).
    fn attached(self) -> bool {
        self.grad == Grad::Autograd
    }
}

fn invalid(msg: impl Into<String>) -> ModelError {
    ModelError::Candle {
        context: "decoder forward".into(),
        source: candle_core::Error::Msg(msg.into()),
    }
}

/// The input of a forward pass.
pub enum Batch<'a> {
    /// Right-padded rows of token ids, each from position 0 (no cache), under the model's own
    /// causal attention over each row's real length.
    Padded { rows: &'a [Vec<u32>], pad_id: u32 },
    /// The packed layout of groups (each prompt once, then its completions): one stream at the
    /// layout's positions, under its prefix-sharing causal attention.
    Packed { layout: &'a PackedLayout },
    /// Token ids `[b, s]` at `positions` `[b, s]`, with attention injected (e.g. the runtime's
    /// paged attention over its KV cache).
    Injected {
        ids: &'a Tensor,
        positions: &'a Tensor,
        attn: &'a mut dyn Attention,
    },
}

impl<'a> Batch<'a> {
    pub fn padded(rows: &'a [Vec<u32>], pad_id: u32) -> Self {
        Batch::Padded { rows, pad_id }
    }

    pub fn packed(layout: &'a PackedLayout) -> Self {
        Batch::Packed { layout }
    }

    pub fn injected(ids: &'a Tensor, positions: &'a Tensor, attn: &'a mut dyn Attention) -> Self {
        Batch::Injected {
            ids,
            positions,
            attn,
        }
    }
}

/// The final hidden states `[b, s, hidden]` (after the last norm), and with [`Grad::Tape`] what
/// the hand-written backward reads.
pub struct Hidden {
    pub states: Tensor,
    pub tape: Option<HiddenTape>,
}

impl Hidden {
    /// The states and the tape of a taped forward ([`Grad::Tape`]); an error for any other.
    pub fn into_taped(self) -> Result<(Tensor, HiddenTape)> {
        match self.tape {
            Some(tape) => Ok((self.states, tape)),
            None => Err(invalid(
                "this forward kept no tape (use Forward::TRAIN_TAPED)",
            )),
        }
    }
}

/// What every layer of one forward shares.
pub(super) struct Pass<'a> {
    pub(super) fwd: Forward,
    pub(super) cos: Tensor,
    pub(super) sin: Tensor,
    pub(super) eps: f32,
    /// The injected attention (unused by a taped pass, which runs the causal kernel itself).
    pub(super) attn: Option<&'a mut dyn Attention>,
    pub(super) tape: Option<&'a mut HiddenTape>,
}

impl Model {
    /// The decoder's final hidden states for `batch` under the options `fwd`.
    pub fn hidden(&self, batch: Batch<'_>, fwd: Forward) -> Result<Hidden> {
        fwd.check()?;
        match batch {
            Batch::Injected {
                ids,
                positions,
                attn,
            } => {
                if fwd.grad == Grad::Tape {
                    return Err(invalid("the taped forward needs a padded batch"));
                }
                let states = self.run(ids, positions, attn, fwd, None)?;
                Ok(Hidden { states, tape: None })
            }
            Batch::Padded { rows, pad_id } => self.hidden_padded(rows, pad_id, fwd),
            Batch::Packed { layout } => self.hidden_packed(layout, fwd),
        }
    }

    /// Logits `[b, s, vocab]` (f32) for `batch`: [`Model::hidden`] then [`Model::logits`].
    pub fn forward(&self, batch: Batch<'_>, fwd: Forward) -> Result<Tensor> {
        if fwd.grad == Grad::Tape {
            return Err(invalid("a taped forward keeps its tape: use Model::hidden"));
        }
        let hidden = self.hidden(batch, fwd)?;
        self.logits(&hidden.states, fwd)
    }

    /// Project hidden states `[b, s, hidden]` to logits `[b, s, vocab]` in f32, with the
    /// numerics of `fwd` (the LM head's weight is recorded by autograd only for
    /// [`Grad::Autograd`]).
    pub fn logits(&self, hidden: &Tensor, fwd: Forward) -> Result<Tensor> {
        fwd.check()?;
        let lin = match fwd.numerics {
            Numerics::Train => linear_train,
            Numerics::Fused => linear,
        };
        lin(hidden, &self.weight(self.lm_head, fwd.attached()), None)
            .and_then(|t| t.to_dtype(DType::F32))
            .ctx(|| "lm head".to_string())
    }

    /// Inference logits `[b, s, vocab]` in the model's dtype (no cast: bf16 logits leave a GPU
    /// in half the bytes; widening them to f32 anywhere gives the same values).
    pub fn logits_native(&self, hidden: &Tensor) -> Result<Tensor> {
        linear(hidden, &self.weight(self.lm_head, false), None).ctx(|| "lm head".to_string())
    }

    fn check_tape(&self, fwd: Forward) -> Result<()> {
        if fwd.grad == Grad::Tape && !self.supports_taped_backward() {
            return Err(invalid(format!(
                "the hand-written backward needs a CPU f32/f64 model, not {:?} {:?}",
                self.device.location(),
                self.dtype
            )));
        }
        Ok(())
    }

    fn hidden_packed(&self, layout: &PackedLayout, fwd: Forward) -> Result<Hidden> {
        self.check_tape(fwd)?;
        let t = layout.len();
        let ids = Tensor::from_slice(layout.ids(), (1, t), &self.device)?;
        let pos = Tensor::from_slice(layout.positions(), (1, t), &self.device)?;
        let index = PackedIndex::new(layout, &self.device)?;
        let mut tape = (fwd.grad == Grad::Tape).then(|| {
            let mut tape = HiddenTape::new(vec![t], t, self.layers.len(), fwd.recompute_every);
            tape.packed = Some(index.clone());
            tape
        });
        let mut attn = PackedAttention::new(index, fwd.numerics == Numerics::Fused);
        let states = self.run(&ids, &pos, &mut attn, fwd, tape.as_mut())?;
        Ok(Hidden { states, tape })
    }

    fn hidden_padded(&self, rows: &[Vec<u32>], pad_id: u32, fwd: Forward) -> Result<Hidden> {
        self.check_tape(fwd)?;
        let (ids, pos, lengths, seq_len) = pad_batch(rows, pad_id, &self.device)?;
        let mut attn = CausalAttention::new(&lengths, seq_len, self.dtype, &self.device)?;
        if fwd.numerics == Numerics::Fused {
            attn = attn.inference();
        }
        let mut tape = (fwd.grad == Grad::Tape)
            .then(|| HiddenTape::new(lengths, seq_len, self.layers.len(), fwd.recompute_every));
        let states = self.run(&ids, &pos, &mut attn, fwd, tape.as_mut())?;
        Ok(Hidden { states, tape })
    }

    fn run(
        &self,
        ids: &Tensor,
        positions: &Tensor,
        attn: &mut dyn Attention,
        fwd: Forward,
        tape: Option<&mut HiddenTape>,
    ) -> Result<Tensor> {
        self.run_layers(ids, positions, attn, fwd, tape)
            .ctx(|| "decoder forward".to_string())
    }

    fn run_layers(
        &self,
        input_ids: &Tensor,
        positions: &Tensor,
        attn: &mut dyn Attention,
        fwd: Forward,
        tape: Option<&mut HiddenTape>,
    ) -> candle_core::Result<Tensor> {
        let (cos, sin) = self.rope_tables(positions)?;
        let mut pass = Pass {
            fwd,
            cos,
            sin,
            eps: self.config.rms_norm_eps as f32,
            attn: Some(attn),
            tape,
        };
        let (b, s) = input_ids.dims2()?;
        let ids = input_ids.flatten_all()?;
        let mut x = self
            .weight(self.embed, fwd.attached())
            .embedding(&ids)?
            .reshape((b, s, ()))?;
        if let Some(t) = pass.tape.as_deref_mut() {
            t.record_inputs(ids, pass.cos.clone(), pass.sin.clone());
        }
        let mark = crate::op_count::enabled().then(crate::op_count::OpMark::now);
        for (index, layer) in self.layers.iter().enumerate() {
            if let Some(t) = pass.tape.as_deref_mut() {
                t.record_checkpoint(index, &x);
            }
            x = self.layer(index, layer, x, &mut pass)?;
        }
        if let Some(mark) = mark {
            crate::op_count::add_layer_ops(mark.ops_since());
        }
        if let Some(t) = pass.tape.as_deref_mut() {
            t.x_final = Some(x.clone());
        }
        pass.norm(&x, &self.weight(self.norm, fwd.attached()))
    }

    /// `x·Wᵀ (+ b)` for the layer's projection `slot` (and its bias), plus the LoRA adapter's
    /// `s·(x·Aᵀ)·Bᵀ` where `slot` is adapted.
    fn proj(
        &self,
        pass: &Pass<'_>,
        (index, l): (usize, &LayerParams),
        slot: LayerSlot,
        bias: Option<LayerSlot>,
        x: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let attached = pass.fwd.attached();
        let b = bias
            .and_then(|s| l.get(s))
            .map(|i| self.weight(i, attached));
        let y = pass.linear(x, &self.weight(l.at(slot), attached), b.as_ref())?;
        match &self.lora {
            Some(lora) => match lora.find(index, slot) {
                Some(i) => y + lora.delta(i, x, !pass.fused(), attached)?,
                None => Ok(y),
            },
            None => Ok(y),
        }
    }

    /// One decoder layer: `x + attn(norm(x))`, then `+ mlp(norm(·))`.
    pub(super) fn layer(
        &self,
        index: usize,
        l: &LayerParams,
        x: Tensor,
        pass: &mut Pass<'_>,
    ) -> candle_core::Result<Tensor> {
        let attached = pass.fwd.attached();
        let w = |i: usize| self.weight(i, attached);
        let at = (index, l);
        let (b, s, _) = x.dims3()?;
        let cfg = &self.config;
        let (nh, nkv, hd) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);

        // Attention block.
        let h1 = pass.norm(&x, &w(l.at(InputNorm)))?;
        let q0 = self
            .proj(pass, at, Q, Some(QBias), &h1)?
            .reshape((b, s, nh, hd))?;
        let k0 = self
            .proj(pass, at, K, Some(KBias), &h1)?
            .reshape((b, s, nkv, hd))?;
        let v = self
            .proj(pass, at, V, Some(VBias), &h1)?
            .reshape((b, s, nkv, hd))?;
        let (q, k) = match (l.get(QNorm), l.get(KNorm)) {
            (Some(qn), Some(kn)) => (pass.norm(&q0, &w(qn))?, pass.norm(&k0, &w(kn))?),
            _ => (q0.clone(), k0.clone()),
        };
        let (q, k) = (pass.rope(&q)?, pass.rope(&k)?);
        let (a, parts) = pass.attend(index, &q, &k, &v)?;
        let a = a.reshape((b, s, nh * hd))?;
        let o = self.proj(pass, at, O, Some(OBias), &a)?;
        let x_mid = (&x + o)?;

        // MLP block.
        let h2 = pass.norm(&x_mid, &w(l.at(PostNorm)))?;
        let g = self.proj(pass, at, Gate, None, &h2)?;
        let u = self.proj(pass, at, Up, None, &h2)?;
        let gu = pass.swiglu(&g, &u)?;
        let m = self.proj(pass, at, Down, None, &gu)?;
        let out = (&x_mid + m)?;

        let keep = pass.tape.as_deref().is_some_and(HiddenTape::keeps_layers);
        if let (true, Some(t), Some(attn)) = (keep, pass.tape.as_deref_mut(), parts) {
            // The norms' outputs and silu(g)·u are recomputed by the backward.
            drop((h1, h2, gu));
            let qk = l.get(QNorm).is_some();
            t.layers.push(LayerTape {
                x_in: x,
                q0: qk.then_some(q0),
                k0: qk.then_some(k0),
                attn,
                a,
                x_mid,
                g,
                u,
            });
        }
        Ok(out)
    }
}

impl Pass<'_> {
    fn fused(&self) -> bool {
        self.fwd.numerics == Numerics::Fused
    }

    fn norm(&self, x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
        if self.fused() {
            candle_nn::ops::rms_norm(&x.contiguous()?, w, self.eps)
        } else {
            rms_norm_train(x, w, self.eps)
        }
    }

    fn rope(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if self.fused() {
            candle_nn::rotary_emb::rope_thd(&x.contiguous()?, &self.cos, &self.sin)
        } else {
            rope_train(x, &self.cos, &self.sin)
        }
    }

    fn linear(&self, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> candle_core::Result<Tensor> {
        if self.fused() {
            linear(x, w, b)
        } else {
            linear_train(x, w, b)
        }
    }

    /// The row-parallel CPU kernel in every mode: it computes candle's `silu(g) · u` bit for bit
    /// (`ops::tests::swiglu_kernel_equals_candles_ops_bit_for_bit`), whereas candle's two
    /// elementwise ops run on one thread (~4% of a CPU decode step's samples, on the thread
    /// that the rest waits for). Other devices and dtypes get candle's ops either way.
    fn swiglu(&self, g: &Tensor, u: &Tensor) -> candle_core::Result<Tensor> {
        swiglu_train(g, u)
    }

    /// The injected attention, or with a tape the CPU causal kernel whose operands the
    /// hand-written backward reads (its probabilities are recomputed there).
    fn attend(
        &mut self,
        layer: usize,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
    ) -> candle_core::Result<(Tensor, Option<AttnParts>)> {
        match self.tape.as_deref() {
            Some(t) => {
                let mut parts = match &t.packed {
                    Some(index) => packed_kernel_attention(q, k, v, index, false)?,
                    None => causal_kernel_attention(q, k, v, &t.lengths, t.seq_len, false)?,
                };
                parts.probs = None;
                Ok((parts.out.clone(), Some(parts)))
            }
            None => match self.attn.as_deref_mut() {
                Some(attn) => Ok((attn.attend(layer, q, k, v)?, None)),
                None => candle_core::bail!("a forward without a tape needs an attention"),
            },
        }
    }
}
