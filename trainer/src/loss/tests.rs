use super::*;
use crate::rng::SplitMix64;
use crate::s2t::{logit_grad_norm_sq, logit_grad_norm_sq_bounds};
use crate::test_util::log_softmax;
use candle_core::{Device, Var};
use rlvr_models::testing::randn_from;

fn logits_var(rows: usize, v: usize, seed: u64) -> Var {
    let mut rng = SplitMix64::new(seed);
    Var::from_tensor(&randn_from(&mut rng, &[rows, v], 2.0, DType::F64)).unwrap()
}

fn gather(lp: &Tensor, targets: &[u32]) -> Tensor {
    let t = Tensor::new(targets, lp.device())
        .unwrap()
        .unsqueeze(1)
        .unwrap();
    lp.gather(&t, 1).unwrap().squeeze(1).unwrap()
}

fn rows(t: &Tensor) -> Vec<Vec<f64>> {
    t.to_vec2::<f64>().unwrap()
}

/// The terms that put ℓ_θ = `l` at ratio `u` (unit IS and aggregation weights).
fn at_ratio(l: f64, advantage: f64, u: f64) -> TokenTerms {
    TokenTerms {
        advantage,
        l_prox: l - u.ln(),
        is_weight: 1.0,
        agg_weight: 1.0,
    }
}

fn probs(a: &Var) -> Vec<Vec<f64>> {
    rows(&log_softmax(a.as_tensor()).unwrap().exp().unwrap())
}

const CLIP: ClipSettings = ClipSettings {
    eps_low: 0.2,
    eps_high: 0.28,
    band_mask: false,
};

// §4.1.1: ∂(w·log π_k)/∂a = w(onehot_k − π); ‖∇‖² = w²(1 − 2π_k + Σπ²) inside the bounds.
#[test]
fn gradient_identity_f64() {
    for (vocab, seed) in [(4usize, 1u64), (32, 2), (4, 3), (32, 4)] {
        let n = 6;
        let a = logits_var(n, vocab, seed);
        let mut rng = SplitMix64::new(seed + 10);
        let targets: Vec<u32> = (0..n).map(|_| rng.below(vocab) as u32).collect();
        let w: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        let lp = gather(&log_softmax(a.as_tensor()).unwrap(), &targets);
        let wt = Tensor::from_slice(&w, n, &Device::Cpu).unwrap();
        let j = (lp.clone() * wt).unwrap().sum_all().unwrap();
        let grads = j.backward().unwrap();
        let g = rows(grads.get(a.as_tensor()).unwrap());
        let pi = probs(&a);
        for i in 0..n {
            let k = targets[i] as usize;
            let mut norm = 0.0;
            for v in 0..vocab {
                let expect = w[i] * ((v == k) as u8 as f64 - pi[i][v]);
                assert!((g[i][v] - expect).abs() < 1e-12);
                norm += g[i][v] * g[i][v];
            }
            let formula = logit_grad_norm_sq(&pi[i], k, w[i]);
            assert!((norm - formula).abs() < 1e-10);
            let (lo, hi) = logit_grad_norm_sq_bounds(&pi[i], k, w[i]);
            assert!(lo <= norm + 1e-12 && norm <= hi + 1e-12, "{lo} {norm} {hi}");
        }
        // The same through the surrogate: inside the trust region its gradient is −ρÂ∇log π.
        let a2 = logits_var(n, vocab, seed);
        let lp2 = gather(&log_softmax(a2.as_tensor()).unwrap(), &targets);
        let lv = lp2.to_vec1::<f64>().unwrap();
        let rho: Vec<f64> = (0..n).map(|i| 0.85 + 0.05 * i as f64).collect();
        let terms: Vec<TokenTerms> = (0..n).map(|i| at_ratio(lv[i], w[i], rho[i])).collect();
        let (loss, st) = surrogate_loss(&lp2, &terms, &CLIP).unwrap();
        assert_eq!(st.clipped, 0);
        let g2 = rows(loss.backward().unwrap().get(a2.as_tensor()).unwrap());
        for i in 0..n {
            let k = targets[i] as usize;
            for v in 0..vocab {
                let expect = -rho[i] * w[i] * ((v == k) as u8 as f64 - pi[i][v]);
                assert!((g2[i][v] - expect).abs() < 1e-12);
            }
        }
    }
}

// §4.1.2 through autograd.
#[test]
fn worked_values_by_autograd() {
    let pi = [0.97f64, 0.01, 0.01, 0.01];
    let a = Var::from_tensor(
        &Tensor::from_vec(
            pi.iter().map(|p| p.ln()).collect::<Vec<_>>(),
            (1, 4),
            &Device::Cpu,
        )
        .unwrap(),
    )
    .unwrap();
    let norm = |k: u32| {
        let lp = gather(&log_softmax(a.as_tensor()).unwrap(), &[k]);
        let g = lp.sum_all().unwrap().backward().unwrap();
        let g = g
            .get(a.as_tensor())
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap();
        g.to_scalar::<f64>().unwrap()
    };
    assert!((norm(1) - 1.9212).abs() < 1e-10);
    assert!((norm(0) - 0.0012).abs() < 1e-10);
}

// §4.1.3: the clipped branch gives an exactly zero logit gradient.
#[test]
fn clipped_branch_has_zero_gradient() {
    for (adv, rho) in [(1.0, 1.5), (-1.0, 0.5), (2.5, 1.2800001), (-0.3, 0.7999999)] {
        let a = logits_var(1, 8, 7);
        let lp = gather(&log_softmax(a.as_tensor()).unwrap(), &[3]);
        let l = lp.to_vec1::<f64>().unwrap()[0];
        let terms = [at_ratio(l, adv, rho)];
        let (loss, st) = surrogate_loss(&lp, &terms, &CLIP).unwrap();
        assert_eq!(st.clipped, 1);
        // The value is the clipped objective.
        let clipped = f64::clamp(rho, 0.8, 1.28);
        assert!((loss.to_scalar::<f64>().unwrap() + adv * clipped).abs() < 1e-12);
        let g = loss.backward().unwrap();
        let g = rows(g.get(a.as_tensor()).unwrap());
        assert!(g[0].iter().all(|x| *x == 0.0), "{g:?}");
    }
    // The other side of each bound is not clipped.
    for (adv, rho) in [(1.0, 0.5), (-1.0, 1.5)] {
        assert!(!is_clipped(rho, adv, &CLIP));
    }
}

// §4.1.6 (function level): a masked token drops out of the mean and gets exactly zero gradient.
#[test]
fn masked_token_renormalises_and_has_zero_gradient() {
    let n = 5;
    let a = logits_var(n, 16, 9);
    let targets = [1u32, 4, 7, 2, 9];
    let lp = gather(&log_softmax(a.as_tensor()).unwrap(), &targets);
    let lv = lp.to_vec1::<f64>().unwrap();
    let adv = [1.0, -0.5, 2.0, 0.7, -1.2];
    let j = 2;
    let valid = vec![(0..n).map(|t| t != j).collect::<Vec<_>>()];
    let w = aggregation_weights(&valid, Aggregation::TokenMean, 0).unwrap();
    let terms: Vec<TokenTerms> = (0..n)
        .map(|t| TokenTerms {
            advantage: adv[t],
            l_prox: lv[t],
            is_weight: 1.0,
            agg_weight: w[0][t],
        })
        .collect();
    let (loss, _) = surrogate_loss(&lp, &terms, &CLIP).unwrap();
    // ρ = 1 everywhere: the loss is −mean(Â) over the kept tokens.
    let expect = -(adv.iter().sum::<f64>() - adv[j]) / 4.0;
    assert!((loss.to_scalar::<f64>().unwrap() - expect).abs() < 1e-15);
    let g = rows(loss.backward().unwrap().get(a.as_tensor()).unwrap());
    assert!(g[j].iter().all(|x| *x == 0.0));
    assert!(g[0].iter().any(|x| *x != 0.0));
}

// §4.3.4: GLM-5 band (ε_ℓ = 0.2, ε_h = 0.28), built from exact log-ratios.
#[test]
fn glm5_band_mask() {
    let band = ClipSettings {
        band_mask: true,
        ..CLIP
    };
    let adv = 0.9;
    let a = logits_var(3, 8, 12);
    let lp = gather(&log_softmax(a.as_tensor()).unwrap(), &[0, 1, 2]);
    let lv = lp.to_vec1::<f64>().unwrap();
    let u = [1.30f64, 1.10, 0.79];
    let terms: Vec<TokenTerms> = (0..3).map(|t| at_ratio(lv[t], adv, u[t])).collect();
    let (loss, st) = surrogate_loss(&lp, &terms, &band).unwrap();
    assert_eq!(st.band_masked, 2);
    let g = rows(loss.backward().unwrap().get(a.as_tensor()).unwrap());
    let pi = probs(&a);
    assert!(g[0].iter().all(|x| *x == 0.0), "u = 1.30 gives no gradient");
    assert!(g[2].iter().all(|x| *x == 0.0), "u = 0.79 is masked");
    for v in 0..8 {
        let expect = -1.10 * adv * ((v == 1) as u8 as f64 - pi[1][v]);
        assert!((g[1][v] - expect).abs() < 1e-12);
    }
    // Boundaries are strict: u = 0.8 and u = 1.28 exactly (log-ratio built from the bound) are out.
    for ub in [0.8f64, 1.28] {
        let terms = [TokenTerms {
            advantage: adv,
            l_prox: 0.0,
            is_weight: 1.0,
            agg_weight: 1.0,
        }];
        let l = Tensor::new(&[ub.ln()], &Device::Cpu).unwrap();
        let u_val = (ub.ln() - 0.0f64).exp();
        let inside = u_val > 0.8 && u_val < 1.28;
        let (_, st) = surrogate_loss(&l, &terms, &band).unwrap();
        assert_eq!(st.band_masked, (!inside) as usize);
    }
}

#[test]
fn aggregation_modes() {
    let valid = vec![vec![true, true, false], vec![true], vec![false, false]];
    let w = aggregation_weights(&valid, Aggregation::TokenMean, 0).unwrap();
    assert_eq!(w[0], vec![1.0 / 3.0, 1.0 / 3.0, 0.0]);
    assert_eq!(w[1], vec![1.0 / 3.0]);
    let w = aggregation_weights(&valid, Aggregation::SeqMeanTokenMean, 0).unwrap();
    assert_eq!(w[0], vec![0.25, 0.25, 0.0]);
    assert_eq!(w[1], vec![0.5]);
    assert_eq!(w[2], vec![0.0, 0.0]);
    let w = aggregation_weights(&valid, Aggregation::SeqMeanTokenSumNorm, 10).unwrap();
    assert_eq!(w[0][0], 1.0 / 30.0);
    assert!(aggregation_weights(&[vec![false], vec![]], Aggregation::TokenMean, 1).is_none());
    assert!(aggregation_weights(&[], Aggregation::TokenMean, 1).is_none());
}

#[test]
fn presets() {
    let s = LossPreset::Stapo.settings();
    assert!(s.s2t && s.aggregation == Aggregation::TokenMean && s.eps_high == 0.28);
    let d = LossPreset::Dapo.settings();
    assert_eq!(LossSettings { s2t: true, ..d }, s);
    let g = LossPreset::Grpo.settings();
    assert_eq!(
        (g.eps_low, g.eps_high, g.aggregation),
        (0.2, 0.2, Aggregation::SeqMeanTokenMean)
    );
    let r = LossPreset::DrGrpo.settings();
    assert_eq!(r.advantage, AdvantageMode::GroupMean);
    assert_eq!(r.aggregation, Aggregation::SeqMeanTokenSumNorm);
}

#[test]
fn k3_value_and_gradient() {
    let l = Var::from_tensor(&Tensor::new(&[-1.0f64, -2.0], &Device::Cpu).unwrap()).unwrap();
    let kl = k3_kl(l.as_tensor(), &[-1.0, -1.5], &[1.0, 0.5]).unwrap();
    let r = 0.5f64;
    assert!((kl.to_scalar::<f64>().unwrap() - 0.5 * (r.exp() - r - 1.0)).abs() < 1e-15);
    let g = kl
        .backward()
        .unwrap()
        .get(l.as_tensor())
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    assert_eq!(g[0], 0.0);
    assert!((g[1] - 0.5 * (1.0 - r.exp())).abs() < 1e-15);
}

#[test]
fn huge_log_ratios_stay_finite() {
    let a = logits_var(2, 8, 3);
    let lp = gather(&log_softmax(a.as_tensor()).unwrap(), &[0, 1]);
    let terms = [
        TokenTerms {
            advantage: -1.0,
            l_prox: -500.0,
            is_weight: 1.0,
            agg_weight: 0.5,
        },
        TokenTerms {
            advantage: 1.0,
            l_prox: -500.0,
            is_weight: 1.0,
            agg_weight: 0.5,
        },
    ];
    let lp32 = lp.to_dtype(DType::F32).unwrap();
    let (loss, st) = surrogate_loss(&lp32, &terms, &CLIP).unwrap();
    assert_eq!(st.clipped, 2);
    let g = loss.backward().unwrap();
    let g = g.get(a.as_tensor()).unwrap();
    assert!(rows(g).iter().flatten().all(|x| x.is_finite()));
}
