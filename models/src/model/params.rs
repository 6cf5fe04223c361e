//! The decoder's parameters by HF name and shape, written once: the constructor (which builds
//! each layer's index of its `Var`s) and [`expected_tensors`] (loading, random init, export)
//! both read this table. The order here is the order of [`super::Model::vars`].

use crate::config::ModelConfig;

pub(crate) const EMBED: &str = "model.embed_tokens.weight";
pub(crate) const FINAL_NORM: &str = "model.norm.weight";
pub(crate) const LM_HEAD: &str = "lm_head.weight";

/// One parameter of a decoder layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum LayerSlot {
    InputNorm,
    Q,
    K,
    V,
    QBias,
    KBias,
    VBias,
    QNorm,
    KNorm,
    O,
    OBias,
    PostNorm,
    Gate,
    Up,
    Down,
}

use LayerSlot::*;

impl LayerSlot {
    /// Every slot, in parameter order.
    pub(crate) const ALL: [LayerSlot; 15] = [
        InputNorm, Q, K, V, QBias, KBias, VBias, QNorm, KNorm, O, OBias, PostNorm, Gate, Up, Down,
    ];

    /// The HF name under `model.layers.{l}.`.
    fn suffix(self) -> &'static str {
        match self {
            InputNorm => "input_layernorm.weight",
            Q => "self_attn.q_proj.weight",
            K => "self_attn.k_proj.weight",
            V => "self_attn.v_proj.weight",
            QBias => "self_attn.q_proj.bias",
            KBias => "self_attn.k_proj.bias",
            VBias => "self_attn.v_proj.bias",
            QNorm => "self_attn.q_norm.weight",
            KNorm => "self_attn.k_norm.weight",
            O => "self_attn.o_proj.weight",
            OBias => "self_attn.o_proj.bias",
            PostNorm => "post_attention_layernorm.weight",
            Gate => "mlp.gate_proj.weight",
            Up => "mlp.up_proj.weight",
            Down => "mlp.down_proj.weight",
        }
    }

    /// The parameter's shape under `cfg`, or `None` when `cfg` has no such parameter.
    fn shape(self, cfg: &ModelConfig) -> Option<Vec<usize>> {
        let h = cfg.hidden_size;
        let q = cfg.num_heads * cfg.head_dim;
        let kv = cfg.num_kv_heads * cfg.head_dim;
        let ff = cfg.intermediate_size;
        let shape = match self {
            InputNorm | PostNorm => vec![h],
            Q => vec![q, h],
            K | V => vec![kv, h],
            QBias if cfg.qkv_bias => vec![q],
            KBias | VBias if cfg.qkv_bias => vec![kv],
            QNorm | KNorm if cfg.qk_norm => vec![cfg.head_dim],
            O => vec![h, q],
            OBias if cfg.o_bias => vec![h],
            Gate | Up => vec![ff, h],
            Down => vec![h, ff],
            QBias | KBias | VBias | QNorm | KNorm | OBias => return None,
        };
        Some(shape)
    }

    /// The full HF name of this slot in layer `layer`.
    pub(crate) fn name(self, layer: usize) -> String {
        format!("model.layers.{layer}.{}", self.suffix())
    }
}

/// The expected HF tensor names and shapes for a config, in parameter order.
pub fn expected_tensors(cfg: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let mut out = vec![(EMBED.to_string(), vec![cfg.vocab_size, cfg.hidden_size])];
    for layer in 0..cfg.num_layers {
        for slot in LayerSlot::ALL {
            if let Some(shape) = slot.shape(cfg) {
                out.push((slot.name(layer), shape));
            }
        }
    }
    out.push((FINAL_NORM.to_string(), vec![cfg.hidden_size]));
    if !cfg.tie_word_embeddings {
        out.push((LM_HEAD.to_string(), vec![cfg.vocab_size, cfg.hidden_size]));
    }
    out
}

/// One layer's parameters as indices into the model's `Var`s.
pub(crate) struct LayerParams([Option<usize>; LayerSlot::ALL.len()]);

impl LayerParams {
    /// Look up each slot's name (as [`expected_tensors`] wrote it) in `index`.
    pub(crate) fn new(layer: usize, index: impl Fn(&str) -> Option<usize>) -> Self {
        LayerParams(LayerSlot::ALL.map(|slot| index(&slot.name(layer))))
    }

    /// The index of an optional parameter (biases, q/k norms).
    pub(crate) fn get(&self, slot: LayerSlot) -> Option<usize> {
        self.0[slot as usize]
    }

    /// The index of a parameter every layer has.
    pub(crate) fn at(&self, slot: LayerSlot) -> usize {
        // Every config has the non-optional slots, and the constructor checked they were loaded.
        self.get(slot)
            .unwrap_or_else(|| unreachable!("layer parameter {slot:?} is always present"))
    }
}
