//! Numbers: exact rationals over `i128` with checked arithmetic, a small complex
//! type for everything else, and the comparison rule between them.
//!
//! Nothing here allocates or loops more than a bounded number of times: powers
//! are exact only for small exponents, everything else goes through `f64`, and
//! an `f64` operation that overflows from finite inputs becomes NaN (never equal
//! to anything), so `10^{10^{10}}` or `1e999999` cannot compare equal to another
//! huge number by both being "infinity".

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
        if neg && k % 2 == 0 {
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

/// A complex number in `f64`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Cx {
    pub re: f64,
    pub im: f64,
}

impl Cx {
    pub const fn real(re: f64) -> Cx {
        Cx { re, im: 0.0 }
    }
    pub const NAN: Cx = Cx {
        re: f64::NAN,
        im: f64::NAN,
    };
    pub fn is_finite(self) -> bool {
        self.re.is_finite() && self.im.is_finite()
    }
    pub fn is_nan(self) -> bool {
        self.re.is_nan() || self.im.is_nan()
    }
    pub fn is_real(self) -> bool {
        self.im == 0.0 || self.im.abs() <= 1e-12 * self.re.abs().max(1.0)
    }
    pub fn abs(self) -> f64 {
        self.re.hypot(self.im)
    }
    pub fn add(self, o: Cx) -> Cx {
        Cx {
            re: self.re + o.re,
            im: self.im + o.im,
        }
    }
    pub fn sub(self, o: Cx) -> Cx {
        Cx {
            re: self.re - o.re,
            im: self.im - o.im,
        }
    }
    pub fn neg(self) -> Cx {
        Cx {
            re: -self.re,
            im: -self.im,
        }
    }
    pub fn mul(self, o: Cx) -> Cx {
        if self.im == 0.0 && o.im == 0.0 {
            return Cx::real(self.re * o.re);
        }
        Cx {
            re: self.re * o.re - self.im * o.im,
            im: self.re * o.im + self.im * o.re,
        }
    }
    pub fn div(self, o: Cx) -> Cx {
        if o.im == 0.0 {
            if o.re == 0.0 {
                return Cx::NAN;
            }
            return Cx {
                re: self.re / o.re,
                im: self.im / o.re,
            };
        }
        let den = o.re * o.re + o.im * o.im;
        if den == 0.0 {
            return Cx::NAN;
        }
        Cx {
            re: (self.re * o.re + self.im * o.im) / den,
            im: (self.im * o.re - self.re * o.im) / den,
        }
    }
    pub fn exp(self) -> Cx {
        let m = self.re.exp();
        if self.im == 0.0 {
            return Cx::real(m);
        }
        Cx {
            re: m * self.im.cos(),
            im: m * self.im.sin(),
        }
    }
    pub fn ln(self) -> Cx {
        if self.im == 0.0 && self.re > 0.0 {
            return Cx::real(self.re.ln());
        }
        let r = self.abs();
        if r == 0.0 {
            return Cx::NAN;
        }
        Cx {
            re: r.ln(),
            im: self.im.atan2(self.re),
        }
    }
    pub fn sqrt(self) -> Cx {
        if self.im == 0.0 {
            return if self.re >= 0.0 {
                Cx::real(self.re.sqrt())
            } else {
                Cx {
                    re: 0.0,
                    im: (-self.re).sqrt(),
                }
            };
        }
        let r = self.abs();
        let re = ((r + self.re) / 2.0).sqrt();
        let im = ((r - self.re) / 2.0).sqrt().copysign(self.im);
        Cx { re, im }
    }
    pub fn pow(self, w: Cx) -> Cx {
        if self.im == 0.0 && w.im == 0.0 {
            let (b, e) = (self.re, w.re);
            if b > 0.0 || e.fract() == 0.0 {
                return Cx::real(b.powf(e));
            }
            if b == 0.0 {
                return if e > 0.0 { Cx::real(0.0) } else { Cx::NAN };
            }
        }
        if self.re == 0.0 && self.im == 0.0 {
            return if w.re > 0.0 { Cx::real(0.0) } else { Cx::NAN };
        }
        w.mul(self.ln()).exp()
    }
    pub fn sin(self) -> Cx {
        if self.im == 0.0 {
            return Cx::real(self.re.sin());
        }
        Cx {
            re: self.re.sin() * self.im.cosh(),
            im: self.re.cos() * self.im.sinh(),
        }
    }
    pub fn cos(self) -> Cx {
        if self.im == 0.0 {
            return Cx::real(self.re.cos());
        }
        Cx {
            re: self.re.cos() * self.im.cosh(),
            im: -self.re.sin() * self.im.sinh(),
        }
    }
    /// Apply a real function when the value is (numerically) real; NaN otherwise.
    pub fn real_fn(self, f: impl Fn(f64) -> f64) -> Cx {
        if self.is_real() {
            Cx::real(f(self.re))
        } else {
            Cx::NAN
        }
    }
}

/// A value: exact when possible.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Val {
    Q(Rat),
    C(Cx),
}

/// Finite inputs that produce a non-finite result are an overflow: make it NaN
/// so that two different huge numbers never compare equal as "infinity".
fn guard(inputs_finite: bool, r: Cx) -> Val {
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

/// Are two values equal? Exact rationals compare exactly when both are integers
/// (no tolerance between `1000000` and `1000001`); everything else within `rel_tol`.
pub(crate) fn vals_equal(a: Val, b: Val, rel_tol: f64) -> bool {
    if let (Val::Q(x), Val::Q(y)) = (a, b) {
        if x == y {
            return true;
        }
        if x.is_int() && y.is_int() {
            return false;
        }
    }
    // A value computed in floating point (cos(pi/2)) gets a tiny absolute floor.
    let approx = matches!(a, Val::C(_)) || matches!(b, Val::C(_));
    cx_close(a.cx(), b.cx(), rel_tol, approx)
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

/// Parse a plain decimal number: optional sign, digits with an optional
/// fractional part (`.5`, `3.`, `1.50`), optional exponent (`1e5`, `2.5E-3`).
/// Everything else (commas, spaces, letters) makes it `None`.
pub(crate) fn parse_decimal(s: &str) -> Option<Val> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut neg = false;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        neg = b[i] == b'-';
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int_part = &s[int_start..i];
    let mut frac_part = "";
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let fs = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        frac_part = &s[fs..i];
    }
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    let mut exp: i64 = 0;
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        let mut eneg = false;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            eneg = b[i] == b'-';
            i += 1;
        }
        let es = i;
        while i < b.len() && b[i].is_ascii_digit() {
            // Saturate: anything beyond a million is "huge" either way.
            exp = (exp * 10 + (b[i] - b'0') as i64).min(1_000_000);
            i += 1;
        }
        if i == es {
            return None;
        }
        if eneg {
            exp = -exp;
        }
    }
    if i != b.len() {
        return None;
    }
    let v = decimal_value(int_part, frac_part, exp);
    Some(if neg { v.neg() } else { v })
}

/// Value of `int.frac * 10^exp`, exact when it fits.
pub(crate) fn decimal_value(int_part: &str, frac_part: &str, exp: i64) -> Val {
    let int_trim = int_part.trim_start_matches('0');
    let frac_trim = frac_part.trim_end_matches('0');
    let digits = int_trim.len() + frac_trim.len();
    if digits <= 36 && exp.abs() <= 36 {
        let mut n: i128 = 0;
        for c in int_trim.bytes().chain(frac_trim.bytes()) {
            n = n * 10 + (c - b'0') as i128;
        }
        let scale = exp - frac_trim.len() as i64;
        let ten = Rat { n: 10, d: 1 };
        if let Some(p) = ten.powi(scale as i128) {
            if let Some(r) = (Rat { n, d: 1 }).mul(p) {
                return Val::Q(r);
            }
        }
    }
    // Approximate: bounded-length text, f64 parse is linear and exact-rounded.
    let mut txt = String::with_capacity(int_part.len() + frac_part.len() + 24);
    txt.push_str(if int_part.is_empty() { "0" } else { int_part });
    if !frac_part.is_empty() {
        txt.push('.');
        txt.push_str(frac_part);
    }
    txt.push('e');
    txt.push_str(&exp.to_string());
    let f: f64 = txt.parse().unwrap_or(f64::NAN);
    if !f.is_finite() {
        return Val::C(Cx::NAN);
    }
    if f == 0.0 && digits > 0 {
        // Underflow of a non-zero number: not comparable.
        return Val::C(Cx::NAN);
    }
    Val::C(Cx::real(f))
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

    #[test]
    fn decimals() {
        assert_eq!(parse_decimal(".5"), Some(Val::Q(Rat { n: 1, d: 2 })));
        assert_eq!(parse_decimal("+1.500"), Some(Val::Q(Rat { n: 3, d: 2 })));
        assert_eq!(parse_decimal("2.5e-3"), Some(Val::Q(Rat { n: 1, d: 400 })));
        assert!(parse_decimal("1e999999").unwrap().is_nan());
        assert!(parse_decimal("1,000").is_none());
        assert!(parse_decimal("-").is_none());
        assert!(parse_decimal("e5").is_none());
    }

    #[test]
    fn overflow_is_nan() {
        let ten = Val::int(10);
        let big = ten.pow(Val::int(10_000_000_000));
        assert!(big.is_nan());
        assert!(!vals_equal(big, big, 1e-6));
    }
}
