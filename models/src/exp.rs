//! `exp` for f32 that vectorises: the host's softmax-like loops (paged attention, the sampler's
//! log-sum-exp) call it once per element, and the C library's `expf` is a call per element that
//! no loop can widen.
//!
//! Method: `x = n·ln 2 + r` with `n = round(x / ln 2)` and `|r| ≤ ln 2 / 2`, `ln 2` split in two
//! parts so that `n·ln2_hi` is exact (Cody–Waite); `eʳ` by its Taylor series to degree 7 (the
//! truncation error, `r⁸/8! ≤ 5.4e-9`, is below f32 rounding); `2ⁿ` built in the exponent
//! bits. Only adds, multiplies, compares and integer bit operations, so a loop over it
//! vectorises and gives the same bits at every vector width (see [`crate::simd`]). Relative
//! error within a few ulp (test below); `exp(0) == 1` exactly; inputs below −87.33 give 0 and
//! above 88.72 give +inf (the true limits are a hair wider); NaN stays NaN.
//!
//! Owns this one function; must not know what its callers compute.

/// Below this the result is 0 (eˣ is under 1.2e-38 there: subnormal, or 0 in f32 from −103.3).
const UNDERFLOW: f32 = -87.33;
/// Above this the result is +inf (f32 overflows from 88.7228; the few values between give +inf
/// too early).
const OVERFLOW: f32 = 88.72;
/// `1.5·2²³`: adding it rounds an f32 of magnitude < 2²² to an integer (to nearest, ties to
/// even) and leaves that integer in the low mantissa bits.
const ROUNDER: f32 = 12_582_912.0;
/// `ROUNDER`'s bit pattern: `bits(ROUNDER + n) − ROUNDER_BITS == n`.
const ROUNDER_BITS: i32 = 0x4B40_0000;
/// ln 2 = LN2_HI + LN2_LO, with LN2_HI's few mantissa bits making `n·LN2_HI` exact for |n| ≤ 128.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;

/// eˣ, to a few ulp (see the module docs).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // Into the range where 2ⁿ is a normal number (NaN stays NaN).
    let xc = x.clamp(UNDERFLOW, OVERFLOW);
    let shifted = xc * std::f32::consts::LOG2_E + ROUNDER;
    let n = shifted - ROUNDER;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (1.0 / 2.0
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    let n_int = (shifted.to_bits() as i32).wrapping_sub(ROUNDER_BITS);
    // n ∈ [-126, 128]: split 2ⁿ as 2^(n/2)·2^(n−n/2) so both halves stay normal.
    let half = n_int >> 1;
    let pow_a = f32::from_bits(((half + 127) << 23) as u32);
    let pow_b = f32::from_bits(((n_int - half + 127) << 23) as u32);
    let y = p * pow_a * pow_b;
    if x < UNDERFLOW {
        0.0
    } else if x > OVERFLOW {
        f32::INFINITY
    } else {
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units in the last place between an f32 and the f64 truth.
    fn ulps(got: f32, want: f64) -> f64 {
        let w = want as f32;
        let ulp = (f32::from_bits(w.to_bits() + 1) - w) as f64;
        (got as f64 - want).abs() / ulp
    }

    #[test]
    fn is_within_a_few_ulp_over_the_whole_range() {
        let mut worst = 0f64;
        let steps = 2_000_000;
        for i in 0..=steps {
            let x = UNDERFLOW + (OVERFLOW - UNDERFLOW) * i as f32 / steps as f32;
            let e = ulps(exp(x), (x as f64).exp());
            worst = worst.max(e);
        }
        assert!(worst <= 3.0, "worst error {worst} ulp");
    }

    #[test]
    fn edge_values() {
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-0.0), 1.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp(100.0), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
        for x in [
            -1e-8f32, 1e-8, -1e-3, 0.5, -0.5, 1.0, -1.0, 10.0, -10.0, 88.0, -87.0,
        ] {
            assert!(ulps(exp(x), (x as f64).exp()) <= 3.0, "{x}");
        }
    }
}
