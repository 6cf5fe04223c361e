//! Log-probability and entropy of one row of logits on the host, accumulated in f64.
//!
//! The runtime's sampler and `rlvr score` both use this, so what generation reports and what
//! scoring computes differ only by the logits themselves (candle's f32 reductions over a
//! 49k vocabulary are off by ~2e-4).

/// One pass at T = 1: (log-sum-exp, entropy); `exps`, if given, receives exp(x − max).
/// Entropy uses H = lse − Σ p·x.
pub fn lse_entropy(row: &[f32], exps: Option<&mut Vec<f32>>) -> (f64, f64) {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let (mut z, mut zx) = (0f64, 0f64);
    let mut push = exps;
    if let Some(e) = push.as_mut() {
        e.clear();
        e.reserve(row.len());
    }
    for &x in row {
        let ex = (x - max).exp();
        if let Some(e) = push.as_mut() {
            e.push(ex);
        }
        z += ex as f64;
        zx += ex as f64 * (x - max) as f64;
    }
    (max as f64 + z.ln(), z.ln() - zx / z)
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
}
