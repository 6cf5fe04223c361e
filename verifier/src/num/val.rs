//! A value that is exact when it can be (`Val::Q`) and complex `f64` otherwise
//! (`Val::C`), its arithmetic, and the rule that decides whether two values are
//! equal.
//!
//! Owns: promotion from exact to approximate, the overflow-to-NaN guard, and
//! value comparison (exact for integers, relative tolerance otherwise). Must
//! not know: text formats, expressions, or answer structure.

use super::complex::Cx;
use super::rat::Rat;

/// A value: exact when possible.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Val {
    Q(Rat),
    C(Cx),
}

/// Finite inputs that produce a non-finite result are an overflow: make it NaN
/// so that two different huge numbers never compare equal as "infinity".
pub(super) fn guard(inputs_finite: bool, r: Cx) -> Val {
    if inputs_finite && !r.is_finite() {
        Val::C(Cx::NAN)
    } else {
        Val::C(r)
    }
}

impl Val {
    pub fn int(n: i128) -> Val {
        Rat::int(n).map_or(Val::C(Cx::real(n as f64)), Val::Q)
    }
    pub fn cx(self) -> Cx {
        match self {
            Val::Q(q) => Cx::real(q.to_f64()),
            Val::C(c) => c,
        }
    }
    fn finite(self) -> bool {
        match self {
            Val::Q(_) => true,
            Val::C(c) => c.is_finite(),
        }
    }
    #[cfg(test)]
    pub fn is_nan(self) -> bool {
        matches!(self, Val::C(c) if c.is_nan())
    }
    pub fn neg(self) -> Val {
        match self {
            Val::Q(q) => q.neg().map_or(Val::C(Cx::real(-q.to_f64())), Val::Q),
            Val::C(c) => Val::C(c.neg()),
        }
    }
    pub fn add(self, o: Val) -> Val {
        if let (Val::Q(a), Val::Q(b)) = (self, o) {
            if let Some(r) = a.add(b) {
                return Val::Q(r);
            }
        }
        guard(self.finite() && o.finite(), self.cx().add(o.cx()))
    }
    pub fn sub(self, o: Val) -> Val {
        self.add(o.neg())
    }
    pub fn mul(self, o: Val) -> Val {
        if let (Val::Q(a), Val::Q(b)) = (self, o) {
            if let Some(r) = a.mul(b) {
                return Val::Q(r);
            }
        }
        guard(self.finite() && o.finite(), self.cx().mul(o.cx()))
    }
    pub fn div(self, o: Val) -> Val {
        match (self, o) {
            (_, Val::Q(b)) if b.n == 0 => Val::C(Cx::NAN),
            (Val::Q(a), Val::Q(b)) => match a.div(b) {
                Some(r) => Val::Q(r),
                None => guard(true, self.cx().div(o.cx())),
            },
            _ => guard(self.finite() && o.finite(), self.cx().div(o.cx())),
        }
    }
    pub fn pow(self, o: Val) -> Val {
        if let (Val::Q(a), Val::Q(b)) = (self, o) {
            if b.is_int() {
                if let Some(r) = a.powi(b.n) {
                    return Val::Q(r);
                }
                if a.n == 0 && b.n < 0 {
                    return Val::C(Cx::NAN);
                }
            } else if b.d <= 16 {
                // a^(p/q) exact when a is a perfect q-th power.
                if let Some(root) = a.root(b.d as u32) {
                    if let Some(r) = root.powi(b.n) {
                        return Val::Q(r);
                    }
                }
            }
        }
        guard(self.finite() && o.finite(), self.cx().pow(o.cx()))
    }
    pub fn sqrt(self) -> Val {
        if let Val::Q(a) = self {
            if let Some(r) = a.root(2) {
                return Val::Q(r);
            }
        }
        guard(self.finite(), self.cx().sqrt())
    }
    pub fn root(self, k: Val) -> Val {
        if let (Val::Q(a), Val::Q(kq)) = (self, k) {
            if kq.is_int() && (1..=16).contains(&kq.n) {
                if let Some(r) = a.root(kq.n as u32) {
                    return Val::Q(r);
                }
                // Real odd root of a negative number.
                if a.n < 0 && kq.n % 2 == 1 {
                    let r = -(-a.to_f64()).powf(1.0 / kq.n as f64);
                    return Val::C(Cx::real(r));
                }
            }
        }
        match k {
            Val::Q(kq) if kq.n == 0 => Val::C(Cx::NAN),
            _ => {
                let inv = Val::Q(Rat::ONE).div(k);
                guard(self.finite() && k.finite(), self.cx().pow(inv.cx()))
            }
        }
    }
    /// Unary real or complex function through `f64`.
    pub fn map(self, f: impl Fn(Cx) -> Cx) -> Val {
        guard(self.finite(), f(self.cx()))
    }
    pub fn abs(self) -> Val {
        match self {
            Val::Q(q) => Val::Q(if q.n < 0 { q.neg().unwrap_or(q) } else { q }),
            Val::C(c) => Val::C(Cx::real(c.abs())),
        }
    }
}

/// Are two values equal? Exact integers compare exactly (no tolerance between
/// `1000000` and `1000001`). Two other exact values are equal only when one is
/// the other rounded (see [`rounded_equal`]); a value computed in floating
/// point is equal within `rel_tol`.
pub(crate) fn vals_equal(a: Val, b: Val, rel_tol: f64) -> bool {
    if let (Val::Q(x), Val::Q(y)) = (a, b) {
        return x == y || rounded_equal(x, y, rel_tol);
    }
    // A value computed in floating point (cos(pi/2)) gets a tiny absolute floor.
    let approx = matches!(a, Val::C(_)) || matches!(b, Val::C(_));
    cx_close(a.cx(), b.cx(), rel_tol, approx)
}

/// Significant digits from which a written decimal is taken to be a printed
/// float (`0.30000000000000004`) rather than a number someone chose.
const PRINTED_FLOAT_DIGITS: i32 = 10;

/// Two different exact values written as numbers are the same answer only
/// when one is the other rounded to the places it shows, within `rel_tol`:
/// `0.333333` for `1/3`, `0.30000000000000004` for `0.3`. Never two integers,
/// never two fractions that are not decimals, and never two decimals that a
/// person wrote (`1000000.5` vs `1000000.6`, `12345.67` vs `12345.68`).
fn rounded_equal(x: Rat, y: Rat, rel_tol: f64) -> bool {
    if x.is_int() && y.is_int() {
        return false;
    }
    let places = match (x.decimal_places(), y.decimal_places()) {
        (Some(px), Some(py)) => {
            let (finer, finer_places) = if px >= py { (x, px) } else { (y, py) };
            let magnitude = finer.to_f64().abs().log10().floor() as i32;
            if finer_places as i32 + magnitude + 1 < PRINTED_FLOAT_DIGITS {
                return false;
            }
            px.min(py)
        }
        (Some(p), None) | (None, Some(p)) => p,
        (None, None) => return false,
    };
    let half_unit = 0.5 * 10f64.powi(-(places.min(300) as i32));
    let diff = (x.to_f64() - y.to_f64()).abs();
    diff < half_unit && cx_close(Cx::real(x.to_f64()), Cx::real(y.to_f64()), rel_tol, false)
}

/// Closeness of two complex values. `approx` adds a tiny absolute floor for values
/// computed in floating point (sin(pi) vs 0).
pub(crate) fn cx_close(a: Cx, b: Cx, rel_tol: f64, approx: bool) -> bool {
    if a.is_nan() || b.is_nan() {
        return false;
    }
    if !a.is_finite() || !b.is_finite() {
        // Only genuine infinities (\infty) survive evaluation; equal iff identical.
        return a == b;
    }
    let diff = a.sub(b).abs();
    let scale = a.abs().max(b.abs());
    let floor = if approx { 1e-12 } else { 0.0 };
    diff <= rel_tol * scale + floor
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_is_nan() {
        let ten = Val::int(10);
        let big = ten.pow(Val::int(10_000_000_000));
        assert!(big.is_nan());
        assert!(!vals_equal(big, big, 1e-6));
    }

    #[test]
    fn rounding() {
        let q = |n, d| Val::Q(Rat::new(n, d).expect("rational"));
        // A rounded decimal of a fraction, and a printed float.
        assert!(vals_equal(q(333_333, 1_000_000), q(1, 3), 1e-6));
        assert!(vals_equal(
            q(1, 10),
            q(10_000_000_001, 100_000_000_000),
            1e-6
        ));
        // Two decimals someone wrote, two fractions, two integers.
        assert!(!vals_equal(q(10_000_005, 10), q(10_000_006, 10), 1e-6));
        assert!(!vals_equal(q(1_234_567, 100), q(1_234_568, 100), 1e-6));
        assert!(!vals_equal(q(1_000_000, 3), q(1_000_001, 3), 1e-6));
        assert!(!vals_equal(q(1_000_000, 1), q(10_000_004, 10), 1e-6));
        assert!(!vals_equal(q(33, 100), q(1, 3), 1e-6));
    }
}
