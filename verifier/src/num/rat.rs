//! Exact rationals over `i128` with checked arithmetic: every operation returns
//! `None` instead of overflowing, and powers and roots are exact only for small
//! exponents.
//!
//! Owns: `Rat`, its gcd and integer roots. Must not know: floating point, complex
//! values, or any text format.

/// Largest exponent magnitude evaluated exactly (by repeated squaring).
const MAX_EXACT_POW: u32 = 256;

/// An exact rational `n / d` with `d > 0` and `gcd(|n|, d) = 1`.
/// `i128::MIN` never appears in either field (it has no negation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rat {
    pub n: i128,
    pub d: i128,
}

fn gcd_u(a: u128, b: u128) -> u128 {
    // Hardware division for the common small case; binary GCD otherwise
    // (128-bit division is a slow software routine).
    if let (Ok(mut x), Ok(mut y)) = (u64::try_from(a), u64::try_from(b)) {
        while y != 0 {
            let t = x % y;
            x = y;
            y = t;
        }
        return x as u128;
    }
    if a == 0 {
        return b;
    }
    if b == 0 {
        return a;
    }
    let shift = (a | b).trailing_zeros();
    let mut a = a >> a.trailing_zeros();
    let mut b = b;
    while b != 0 {
        b >>= b.trailing_zeros();
        if a > b {
            std::mem::swap(&mut a, &mut b);
        }
        b -= a;
    }
    a << shift
}

impl Rat {
    #[cfg(test)]
    pub const ZERO: Rat = Rat { n: 0, d: 1 };
    pub const ONE: Rat = Rat { n: 1, d: 1 };

    pub fn int(n: i128) -> Option<Rat> {
        if n == i128::MIN {
            None
        } else {
            Some(Rat { n, d: 1 })
        }
    }

    pub fn new(n: i128, d: i128) -> Option<Rat> {
        if d == 0 || n == i128::MIN || d == i128::MIN {
            return None;
        }
        let (mut n, mut d) = if d < 0 { (-n, -d) } else { (n, d) };
        let g = gcd_u(n.unsigned_abs(), d.unsigned_abs());
        if g > 1 {
            // g <= |d| <= i128::MAX, so the cast is lossless.
            let g = g as i128;
            n /= g;
            d /= g;
        }
        Some(Rat { n, d })
    }

    pub fn is_int(self) -> bool {
        self.d == 1
    }

    /// Fewest decimal places that write `self` exactly (`3/4` -> 2), or `None`
    /// when it is not a finite decimal (`1/3`).
    pub fn decimal_places(self) -> Option<u32> {
        let mut rest = self.d;
        let (mut twos, mut fives) = (0u32, 0u32);
        while rest % 2 == 0 {
            rest /= 2;
            twos += 1;
        }
        while rest % 5 == 0 {
            rest /= 5;
            fives += 1;
        }
        (rest == 1).then_some(twos.max(fives))
    }

    pub fn to_f64(self) -> f64 {
        self.n as f64 / self.d as f64
    }

    pub fn neg(self) -> Option<Rat> {
        Some(Rat {
            n: self.n.checked_neg()?,
            d: self.d,
        })
    }

    pub fn add(self, o: Rat) -> Option<Rat> {
        let g = gcd_u(self.d.unsigned_abs(), o.d.unsigned_abs()) as i128;
        let a = self.n.checked_mul(o.d / g)?;
        let b = o.n.checked_mul(self.d / g)?;
        let d = (self.d / g).checked_mul(o.d)?;
        Rat::new(a.checked_add(b)?, d)
    }

    pub fn mul(self, o: Rat) -> Option<Rat> {
        // Cross-reduce first to keep intermediates small.
        let g1 = gcd_u(self.n.unsigned_abs(), o.d.unsigned_abs()).max(1) as i128;
        let g2 = gcd_u(o.n.unsigned_abs(), self.d.unsigned_abs()).max(1) as i128;
        let n = (self.n / g1).checked_mul(o.n / g2)?;
        let d = (self.d / g2).checked_mul(o.d / g1)?;
        Rat::new(n, d)
    }

    pub fn recip(self) -> Option<Rat> {
        if self.n == 0 {
            None
        } else {
            Rat::new(self.d, self.n)
        }
    }

    pub fn div(self, o: Rat) -> Option<Rat> {
        self.mul(o.recip()?)
    }

    /// `self^e` for a small integer exponent; `None` on overflow, 0^negative, or |e| too big.
    pub fn powi(self, e: i128) -> Option<Rat> {
        if e.unsigned_abs() > MAX_EXACT_POW as u128 {
            return None;
        }
        let mut base = if e < 0 { self.recip()? } else { self };
        let mut k = e.unsigned_abs() as u32;
        let mut acc = Rat::ONE;
        while k > 0 {
            if k & 1 == 1 {
                acc = acc.mul(base)?;
            }
            k >>= 1;
            if k > 0 {
                base = base.mul(base)?;
            }
        }
        Some(acc)
    }

    /// Exact `k`-th root when numerator and denominator are perfect powers.
    pub fn root(self, k: u32) -> Option<Rat> {
        if !(1..=16).contains(&k) {
            return None;
        }
        if k == 1 {
            return Some(self);
        }
        let neg = self.n < 0;
        if neg && k.is_multiple_of(2) {
            return None;
        }
        let rn = iroot(self.n.unsigned_abs(), k)?;
        let rd = iroot(self.d.unsigned_abs(), k)?;
        let n = i128::try_from(rn).ok()?;
        let d = i128::try_from(rd).ok()?;
        Rat::new(if neg { -n } else { n }, d)
    }
}

/// Integer k-th root of `x` if `x` is a perfect k-th power.
fn iroot(x: u128, k: u32) -> Option<u128> {
    if x < 2 {
        return Some(x);
    }
    let guess = (x as f64).powf(1.0 / k as f64).round();
    if !guess.is_finite() || guess < 0.0 {
        return None;
    }
    let g = guess as u128;
    for cand in [g.saturating_sub(1), g, g + 1] {
        if let Some(p) = cand.checked_pow(k) {
            if p == x {
                return Some(cand);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rat_basics() {
        let a = Rat::new(6, -4).unwrap();
        assert_eq!(a, Rat { n: -3, d: 2 });
        assert_eq!(a.add(Rat::new(3, 2).unwrap()).unwrap(), Rat::ZERO);
        assert_eq!(
            Rat::new(2, 3).unwrap().powi(-2).unwrap(),
            Rat { n: 9, d: 4 }
        );
        assert!(Rat::int(10).unwrap().powi(40).is_none());
        assert_eq!(
            Rat::new(8, 27).unwrap().root(3).unwrap(),
            Rat { n: 2, d: 3 }
        );
        assert!(Rat::int(2).unwrap().root(2).is_none());
        assert_eq!(Rat::new(3, 4).unwrap().decimal_places(), Some(2));
        assert_eq!(Rat::new(1, 3).unwrap().decimal_places(), None);
        assert_eq!(Rat::int(7).unwrap().decimal_places(), Some(0));
    }

    #[test]
    fn gcd() {
        assert_eq!(gcd_u(12, 18), 6);
        assert_eq!(gcd_u(0, 7), 7);
        let big = 1u128 << 100;
        assert_eq!(gcd_u(big * 3, big * 5), big);
        assert_eq!(gcd_u(big * 3 + 3, 0), big * 3 + 3);
        assert_eq!(gcd_u(u128::MAX, u128::MAX - 1), 1);
    }
}
