//! `Σ x²` of a tensor in f64 (the global gradient norm's pieces): one row-parallel, vectorised
//! pass for contiguous CPU f32 data, in fixed-size chunks combined in order (deterministic
//! whatever the thread count); candle ops elsewhere.
//!
//! Owns the reduction only; must not know which tensors are summed or why.

use candle_core::{DType, Tensor};
use rayon::prelude::*;
use rlvr_models::simd::{vectorized, HotLoop};

use super::fused::{CHUNK, LANES};
use super::host_f32::with_f32;
use crate::error::Result;

/// `Σ x²` of a tensor in f64, fused for contiguous CPU f32 data.
pub(crate) fn sum_sq(t: &Tensor) -> Result<f64> {
    if let Some(s) = with_f32(t, |x| {
        x.par_chunks(CHUNK)
            .map(|c| vectorized(SumSq(c)))
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

/// `Σ x²` of one chunk in f64, per lane (so that it vectorises), lanes added in order.
struct SumSq<'a>(&'a [f32]);

impl HotLoop for SumSq<'_> {
    type Output = f64;

    #[inline(always)]
    fn run(self) -> f64 {
        sum_sq_lanes(self.0)
    }
}

#[inline(always)]
fn sum_sq_lanes(x: &[f32]) -> f64 {
    let (blocks, tail) = x.as_chunks::<LANES>();
    let mut lanes = [0f64; LANES];
    for block in blocks {
        for l in 0..LANES {
            lanes[l] += block[l] as f64 * block[l] as f64;
        }
    }
    for (l, &v) in tail.iter().enumerate() {
        lanes[l] += v as f64 * v as f64;
    }
    lanes.iter().sum()
}
