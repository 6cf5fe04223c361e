//! Plain decimal literals (`-1.50`, `.5`, `2.5E-3`) as values: exact rationals
//! when they fit, `f64` otherwise.
//!
//! Owns: the decimal literal grammar and its value. Must not know: thousands
//! separators, LaTeX, units or any other answer format (normalisation handles
//! those before a literal gets here).

use std::ops::Range;

use super::complex::Cx;
use super::rat::Rat;
use super::val::Val;

/// Where the parts of a decimal literal lie in its text.
pub(crate) struct DecimalScan {
    pub int: Range<usize>,
    pub frac: Range<usize>,
    /// The exponent after `e` / `E`, saturated at a million either way.
    pub exp: i64,
    /// First byte after the literal.
    pub end: usize,
}

/// End of the run of ASCII digits starting at `from`.
fn digits_end(bytes: &[u8], from: usize) -> usize {
    from + bytes[from.min(bytes.len())..]
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count()
}

/// Scan an unsigned decimal literal at `start`: digits, an optional fraction
/// (`.5`; `3.` only when `trailing_point`), and an optional exponent (`e5`,
/// `E-3`: an `e` not followed by digits is not part of it). `None` when there
/// are no digits at all.
pub(crate) fn scan_decimal(
    bytes: &[u8],
    start: usize,
    trailing_point: bool,
) -> Option<DecimalScan> {
    let int_end = digits_end(bytes, start);
    let mut frac = int_end..int_end;
    let mut end = int_end;
    if bytes.get(int_end) == Some(&b'.') {
        let frac_end = digits_end(bytes, int_end + 1);
        if frac_end > int_end + 1 || trailing_point {
            frac = int_end + 1..frac_end;
            end = frac_end;
        }
    }
    if int_end == start && frac.is_empty() {
        return None;
    }
    let (exp, end) = scan_exponent(bytes, end).unwrap_or((0, end));
    Some(DecimalScan {
        int: start..int_end,
        frac,
        exp,
        end,
    })
}

/// `e5`, `E+12`, `e-3` at `at`: the exponent and the first byte after it.
fn scan_exponent(bytes: &[u8], at: usize) -> Option<(i64, usize)> {
    if !matches!(bytes.get(at), Some(b'e') | Some(b'E')) {
        return None;
    }
    let mut pos = at + 1;
    let negative = bytes.get(pos) == Some(&b'-');
    if matches!(bytes.get(pos), Some(b'+') | Some(b'-')) {
        pos += 1;
    }
    let end = digits_end(bytes, pos);
    if end == pos {
        return None;
    }
    // Saturate: anything beyond a million is "huge" either way.
    let magnitude = bytes[pos..end]
        .iter()
        .fold(0i64, |acc, d| (acc * 10 + (d - b'0') as i64).min(1_000_000));
    Some((if negative { -magnitude } else { magnitude }, end))
}

/// Parse a plain decimal number: optional sign, digits with an optional
/// fractional part (`.5`, `3.`, `1.50`), optional exponent (`1e5`, `2.5E-3`).
/// Everything else (commas, spaces, letters) makes it `None`.
pub(crate) fn parse_decimal(s: &str) -> Option<Val> {
    let bytes = s.as_bytes();
    let negative = bytes.first() == Some(&b'-');
    let start = usize::from(matches!(bytes.first(), Some(b'+') | Some(b'-')));
    let scan = scan_decimal(bytes, start, true)?;
    if scan.end != bytes.len() {
        return None;
    }
    let value = decimal_value(&s[scan.int], &s[scan.frac], scan.exp);
    Some(if negative { value.neg() } else { value })
}

/// Value of `int.frac * 10^exp`, exact when it fits.
pub(crate) fn decimal_value(int_part: &str, frac_part: &str, exp: i64) -> Val {
    let int_trim = int_part.trim_start_matches('0');
    let frac_trim = frac_part.trim_end_matches('0');
    let digits = int_trim.len() + frac_trim.len();
    if let Some(exact) = exact_decimal(int_trim, frac_trim, exp) {
        return Val::Q(exact);
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

/// `digits * 10^(exp - fraction digits)` as an exact rational, when the digits
/// fit in `i128` (up to 38 of them, whatever the length of the text).
fn exact_decimal(int_digits: &str, frac_digits: &str, exp: i64) -> Option<Rat> {
    if int_digits.len() + frac_digits.len() > 39 || exp.unsigned_abs() > 80 {
        return None;
    }
    let mantissa = int_digits
        .bytes()
        .chain(frac_digits.bytes())
        .try_fold(0i128, |acc, c| {
            acc.checked_mul(10)?.checked_add(i128::from(c - b'0'))
        })?;
    let scale = exp - frac_digits.len() as i64;
    Rat::int(10)?
        .powi(i128::from(scale))?
        .mul(Rat::int(mantissa)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals() {
        assert_eq!(parse_decimal(".5"), Some(Val::Q(Rat { n: 1, d: 2 })));
        assert_eq!(parse_decimal("+1.500"), Some(Val::Q(Rat { n: 3, d: 2 })));
        assert_eq!(parse_decimal("2.5e-3"), Some(Val::Q(Rat { n: 1, d: 400 })));
        assert!(parse_decimal("1e999999").unwrap().is_nan());
        assert!(parse_decimal("1,000").is_none());
        assert!(parse_decimal("-").is_none());
        assert!(parse_decimal("e5").is_none());
        // Integers that fit in i128 are exact at any written length.
        let big = parse_decimal("1000000000000000000000000000000000001");
        assert_eq!(
            big,
            Some(Val::Q(Rat {
                n: 1_000_000_000_000_000_000_000_000_000_000_000_001,
                d: 1
            }))
        );
    }
}
