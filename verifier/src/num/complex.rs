//! A small complex number type in `f64` with the elementary functions the
//! expression evaluator needs.
//!
//! Owns: `Cx` and its arithmetic. Must not know: exact rationals, overflow
//! policy (the caller turns overflow into NaN), or any text format.

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
