//! LoRA and activation recomputation against references: B = 0 is the base model exactly, the
//! hand-written backward equals candle's autograd and finite differences through the adapters,
//! the unmerged adapters equal merged weights, and recomputed gradients equal kept ones.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use super::{Batch, Forward, LoraConfig, LoraTarget, Model};
use crate::config::{Architecture, ModelConfig};
use crate::testing::{close, f64_bits, max_abs_diff, randt};

fn cfg(arch: Architecture, layers: usize) -> ModelConfig {
    ModelConfig {
        rms_norm_eps: 1e-5,
        max_position_embeddings: 64,
        tie_word_embeddings: arch != Architecture::Qwen2,
        bos_token_id: None,
        eos_token_ids: vec![],
        ..ModelConfig::tiny(arch, 50, 32, layers)
    }
}

fn rows() -> Vec<Vec<u32>> {
    vec![
        vec![1, 2, 3, 4, 5, 6, 7],
        vec![7, 8, 9],
        vec![9, 10, 11, 12, 13],
    ]
}

fn padded(rows: &[Vec<u32>]) -> Batch<'_> {
    Batch::Padded { rows, pad_id: 0 }
}

fn lora(rank: usize, targets: &[LoraTarget]) -> LoraConfig {
    LoraConfig {
        rank,
        alpha: 16.0,
        targets: targets.to_vec(),
        rslora: false,
        seed: 3,
    }
}

/// A model with adapters whose B is random too (fresh adapters have B = 0: no gradient reaches A).
fn adapted(arch: Architecture, layers: usize, dtype: DType, targets: &[LoraTarget]) -> Model {
    let mut m = Model::random(cfg(arch, layers), 5, dtype, &Device::Cpu).unwrap();
    m.attach_lora(lora(4, targets)).unwrap();
    for (i, (name, v)) in m.trainable().into_iter().enumerate() {
        if name.contains("lora_B") {
            v.set(&randt(v.dims(), 100 + i as u64, 0.05, dtype))
                .unwrap();
        }
    }
    m
}

#[test]
fn fresh_adapters_give_the_base_logits_exactly() {
    for arch in [
        Architecture::Llama,
        Architecture::Qwen2,
        Architecture::Qwen3,
    ] {
        let mut m = Model::random(cfg(arch, 2), 5, DType::F32, &Device::Cpu).unwrap();
        let fwds = [Forward::INFERENCE, Forward::TRAIN_NO_GRAD];
        let base: Vec<Tensor> = fwds
            .iter()
            .map(|f| m.forward(padded(&rows()), *f).unwrap())
            .collect();
        m.attach_lora(lora(8, &LoraTarget::ALL)).unwrap();
        assert_eq!(m.trainable().len(), 2 * 2 * 7);
        for (f, b) in fwds.iter().zip(&base) {
            let a = m.forward(padded(&rows()), *f).unwrap();
            assert_eq!(max_abs_diff(&a, b), 0.0, "{arch:?} {f:?}");
        }
        // A is PEFT's kaiming-uniform: U(±1/√in), not zero.
        let (_, a) = m.trainable()[0];
        let bound = 1.0 / 32f64.sqrt();
        let amax = crate::testing::max_abs(&a.as_detached_tensor());
        assert!(amax > 0.5 * bound && amax <= bound, "{amax}");
    }
}

/// The taped backward under LoRA: adapters' gradients equal candle's autograd, the base gets
/// none, and both equal central finite differences (f64).
#[test]
fn adapter_gradients_match_autograd_and_finite_differences() {
    let targets = [
        LoraTarget::Q,
        LoraTarget::V,
        LoraTarget::O,
        LoraTarget::Down,
    ];
    for arch in [Architecture::Llama, Architecture::Qwen3] {
        let m = adapted(arch, 2, DType::F64, &targets);
        let h = m.hidden(padded(&rows()), Forward::TRAIN).unwrap().states;
        let r = randt(h.dims(), 7, 1.0, DType::F64);
        let g = (&h * &r).unwrap().sum_all().unwrap().backward().unwrap();
        for (_, v) in m.named_vars() {
            assert!(
                g.get(v.as_tensor()).is_none(),
                "a frozen weight got a gradient"
            );
        }
        let (_, tape) = m
            .hidden(padded(&rows()), Forward::TRAIN_TAPED)
            .unwrap()
            .into_taped()
            .unwrap();
        let grads = m.backward_hidden(tape, &r).unwrap();
        let trainable = m.trainable();
        assert_eq!(grads.len(), trainable.len());
        let loss = |m: &Model| -> f64 {
            let h = m.hidden(padded(&rows()), Forward::TRAIN_NO_GRAD).unwrap();
            (&h.states * &r)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar()
                .unwrap()
        };
        for ((name, v), gt) in trainable.iter().zip(&grads) {
            let gt = gt.as_ref().unwrap_or_else(|| panic!("{name}: no gradient"));
            close(gt, g.get(v.as_tensor()).unwrap(), 1e-9, name);
            // Finite differences on three entries of each adapter.
            let flat = v.as_detached_tensor().flatten_all().unwrap();
            let gflat: Vec<f64> = gt.flatten_all().unwrap().to_vec1().unwrap();
            for j in [0, flat.dim(0).unwrap() / 2, flat.dim(0).unwrap() - 1] {
                let eps = 1e-5;
                let mut x: Vec<f64> = flat.to_vec1().unwrap();
                let shift = |x: &mut Vec<f64>, d: f64| {
                    x[j] += d;
                    v.set(&Tensor::from_vec(x.clone(), v.dims(), &Device::Cpu).unwrap())
                        .unwrap();
                };
                shift(&mut x, eps);
                let up = loss(&m);
                shift(&mut x, -2.0 * eps);
                let down = loss(&m);
                shift(&mut x, eps);
                let fd = (up - down) / (2.0 * eps);
                let err = (fd - gflat[j]).abs();
                assert!(
                    err <= 1e-6 * (1.0 + fd.abs()),
                    "{name}[{j}]: fd {fd} vs {}",
                    gflat[j]
                );
            }
        }
    }
}

/// The adapters applied unmerged (what trainer and engine run) against a model whose weights
/// have them merged in: the same logits and log-probs within 1e-5 in f32.
#[test]
fn unmerged_adapters_equal_merged_weights() {
    for arch in [Architecture::Llama, Architecture::Qwen2] {
        let m = adapted(arch, 2, DType::F32, &LoraTarget::ALL);
        let merged: HashMap<String, Tensor> = m.merged_state_dict().unwrap().into_iter().collect();
        let base = Model::from_tensors(
            m.config.clone(),
            merged,
            DType::F32,
            &Device::Cpu,
            Path::new("<merged>"),
        )
        .unwrap();
        for f in [Forward::INFERENCE, Forward::TRAIN_NO_GRAD] {
            let a = m.forward(padded(&rows()), f).unwrap();
            let b = base.forward(padded(&rows()), f).unwrap();
            let lp = |t: &Tensor| candle_nn::ops::log_softmax(t, candle_core::D::Minus1).unwrap();
            let d = max_abs_diff(&lp(&a), &lp(&b));
            assert!(d <= 1e-5, "{arch:?} {f:?}: max |Δ log-prob| {d}");
        }
    }
}

/// Recomputing every k layers gives the very gradients of keeping every layer, bit for bit,
/// for full fine-tuning and for adapters.
#[test]
fn recomputed_gradients_are_identical() {
    for with_lora in [false, true] {
        let m = if with_lora {
            adapted(Architecture::Qwen3, 5, DType::F32, &LoraTarget::ALL)
        } else {
            Model::random(cfg(Architecture::Qwen2, 5), 5, DType::F32, &Device::Cpu).unwrap()
        };
        let run = |k: Option<usize>| {
            let (h, tape) = m
                .hidden(padded(&rows()), Forward::TRAIN_TAPED.recomputing(k))
                .unwrap()
                .into_taped()
                .unwrap();
            let r = randt(h.dims(), 7, 1.0, DType::F32);
            (h, m.backward_hidden(tape, &r).unwrap())
        };
        let (h0, g0) = run(None);
        for k in [1, 2, 3, 5, 8] {
            let (h, g) = run(Some(k));
            assert_eq!(f64_bits(&h), f64_bits(&h0));
            for (i, (a, b)) in g.iter().zip(&g0).enumerate() {
                match (a, b) {
                    (Some(a), Some(b)) => {
                        assert_eq!(f64_bits(a), f64_bits(b), "k {k} lora {with_lora} #{i}")
                    }
                    (None, None) => {}
                    _ => panic!("k {k}: gradient {i} present in one run only"),
                }
            }
        }
    }
}

#[test]
fn recomputation_is_refused_outside_the_taped_forward() {
    let m = Model::random(cfg(Architecture::Llama, 2), 5, DType::F32, &Device::Cpu).unwrap();
    for f in [
        Forward::TRAIN.recomputing(Some(1)),
        Forward::TRAIN_TAPED.recomputing(Some(0)),
    ] {
        assert!(m.hidden(padded(&rows()), f).is_err());
    }
}
