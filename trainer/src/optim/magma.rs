//! Magma and SkipUpdate (algorithms.md §2): per-tensor Bernoulli masks on top of AdamW's
//! displacement, with Magma's momentum–gradient alignment damping.
//!
//! Owns the mask scope, the alignment score and the multipliers. Must not know how moments are
//! stored or updated (composed or fused), nor the mask stream.

use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};

/// Which tensors get a mask (and an alignment score); the rest always get the full base step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskScope {
    /// Attention q/k/v/o and MLP gate/up/down matrices (default, the Appendix C winner).
    AttnMlp,
    /// Attention q/k/v/o matrices only.
    Attention,
    /// Every tensor.
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MagmaConfig {
    /// Survival probability p of each block's update.
    pub p: f64,
    /// Temperature τ of the alignment sigmoid.
    pub tau: f64,
    /// EMA coefficient of the alignment score (the new score is weighted 1 − ema).
    pub ema: f64,
    /// Initial score s_0.
    pub s0: f64,
    /// Weight decay inside the masked/damped displacement (true) or applied densely (false).
    pub mask_weight_decay: bool,
    /// Multiply survivors by s (Magma). False gives uniform masking without damping.
    pub damping: bool,
    pub scope: MaskScope,
    /// Seed of the dedicated mask RNG.
    pub seed: u64,
}

impl Default for MagmaConfig {
    fn default() -> Self {
        Self {
            p: 0.5,
            tau: 2.0,
            ema: 0.9,
            s0: 0.5,
            mask_weight_decay: true,
            damping: true,
            scope: MaskScope::AttnMlp,
            seed: 0x006d_6167_6d61, // "magma"
        }
    }
}

/// Is the tensor with this HF name masked under `scope`? A LoRA adapter (PEFT's
/// `….q_proj.lora_A.weight`) counts as the layer it adapts.
pub fn is_masked(name: &str, scope: MaskScope) -> bool {
    let adapted = name
        .strip_suffix(".lora_A.weight")
        .or_else(|| name.strip_suffix(".lora_B.weight"))
        .map(|base| format!("{base}.weight"));
    let name = adapted.as_deref().unwrap_or(name);
    let attn = [
        ".self_attn.q_proj.weight",
        ".self_attn.k_proj.weight",
        ".self_attn.v_proj.weight",
        ".self_attn.o_proj.weight",
    ];
    let mlp = [
        ".mlp.gate_proj.weight",
        ".mlp.up_proj.weight",
        ".mlp.down_proj.weight",
    ];
    match scope {
        MaskScope::All => true,
        MaskScope::Attention => attn.iter().any(|s| name.ends_with(s)),
        MaskScope::AttnMlp => attn.iter().chain(mlp.iter()).any(|s| name.ends_with(s)),
    }
}

pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// One step of the alignment EMA: `s ← ema·s + (1−ema)·σ(cos/τ)`.
pub fn ema_update(s: f64, cos: f64, cfg: &MagmaConfig) -> f64 {
    cfg.ema * s + (1.0 - cfg.ema) * sigmoid(cos / cfg.tau)
}

/// `cos(m, g)` accumulated in the tensors' dtype, 0 when either norm is 0.
pub fn cosine(m: &Tensor, g: &Tensor) -> Result<f64> {
    let dot = (m * g)?.sum_all()?.to_scalar_f64()?;
    let nm = m.sqr()?.sum_all()?.to_scalar_f64()?.sqrt();
    let ng = g.sqr()?.sum_all()?.to_scalar_f64()?.sqrt();
    if nm == 0.0 || ng == 0.0 || !(nm * ng).is_finite() {
        return Ok(0.0);
    }
    Ok((dot / (nm * ng)).clamp(-1.0, 1.0))
}

/// `cos(m', c·g)` with `m' = β1·m + (1−β1)·c·g` (the moment the step is about to write), from
/// sums over the moment `m` before the step and the raw gradient `g`: `Σ g²`, `Σ m·g`, `Σ m²`
/// (the expansion of the three sums in `c`). Lets the step know the cosine, hence the
/// multiplier, before its one pass over the tensor. As [`cosine`]: 0 when either norm is 0.
pub fn cosine_from_sums(gg: f64, mg: f64, mm: f64, clip: f64, beta1: f64) -> f64 {
    let (b, a) = (beta1, (1.0 - beta1) * clip);
    let dot = clip * (b * mg + a * gg);
    // Σ m'² ≥ 0 exactly (Cauchy–Schwarz); rounding could dip below where m' ≈ 0.
    let mm_new = (b * b * mm + 2.0 * a * b * mg + a * a * gg).max(0.0);
    let (nm, ng) = (mm_new.sqrt(), clip.abs() * gg.sqrt());
    if nm == 0.0 || ng == 0.0 || !(nm * ng).is_finite() {
        return 0.0;
    }
    (dot / (nm * ng)).clamp(-1.0, 1.0)
}

/// Scalar of a 0-dim float tensor as f64, whatever its dtype.
pub(crate) trait ScalarF64 {
    fn to_scalar_f64(&self) -> Result<f64>;
}

impl ScalarF64 for Tensor {
    fn to_scalar_f64(&self) -> Result<f64> {
        self.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()
    }
}

/// SkipUpdate's survivor multiplier `z/p` (unbiased).
pub fn skip_update_multiplier(z: bool, p: f64) -> f64 {
    if z {
        1.0 / p
    } else {
        0.0
    }
}

/// Magma's multiplier `z·s` (no 1/p rescale, Algorithm 1).
pub fn magma_multiplier(z: bool, s: f64) -> f64 {
    if z {
        s
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;
    use candle_core::{DType, Device};

    // §4.2.1
    #[test]
    fn ema_values() {
        let cfg = MagmaConfig::default();
        assert!((ema_update(0.5, 1.0, &cfg) - 0.512246).abs() < 1e-6);
        assert!((ema_update(0.5, -1.0, &cfg) - 0.487754).abs() < 1e-6);
        assert_eq!(ema_update(0.5, 0.0, &cfg), 0.5);
        let mut s = 0.5;
        for _ in 0..50 {
            s = ema_update(s, 1.0, &cfg);
        }
        assert!((s - 0.621828).abs() < 1e-6, "{s}");
        assert!((sigmoid(0.5) - 0.622459).abs() < 1e-6);
        // s stays inside (σ(−1/τ), σ(1/τ)) under any cosine sequence.
        let mut rng = SplitMix64::new(3);
        let mut s = 0.5;
        for _ in 0..10_000 {
            s = ema_update(s, 2.0 * rng.uniform() - 1.0, &cfg);
            assert!(s > 0.377540 && s < 0.622460, "{s}");
        }
        let (lo, hi) = (sigmoid(-0.5), sigmoid(0.5));
        assert!((lo - 0.377541).abs() < 1e-6 && (hi - 0.622459).abs() < 1e-6);
    }

    // §4.2.2
    #[test]
    fn alignment_is_scale_invariant() {
        let dev = Device::Cpu;
        let mut rng = SplitMix64::new(11);
        let mut vecn = |n: usize| -> Tensor {
            let v: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
            Tensor::from_vec(v, n, &dev).unwrap()
        };
        let (m, g) = (vecn(257), vecn(257));
        let cfg = MagmaConfig::default();
        let c = cosine(&m, &g).unwrap();
        let s = ema_update(0.5, c, &cfg);
        let c_g = cosine(&m, &(&g * 0.3).unwrap()).unwrap();
        let c_m = cosine(&(&m * 7.0).unwrap(), &g).unwrap();
        assert!((ema_update(0.5, c_g, &cfg) - s).abs() < 1e-15);
        assert!((ema_update(0.5, c_m, &cfg) - s).abs() < 1e-15);
        // f32 accumulation (the default for f32 weights) agrees to f32 precision.
        let c32 = cosine(
            &m.to_dtype(DType::F32).unwrap(),
            &(&g * 0.3).unwrap().to_dtype(DType::F32).unwrap(),
        )
        .unwrap();
        assert!((c32 - c).abs() < 1e-6);
        let z = Tensor::zeros(257, DType::F64, &dev).unwrap();
        assert_eq!(cosine(&z, &g).unwrap(), 0.0);
    }

    /// The cosine from the pre-step sums equals the cosine of the updated moment and the
    /// clipped gradient.
    #[test]
    fn cosine_from_sums_equals_the_cosine_of_the_new_moment() {
        let dev = Device::Cpu;
        let mut rng = SplitMix64::new(5);
        let mut vecn = |n: usize| -> Vec<f64> { (0..n).map(|_| rng.normal()).collect() };
        let (m, g) = (vecn(301), vecn(301));
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
        for (clip, beta1) in [(1.0, 0.9), (0.37, 0.9), (2.5, 0.5), (1.0, 0.0)] {
            let m_new: Vec<f64> = m
                .iter()
                .zip(&g)
                .map(|(m, g)| beta1 * m + (1.0 - beta1) * clip * g)
                .collect();
            let gc: Vec<f64> = g.iter().map(|g| clip * g).collect();
            let t = |v: &[f64]| Tensor::from_slice(v, v.len(), &dev).unwrap();
            let expect = cosine(&t(&m_new), &t(&gc)).unwrap();
            let got = cosine_from_sums(dot(&g, &g), dot(&m, &g), dot(&m, &m), clip, beta1);
            assert!(
                (got - expect).abs() < 1e-12,
                "clip {clip} β1 {beta1}: {got} vs {expect}"
            );
        }
        // First step (m = 0): m' ∥ g.
        assert!((cosine_from_sums(4.0, 0.0, 0.0, 0.5, 0.9) - 1.0).abs() < 1e-15);
        assert_eq!(cosine_from_sums(0.0, 0.0, 3.0, 1.0, 0.9), 0.0);
        assert_eq!(cosine_from_sums(1.0, 0.0, 0.0, 1.0, 1.0), 0.0);
    }

    // §4.2.5 (rate; the stream's restore is tested with the optimizer state)
    #[test]
    fn mask_rate() {
        let mut rng = SplitMix64::new(MagmaConfig::default().seed);
        let n = 10_000;
        let kept = (0..n).filter(|_| rng.bernoulli(0.5)).count();
        let frac = kept as f64 / n as f64;
        assert!((frac - 0.5).abs() < 0.015, "{frac}");
    }

    // §4.2.6
    #[test]
    fn skip_update_is_unbiased() {
        let mut rng = SplitMix64::new(5);
        let (p, delta, n) = (0.5, 0.37, 100_000);
        let xs: Vec<f64> = (0..n)
            .map(|_| skip_update_multiplier(rng.bernoulli(p), p) * delta)
            .collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!((mean / delta - 1.0).abs() < 0.01, "{mean}");
        let expected = (1.0 - p) / p * delta * delta;
        assert!((var / expected - 1.0).abs() < 0.02, "{var} vs {expected}");
        // p = 0.25 too.
        let p = 0.25;
        let xs: Vec<f64> = (0..n)
            .map(|_| skip_update_multiplier(rng.bernoulli(p), p) * delta)
            .collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!((mean / delta - 1.0).abs() < 0.015, "{mean}");
        assert!((var / ((1.0 - p) / p * delta * delta) - 1.0).abs() < 0.03);
    }

    // §4.2.7: L(x, y) = (x + y)²/2, θ = (1, 1), Δ = (½, ½), p = ½, θ' = θ − (z/p)Δ.
    #[test]
    fn implicit_regularisation_identity() {
        let loss = |x: f64, y: f64| (x + y).powi(2) / 2.0;
        let (p, d) = (0.5, 0.5);
        let step = |z: bool| 1.0 - skip_update_multiplier(z, p) * d;
        // Exact expectation over the 4 (per-coordinate) and 2 (one block) mask outcomes.
        let mut per_coord = 0.0;
        for zx in [false, true] {
            for zy in [false, true] {
                per_coord += 0.25 * loss(step(zx), step(zy));
            }
        }
        let one_block = 0.5 * loss(step(false), step(false)) + 0.5 * loss(step(true), step(true));
        let deterministic = loss(1.0 - d, 1.0 - d);
        assert_eq!(deterministic, 0.5);
        assert_eq!(per_coord, 0.75);
        assert_eq!(per_coord, deterministic + 0.25);
        assert_eq!(one_block, 1.0);
        // The same by Monte Carlo with the mask RNG.
        let mut rng = SplitMix64::new(9);
        let n = 100_000;
        let (mut a, mut b) = (0.0, 0.0);
        for _ in 0..n {
            a += loss(step(rng.bernoulli(p)), step(rng.bernoulli(p)));
            let z = rng.bernoulli(p);
            b += loss(step(z), step(z));
        }
        assert!((a / n as f64 - 0.75).abs() < 0.01);
        assert!((b / n as f64 - 1.0).abs() < 0.015);
    }

    #[test]
    fn default_scope() {
        let s = MaskScope::AttnMlp;
        assert!(is_masked("model.layers.3.self_attn.q_proj.weight", s));
        assert!(is_masked("model.layers.0.mlp.down_proj.weight", s));
        assert!(is_masked(
            "base_model.model.model.layers.0.mlp.down_proj.lora_B.weight",
            s
        ));
        assert!(!is_masked("model.layers.0.self_attn.q_proj.bias", s));
        assert!(!is_masked("model.layers.0.self_attn.q_norm.weight", s));
        assert!(!is_masked("model.layers.0.input_layernorm.weight", s));
        assert!(!is_masked("model.embed_tokens.weight", s));
        assert!(!is_masked("lm_head.weight", s));
        assert!(!is_masked("model.norm.weight", s));
        assert!(!is_masked(
            "model.layers.0.mlp.up_proj.weight",
            MaskScope::Attention
        ));
    }
}
