//! The optimizer's per-tensor arithmetic on the CPU for f32 weights as two row-parallel passes
//! over host memory, instead of a dozen single-threaded candle ops that each allocate a tensor.
//!
//! Every element goes through the same f32 operations, in the same order, as the composed path
//! (`adamw.rs` and `update.rs`: candle's `affine` is `x·mul + add` in the element type), so
//! moments and weights are bit-identical to it. Reductions (norms, Magma's cosine) accumulate in
//! f64 per fixed-size chunk, combined in chunk order: deterministic whatever the thread count.
//!
//! Owns the host-memory kernels only. Must not know parameters, masks or the step's order: each
//! pass gets plain tensors and numbers and returns `None` wherever it does not apply.

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
    pub first_moment: Tensor,
    pub second_moment: Tensor,
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

/// Sums over elements, added chunk by chunk in chunk order.
fn sum_chunks<const N: usize>(chunks: &[[f64; N]]) -> [f64; N] {
    chunks.iter().fold([0.0; N], |mut acc, c| {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += x;
        }
        acc
    })
}

/// Pass 1's constants, in f32 as candle's `affine` applies them.
struct MomentKernel {
    beta1: f32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    clip: f32,
    scale: bool,
}

impl MomentKernel {
    fn new(clip: f64, cfg: &AdamWConfig) -> Self {
        Self {
            beta1: cfg.beta1 as f32,
            one_minus_beta1: (1.0 - cfg.beta1) as f32,
            beta2: cfg.beta2 as f32,
            one_minus_beta2: (1.0 - cfg.beta2) as f32,
            clip: clip as f32,
            scale: clip != 1.0,
        }
    }

    /// New m and v over all elements, and `[Σ m'·g, Σ m'², Σ g²]`.
    fn run(&self, m: &[f32], v: &[f32], g: &[f32]) -> (Vec<f32>, Vec<f32>, [f64; 3]) {
        let mut m_out = vec![0f32; m.len()];
        let mut v_out = vec![0f32; m.len()];
        let sums: Vec<[f64; 3]> = m_out
            .par_chunks_mut(CHUNK)
            .zip(v_out.par_chunks_mut(CHUNK))
            .enumerate()
            .map(|(k, (m_dst, v_dst))| {
                let range = k * CHUNK..k * CHUNK + m_dst.len();
                self.chunk(
                    &m[range.clone()],
                    &v[range.clone()],
                    &g[range],
                    m_dst,
                    v_dst,
                )
            })
            .collect();
        (m_out, v_out, sum_chunks(&sums))
    }

    fn chunk(
        &self,
        m: &[f32],
        v: &[f32],
        g: &[f32],
        m_dst: &mut [f32],
        v_dst: &mut [f32],
    ) -> [f64; 3] {
        let (mut dot, mut mm, mut gg) = (0f64, 0f64, 0f64);
        for i in 0..m_dst.len() {
            let gi = if self.scale {
                g[i] * self.clip + 0.0
            } else {
                g[i]
            };
            let mi = (m[i] * self.beta1 + 0.0) + (gi * self.one_minus_beta1 + 0.0);
            let vi = (v[i] * self.beta2 + 0.0) + ((gi * gi) * self.one_minus_beta2 + 0.0);
            m_dst[i] = mi;
            v_dst[i] = vi;
            dot += mi as f64 * gi as f64;
            mm += mi as f64 * mi as f64;
            gg += gi as f64 * gi as f64;
        }
        [dot, mm, gg]
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
    let kernel = MomentKernel::new(clip, cfg);
    let out = with_f32(m, |m| with_f32(v, |v| with_f32(g, |g| kernel.run(m, v, g))));
    let Some(Some(Some((m_new, v_new, [dot, mm, gg])))) = out else {
        return Ok(None);
    };
    let shape = m.shape().clone();
    Ok(Some(Moments {
        first_moment: Tensor::from_vec(m_new, shape.clone(), &Device::Cpu)?,
        second_moment: Tensor::from_vec(v_new, shape, &Device::Cpu)?,
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

/// Pass 2's constants, in f32 as candle's `affine` applies them.
struct ApplyKernel {
    /// `−lr/bc1`, `1/bc2`, ε and `−lr·λ`.
    adam_mul: f32,
    inv_bc2: f32,
    eps: f32,
    decay_mul: f32,
    decay: bool,
    decay_masked: bool,
    mult: f64,
    mult_f32: f32,
    /// θ changes at all (else only the norms are summed).
    changes: bool,
}

impl ApplyKernel {
    fn new(u: &Update, cfg: &AdamWConfig) -> Self {
        let bc1 = 1.0 - cfg.beta1.powf(u.t as f64);
        let bc2 = 1.0 - cfg.beta2.powf(u.t as f64);
        let decay = u.decay && cfg.weight_decay != 0.0;
        Self {
            adam_mul: (-u.lr / bc1) as f32,
            inv_bc2: (1.0 / bc2) as f32,
            eps: cfg.eps as f32,
            decay_mul: (-u.lr * cfg.weight_decay) as f32,
            decay,
            decay_masked: u.decay_masked,
            mult: u.mult,
            mult_f32: u.mult as f32,
            changes: u.mult != 0.0 || (decay && !u.decay_masked),
        }
    }

    /// The new θ (empty when it does not change) and `[Σ masked², Σ dense²]`.
    fn run(&self, th: &[f32], m: &[f32], v: &[f32]) -> (Vec<f32>, [f64; 2]) {
        let n = th.len();
        let mut out = if self.changes { vec![0f32; n] } else { vec![] };
        let sums: Vec<[f64; 2]> = if self.changes {
            out.par_chunks_mut(CHUNK)
                .enumerate()
                .map(|(k, dst)| self.chunk(th, m, v, k * CHUNK, dst.len(), Some(dst)))
                .collect()
        } else {
            (0..n.div_ceil(CHUNK))
                .into_par_iter()
                .map(|k| self.chunk(th, m, v, k * CHUNK, CHUNK.min(n - k * CHUNK), None))
                .collect()
        };
        (out, sum_chunks(&sums))
    }

    /// Elements `offset..offset + len`: their norms, and their new θ into `dst` when given.
    fn chunk(
        &self,
        th: &[f32],
        m: &[f32],
        v: &[f32],
        offset: usize,
        len: usize,
        mut dst: Option<&mut [f32]>,
    ) -> [f64; 2] {
        let (mut base, mut dense) = (0f64, 0f64);
        for i in 0..len {
            let j = offset + i;
            let (masked, dense_part) = self.displacement(th[j], m[j], v[j]);
            base += masked as f64 * masked as f64;
            if let Some(dp) = dense_part {
                dense += dp as f64 * dp as f64;
            }
            if let Some(dst) = dst.as_deref_mut() {
                dst[i] = self.moved(th[j], masked, dense_part);
            }
        }
        [base, dense]
    }

    /// One element's displacement: the masked part, and the dense part (decay kept out of the
    /// mask).
    fn displacement(&self, th: f32, m: f32, v: f32) -> (f32, Option<f32>) {
        let denom = ((v * self.inv_bc2 + 0.0).sqrt()) * 1.0 + self.eps;
        let adam = (m * self.adam_mul + 0.0) / denom;
        let decay = if self.decay {
            Some(th * self.decay_mul + 0.0)
        } else {
            None
        };
        match decay {
            Some(d) if self.decay_masked => (adam + d, None),
            Some(d) => (adam, Some(d)),
            None => (adam, None),
        }
    }

    /// `θ + mult·masked + dense` for one element.
    fn moved(&self, th: f32, masked: f32, dense_part: Option<f32>) -> f32 {
        if self.mult == 0.0 {
            return th + dense_part.unwrap_or(0.0);
        }
        let upd = if self.mult == 1.0 {
            masked
        } else {
            masked * self.mult_f32 + 0.0
        };
        let moved = th + upd;
        match dense_part {
            Some(dp) => moved + dp,
            None => moved,
        }
    }
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
    let kernel = ApplyKernel::new(u, cfg);
    let out = with_f32(theta, |th| {
        with_f32(m, |m| with_f32(v, |v| kernel.run(th, m, v)))
    });
    let Some(Some(Some((out, [base_sq, dense_sq])))) = out else {
        return Ok(None);
    };
    let theta = if kernel.changes {
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
