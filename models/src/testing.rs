//! Test support shared by rlvr's crates (behind the `testing` feature): seeded random tensors,
//! tensor values and bit patterns, tolerance comparison, and checking a kernel's values and
//! gradients against a composed reference.
//!
//! Every comparison reads values as f64 on the host (exact for every float dtype), and a NaN
//! anywhere fails it rather than hiding behind a `max`.

use candle_core::{DType, Device, Tensor, Var};

use crate::rng::SplitMix64;

/// A CPU tensor of `shape` holding `draws`, cast to `dtype`.
fn from_draws(shape: &[usize], dtype: DType, draws: impl Iterator<Item = f64>) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = draws.take(n).collect();
    assert_eq!(v.len(), n, "too few draws");
    Tensor::from_vec(v, shape, &Device::Cpu)
        .and_then(|t| t.to_dtype(dtype))
        .expect("random test tensor")
}

/// A tensor of `shape` with seeded normal entries times `scale`, in `dtype` (values are f32
/// round-offs, so f32 and f64 tensors of one seed hold the same numbers).
pub fn randt(shape: &[usize], seed: u64, scale: f64, dtype: DType) -> Tensor {
    let mut r = SplitMix64::new(seed);
    from_draws(
        shape,
        dtype,
        std::iter::repeat_with(move || r.normal() as f32 as f64 * scale),
    )
}

/// A tensor of `shape` with the next normal draws of `rng` times `scale`, at full f64
/// precision (not rounded to f32 as in [`randt`]), in `dtype`: for tests that draw several
/// tensors from one stream.
pub fn randn_from(rng: &mut SplitMix64, shape: &[usize], scale: f64, dtype: DType) -> Tensor {
    from_draws(
        shape,
        dtype,
        std::iter::repeat_with(|| rng.normal() * scale),
    )
}

/// The values of a tensor (on any device) as f64, flattened.
pub fn values(t: &Tensor) -> Vec<f64> {
    t.to_device(&Device::Cpu)
        .and_then(|t| t.to_dtype(DType::F64))
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1())
        .expect("tensor values")
}

/// A tensor's values as f64 bit patterns: equal exactly when the tensors are bit-identical
/// (every float dtype widens to f64 exactly).
pub fn f64_bits(t: &Tensor) -> Vec<u64> {
    values(t).into_iter().map(f64::to_bits).collect()
}

/// The largest of `xs`, at least 0; NaN if any is NaN.
fn max_nan(xs: impl Iterator<Item = f64>) -> f64 {
    // Once `m` is NaN, `x > m` is false and it stays NaN.
    xs.fold(0.0, |m, x| if x.is_nan() || x > m { x } else { m })
}

/// The largest |x| of a tensor (NaN if it holds a NaN).
pub fn max_abs(t: &Tensor) -> f64 {
    max_nan(values(t).into_iter().map(f64::abs))
}

/// The largest absolute difference between two tensors of the same shape (NaN if any
/// difference is NaN).
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let (a, b) = (values(a), values(b));
    max_nan(a.iter().zip(&b).map(|(x, y)| (x - y).abs()))
}

/// Assert that `a` equals `b` elementwise within `tol` times the largest |b|.
pub fn close(a: &Tensor, b: &Tensor, tol: f64, what: &str) {
    assert_eq!(a.dims(), b.dims(), "{what}");
    let (a, b) = (values(a), values(b));
    let scale = b.iter().fold(1e-30f64, |m, x| m.max(x.abs()));
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            (x - y).abs() <= tol * scale,
            "{what}[{i}]: {x} vs {y} (scale {scale})"
        );
    }
}
/// Values and gradients (of `Σ y · R` for a random R) of a kernel against its composed
/// version, for each input.
pub fn check(
    inputs: &[Tensor],
    fused: impl Fn(&[Tensor]) -> Tensor,
    composed: impl Fn(&[Tensor]) -> Tensor,
    tol: f64,
    what: &str,
) {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t).expect("var"))
        .collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let y = fused(&ts);
    let y0 = composed(&ts);
    close(&y, &y0, tol, &format!("{what} value"));
    let r = randt(y.dims(), 99, 1.0, y.dtype());
    let grads = |y: &Tensor| {
        (y * &r)
            .and_then(|t| t.sum_all())
            .and_then(|t| t.backward())
            .expect("backward")
    };
    let (g, g0) = (grads(&y), grads(&y0));
    for (i, t) in ts.iter().enumerate() {
        let (Some(a), Some(b)) = (g.get(t), g0.get(t)) else {
            panic!("{what}: no gradient for input {i}");
        };
        close(a, b, tol, &format!("{what} grad {i}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f64]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }

    #[test]
    fn a_nan_fails_every_comparison() {
        let (a, b) = (t(&[1.0, f64::NAN, 0.0]), t(&[1.0, 2.0, 5.0]));
        assert!(max_abs_diff(&a, &b).is_nan());
        assert!(max_abs_diff(&b, &a).is_nan());
        assert!(max_abs(&a).is_nan());
        assert_eq!(max_abs(&t(&[-3.0, 2.0])), 3.0);
        assert_eq!(max_abs_diff(&b, &t(&[1.0, 2.5, 3.0])), 2.0);
        assert_eq!(max_abs(&t(&[])), 0.0);
    }

    #[test]
    fn bits_tell_signed_zeros_apart_in_every_dtype() {
        for dtype in [DType::F64, DType::F32, DType::F16, DType::BF16] {
            let a = t(&[0.0, 1.5]).to_dtype(dtype).unwrap();
            let b = t(&[-0.0, 1.5]).to_dtype(dtype).unwrap();
            assert_eq!(max_abs_diff(&a, &b), 0.0);
            assert_ne!(f64_bits(&a), f64_bits(&b), "{dtype:?}");
        }
    }

    #[test]
    fn random_tensors() {
        let mut r = SplitMix64::new(4);
        let whole = randn_from(&mut r, &[4], 2.0, DType::F64);
        let mut r = SplitMix64::new(4);
        let (x, y) = (
            randn_from(&mut r, &[2], 2.0, DType::F64),
            randn_from(&mut r, &[1, 2], 2.0, DType::F64),
        );
        let halves: Vec<f64> = values(&x).into_iter().chain(values(&y)).collect();
        assert_eq!(values(&whole), halves, "one stream, drawn in parts");
        let r32 = randt(&[4], 4, 2.0, DType::F32);
        let r64 = randt(&[4], 4, 2.0, DType::F64);
        assert_eq!(values(&r32), values(&r64));
        let rounded: Vec<f64> = values(&whole)
            .into_iter()
            .map(|x| (x / 2.0) as f32 as f64 * 2.0)
            .collect();
        assert_eq!(values(&r64), rounded);
    }
}
