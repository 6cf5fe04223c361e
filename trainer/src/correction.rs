//! Off-policy correction between the behaviour policy (what sampled the tokens) and the proximal
//! policy (the trainer's no-grad forward), algorithms.md §3.4, and the mismatch metrics.
//!
//! Owns the per-token correction weight and the mismatch statistics. Must not know tensors or
//! the model: two log-probs in, a weight and a keep flag out.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CorrectionMode {
    /// Truncated IS: `c = min(exp(ℓ_prox − ℓ_b), C)`.
    Tis,
    /// IcePop: `c = exp(ℓ_prox − ℓ_b)`, tokens with c outside [1/β, β] are masked.
    Icepop,
    /// `c = 1`.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CorrectionConfig {
    pub mode: CorrectionMode,
    /// TIS cap C.
    pub tis_cap: f64,
    /// IcePop band β.
    pub icepop_beta: f64,
}

impl Default for CorrectionConfig {
    fn default() -> Self {
        Self {
            mode: CorrectionMode::Tis,
            tis_cap: 2.0,
            icepop_beta: 2.0,
        }
    }
}

/// The behaviour correction of one token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IsWeight {
    /// `sg(c_t)` multiplying the token's surrogate.
    pub weight: f64,
    /// False when IcePop masks the token.
    pub keep: bool,
    /// TIS truncated it.
    pub truncated: bool,
}

pub fn is_weight(l_prox: f64, l_b: f64, cfg: &CorrectionConfig) -> IsWeight {
    let c = (l_prox - l_b).exp();
    match cfg.mode {
        CorrectionMode::None => IsWeight {
            weight: 1.0,
            keep: true,
            truncated: false,
        },
        CorrectionMode::Tis => IsWeight {
            weight: c.min(cfg.tis_cap),
            keep: true,
            truncated: c > cfg.tis_cap,
        },
        CorrectionMode::Icepop => {
            let b = cfg.icepop_beta;
            let keep = c >= 1.0 / b && c <= b;
            IsWeight {
                weight: if keep { c } else { 0.0 },
                keep,
                truncated: false,
            }
        }
    }
}

/// Running mismatch statistics between ℓ_b and ℓ_prox (slime's names).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MismatchStats {
    /// `mean(ℓ_b − ℓ_prox)`.
    pub mismatch_kl: f64,
    /// `mean(e^r − r − 1)`, r = ℓ_prox − ℓ_b.
    pub mismatch_k3: f64,
    /// `max |ℓ_b − ℓ_prox|`.
    pub max_abs_diff: f64,
    pub tis_truncated_frac: f64,
    pub is_masked_frac: f64,
    /// `(Σc)²/(N·Σc²)` over the kept tokens.
    pub ess: f64,
    pub tokens: usize,
}

#[derive(Default)]
pub(crate) struct MismatchAcc {
    n: usize,
    kl: f64,
    k3: f64,
    max: f64,
    truncated: usize,
    masked: usize,
    c_sum: f64,
    c_sq: f64,
    c_n: usize,
}

impl MismatchAcc {
    pub fn add(&mut self, l_prox: f64, l_b: f64, w: &IsWeight) {
        let r = l_prox - l_b;
        self.n += 1;
        self.kl += -r;
        self.k3 += r.exp() - r - 1.0;
        self.max = self.max.max(r.abs());
        self.truncated += w.truncated as usize;
        if w.keep {
            self.c_sum += w.weight;
            self.c_sq += w.weight * w.weight;
            self.c_n += 1;
        } else {
            self.masked += 1;
        }
    }

    pub fn finish(&self) -> MismatchStats {
        let n = self.n.max(1) as f64;
        MismatchStats {
            mismatch_kl: self.kl / n,
            mismatch_k3: self.k3 / n,
            max_abs_diff: self.max,
            tis_truncated_frac: self.truncated as f64 / n,
            is_masked_frac: self.masked as f64 / n,
            ess: if self.c_sq > 0.0 {
                self.c_sum * self.c_sum / (self.c_n as f64 * self.c_sq)
            } else {
                1.0
            },
            tokens: self.n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // §4.3.3
    #[test]
    fn is_identities() {
        let l_prox = -1.3;
        for mode in [
            CorrectionMode::Tis,
            CorrectionMode::Icepop,
            CorrectionMode::None,
        ] {
            let cfg = CorrectionConfig {
                mode,
                ..Default::default()
            };
            let w = is_weight(l_prox, l_prox, &cfg);
            assert_eq!((w.weight, w.keep, w.truncated), (1.0, true, false));
        }
        let l_b = l_prox - 3f64.ln();
        let tis = CorrectionConfig {
            mode: CorrectionMode::Tis,
            tis_cap: 2.0,
            ..Default::default()
        };
        let w = is_weight(l_prox, l_b, &tis);
        assert_eq!((w.weight, w.keep, w.truncated), (2.0, true, true));
        let ice = CorrectionConfig {
            mode: CorrectionMode::Icepop,
            icepop_beta: 2.0,
            ..Default::default()
        };
        let w = is_weight(l_prox, l_b, &ice);
        assert!(!w.keep);
        let w = is_weight(l_prox, l_prox - 1.5f64.ln(), &ice);
        assert!(w.keep && (w.weight - 1.5).abs() < 1e-12);
        let w = is_weight(l_prox, l_prox + 3f64.ln(), &ice);
        assert!(!w.keep, "c = 1/3 < 1/β");
    }

    #[test]
    fn mismatch_metrics() {
        let cfg = CorrectionConfig::default();
        let mut acc = MismatchAcc::default();
        for (p, b) in [(-1.0, -1.0), (-1.0, -1.0 - 3f64.ln())] {
            acc.add(p, b, &is_weight(p, b, &cfg));
        }
        let s = acc.finish();
        assert!((s.mismatch_kl + 3f64.ln() / 2.0).abs() < 1e-12);
        assert!((s.max_abs_diff - 3f64.ln()).abs() < 1e-12);
        assert!((s.mismatch_k3 - (3.0 - 3f64.ln() - 1.0) / 2.0).abs() < 1e-12);
        assert_eq!(s.tis_truncated_frac, 0.5);
        // c = (1, 2): ESS = 9 / (2·5) = 0.9.
        assert!((s.ess - 0.9).abs() < 1e-12);
    }
}
