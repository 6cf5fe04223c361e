//! Atoms: leaf answers (a number, an expression, a word) with their analysis
//! computed once, and the comparison of two atoms (exact text, units and
//! percent, number bases, values, sampled expressions, words).
//!
//! Owns: what an atom means and when two atoms are equal. Must not know:
//! answer structure (tuples, sets, equations) or extraction.

use std::cell::OnceCell;

use super::plain_number::number_value;
use super::{compact_eq, Ctx};
use crate::expr;
use crate::normalize::strip_units;
use crate::num::{vals_equal, Cx, Val};
use crate::Reason;

/// A leaf answer with its analysis computed once, on first use (sets compare
/// every pair of items, so this keeps matching linear in parsing work).
#[derive(Clone, Debug)]
pub(super) struct Atom {
    pub(super) text: String,
    info: OnceCell<AtomInfo>,
}

#[derive(Clone, Debug)]
struct AtomInfo {
    /// Text with trailing unit words and `%` removed.
    stripped: String,
    percent: bool,
    /// `52_8` -> ("52", "8").
    base: Option<(String, String)>,
    val: AtomVal,
    /// A number written out (`42`, `-\frac{3}{8}`, `1.5 * 10^{3}`), not a
    /// computation (`12 + 30`, `2^{10}`).
    written_out: bool,
}

/// Value of an atom: a plain number, a variable-free expression, an expression
/// in variables (sampled), or text.
#[derive(Clone, Debug)]
enum AtomVal {
    Value(Val),
    Expr { vars: Vec<String>, samples: Vec<Cx> },
    Text,
}

impl Atom {
    pub(super) fn new(text: &str) -> Atom {
        Atom {
            text: text.to_string(),
            info: OnceCell::new(),
        }
    }

    fn info(&self) -> &AtomInfo {
        self.info.get_or_init(|| {
            let st = strip_units(&self.text);
            let (val, written_out) = atom_value(st.text);
            AtomInfo {
                stripped: st.text.to_string(),
                percent: st.percent,
                base: base_number(&self.text),
                val,
                written_out,
            }
        })
    }
}

fn text_eq(a: &str, b: &str) -> bool {
    let mut x = a
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase);
    let mut y = b
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase);
    loop {
        match (x.next(), y.next()) {
            (None, None) => return true,
            (Some(c), Some(d)) if c == d => {}
            _ => return false,
        }
    }
}

/// `52_8`, `4210_{5}` -> (digits, base).
fn base_number(s: &str) -> Option<(String, String)> {
    let (digits, base) = s.split_once('_')?;
    let digits = digits.trim();
    let base = base
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim();
    if digits.is_empty()
        || base.is_empty()
        || !digits.bytes().all(|c| c.is_ascii_alphanumeric())
        || !digits.as_bytes()[0].is_ascii_digit()
        || !base.bytes().all(|c| c.is_ascii_alphanumeric())
    {
        return None;
    }
    Some((digits.to_ascii_uppercase(), base.to_string()))
}

/// Equal as values, or equal once the side written with `%` is divided by 100.
fn percent_equal(a: Val, ap: bool, b: Val, bp: bool, tol: f64) -> bool {
    if vals_equal(a, b, tol) {
        return true;
    }
    if ap == bp {
        return false;
    }
    let hundred = Val::int(100);
    let a2 = if ap { a.div(hundred) } else { a };
    let b2 = if bp { b.div(hundred) } else { b };
    vals_equal(a2, b2, tol)
}

/// Integers from 2^53 up are not all exact in `f64`; a value that large (or an
/// overflow) is compared as an exact integer where it is one.
fn beyond_f64_integers(v: Val) -> bool {
    const EXACT_F64: f64 = 9_007_199_254_740_992.0;
    match v {
        Val::Q(q) => q.is_int() && q.to_f64().abs() >= EXACT_F64,
        Val::C(c) => c.is_nan() || (c.is_finite() && c.abs() >= EXACT_F64),
    }
}

/// Exact comparison of two integer answers: `Some(equal)` when both have an
/// exact integer value, `Some(false)` when only one has (an exact integer
/// cannot be verified against a value known only approximately), `None`
/// when neither has.
fn exact_integers_equal(pred: &str, gold: &str) -> Option<bool> {
    let exact = |s: &str| expr::parse(s).ok().and_then(|e| expr::exact_integer(&e));
    match (exact(pred), exact(gold)) {
        (Some(p), Some(g)) => Some(p == g),
        (Some(_), None) | (None, Some(_)) => Some(false),
        (None, None) => None,
    }
}

/// The value of an atom, and whether it is a number written out.
fn atom_value(s: &str) -> (AtomVal, bool) {
    if let Some(v) = number_value(s) {
        return (AtomVal::Value(v), true);
    }
    match expr::parse(s) {
        // `84 \div 2` parses as `84 / 2` but is a division, not a fraction.
        Ok(e) if e.vars.is_empty() => (
            AtomVal::Value(e.eval(&[])),
            expr::written_out(&e) && !s.contains("\\div"),
        ),
        Ok(e) => (
            AtomVal::Expr {
                samples: expr::sample_values(&e),
                vars: e.vars,
            },
            false,
        ),
        Err(_) => (AtomVal::Text, false),
    }
}

pub(super) fn compare_atoms(p: &Atom, g: &Atom, cx: &Ctx) -> Option<Reason> {
    if compact_eq(&p.text, &g.text) {
        return Some(Reason::MatchExact);
    }
    if !cx.spend(1) {
        return None;
    }
    let (pi, gi) = (p.info(), g.info());
    if pi.base.is_some() || gi.base.is_some() {
        return (pi.base == gi.base).then_some(Reason::MatchExact);
    }
    if pi.percent == gi.percent && compact_eq(&pi.stripped, &gi.stripped) {
        return Some(Reason::MatchExact);
    }
    // A gold number asks for a number: `12 + 30` is not 42 (see `verdict`).
    if cx.numbers_written_out
        && gi.written_out
        && !pi.written_out
        && matches!(pi.val, AtomVal::Value(_))
    {
        cx.refused_computation.set(true);
        return None;
    }
    let tol = cx.cfg.rel_tol;
    match (&pi.val, &gi.val) {
        (AtomVal::Value(a), AtomVal::Value(b)) => {
            if pi.percent == gi.percent && (beyond_f64_integers(*a) || beyond_f64_integers(*b)) {
                if let Some(same) = exact_integers_equal(&pi.stripped, &gi.stripped) {
                    return same.then_some(Reason::MatchNumeric);
                }
            }
            percent_equal(*a, pi.percent, *b, gi.percent, tol).then_some(Reason::MatchNumeric)
        }
        (
            AtomVal::Expr {
                vars: va,
                samples: sa,
            },
            AtomVal::Expr {
                vars: vb,
                samples: sb,
            },
        ) => (pi.percent == gi.percent && va == vb && expr::samples_equal(sa, sb, tol))
            .then_some(Reason::MatchSymbolic),
        (AtomVal::Text, AtomVal::Text) => text_eq(&p.text, &g.text).then_some(Reason::MatchExact),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bases() {
        assert_eq!(base_number("4210_{5}"), Some(("4210".into(), "5".into())));
    }
}
