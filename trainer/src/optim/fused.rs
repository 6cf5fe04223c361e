//! The optimizer's per-tensor arithmetic on the CPU for f32 weights as two row-parallel passes
//! over host memory, instead of a dozen single-threaded candle ops that each allocate a tensor.
//!
//! Every element goes through the same f32 operations, in the same order, as the composed path
//! (`adamw.rs` and the step in `mod.rs`: candle's `affine` is `x·mul + add` in the element type),
//! so moments and weights are bit-identical to it. Reductions (norms, Magma's cosine) accumulate
//! in f64 per fixed-size chunk, combined in chunk order: deterministic whatever the thread count.

use candle_core::{DType, Device, Storage, Tensor};
use rayon::prelude::*;

use super::adamw::AdamWConfig;
use crate::error::Result;

/// Elements per parallel chunk (fixed, so sums do not depend on the thread count).
const CHUNK: usize = 1 << 15;

#[cfg(test)]
thread_local! {
    /// Tests: take the composed candle path everywhere, to compare the two.
    pub(crate) static FORCE_COMPOSED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn forced_off() -> bool {
    #[cfg(test)]
    if FORCE_COMPOSED.with(|f| f.get()) {
        return true;
    }
    false
}

/// Run `f` on the f32 data of a contiguous CPU tensor; `None` for anything else.
pub(crate) fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Option<R> {
    if forced_off() || t.dtype() != DType::F32 || !t.device().is_cpu() {
        return None;
    }
    let (s, l) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*s else { return None };
    let data = cpu.as_slice::<f32>().ok()?;
    let (a, b) = l.contiguous_offsets()?;
    Some(f(&data[a..b]))
}

/// `Σ x²` of a tensor in f64, fused for contiguous CPU f32 data.
pub(crate) fn sum_sq(t: &Tensor) -> Result<f64> {
    if let Some(s) = with_f32(t, |x| {
        x.par_chunks(CHUNK)
            .map(|c| c.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>())
            .collect::<Vec<f64>>()
            .into_iter()
            .sum::<f64>()
    }) {
        return Ok(s);
    }
    Ok(t.to_dtype(DType::F64)?
        .sqr()?
        .sum_all()?
        .to_scalar::<f64>()?)
}

/// New moments of one tensor, and the sums Magma's cosine needs.
pub(crate) struct Moments {
    pub m: Tensor,
    pub v: Tensor,
    /// `Σ m'·g`, `Σ m'²`, `Σ g²` with `g` the clipped gradient.
    pub dot: f64,
    pub mm: f64,
    pub gg: f64,
}

impl Moments {
    /// `cos(m', g)` as [`super::magma::cosine`] defines it.
    pub fn cosine(&self) -> f64 {
        let (nm, ng) = (self.mm.sqrt(), self.gg.sqrt());
        if nm == 0.0 || ng == 0.0 || !(nm * ng).is_finite() {
            return 0.0;
        }
        (self.dot / (nm * ng)).clamp(-1.0, 1.0)
    }
}

/// Pass 1: `g ← g·clip` (when clip ≠ 1), `m ← β1 m + (1−β1) g`, `v ← β2 v + (1−β2) g²`.
/// `None` unless `m`, `v` and `g` are contiguous f32 CPU tensors.
pub(crate) fn moments(
    m: &Tensor,
    v: &Tensor,
    g: &Tensor,
    clip: f64,
    cfg: &AdamWConfig,
) -> Result<Option<Moments>> {
    let n = m.elem_count();
    if v.elem_count() != n || g.elem_count() != n {
        return Ok(None);
    }
    let (b1, c1) = (cfg.beta1 as f32, (1.0 - cfg.beta1) as f32);
    let (b2, c2) = (cfg.beta2 as f32, (1.0 - cfg.beta2) as f32);
    let clip_f = clip as f32;
    let scale = clip != 1.0;
    let out = with_f32(m, |m| {
        with_f32(v, |v| {
            with_f32(g, |g| {
                let mut m2 = vec![0f32; n];
                let mut v2 = vec![0f32; n];
                let sums: Vec<(f64, f64, f64)> = m2
                    .par_chunks_mut(CHUNK)
                    .zip(v2.par_chunks_mut(CHUNK))
                    .enumerate()
                    .map(|(k, (mo, vo))| {
                        let o = k * CHUNK;
                        let (mut dot, mut mm, mut gg) = (0f64, 0f64, 0f64);
                        for i in 0..mo.len() {
                            let gi = if scale {
                                g[o + i] * clip_f + 0.0
                            } else {
                                g[o + i]
                            };
                            let mi = (m[o + i] * b1 + 0.0) + (gi * c1 + 0.0);
                            let vi = (v[o + i] * b2 + 0.0) + ((gi * gi) * c2 + 0.0);
                            mo[i] = mi;
                            vo[i] = vi;
                            dot += mi as f64 * gi as f64;
                            mm += mi as f64 * mi as f64;
                            gg += gi as f64 * gi as f64;
                        }
                        (dot, mm, gg)
                    })
                    .collect();
                let (dot, mm, gg) = sums
                    .iter()
                    .fold((0.0, 0.0, 0.0), |a, s| (a.0 + s.0, a.1 + s.1, a.2 + s.2));
                (m2, v2, dot, mm, gg)
            })
        })
    });
    let Some(Some(Some((m2, v2, dot, mm, gg)))) = out else {
        return Ok(None);
    };
    let shape = m.shape().clone();
    Ok(Some(Moments {
        m: Tensor::from_vec(m2, shape.clone(), &Device::Cpu)?,
        v: Tensor::from_vec(v2, shape, &Device::Cpu)?,
        dot,
        mm,
        gg,
    }))
}

/// What pass 2 applies to θ.
pub(crate) struct Update {
    /// Bias-corrected Adam step at optimizer step t: `−lr/bc1` and `1/bc2`.
    pub lr: f64,
    pub t: u64,
    /// Weight decay applies to this tensor.
    pub decay: bool,
    /// The decay is part of the masked (multiplied) displacement, else added densely.
    pub decay_masked: bool,
    /// Magma / SkipUpdate multiplier of the masked part (1 = plain AdamW).
    pub mult: f64,
}

/// Result of pass 2: the new θ (None when nothing changes), `Σ masked²`, `Σ dense²`.
pub(crate) struct Applied {
    pub theta: Option<Tensor>,
    pub base_sq: f64,
    pub dense_sq: f64,
}

/// Pass 2: the Adam displacement `−lr·m̂/(√v̂+ε)`, the decay `−lr·λ·θ`, their split into the
/// masked and dense parts, and `θ + mult·masked + dense`. `None` unless θ is contiguous f32 on
/// the CPU.
pub(crate) fn apply(
    theta: &Tensor,
    m: &Tensor,
    v: &Tensor,
    u: &Update,
    cfg: &AdamWConfig,
) -> Result<Option<Applied>> {
    let n = theta.elem_count();
    let bc1 = 1.0 - cfg.beta1.powf(u.t as f64);
    let bc2 = 1.0 - cfg.beta2.powf(u.t as f64);
    let (a_mul, inv_bc2, eps) = ((-u.lr / bc1) as f32, (1.0 / bc2) as f32, cfg.eps as f32);
    let d_mul = (-u.lr * cfg.weight_decay) as f32;
    let decay = u.decay && cfg.weight_decay != 0.0;
    let mult = u.mult;
    let mult_f = mult as f32;
    let changes = mult != 0.0 || (decay && !u.decay_masked);
    let out = with_f32(theta, |th| {
        with_f32(m, |m| {
            with_f32(v, |v| {
                let mut out = if changes { vec![0f32; n] } else { vec![] };
                let body = |o: usize, len: usize, dst: Option<&mut [f32]>| -> (f64, f64) {
                    let (mut base, mut dense) = (0f64, 0f64);
                    let mut dst = dst;
                    for i in 0..len {
                        let j = o + i;
                        let denom = ((v[j] * inv_bc2 + 0.0).sqrt()) * 1.0 + eps;
                        let adam = (m[j] * a_mul + 0.0) / denom;
                        let d = if decay {
                            Some(th[j] * d_mul + 0.0)
                        } else {
                            None
                        };
                        let (masked, dense_part) = match d {
                            Some(d) if u.decay_masked => (adam + d, None),
                            Some(d) => (adam, Some(d)),
                            None => (adam, None),
                        };
                        base += masked as f64 * masked as f64;
                        if let Some(dp) = dense_part {
                            dense += dp as f64 * dp as f64;
                        }
                        if let Some(dst) = dst.as_deref_mut() {
                            let new = if mult == 0.0 {
                                th[j] + dense_part.unwrap_or(0.0)
                            } else {
                                let upd = if mult == 1.0 {
                                    masked
                                } else {
                                    masked * mult_f + 0.0
                                };
                                let t = th[j] + upd;
                                match dense_part {
                                    Some(dp) => t + dp,
                                    None => t,
                                }
                            };
                            dst[i] = new;
                        }
                    }
                    (base, dense)
                };
                let sums: Vec<(f64, f64)> = if changes {
                    out.par_chunks_mut(CHUNK)
                        .enumerate()
                        .map(|(k, dst)| body(k * CHUNK, dst.len(), Some(dst)))
                        .collect()
                } else {
                    (0..n.div_ceil(CHUNK))
                        .into_par_iter()
                        .map(|k| body(k * CHUNK, CHUNK.min(n - k * CHUNK), None))
                        .collect()
                };
                let (base, dense) = sums.iter().fold((0.0, 0.0), |a, s| (a.0 + s.0, a.1 + s.1));
                (out, base, dense)
            })
        })
    });
    let Some(Some(Some((out, base_sq, dense_sq)))) = out else {
        return Ok(None);
    };
    let theta = if changes {
        Some(Tensor::from_vec(out, theta.shape().clone(), &Device::Cpu)?)
    } else {
        None
    };
    Ok(Some(Applied {
        theta,
        base_sq,
        dense_sq,
    }))
}
