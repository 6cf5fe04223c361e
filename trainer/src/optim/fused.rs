//! The optimizer's per-tensor arithmetic on the CPU for f32 weights: one chunk-parallel pass
//! over host memory that updates the moments and the weight in place, for AdamW, SkipUpdate and
//! Magma alike (Magma's multiplier is known before the pass: its cosine comes from the
//! gradient-norm pass, `sum_sq.rs`), instead of a dozen single-threaded candle ops that each
//! allocate a tensor. No parameter-sized buffer is allocated: m, v and θ are written where they
//! are (θ is the model's `Var`, so the runtime sees the new weights, as with `Var::set`).
//!
//! Every element goes through the same f32 operations, in the same order, as the composed path
//! (`adamw.rs` and `update.rs`: candle's `affine` is `x·mul + add` in the element type), so
//! moments and weights are bit-identical to it. The displacement norms accumulate in f64 per
//! fixed-size chunk, combined in chunk order: deterministic whatever the thread count.
//!
//! Owns the host-memory kernels only. Must not know parameters, masks or the step's order: each
//! pass gets plain tensors and numbers and returns `None` wherever it does not apply.

use candle_core::Tensor;
use rayon::prelude::*;
use rlvr_models::simd::{vectorized, HotLoop};

use super::adamw::AdamWConfig;
use super::host_f32::{with_f32, with_f32_mut};
use crate::error::Result;

/// Elements per parallel chunk (fixed, so sums do not depend on the thread count).
pub(super) const CHUNK: usize = 1 << 15;

/// What the pass applies to θ.
pub(crate) struct Update {
    /// Bias-corrected Adam step at optimizer step t: `−lr/bc1` and `1/bc2`.
    pub lr: f64,
    pub t: u64,
    /// Global-norm clip factor of the gradient (1 = none).
    pub clip: f64,
    /// Weight decay applies to this tensor.
    pub decay: bool,
    /// The decay is part of the masked (multiplied) displacement, else added densely.
    pub decay_masked: bool,
    /// The masked part's multiplier (Magma's `z·s`, SkipUpdate's `z/p`, else 1).
    pub mult: f64,
}

/// The sums one tensor's pass returns: `Σ masked²`, `Σ dense²` of the displacement (the
/// update-ratio statistic). Plain AdamW would need none (its ratio is 1), but its loop without
/// them measured slower (~20% on the 2-core Ice Lake Xeon, ~1.6× on an AVX-512 EPYC: the
/// compiler schedules the pure streaming loop worse), so every pass computes them.
#[derive(Default, Debug)]
pub(crate) struct Sums {
    pub masked_sq: f64,
    pub dense_sq: f64,
}

impl Sums {
    /// Chunk sums added in chunk order.
    fn total(chunks: &[[f64; 2]]) -> Self {
        let s = chunks
            .iter()
            .fold([0.0; 2], |acc, c| [acc[0] + c[0], acc[1] + c[1]]);
        Sums {
            masked_sq: s[0],
            dense_sq: s[1],
        }
    }
}

/// The per-element constants, in f32 as candle's `affine` applies them.
struct Kernel {
    beta1: f32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    clip: f32,
    scale_grad: bool,
    /// `−lr/bc1`, `1/bc2`, ε and `−lr·λ`.
    adam_mul: f32,
    inv_bc2: f32,
    eps: f32,
    decay_mul: f32,
    decay: Decay,
}

/// Where a tensor's weight decay goes (a loop-invariant, so each case is its own loop).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Decay {
    None,
    /// Into the masked (multiplied) displacement.
    Masked,
    /// Added densely, outside the mask.
    Dense,
}

/// How θ moves under the multiplier (a loop-invariant, so each case is its own loop).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Move {
    /// θ is not written (only the moments and the sums): multiplier 0 and no dense part.
    Keep,
    /// `θ + dense` (multiplier 0).
    DenseOnly,
    /// `θ + masked + dense` (multiplier 1).
    Unit,
    /// `θ + mult·masked + dense`.
    Scaled,
}

/// f64 partial sums kept per lane, so that the element loop vectorises; lanes are added in
/// order at the end of a chunk (deterministic).
pub(super) const LANES: usize = 8;

/// Lane sums of `Σ masked²`, `Σ dense²`.
type LaneSums = [[f64; LANES]; 2];

impl Kernel {
    fn new(u: &Update, cfg: &AdamWConfig) -> Self {
        let bc1 = 1.0 - cfg.beta1.powf(u.t as f64);
        let bc2 = 1.0 - cfg.beta2.powf(u.t as f64);
        let decay = match (u.decay && cfg.weight_decay != 0.0, u.decay_masked) {
            (false, _) => Decay::None,
            (true, true) => Decay::Masked,
            (true, false) => Decay::Dense,
        };
        Self {
            beta1: cfg.beta1 as f32,
            one_minus_beta1: (1.0 - cfg.beta1) as f32,
            beta2: cfg.beta2 as f32,
            one_minus_beta2: (1.0 - cfg.beta2) as f32,
            clip: u.clip as f32,
            scale_grad: u.clip != 1.0,
            adam_mul: (-u.lr / bc1) as f32,
            inv_bc2: (1.0 / bc2) as f32,
            eps: cfg.eps as f32,
            decay_mul: (-u.lr * cfg.weight_decay) as f32,
            decay,
        }
    }

    /// How θ moves under multiplier `mult` (not at all when only a multiplied part would).
    fn movement(&self, mult: f64) -> Move {
        match mult {
            0.0 if self.decay != Decay::Dense => Move::Keep,
            0.0 => Move::DenseOnly,
            1.0 => Move::Unit,
            _ => Move::Scaled,
        }
    }

    /// `g ← g·clip`, `m ← β1 m + (1−β1) g`, `v ← β2 v + (1−β2) g²`: (m', v').
    #[inline(always)]
    fn moments(&self, m: f32, v: f32, g: f32) -> (f32, f32) {
        let grad = if self.scale_grad {
            g * self.clip + 0.0
        } else {
            g
        };
        let m = (m * self.beta1 + 0.0) + (grad * self.one_minus_beta1 + 0.0);
        let v = (v * self.beta2 + 0.0) + ((grad * grad) * self.one_minus_beta2 + 0.0);
        (m, v)
    }

    /// One element's displacement: (masked part, dense part); the dense part is 0 unless the
    /// decay is kept out of the mask.
    #[inline(always)]
    fn displacement<const DECAY: u8>(&self, theta: f32, m: f32, v: f32) -> (f32, f32) {
        let denom = ((v * self.inv_bc2 + 0.0).sqrt()) * 1.0 + self.eps;
        let adam = (m * self.adam_mul + 0.0) / denom;
        match DECAY {
            DECAY_MASKED => (adam + (theta * self.decay_mul + 0.0), 0.0),
            DECAY_DENSE => (adam, theta * self.decay_mul + 0.0),
            _ => (adam, 0.0),
        }
    }

    /// The new θ (composed path's order: `θ + mult·masked`, then `+ dense` when there is one).
    #[inline(always)]
    fn moved<const DECAY: u8, const MOVE: u8>(
        theta: f32,
        masked: f32,
        dense: f32,
        mult: f32,
    ) -> f32 {
        let moved = match MOVE {
            MOVE_DENSE_ONLY => return theta + dense,
            MOVE_UNIT => theta + masked,
            _ => theta + (masked * mult + 0.0),
        };
        if DECAY == DECAY_DENSE {
            moved + dense
        } else {
            moved
        }
    }

    /// One block of `LANES` elements of the pass, written as array loops of constant length so
    /// that they vectorise; the squares are added into `lanes`.
    #[inline(always)]
    fn step_block<const DECAY: u8, const MOVE: u8>(
        &self,
        theta: &mut [f32; LANES],
        m: &mut [f32; LANES],
        v: &mut [f32; LANES],
        g: &[f32; LANES],
        mult: f32,
        lanes: &mut LaneSums,
    ) {
        let mut masked = [0f32; LANES];
        let mut dense = [0f32; LANES];
        for l in 0..LANES {
            (m[l], v[l]) = self.moments(m[l], v[l], g[l]);
        }
        for l in 0..LANES {
            (masked[l], dense[l]) = self.displacement::<DECAY>(theta[l], m[l], v[l]);
        }
        for l in 0..LANES {
            lanes[0][l] += masked[l] as f64 * masked[l] as f64;
        }
        if DECAY == DECAY_DENSE {
            for l in 0..LANES {
                lanes[1][l] += dense[l] as f64 * dense[l] as f64;
            }
        }
        if MOVE != MOVE_KEEP {
            for l in 0..LANES {
                theta[l] = Self::moved::<DECAY, MOVE>(theta[l], masked[l], dense[l], mult);
            }
        }
    }

    /// One chunk of the pass: m and v (and θ, unless `MOVE` keeps it) in place; the sums.
    #[inline(always)]
    fn step_chunk<const DECAY: u8, const MOVE: u8>(
        &self,
        theta: &mut [f32],
        m: &mut [f32],
        v: &mut [f32],
        g: &[f32],
        mult: f32,
    ) -> [f64; 2] {
        let mut lanes: LaneSums = [[0.0; LANES]; 2];
        let (th_blocks, th_tail) = theta.as_chunks_mut::<LANES>();
        let (m_blocks, m_tail) = m.as_chunks_mut::<LANES>();
        let (v_blocks, v_tail) = v.as_chunks_mut::<LANES>();
        let (g_blocks, g_tail) = g.as_chunks::<LANES>();
        let blocks = th_blocks
            .iter_mut()
            .zip(m_blocks)
            .zip(v_blocks)
            .zip(g_blocks);
        for (((th, m), v), g) in blocks {
            self.step_block::<DECAY, MOVE>(th, m, v, g, mult, &mut lanes);
        }
        // The tail, padded to a block: padding elements are zero and add nothing.
        let mut tail = [[0f32; LANES]; 4];
        let n = th_tail.len();
        tail[0][..n].copy_from_slice(th_tail);
        tail[1][..n].copy_from_slice(m_tail);
        tail[2][..n].copy_from_slice(v_tail);
        tail[3][..n].copy_from_slice(g_tail);
        let [mut th, mut m, mut v, g] = tail;
        let mut tail_lanes: LaneSums = [[0.0; LANES]; 2];
        self.step_block::<DECAY, MOVE>(&mut th, &mut m, &mut v, &g, mult, &mut tail_lanes);
        th_tail.copy_from_slice(&th[..n]);
        m_tail.copy_from_slice(&m[..n]);
        v_tail.copy_from_slice(&v[..n]);
        for (sum, tail_sum) in lanes.iter_mut().zip(&tail_lanes) {
            for l in 0..n {
                sum[l] += tail_sum[l];
            }
        }
        lanes.map(|l| l.iter().sum())
    }

    /// `f` instantiated for this tensor's decay case and movement.
    fn dispatch<R>(&self, mv: Move, f: impl Specialized<R>) -> R {
        let decay = match self.decay {
            Decay::None => DECAY_NONE,
            Decay::Masked => DECAY_MASKED,
            Decay::Dense => DECAY_DENSE,
        };
        let mv = match mv {
            Move::Keep => MOVE_KEEP,
            Move::DenseOnly => MOVE_DENSE_ONLY,
            Move::Unit => MOVE_UNIT,
            Move::Scaled => MOVE_SCALED,
        };
        macro_rules! cases {
            ($($d:ident $m:ident),*) => {
                match (decay, mv) {
                    $(($d, $m) => f.call::<$d, $m>(),)*
                    _ => f.call::<DECAY_NONE, MOVE_KEEP>(),
                }
            };
        }
        cases!(
            DECAY_NONE MOVE_KEEP, DECAY_NONE MOVE_UNIT, DECAY_NONE MOVE_SCALED,
            DECAY_MASKED MOVE_KEEP, DECAY_MASKED MOVE_UNIT, DECAY_MASKED MOVE_SCALED,
            DECAY_DENSE MOVE_KEEP, DECAY_DENSE MOVE_DENSE_ONLY, DECAY_DENSE MOVE_UNIT,
            DECAY_DENSE MOVE_SCALED
        )
    }
}

const DECAY_NONE: u8 = 0;
const DECAY_MASKED: u8 = 1;
const DECAY_DENSE: u8 = 2;
const MOVE_KEEP: u8 = 0;
const MOVE_DENSE_ONLY: u8 = 1;
const MOVE_UNIT: u8 = 2;
const MOVE_SCALED: u8 = 3;

/// One chunk of the pass, for [`vectorized`].
struct StepChunk<'a, const DECAY: u8, const MOVE: u8> {
    kernel: &'a Kernel,
    theta: &'a mut [f32],
    m: &'a mut [f32],
    v: &'a mut [f32],
    g: &'a [f32],
    mult: f32,
}

impl<const DECAY: u8, const MOVE: u8> HotLoop for StepChunk<'_, DECAY, MOVE> {
    type Output = [f64; 2];

    #[inline(always)]
    fn run(self) -> [f64; 2] {
        let (theta, m, v, g) = (self.theta, self.m, self.v, self.g);
        self.kernel
            .step_chunk::<DECAY, MOVE>(theta, m, v, g, self.mult)
    }
}

/// A pass generic over the loop invariants (see [`Kernel::dispatch`]).
trait Specialized<R> {
    fn call<const DECAY: u8, const MOVE: u8>(self) -> R;
}

/// The moments and the weight of one tensor updated in place in one pass over θ, m, v and the
/// gradient: returns the displacement sums. A multiplier under which θ does not change skips
/// its writes. `None` unless all four are contiguous f32 CPU tensors of one size.
pub(crate) fn step(
    theta: &Tensor,
    m: &Tensor,
    v: &Tensor,
    grad: &Tensor,
    u: &Update,
    cfg: &AdamWConfig,
) -> Result<Option<Sums>> {
    let n = theta.elem_count();
    if [m, v, grad].iter().any(|t| t.elem_count() != n) {
        return Ok(None);
    }
    let kernel = Kernel::new(u, cfg);
    let movement = kernel.movement(u.mult);
    let mult = u.mult as f32;
    let run = |th: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32]| {
        struct Pass<'a> {
            kernel: &'a Kernel,
            th: &'a mut [f32],
            m: &'a mut [f32],
            v: &'a mut [f32],
            g: &'a [f32],
            mult: f32,
        }
        impl Specialized<Sums> for Pass<'_> {
            fn call<const DECAY: u8, const MOVE: u8>(self) -> Sums {
                let chunks: Vec<[f64; 2]> = self
                    .th
                    .par_chunks_mut(CHUNK)
                    .zip(self.m.par_chunks_mut(CHUNK))
                    .zip(self.v.par_chunks_mut(CHUNK))
                    .zip(self.g.par_chunks(CHUNK))
                    .map(|(((th, m), v), g)| {
                        vectorized(StepChunk::<DECAY, MOVE> {
                            kernel: self.kernel,
                            theta: th,
                            m,
                            v,
                            g,
                            mult: self.mult,
                        })
                    })
                    .collect();
                Sums::total(&chunks)
            }
        }
        let pass = Pass {
            kernel: &kernel,
            th,
            m,
            v,
            g,
            mult,
        };
        kernel.dispatch(movement, pass)
    };
    with_step_slices(theta, m, v, grad, run)
}

/// θ, m, v writable and the gradient readable at once; `None` unless all are contiguous f32 on
/// the CPU.
fn with_step_slices<R>(
    theta: &Tensor,
    m: &Tensor,
    v: &Tensor,
    grad: &Tensor,
    f: impl FnOnce(&mut [f32], &mut [f32], &mut [f32], &[f32]) -> R,
) -> Result<Option<R>> {
    let nested = with_f32_mut(theta, |th| {
        with_f32_mut(m, |m| {
            with_f32_mut(v, |v| with_f32(grad, |g| f(th, m, v, g)))
        })
    });
    // Result<Option<Result<Option<Result<Option<Option<R>>>>>>> → Result<Option<R>>.
    Ok(nested?
        .transpose()?
        .flatten()
        .transpose()?
        .flatten()
        .flatten())
}
