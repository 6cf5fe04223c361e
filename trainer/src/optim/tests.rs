use std::collections::HashMap;

use super::*;
use crate::rng::SplitMix64;
use candle_core::DType;
use rlvr_models::testing::{f64_bits, max_abs_diff, randn_from, values};

const NAMES: [&str; 4] = [
    "model.embed_tokens.weight",
    "model.layers.0.self_attn.q_proj.weight",
    "model.layers.0.mlp.up_proj.weight",
    "model.layers.0.input_layernorm.weight",
];

fn params(dtype: DType) -> Vec<(String, Var)> {
    let mut rng = SplitMix64::new(1);
    NAMES
        .iter()
        .map(|n| {
            let shape: Vec<usize> = if n.ends_with("norm.weight") {
                vec![6]
            } else {
                vec![6, 5]
            };
            let t = randn_from(&mut rng, &shape, 1.0, dtype);
            (n.to_string(), Var::from_tensor(&t).unwrap())
        })
        .collect()
}

fn grads(step: u64, ps: &[(String, Var)]) -> Vec<Option<Tensor>> {
    let mut rng = SplitMix64::new(100 + step);
    ps.iter()
        .map(|(_, v)| Some(randn_from(&mut rng, v.dims(), 1.0, v.dtype())))
        .collect()
}

fn cfg(kind: OptimizerKind) -> OptimizerConfig {
    OptimizerConfig {
        kind,
        lr: 1e-2,
        schedule: LrSchedule::Constant { warmup_steps: 0 },
        max_grad_norm: Some(1.0),
        ..Default::default()
    }
}

#[test]
fn adamw_first_step_is_sign_like() {
    let ps = params(DType::F64);
    let before: Vec<Tensor> = ps
        .iter()
        .map(|(_, v)| v.as_detached_tensor().copy().unwrap())
        .collect();
    let mut c = cfg(OptimizerKind::AdamW);
    c.adamw.weight_decay = 0.0;
    c.max_grad_norm = None;
    let mut opt = Optimizer::new(ps.clone(), c).unwrap();
    let g = grads(0, &ps);
    opt.step(&g).unwrap();
    // t = 1: m̂ = g, v̂ = g², Δ = −lr·g/(|g| + ε).
    for ((_, v), (b, g)) in ps.iter().zip(before.iter().zip(&g)) {
        let (g, b, a) = (
            values(g.as_ref().unwrap()),
            values(b),
            values(&v.as_detached_tensor()),
        );
        for i in 0..g.len() {
            let expect = b[i] - 1e-2 * g[i] / (g[i].abs() + 1e-8);
            assert!((a[i] - expect).abs() < 1e-14);
        }
    }
}

#[test]
fn clipping_reports_pre_and_post_norms() {
    let ps = params(DType::F64);
    let mut opt = Optimizer::new(ps.clone(), cfg(OptimizerKind::AdamW)).unwrap();
    let g = grads(0, &ps);
    let st = opt.step(&g).unwrap();
    let sq: f64 = g
        .iter()
        .flatten()
        .map(|t| {
            t.sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        })
        .sum();
    assert!((st.grad_norm_pre_clip - sq.sqrt()).abs() < 1e-12);
    assert!((st.grad_norm_post_clip - 1.0).abs() < 1e-5);
    assert!(st.magma.is_none());
    // Non-finite gradients skip the step entirely.
    let mut bad = grads(1, &ps);
    bad[0] = Some((bad[0].as_ref().unwrap() * f64::NAN).unwrap());
    let m_before = f64_bits(&opt.params()[1].first_moment);
    let st = opt.step(&bad).unwrap();
    assert!(st.skipped_nonfinite);
    assert_eq!(opt.t(), 1);
    assert_eq!(f64_bits(&opt.params()[1].first_moment), m_before);
}

// §4.2.3: dense moments, and z = 0 leaves the parameter unchanged.
#[test]
fn magma_moments_are_dense_and_bit_identical_to_adamw() {
    let pa = params(DType::F64);
    let pm = params(DType::F64);
    let mut a = Optimizer::new(pa.clone(), cfg(OptimizerKind::AdamW)).unwrap();
    let mut m = Optimizer::new(pm.clone(), cfg(OptimizerKind::Magma)).unwrap();
    let mut saw_skip = false;
    for step in 0..20 {
        let before: Vec<Vec<u64>> = pm.iter().map(|(_, v)| f64_bits(v.as_tensor())).collect();
        // Same gradient sequence: what the gradients are is irrelevant to the moments' identity.
        a.step(&grads(step, &pa)).unwrap();
        let st = m.step(&grads(step, &pm)).unwrap();
        for (x, y) in a.params().iter().zip(m.params()) {
            assert_eq!(
                f64_bits(&x.first_moment),
                f64_bits(&y.first_moment),
                "m of {} at step {step}",
                x.name
            );
            assert_eq!(
                f64_bits(&x.second_moment),
                f64_bits(&y.second_moment),
                "v of {} at step {step}",
                x.name
            );
        }
        for (i, p) in m.params().iter().enumerate() {
            if p.last_mask == Some(false) {
                saw_skip = true;
                assert_eq!(
                    f64_bits(p.var.as_tensor()),
                    before[i],
                    "{} moved with z = 0",
                    p.name
                );
            }
        }
        let ms = st.magma.unwrap();
        assert_eq!(ms.masked_tensors, 2);
        assert!(ms.s_min > 0.377 && ms.s_max < 0.623);
    }
    assert!(saw_skip);
    // Weights moved differently, of course.
    assert_ne!(f64_bits(pa[1].1.as_tensor()), f64_bits(pm[1].1.as_tensor()));
}

// §4.2.4: Magma with mask and s forced to 1, and SkipUpdate with p = 1, are AdamW.
#[test]
fn reductions_to_adamw() {
    let pa = params(DType::F64);
    let mut a = Optimizer::new(pa.clone(), cfg(OptimizerKind::AdamW)).unwrap();
    let mut c = cfg(OptimizerKind::Magma);
    c.magma.p = 1.0;
    c.magma.damping = false;
    let pm = params(DType::F64);
    let mut m = Optimizer::new(pm.clone(), c).unwrap();
    let mut c = cfg(OptimizerKind::SkipUpdate);
    c.magma.p = 1.0;
    let ps = params(DType::F64);
    let mut s = Optimizer::new(ps.clone(), c).unwrap();
    for step in 0..10 {
        a.step(&grads(step, &pa)).unwrap();
        m.step(&grads(step, &pm)).unwrap();
        s.step(&grads(step, &ps)).unwrap();
        for i in 0..pa.len() {
            let x = f64_bits(pa[i].1.as_tensor());
            assert_eq!(x, f64_bits(pm[i].1.as_tensor()));
            assert_eq!(x, f64_bits(ps[i].1.as_tensor()));
        }
    }
}

// §4.2.9: excluded tensors get the full base step and hold no s.
#[test]
fn exclusions_get_the_full_base_step() {
    let pa = params(DType::F64);
    let pm = params(DType::F64);
    let mut a = Optimizer::new(pa.clone(), cfg(OptimizerKind::AdamW)).unwrap();
    let mut m = Optimizer::new(pm.clone(), cfg(OptimizerKind::Magma)).unwrap();
    for step in 0..10 {
        a.step(&grads(step, &pa)).unwrap();
        m.step(&grads(step, &pm)).unwrap();
        for (i, p) in m.params().iter().enumerate() {
            let excluded = p.name.contains("embed") || p.name.contains("norm");
            assert_eq!(p.align_score.is_none(), excluded, "{}", p.name);
            assert_eq!(p.masked, !excluded);
            if excluded {
                assert_eq!(
                    f64_bits(pa[i].1.as_tensor()),
                    f64_bits(p.var.as_tensor()),
                    "{}",
                    p.name
                );
            }
        }
    }
}

// §4.2.5 (restore part): the mask stream and all state continue exactly after a restore.
#[test]
fn state_restore_continues_the_same_stream() {
    let pa = params(DType::F64);
    let mut a = Optimizer::new(pa.clone(), cfg(OptimizerKind::Magma)).unwrap();
    for step in 0..7 {
        a.step(&grads(step, &pa)).unwrap();
    }
    let tensors: HashMap<String, Tensor> = a
        .state_tensors()
        .into_iter()
        .map(|(k, t)| (k, t.copy().unwrap()))
        .collect();
    let scalars: OptimizerScalars =
        serde_json::from_str(&serde_json::to_string(&a.scalars()).unwrap()).unwrap();
    let pb = params(DType::F64);
    for ((_, x), (_, y)) in pa.iter().zip(&pb) {
        y.set(&x.as_detached_tensor().copy().unwrap()).unwrap();
    }
    let mut b = Optimizer::new(pb.clone(), cfg(OptimizerKind::Magma)).unwrap();
    b.load_state(&tensors, &scalars).unwrap();
    for step in 7..20 {
        a.step(&grads(step, &pa)).unwrap();
        b.step(&grads(step, &pb)).unwrap();
        let za: Vec<_> = a
            .params()
            .iter()
            .map(|p| (p.last_mask, p.align_score.map(f64::to_bits)))
            .collect();
        let zb: Vec<_> = b
            .params()
            .iter()
            .map(|p| (p.last_mask, p.align_score.map(f64::to_bits)))
            .collect();
        assert_eq!(za, zb);
    }
    for i in 0..pa.len() {
        assert_eq!(f64_bits(pa[i].1.as_tensor()), f64_bits(pb[i].1.as_tensor()));
    }
    assert_eq!(a.mask_rng(), b.mask_rng());
}

#[test]
fn dense_weight_decay_moves_skipped_tensors() {
    let mut c = cfg(OptimizerKind::Magma);
    c.magma.mask_weight_decay = false;
    c.adamw.weight_decay = 0.1;
    let ps = params(DType::F64);
    let mut opt = Optimizer::new(ps.clone(), c).unwrap();
    let mut checked = false;
    for step in 0..10 {
        let before: Vec<Tensor> = ps
            .iter()
            .map(|(_, v)| v.as_detached_tensor().copy().unwrap())
            .collect();
        let lr = opt.next_lr();
        opt.step(&grads(step, &ps)).unwrap();
        for (i, p) in opt.params().iter().enumerate() {
            if p.last_mask == Some(false) {
                let expect = before[i].affine(1.0 - lr * 0.1, 0.0).unwrap();
                let got = p.var.as_detached_tensor();
                assert!(max_abs_diff(&got, &expect) < 1e-15);
                checked = true;
            }
        }
    }
    assert!(checked);
}

#[test]
fn bf16_weights_keep_an_f32_master_copy() {
    let ps = params(DType::BF16);
    let mut c = cfg(OptimizerKind::AdamW);
    c.lr = 1e-5; // far below bf16 resolution of weights near 1
    let mut opt = Optimizer::new(ps.clone(), c).unwrap();
    let w0 = f64_bits(opt.params()[1].master.as_ref().unwrap());
    for step in 0..5 {
        opt.step(&grads(step, &ps)).unwrap();
    }
    let p = &opt.params()[1];
    assert_eq!(p.first_moment.dtype(), DType::F32);
    assert_ne!(
        f64_bits(p.master.as_ref().unwrap()),
        w0,
        "the master copy accumulates tiny steps"
    );
    let st = opt.state_tensors();
    assert!(st.contains_key("master.model.layers.0.self_attn.q_proj.weight"));
}

/// The fused CPU passes against the composed candle ops they replace: moments and weights are
/// bit-identical for AdamW and SkipUpdate (with and without clipping); Magma's cosine is summed
/// in f64 instead of f32, so its weights agree to rounding.
#[test]
fn fused_cpu_step_equals_the_composed_ops() {
    for kind in [
        OptimizerKind::AdamW,
        OptimizerKind::SkipUpdate,
        OptimizerKind::Magma,
    ] {
        for (clip, mask_decay) in [(None, true), (Some(1.0), false)] {
            let run = |composed: bool| {
                super::host_f32::FORCE_COMPOSED.with(|f| f.set(composed));
                let ps = params(DType::F32);
                let mut c = cfg(kind);
                c.max_grad_norm = clip;
                c.adamw.weight_decay = 0.1;
                c.magma.mask_weight_decay = mask_decay;
                let mut opt = Optimizer::new(ps.clone(), c).unwrap();
                let stats: Vec<OptimStats> =
                    (0..4).map(|s| opt.step(&grads(s, &ps)).unwrap()).collect();
                super::host_f32::FORCE_COMPOSED.with(|f| f.set(false));
                let state: Vec<Vec<f64>> = ps
                    .iter()
                    .map(|(_, v)| values(v.as_tensor()))
                    .chain(
                        opt.params()
                            .iter()
                            .flat_map(|p| [values(&p.first_moment), values(&p.second_moment)]),
                    )
                    .collect();
                (state, stats)
            };
            let (fused, fs) = run(false);
            let (composed, cs) = run(true);
            if kind == OptimizerKind::Magma {
                for (a, b) in fused.iter().flatten().zip(composed.iter().flatten()) {
                    assert!(
                        (a - b).abs() <= 1e-6 * b.abs().max(1e-3),
                        "{kind:?}: {a} vs {b}"
                    );
                }
            } else {
                assert_eq!(fused, composed, "{kind:?} clip {clip:?}");
            }
            for (f, c) in fs.iter().zip(&cs) {
                assert!((f.grad_norm_pre_clip - c.grad_norm_pre_clip).abs() < 1e-9);
                assert!((f.update_rms_ratio - c.update_rms_ratio).abs() < 1e-5);
            }
        }
    }
}
