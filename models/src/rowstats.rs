//! Log-probability and entropy of one row of logits on the host, accumulated in f64.
//!
//! The runtime's sampler and `rlvr score` both use this, so what generation reports and what
//! scoring computes differ only by the logits themselves (candle's f32 reductions over a
//! 49k vocabulary are off by ~2e-4). The pass over the row runs in sixteen lanes, compiled for
//! the CPU's widest vectors ([`crate::simd`]), with the vectorisable [`crate::exp::exp`]; the
//! lanes are summed in a fixed order, so every CPU gives the same bits.

use crate::exp::exp;
use crate::simd::{lane_max, lane_sum, vectorized, HotLoop, LANES};

/// One pass at T = 1: (log-sum-exp, entropy); `exps`, if given, receives exp(x − max).
/// Entropy uses H = lse − Σ p·x.
pub fn lse_entropy(row: &[f32], exps: Option<&mut Vec<f32>>) -> (f64, f64) {
    vectorized(LseEntropy { row, exps })
}

struct LseEntropy<'a> {
    row: &'a [f32],
    exps: Option<&'a mut Vec<f32>>,
}

impl HotLoop for LseEntropy<'_> {
    type Output = (f64, f64);

    #[inline(always)]
    fn run(self) -> (f64, f64) {
        let max = lane_max(self.row);
        let (z, zx) = match self.exps {
            Some(out) => {
                out.clear();
                out.resize(self.row.len(), 0.0);
                shifted_exp_sums::<true>(self.row, max, out)
            }
            None => shifted_exp_sums::<false>(self.row, max, &mut []),
        };
        (max as f64 + z.ln(), z.ln() - zx / z)
    }
}

/// `(Σ e, Σ e·(x − max))` with `e = exp(x − max)`, in f64; with `STORE`, `out[i] = e`.
#[inline(always)]
fn shifted_exp_sums<const STORE: bool>(row: &[f32], max: f32, out: &mut [f32]) -> (f64, f64) {
    let (mut z, mut zx) = ([0f64; LANES], [0f64; LANES]);
    let chunks = row.chunks_exact(LANES);
    let rest = chunks.remainder();
    for (c, chunk) in chunks.enumerate() {
        let mut e = [0f32; LANES];
        for l in 0..LANES {
            let shifted = chunk[l] - max;
            e[l] = exp(shifted);
            z[l] += e[l] as f64;
            zx[l] += e[l] as f64 * shifted as f64;
        }
        if STORE {
            out[c * LANES..(c + 1) * LANES].copy_from_slice(&e);
        }
    }
    let tail = row.len() - rest.len();
    for (i, &x) in rest.iter().enumerate() {
        let shifted = x - max;
        let e = exp(shifted);
        z[i] += e as f64;
        zx[i] += e as f64 * shifted as f64;
        if STORE {
            out[tail + i] = e;
        }
    }
    (lane_sum(&z), lane_sum(&zx))
}

/// Log-prob of `target` and entropy of the row's distribution (T = 1).
pub fn logprob_entropy(row: &[f32], target: u32) -> (f32, f32) {
    let (lse, h) = lse_entropy(row, None);
    ((row[target as usize] as f64 - lse) as f32, h as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_definition() {
        let row = [1.0f32, -2.0, 3.5, 0.25];
        let z: f64 = row.iter().map(|&x| (x as f64).exp()).sum();
        let p: Vec<f64> = row.iter().map(|&x| (x as f64).exp() / z).collect();
        let (lp, h) = logprob_entropy(&row, 2);
        assert!((lp as f64 - p[2].ln()).abs() < 1e-6);
        let want: f64 = -p.iter().map(|q| q * q.ln()).sum::<f64>();
        assert!((h as f64 - want).abs() < 1e-6);
    }
    #[test]
    fn long_rows_match_the_f64_definition() {
        // Long enough for the sixteen-lane path plus a tail; values spread like logits.
        let row: Vec<f32> = (0..49_157)
            .map(|i| ((i * 7919 % 10_007) as f32 / 10_007.0 - 0.5) * 30.0)
            .collect();
        let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let z: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
        let lse = max + z.ln();
        let h = -row
            .iter()
            .map(|&x| {
                let lp = x as f64 - lse;
                lp.exp() * lp
            })
            .sum::<f64>();
        let mut exps = Vec::new();
        let (got_lse, got_h) = lse_entropy(&row, Some(&mut exps));
        assert!((got_lse - lse).abs() < 1e-6, "{got_lse} vs {lse}");
        assert!((got_h - h).abs() < 1e-6, "{got_h} vs {h}");
        assert_eq!(exps.len(), row.len());
        for (&e, &x) in exps.iter().zip(&row) {
            // The shift is made in f32, as the sampler makes it; the rest is exp's error.
            let want = ((x - max as f32) as f64).exp();
            assert!((e as f64 - want).abs() <= 4e-7 * want, "{e} vs {want}");
        }
        assert_eq!(lse_entropy(&row, None), (got_lse, got_h));
    }
}
