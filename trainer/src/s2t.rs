//! STAPO's S2T mask (Silencing Spurious Tokens, algorithms.md §1.3/§1.8) and the per-token
//! gradient-norm identities it rests on (§1.5).
//!
//! A response token is *spurious* (masked) when its response has a positive advantage, its
//! probability under the current policy is below the absolute threshold `τ_p`, and its entropy is
//! strictly below `τ_h`, the q-quantile (linear interpolation) of the entropies of the candidate
//! set (`Â > 0 ∧ p < τ_p`) of the mini-batch.
//!
//! Owns the mask and the identities. Must not know tensors or the loss: per-token advantage,
//! probability and entropy in, keep flags out.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct S2tConfig {
    /// Absolute probability threshold τ_p (strict `<`).
    pub tau_p: f64,
    /// Entropy quantile q over the candidate set.
    pub quantile: f64,
}

impl Default for S2tConfig {
    fn default() -> Self {
        Self {
            tau_p: 0.002,
            quantile: 0.75,
        }
    }
}

/// What the mask needs per response token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct S2tToken {
    /// The response's advantage Â_i.
    pub advantage: f64,
    /// π_θ(y_t) at the trainer temperature (1.0).
    pub prob: f64,
    /// Entropy of the full next-token distribution at the trainer temperature.
    pub entropy: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct S2tResult {
    /// `keep[t] = false` for masked (spurious) tokens.
    pub keep: Vec<bool>,
    /// τ_h; `None` when the candidate set is empty.
    pub threshold: Option<f64>,
    pub candidates: usize,
    pub masked: usize,
}

/// Linear-interpolation quantile (numpy/torch default) of `xs`; `None` for an empty slice.
pub fn quantile_linear(xs: &[f64], q: f64) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    let frac = pos - lo as f64;
    Some(v[lo] + frac * (v[hi] - v[lo]))
}

/// Is the token a candidate (`Â > 0 ∧ p < τ_p`, both strict)?
pub fn is_candidate(t: &S2tToken, tau_p: f64) -> bool {
    t.advantage > 0.0 && t.prob < tau_p
}

/// The truth table of §1.3 for a given entropy threshold.
pub fn is_spurious(t: &S2tToken, tau_p: f64, threshold: f64) -> bool {
    is_candidate(t, tau_p) && t.entropy < threshold
}

/// The S2T mask over one mini-batch's response tokens.
pub fn s2t_mask(tokens: &[S2tToken], cfg: &S2tConfig) -> S2tResult {
    let cand: Vec<f64> = tokens
        .iter()
        .filter(|t| is_candidate(t, cfg.tau_p))
        .map(|t| t.entropy)
        .collect();
    let threshold = quantile_linear(&cand, cfg.quantile);
    let keep: Vec<bool> = tokens
        .iter()
        .map(|t| match threshold {
            Some(thr) => !is_spurious(t, cfg.tau_p, thr),
            None => true,
        })
        .collect();
    let masked = keep.iter().filter(|k| !**k).count();
    S2tResult {
        keep,
        threshold,
        candidates: cand.len(),
        masked,
    }
}

/// Shannon entropy of a distribution (natural log).
pub fn entropy(pi: &[f64]) -> f64 {
    -pi.iter()
        .filter(|&&p| p > 0.0)
        .map(|&p| p * p.ln())
        .sum::<f64>()
}

/// `‖∇_a (w·log π_k)‖² = w²(1 − 2π_k + Σπ²)` (§1.5, exact).
pub fn logit_grad_norm_sq(pi: &[f64], k: usize, w: f64) -> f64 {
    let coll: f64 = pi.iter().map(|p| p * p).sum();
    w * w * (1.0 - 2.0 * pi[k] + coll)
}

/// `C_V = (|V|−1)/(|V|·(ln|V|)²)`.
pub fn c_v(vocab: usize) -> f64 {
    let v = vocab as f64;
    (v - 1.0) / (v * v.ln().powi(2))
}

/// Entropy bounds on the squared logit-gradient norm: `(w²(1−2π_k+e^{−H}), w²(2−2π_k−C_V H²))`.
pub fn logit_grad_norm_sq_bounds(pi: &[f64], k: usize, w: f64) -> (f64, f64) {
    let h = entropy(pi);
    let lo = w * w * (1.0 - 2.0 * pi[k] + (-h).exp());
    let hi = w * w * (2.0 - 2.0 * pi[k] - c_v(pi.len()) * h * h);
    (lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(advantage: f64, prob: f64, entropy: f64) -> S2tToken {
        S2tToken {
            advantage,
            prob,
            entropy,
        }
    }

    // §4.1.2
    #[test]
    fn worked_gradient_norm_values() {
        let pi = [0.97, 0.01, 0.01, 0.01];
        assert!((c_v(4) - 0.390257).abs() < 1e-6);
        assert!((entropy(&pi) - 0.167701).abs() < 1e-6);
        let coll: f64 = pi.iter().map(|p| p * p).sum();
        assert!((coll - 0.9412).abs() < 1e-12);
        let n1 = logit_grad_norm_sq(&pi, 1, 1.0);
        assert!((n1 - 1.9212).abs() < 1e-12);
        let (lo, hi) = logit_grad_norm_sq_bounds(&pi, 1, 1.0);
        assert!((lo - 1.825607).abs() < 1e-6, "{lo}");
        assert!((hi - 1.969025).abs() < 1e-6, "{hi}");
        assert!(lo <= n1 && n1 <= hi);
        let n0 = logit_grad_norm_sq(&pi, 0, 1.0);
        assert!((n0 - 0.0012).abs() < 1e-12);
        assert!((n1 / n0 - 1601.0).abs() < 1e-6, "rare token ≈1600× larger");
        let u = [0.25; 4];
        let nu = logit_grad_norm_sq(&u, 2, 1.0);
        let (lo, hi) = logit_grad_norm_sq_bounds(&u, 2, 1.0);
        assert!((nu - 0.75).abs() < 1e-12);
        assert!((lo - 0.75).abs() < 1e-12 && (hi - 0.75).abs() < 1e-12);
    }

    // §4.1.4
    #[test]
    fn mask_truth_table() {
        let thr = 0.5;
        let tp = 0.002;
        assert!(is_spurious(&tok(1.0, 0.001, 0.1), tp, thr));
        assert!(!is_spurious(&tok(0.0, 0.001, 0.1), tp, thr));
        assert!(!is_spurious(&tok(-1.0, 0.001, 0.1), tp, thr));
        assert!(!is_spurious(&tok(1.0, 0.002, 0.1), tp, thr));
        assert!(!is_spurious(&tok(1.0, 0.001, 0.5), tp, thr));
        assert!(!is_spurious(&tok(1.0, 0.001, 0.9), tp, thr));
    }

    // §4.1.5
    #[test]
    fn quantile_and_mask_counts() {
        let cfg = S2tConfig::default();
        let mk = |hs: &[f64]| hs.iter().map(|&h| tok(1.0, 0.001, h)).collect::<Vec<_>>();
        let r = s2t_mask(&mk(&[0.1, 0.2, 0.3, 0.4, 0.5]), &cfg);
        assert_eq!(r.threshold, Some(0.4));
        assert_eq!((r.candidates, r.masked), (5, 3));
        assert_eq!(r.keep, vec![false, false, false, true, true]);
        let ten: Vec<f64> = (1..=10).map(|i| i as f64 / 10.0).collect();
        let r = s2t_mask(&mk(&ten), &cfg);
        assert!((r.threshold.unwrap() - 0.775).abs() < 1e-12);
        assert_eq!(r.masked, 7);
        let r = s2t_mask(&mk(&[0.3]), &cfg);
        assert_eq!((r.candidates, r.masked), (1, 0));
        let r = s2t_mask(&mk(&[0.9, 0.2]), &cfg);
        assert_eq!(
            r.keep,
            vec![true, false],
            "of two, the lower-entropy one is masked"
        );
        // No candidates (a non-positive advantage or a likely token): no mask and no panic.
        let r = s2t_mask(&[tok(0.0, 0.001, 0.1), tok(1.0, 0.5, 0.1)], &cfg);
        assert_eq!((r.threshold, r.candidates, r.masked), (None, 0, 0));
        assert_eq!(r.keep, vec![true, true]);
        let r = s2t_mask(&[], &cfg);
        assert!(r.keep.is_empty() && r.threshold.is_none());
        // Non-candidates never enter the quantile: a low-entropy negative token stays kept.
        let r = s2t_mask(
            &[
                tok(-1.0, 0.001, 0.0),
                tok(1.0, 0.001, 0.2),
                tok(1.0, 0.001, 0.4),
            ],
            &cfg,
        );
        assert_eq!(r.keep, vec![true, false, true]);
    }
}
