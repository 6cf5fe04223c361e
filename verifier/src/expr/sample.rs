//! Comparing expressions by sampling: deterministic pseudo-random points per
//! variable name, equality of sampled values, proportionality of equations,
//! and `lhs - rhs` of two expressions.
//!
//! Owns: the choice of sample points and the tolerance of sampled comparison.
//! Must not know: parsing internals or answer structure.

use super::{remap, Expr, Node};
use crate::num::{cx_close, Cx};

/// Deterministic pseudo-random value for variable `name` at sample `k`, in [0.35, 2.6].
fn sample(name: &str, k: usize) -> f64 {
    // FNV-1a over the name and the sample index, then a xorshift mix.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes().chain((k as u64).to_le_bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    let u = (h >> 11) as f64 / (1u64 << 53) as f64;
    0.35 + 2.25 * u
}

const SAMPLES: usize = 6;

/// Values of `e` at the sample points (variables bound by name, so two
/// expressions with the same variable set are sampled at the same points).
pub(crate) fn sample_values(e: &Expr) -> Vec<Cx> {
    let mut vals = vec![Cx::real(0.0); e.vars.len()];
    (0..SAMPLES)
        .map(|k| {
            for (slot, name) in vals.iter_mut().zip(&e.vars) {
                *slot = Cx::real(sample(name, k));
            }
            e.eval(&vals).cx()
        })
        .collect()
}

/// Equal at every sample point where both are defined (and defined at the same
/// points), with at least half of the points defined.
pub(crate) fn samples_equal(a: &[Cx], b: &[Cx], rel_tol: f64) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut compared = 0;
    for (x, y) in a.iter().zip(b) {
        match (x.is_finite(), y.is_finite()) {
            (true, true) => {
                if !cx_close(*x, *y, rel_tol.max(1e-9), true) {
                    return false;
                }
                compared += 1;
            }
            (false, false) => {}
            _ => return false,
        }
    }
    compared >= a.len().div_ceil(2) && compared > 0
}

/// For equations: are `a` and `b` (each meant as `lhs - rhs = 0`) proportional
/// by a constant non-zero factor at every sample point?
pub(crate) fn proportional(a: &Expr, b: &Expr, rel_tol: f64) -> bool {
    if a.vars != b.vars || a.vars.is_empty() {
        return false;
    }
    let mut vals = vec![Cx::real(0.0); a.vars.len()];
    let mut ratio: Option<Cx> = None;
    let mut compared = 0;
    for k in 0..SAMPLES {
        for (slot, name) in vals.iter_mut().zip(&a.vars) {
            *slot = Cx::real(sample(name, k));
        }
        let x = a.eval(&vals).cx();
        let y = b.eval(&vals).cx();
        if !x.is_finite() || !y.is_finite() {
            return false;
        }
        let tiny = 1e-9;
        match (x.abs() < tiny, y.abs() < tiny) {
            (true, true) => continue,
            (false, false) => {}
            _ => return false,
        }
        let r = x.div(y);
        match ratio {
            None => ratio = Some(r),
            Some(r0) => {
                if !cx_close(r, r0, rel_tol.max(1e-9), true) {
                    return false;
                }
            }
        }
        compared += 1;
    }
    compared >= SAMPLES / 2
}

/// Build `lhs - rhs` from two parsed expressions (variables merged by name).
pub(crate) fn difference(lhs: Expr, rhs: Expr) -> Expr {
    let mut vars = lhs.vars.clone();
    for v in &rhs.vars {
        if !vars.contains(v) {
            vars.push(v.clone());
        }
    }
    vars.sort();
    let l = remap(lhs.root, &lhs.vars, &vars);
    let r = remap(rhs.root, &rhs.vars, &vars);
    Expr {
        root: Node::Sub(Box::new(l), Box::new(r)),
        vars,
    }
}
