//! The step's first pass over the gradients: per tensor `Σ g²` in f64 (the global norm's
//! pieces) and, for a tensor that asks, also `Σ m·g` and `Σ m²` against its first moment m
//! before the step (Magma's cosine, see [`super::magma::cosine_from_sums`]). Tensors run in
//! parallel, each in fixed-size chunks combined in order (deterministic whatever the thread
//! count); contiguous CPU f32 data in vectorised loops, anything else through candle ops.
//!
//! A lone read stream per core leaves this 2-core machine's memory idle half the time (the
//! reduction ran at ~15 GB/s); each chunk is read as several interleaved streams instead.
//!
//! Owns the reductions only; must not know which tensors are summed or why.

use candle_core::{DType, Tensor};
use rayon::prelude::*;
use rlvr_models::simd::{vectorized, HotLoop};

use super::fused::{CHUNK, LANES};
use super::host_f32::with_f32;
use crate::error::Result;

/// One tensor's sums (`mg`, `mm` are 0 unless the first moment was given).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct GradSums {
    pub gg: f64,
    pub mg: f64,
    pub mm: f64,
}

/// The sums of every gradient, each with its first moment where one is given, in order: CPU
/// tensors in parallel, device tensors one by one on this thread (as the step's other ops).
pub(crate) fn grad_sums(items: &[(&Tensor, Option<&Tensor>)]) -> Result<Vec<GradSums>> {
    if items.iter().all(|(g, _)| g.device().is_cpu()) {
        items.par_iter().map(|&(g, m)| tensor_sums(g, m)).collect()
    } else {
        items.iter().map(|&(g, m)| tensor_sums(g, m)).collect()
    }
}

/// `Σ g²` (and with `m`, `Σ m·g` and `Σ m²`) of one tensor: the vectorised chunk pass for
/// contiguous CPU f32 data, else candle ops in f64.
fn tensor_sums(g: &Tensor, m: Option<&Tensor>) -> Result<GradSums> {
    match fused_sums(g, m) {
        Some(sums) => Ok(sums),
        None => composed_sums(g, m),
    }
}

/// The chunk pass; `None` unless g (and m, of the same size) are contiguous CPU f32.
fn fused_sums(g: &Tensor, m: Option<&Tensor>) -> Option<GradSums> {
    let Some(m) = m else {
        return with_f32(g, |g| GradSums {
            gg: chunked(g.par_chunks(CHUNK).map(|c| vectorized(SumSq(c)))),
            ..GradSums::default()
        });
    };
    if m.elem_count() != g.elem_count() {
        return None;
    }
    with_f32(g, |g| {
        with_f32(m, |m| {
            let chunks = g.par_chunks(CHUNK).zip(m.par_chunks(CHUNK));
            let sums: Vec<[f64; 3]> = chunks.map(|(g, m)| vectorized(DotSums(g, m))).collect();
            let [gg, mg, mm] = sums
                .iter()
                .fold([0.0; 3], |a, c| [a[0] + c[0], a[1] + c[1], a[2] + c[2]]);
            GradSums { gg, mg, mm }
        })
    })
    .flatten()
}

/// The sums by candle ops, every product taken in f64 (a 16-bit gradient squared in its own
/// dtype would round, or overflow in f16).
fn composed_sums(g: &Tensor, m: Option<&Tensor>) -> Result<GradSums> {
    let g64 = g.to_dtype(DType::F64)?;
    let gg = composed_sum(&g64.sqr()?)?;
    let Some(m) = m else {
        return Ok(GradSums {
            gg,
            ..GradSums::default()
        });
    };
    let m64 = m.to_dtype(DType::F64)?;
    Ok(GradSums {
        gg,
        mg: composed_sum(&(&m64 * &g64)?)?,
        mm: composed_sum(&m64.sqr()?)?,
    })
}

/// Chunk sums added in chunk order.
fn chunked(chunks: impl IndexedParallelIterator<Item = f64>) -> f64 {
    chunks.collect::<Vec<f64>>().into_iter().sum()
}

/// Sum of all elements of the f64 tensor `t`, by candle ops.
fn composed_sum(t: &Tensor) -> Result<f64> {
    Ok(t.sum_all()?.to_scalar::<f64>()?)
}

/// Interleaved read streams per chunk: `Σ g²` reads one array, the dot sums two.
const SQ_STREAMS: usize = 4;
const DOT_STREAMS: usize = 2;

/// `Σ x²` of one chunk in f64, per lane and stream (so that it vectorises and keeps several
/// reads in flight), added in a fixed order.
struct SumSq<'a>(&'a [f32]);

impl HotLoop for SumSq<'_> {
    type Output = f64;

    #[inline(always)]
    fn run(self) -> f64 {
        let [gg] = streamed::<SQ_STREAMS, 1, 1, _>([self.0], AddSq);
        gg
    }
}

/// A block's contribution to lane sums (a trait, not a closure, so that it is inlined into the
/// feature-enabled loop).
trait AddBlock<const N: usize, const A: usize> {
    fn add(&self, xs: [&[f32; LANES]; N], acc: &mut [[f64; LANES]; A]);
}

/// `g²`.
struct AddSq;

impl AddBlock<1, 1> for AddSq {
    #[inline(always)]
    fn add(&self, [g]: [&[f32; LANES]; 1], acc: &mut [[f64; LANES]; 1]) {
        for l in 0..LANES {
            acc[0][l] += g[l] as f64 * g[l] as f64;
        }
    }
}

/// `g²`, `m·g`, `m²`.
struct AddDot;

impl AddBlock<2, 3> for AddDot {
    #[inline(always)]
    fn add(&self, [g, m]: [&[f32; LANES]; 2], acc: &mut [[f64; LANES]; 3]) {
        for l in 0..LANES {
            let (g, m) = (g[l] as f64, m[l] as f64);
            acc[0][l] += g * g;
            acc[1][l] += m * g;
            acc[2][l] += m * m;
        }
    }
}

/// `Σ g²`, `Σ m·g`, `Σ m²` of one chunk, as [`SumSq`].
struct DotSums<'a>(&'a [f32], &'a [f32]);

impl HotLoop for DotSums<'_> {
    type Output = [f64; 3];

    #[inline(always)]
    fn run(self) -> [f64; 3] {
        streamed::<DOT_STREAMS, 2, 3, _>([self.0, self.1], AddDot)
    }
}

/// `A` f64 lane sums over `N` equal-length arrays: the arrays' blocks of `LANES` go to `f`,
/// with each array split into `S` parts read side by side (`S` blocks in flight per array),
/// one accumulator set per part; the parts' sums, then the tail's, are added in order.
#[inline(always)]
fn streamed<const S: usize, const N: usize, const A: usize, F: AddBlock<N, A>>(
    xs: [&[f32]; N],
    f: F,
) -> [f64; A] {
    let n = xs.iter().map(|x| x.len()).min().unwrap_or(0);
    let per_part = n / LANES / S;
    let blocks: [&[[f32; LANES]]; N] = xs.map(|x| x[..S * per_part * LANES].as_chunks().0);
    let mut acc = [[[0f64; LANES]; A]; S];
    for i in 0..per_part {
        for (k, acc) in acc.iter_mut().enumerate() {
            f.add(blocks.map(|b| &b[k * per_part + i]), acc);
        }
    }
    let mut tail = [[0f64; LANES]; A];
    for j in S * per_part * LANES..n {
        let block = xs.map(|x| {
            let mut b = [0f32; LANES];
            b[0] = x[j];
            b
        });
        f.add(block.each_ref(), &mut tail);
    }
    let mut out = [0f64; A];
    for (a, o) in out.iter_mut().enumerate() {
        for part in acc.iter().chain([&tail]) {
            *o += part[a].iter().sum::<f64>();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The streamed sums equal plain f64 sums (to rounding), tails and small tensors included,
    /// and the f32 path agrees with the candle path.
    #[test]
    fn grad_sums_match_plain_f64_sums() {
        for n in [1, 7, 8, 63, 1000, CHUNK + 13, 3 * CHUNK] {
            let g: Vec<f32> = (0..n)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
                .collect();
            let m: Vec<f32> = (0..n)
                .map(|i| ((i * 11 % 53) as f32 - 20.0) / 3.0)
                .collect();
            let gt = Tensor::from_slice(&g, n, &Device::Cpu).unwrap();
            let mt = Tensor::from_slice(&m, n, &Device::Cpu).unwrap();
            let gg: f64 = g.iter().map(|&x| x as f64 * x as f64).sum();
            let mg: f64 = g.iter().zip(&m).map(|(&g, &m)| g as f64 * m as f64).sum();
            let mm: f64 = m.iter().map(|&x| x as f64 * x as f64).sum();
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.abs().max(1.0);
            let fused = grad_sums(&[(&gt, None), (&gt, Some(&mt))]).unwrap();
            assert!(close(fused[0].gg, gg), "n {n}: {} vs {gg}", fused[0].gg);
            assert_eq!((fused[0].mg, fused[0].mm), (0.0, 0.0));
            let s = fused[1];
            assert!(
                close(s.gg, gg) && close(s.mg, mg) && close(s.mm, mm),
                "n {n}: {s:?}"
            );
            let (g64, m64) = (
                gt.to_dtype(DType::F64).unwrap(),
                mt.to_dtype(DType::F64).unwrap(),
            );
            let composed = grad_sums(&[(&g64, Some(&m64))]).unwrap()[0];
            assert!(close(composed.gg, gg) && close(composed.mg, mg) && close(composed.mm, mm));
        }
    }

    /// A 16-bit gradient is summed in f64: 300² overflows f16 (max 65504) and 1e-4² underflows
    /// it, neither may reach the norm.
    #[test]
    fn half_precision_gradients_are_squared_in_f64() {
        let values = [300.0f32, -1e-4, 2.5];
        let g = Tensor::new(&values, &Device::Cpu)
            .unwrap()
            .to_dtype(DType::F16)
            .unwrap();
        let m = g.affine(0.5, 0.0).unwrap();
        let exact: Vec<f64> = g.to_dtype(DType::F64).unwrap().to_vec1().unwrap();
        let gg: f64 = exact.iter().map(|x| x * x).sum();
        let sums = grad_sums(&[(&g, None), (&g, Some(&m))]).unwrap();
        for s in &sums {
            assert!(
                s.gg.is_finite() && (s.gg - gg).abs() <= 1e-12 * gg,
                "{s:?} vs {gg}"
            );
        }
        assert!((sums[1].mg - gg / 2.0).abs() <= 1e-12 * gg);
        assert!((sums[1].mm - gg / 4.0).abs() <= 1e-12 * gg);
    }
}
