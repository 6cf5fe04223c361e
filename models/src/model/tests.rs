use candle_core::{DType, Device};

use super::{Batch, Forward, Model};
use crate::config::{Architecture, ModelConfig};
use crate::testing::{close, f64_bits, randt};

fn tiny(qkv_bias: bool, o_bias: bool, qk_norm: bool, tie: bool) -> ModelConfig {
    ModelConfig {
        intermediate_size: 48,
        rms_norm_eps: 1e-5,
        max_position_embeddings: 64,
        tie_word_embeddings: tie,
        qkv_bias,
        o_bias,
        qk_norm,
        bos_token_id: None,
        eos_token_ids: vec![],
        ..ModelConfig::tiny(Architecture::Llama, 50, 32, 2)
    }
}

fn padded(rows: &[Vec<u32>]) -> Batch<'_> {
    Batch::Padded { rows, pad_id: 0 }
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
            let h = m.hidden(padded(&rows), Forward::TRAIN).unwrap().states;
            let r = randt(h.dims(), 7, 1.0, dtype);
            let g = (&h * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let (h2, tape) = m
                .hidden(padded(&rows), Forward::TRAIN_TAPED)
                .unwrap()
                .into_taped()
                .unwrap();
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
    let cfg = ModelConfig {
        rms_norm_eps: 1e-5,
        max_position_embeddings: 64,
        qk_norm: true,
        bos_token_id: None,
        eos_token_ids: vec![],
        ..ModelConfig::tiny(Architecture::Llama, 50, 32, 2)
    };
    let m = Model::random(cfg, 3, DType::F32, &Device::Cpu).unwrap();
    let rows = vec![vec![1, 2, 3, 4, 5], vec![7, 8], vec![9, 10, 11]];
    let a = m.hidden(padded(&rows), Forward::TRAIN).unwrap().states;
    let b = m
        .hidden(padded(&rows), Forward::TRAIN_NO_GRAD)
        .unwrap()
        .states;
    assert_eq!(f64_bits(&a), f64_bits(&b));
    // Train and Inference numerics agree closely.
    let c = m.hidden(padded(&rows), Forward::INFERENCE).unwrap().states;
    close(&a, &c, 1e-4, "train vs inference hidden");
}

/// Options that cannot work are refused up front, with a message that says why.
#[test]
fn impossible_forward_options_are_refused() {
    let m = Model::random(tiny(false, false, false, true), 1, DType::F32, &Device::Cpu).unwrap();
    let rows = vec![vec![1, 2, 3]];
    let fused_grad = Forward {
        grad: super::Grad::Autograd,
        ..Forward::INFERENCE
    };
    let err = m
        .hidden(padded(&rows), fused_grad)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("no backward"), "{err}");
    let err = m
        .forward(padded(&rows), Forward::TRAIN_TAPED)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("tape"), "{err}");
}
