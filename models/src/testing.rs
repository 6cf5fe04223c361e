//! Test support shared by rlvr's crates (behind the `testing` feature): seeded random tensors,
//! tolerance comparison, and checking a kernel's values and gradients against a composed
//! reference.

use candle_core::{DType, Device, Tensor, Var};

/// A tensor of `shape` with seeded normal entries times `scale`, in `dtype` (values are f32
/// round-offs, so f32 and f64 tensors of one seed hold the same numbers).
pub fn randt(shape: &[usize], seed: u64, scale: f64, dtype: DType) -> Tensor {
    let n: usize = shape.iter().product();
    let mut r = crate::rng::SplitMix64::new(seed);
    let v: Vec<f64> = (0..n).map(|_| r.normal() as f32 as f64 * scale).collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
        .and_then(|t| t.to_dtype(dtype))
        .expect("random test tensor")
}

/// The values of a tensor as f64, flattened.
pub fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1())
        .expect("tensor values")
}

/// The largest absolute difference between two equally sized tensors.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (values(a), values(b));
    assert_eq!(a.len(), b.len(), "sizes differ");
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
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
