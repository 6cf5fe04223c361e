//! A calculator over the verifier's expression code: the value of a variable-free arithmetic
//! expression (`123 * 456`, `2^{100}`, `\frac{7}{8} - 1/3`, `30!`, `sqrt(2)`), exact where it can
//! be: integers of any length (up to the big-integer cap), fractions as `p/q`, and only
//! irrational or overflowing results as decimals. Used as the built-in `calculator` tool.
//!
//! Owns: turning an expression into the text of its value. Must not know: tools, JSON or
//! answer extraction.

use std::fmt;

use crate::expr::{exact_integer, parse};
use crate::normalize::normalize;
use crate::num::{Cx, Val};

/// Longest expression accepted (bytes).
pub const MAX_EXPRESSION_BYTES: usize = 1024;

/// Why an expression has no value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalcError {
    #[error("expression longer than {MAX_EXPRESSION_BYTES} bytes")]
    TooLong,
    #[error("cannot parse the expression: {0}")]
    Parse(String),
    #[error("the expression has variables ({0}); give numbers only")]
    Variables(String),
    #[error("the value is undefined or too large")]
    Undefined,
}

/// The value of `expression`, written exactly where possible.
pub fn calculate(expression: &str) -> Result<String, CalcError> {
    if expression.len() > MAX_EXPRESSION_BYTES {
        return Err(CalcError::TooLong);
    }
    let text = normalize(expression, MAX_EXPRESSION_BYTES);
    let e = parse(&text).map_err(|err| CalcError::Parse(err.to_string()))?;
    if !e.vars.is_empty() {
        return Err(CalcError::Variables(e.vars.join(", ")));
    }
    if let Some(n) = exact_integer(&e) {
        return Ok(n.to_string());
    }
    match e.eval(&[]) {
        Val::Q(q) if q.is_int() => Ok(q.n.to_string()),
        Val::Q(q) => Ok(format!("{}/{}", q.n, q.d)),
        Val::C(c) => approximate(c),
    }
}

fn approximate(c: Cx) -> Result<String, CalcError> {
    if !c.re.is_finite() || !c.im.is_finite() {
        return Err(CalcError::Undefined);
    }
    let re = Approx(c.re);
    if c.im.abs() <= 1e-12 * c.re.abs().max(1.0) {
        return Ok(re.to_string());
    }
    let sign = if c.im < 0.0 { '-' } else { '+' };
    Ok(format!("{re} {sign} {}i", Approx(c.im.abs())))
}

/// An `f64` with 15 significant digits, without trailing zeros.
struct Approx(f64);

impl fmt::Display for Approx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        if v != 0.0 && !(1e-6..1e15).contains(&v.abs()) {
            return write!(f, "{v:.14e}");
        }
        let digits = (14 - v.abs().max(1e-300).log10().floor() as i32).clamp(0, 20) as usize;
        let s = format!("{v:.digits$}");
        let s = match s.contains('.') {
            true => s.trim_end_matches('0').trim_end_matches('.'),
            false => &s,
        };
        f.write_str(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_values() {
        assert_eq!(calculate("123 * 456").unwrap(), "56088");
        assert_eq!(calculate("987*654 - 321").unwrap(), "645177");
        assert_eq!(
            calculate("2^{100}").unwrap(),
            "1267650600228229401496703205376"
        );
        assert_eq!(calculate("(17 + 5) / 4").unwrap(), "11/2");
        assert_eq!(calculate("\\frac{7}{8} - 1/3").unwrap(), "13/24");
        assert_eq!(calculate("25!").unwrap(), "15511210043330985984000000");
        assert_eq!(calculate("-12 * 12").unwrap(), "-144");
    }

    #[test]
    fn approximate_and_errors() {
        assert!(calculate("sqrt(2)").unwrap().starts_with("1.41421356237"));
        assert!(matches!(calculate("x + 1"), Err(CalcError::Variables(_))));
        assert!(matches!(calculate("1/0"), Err(CalcError::Undefined)));
        assert!(calculate("3 +* ").is_err());
        assert!(matches!(
            calculate(&"1+".repeat(600)),
            Err(CalcError::TooLong)
        ));
    }
}
