//! Plain numbers written without operators: decimals, `a/b`, `\frac{a}{b}`,
//! `\frac34`, and mixed numbers (`1\frac{4}{5}`, `2 1/2`), as exact values.
//!
//! Owns: these literal forms. Must not know: expressions in general (those go
//! to `expr`), units, or answer structure.

use crate::num::{parse_decimal, Rat, Val};

/// Plain numbers: decimals, `a/b`, `\frac{a}{b}`, mixed numbers (`1\frac{4}{5}`,
/// `2 1/2`). `None` for anything else.
pub(super) fn number_value(s: &str) -> Option<Val> {
    let s = s.trim();
    if let Some(v) = parse_decimal(s) {
        return Some(v);
    }
    let (neg, body) = match s.strip_prefix('-') {
        Some(r) => (true, r.trim_start()),
        None => (false, s.strip_prefix('+').unwrap_or(s).trim_start()),
    };
    let v = simple_fraction(body).or_else(|| mixed_number(body))?;
    Some(if neg { v.neg() } else { v })
}

fn int_digits(s: &str) -> Option<i128> {
    let s = s.trim();
    if s.is_empty() || s.len() > 30 || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `3/4`, `\frac{3}{4}`, `\frac34`, `\frac{270}7`.
fn simple_fraction(s: &str) -> Option<Val> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix("\\frac") {
        let (a, rest) = latex_int_arg(rest)?;
        let (b, rest) = latex_int_arg(rest)?;
        if !rest.trim().is_empty() {
            return None;
        }
        return Rat::new(a, b).map(Val::Q);
    }
    let (a, b) = s.split_once('/')?;
    Rat::new(int_digits(a)?, int_digits(b)?).map(Val::Q)
}

fn latex_int_arg(s: &str) -> Option<(i128, &str)> {
    let s = s.trim_start();
    if let Some(r) = s.strip_prefix('{') {
        let end = r.find('}')?;
        Some((int_digits(&r[..end])?, &r[end + 1..]))
    } else {
        let c = s.chars().next()?;
        let d = c.to_digit(10)? as i128;
        Some((d, &s[1..]))
    }
}

/// `1\frac{4}{5}`, `137 \frac{1}{2}`, `2 1/2`.
fn mixed_number(s: &str) -> Option<Val> {
    let end = s.bytes().position(|c| !c.is_ascii_digit())?;
    if end == 0 {
        return None;
    }
    let whole = int_digits(&s[..end])?;
    let rest = &s[end..];
    if !(rest.starts_with(' ') || rest.starts_with("\\frac")) {
        return None;
    }
    let frac = simple_fraction(rest)?;
    // Proper fraction only: `2 3/2` is not a mixed number.
    match frac {
        Val::Q(q) if q.n >= 0 && q.n < q.d => Some(Val::Q(Rat::int(whole)?.add(q)?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(
            number_value("1\\frac{4}{5}"),
            Some(Val::Q(Rat { n: 9, d: 5 }))
        );
        assert_eq!(number_value("2 1/2"), Some(Val::Q(Rat { n: 5, d: 2 })));
        assert_eq!(number_value("-\\frac34"), Some(Val::Q(Rat { n: -3, d: 4 })));
        assert_eq!(
            number_value("\\frac{270}7"),
            Some(Val::Q(Rat { n: 270, d: 7 }))
        );
    }
}
