//! Factorials and binomial coefficients of values: exact while they fit in
//! `i128`, then `f64`, NaN beyond a fixed bound.
//!
//! Owns: `Val::factorial` and `Val::binom`. Must not know: text formats or
//! expression syntax.

use super::complex::Cx;
use super::rat::Rat;
use super::val::{guard, Val};

impl Val {
    pub fn factorial(self) -> Val {
        let n = match self {
            Val::Q(q) if q.is_int() && q.n >= 0 => q.n,
            Val::C(c) if c.is_real() && c.re >= 0.0 && c.re.fract() == 0.0 => {
                if c.re > 170.0 {
                    return Val::C(Cx::NAN);
                }
                c.re as i128
            }
            _ => return Val::C(Cx::NAN),
        };
        if n > 170 {
            return Val::C(Cx::NAN);
        }
        let mut acc: i128 = 1;
        for k in 2..=n {
            match acc.checked_mul(k) {
                Some(v) => acc = v,
                None => {
                    let mut f = acc as f64;
                    for j in k..=n {
                        f *= j as f64;
                    }
                    return guard(true, Cx::real(f));
                }
            }
        }
        Val::int(acc)
    }
    pub fn binom(self, k: Val) -> Val {
        let (n, k) = match (self, k) {
            (Val::Q(n), Val::Q(k)) if n.is_int() && k.is_int() => (n.n, k.n),
            _ => return Val::C(Cx::NAN),
        };
        if k < 0 || n < 0 || k > n || n > 1000 {
            return Val::C(Cx::NAN);
        }
        let k = k.min(n - k);
        let mut acc = Rat::ONE;
        let mut approx = 1.0f64;
        let mut exact = true;
        for j in 0..k {
            if exact {
                match Rat::new(n - j, j + 1).and_then(|f| acc.mul(f)) {
                    Some(v) => {
                        acc = v;
                        continue;
                    }
                    None => {
                        exact = false;
                        approx = acc.to_f64();
                    }
                }
            }
            approx *= (n - j) as f64 / (j + 1) as f64;
            if !approx.is_finite() {
                return Val::C(Cx::NAN);
            }
        }
        if exact {
            Val::Q(acc)
        } else {
            Val::C(Cx::real(approx))
        }
    }
}
