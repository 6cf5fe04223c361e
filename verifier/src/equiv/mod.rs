//! Equivalence of two answers: structure first (tuples, intervals, sets,
//! unions, matrices, equations, `\pm`), then atoms (exact text, plain numbers,
//! mixed numbers, expressions evaluated at sample points, words).
//!
//! Owns: the entry points and the budget shared by one comparison. Must not
//! know: extraction from completions, or rewards.

use std::cell::Cell;

mod atom;
mod choice;
mod compare;
mod plain_number;
mod relation;
mod structure;

use crate::normalize::normalize;
use crate::{Reason, VerifierConfig};

/// Most atom comparisons for one pair of answers.
const MAX_ATOM_COMPARISONS: u32 = 4096;

fn rank(r: Reason) -> u8 {
    match r {
        Reason::MatchExact => 0,
        Reason::MatchChoice => 1,
        Reason::MatchNumeric => 2,
        Reason::MatchSymbolic => 3,
        _ => 4,
    }
}

pub(super) fn combine(a: Reason, b: Reason) -> Reason {
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

pub(super) struct Ctx<'a> {
    pub(super) cfg: &'a VerifierConfig,
    budget: Cell<u32>,
    /// Refuse a computation for a gold number (see [`verdict`]).
    pub(super) numbers_written_out: bool,
    /// Set when a comparison was refused for that reason.
    pub(super) refused_computation: &'a Cell<bool>,
}

impl Ctx<'_> {
    pub(super) fn spend(&self, cost: u32) -> bool {
        let b = self.budget.get();
        if b < cost {
            self.budget.set(0);
            return false;
        }
        self.budget.set(b - cost);
        true
    }
}

pub(super) fn compact_eq(a: &str, b: &str) -> bool {
    let mut x = a.chars().filter(|c| !c.is_whitespace());
    let mut y = b.chars().filter(|c| !c.is_whitespace());
    loop {
        match (x.next(), y.next()) {
            (None, None) => return true,
            (Some(c), Some(d)) if c == d => {}
            _ => return false,
        }
    }
}

/// Is `pred` equivalent to `gold`? `Some(reason)` with a `match_*` reason, or `None`.
pub fn is_equivalent(pred: &str, gold: &str, cfg: &VerifierConfig) -> Option<Reason> {
    if pred.trim().len() > cfg.max_answer_bytes || gold.trim().len() > cfg.max_answer_bytes {
        return None; // Too long to compare: never equivalent.
    }
    let p = normalize(pred, cfg.max_answer_bytes);
    let g = normalize(gold, cfg.max_answer_bytes);
    Some(verdict(&p, &g, cfg)).filter(|r| r.is_match())
}

/// The verdict on two normalised answers: a `match_*` reason, `Unevaluated`
/// or `Mismatch`.
///
/// Where the gold answer is a number written out (`42`, `-3.5`, `\frac{10}{9}`,
/// `2 \frac{1}{2}`, `1.5 \times 10^{3}`), the prediction must be one too: a
/// computation with the gold's value (`12 + 30`, `3 * 4 + 5`, `84 \div 2`,
/// `2^{10}`, `5!`, `\sqrt{16}`) is `Unevaluated`, not a match, unless
/// `accept_unevaluated` is set. The value after a last `=` is the answer, so
/// `12 + 30 = 42` is 42. Golds that are expressions are compared by value.
pub(crate) fn verdict(p: &str, g: &str, cfg: &VerifierConfig) -> Reason {
    let refused = Cell::new(false);
    if let Some(r) = equivalent_normalized(p, g, cfg, !cfg.accept_unevaluated, &refused) {
        return r;
    }
    // Refused somewhere: was that what kept the answers apart?
    if refused.get() && equivalent_normalized(p, g, cfg, false, &Cell::new(false)).is_some() {
        return Reason::Unevaluated;
    }
    Reason::Mismatch
}

fn equivalent_normalized(
    p: &str,
    g: &str,
    cfg: &VerifierConfig,
    numbers_written_out: bool,
    refused_computation: &Cell<bool>,
) -> Option<Reason> {
    if p.is_empty() || g.is_empty() {
        return None;
    }
    if compact_eq(p, g) {
        return Some(Reason::MatchExact);
    }
    let again = |p: &str, g: &str| {
        equivalent_normalized(p, g, cfg, numbers_written_out, refused_computation)
    };
    if let Some(decimal) = decimal_comma(p) {
        if plain_number(g) {
            return again(&decimal, g);
        }
    }
    // A gold `1,22` against a predicted `1.22` (a decimal point).
    if let Some(decimal) = decimal_comma(g) {
        if plain_number(p) && p.contains('.') {
            return again(p, &decimal);
        }
    }
    if let Some(gc) = choice::choice_letter(g, true) {
        if let Some(pc) = choice::choice_letter(p, false) {
            return (pc == gc).then_some(Reason::MatchChoice);
        }
    }
    let cx = Ctx {
        cfg,
        budget: Cell::new(MAX_ATOM_COMPARISONS),
        numbers_written_out,
        refused_computation,
    };
    let pa = structure::parse_struct(p, 0);
    let ga = structure::parse_struct(g, 0);
    compare::compare(&pa, &ga, &cx)
}

/// A number written with a decimal comma (`1,22`, `2,74 m`): the same text
/// with a decimal point. It is read so only against a plain number (a
/// predicted `1,22` against `1.22`; a gold `1,22` against a predicted decimal
/// `1.22`); against anything else (`6 and 8`) it stays a list. Groups of
/// three, `1,234`, were already read as thousands by normalisation.
fn decimal_comma(pred: &str) -> Option<String> {
    let bytes = pred.as_bytes();
    let sign = usize::from(matches!(bytes.first(), Some(b'-' | b'+')));
    let int_end = sign
        + bytes[sign..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
    if int_end == sign || bytes.get(int_end) != Some(&b',') {
        return None;
    }
    let frac_end = int_end
        + 1
        + bytes[int_end + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
    let rest = &pred[frac_end..];
    if frac_end == int_end + 1 || !(rest.is_empty() || rest.starts_with(' ')) || rest.contains(',')
    {
        return None;
    }
    Some(format!("{}.{}", &pred[..int_end], &pred[int_end + 1..]))
}

/// `12`, `-1.5`, `1.5 m`: a decimal literal, possibly followed by one word.
fn plain_number(s: &str) -> bool {
    let mut words = s.split(' ');
    let number = words.next().unwrap_or("");
    let unit_ok = match (words.next(), words.next()) {
        (None, _) => true,
        (Some(word), None) => {
            word.bytes().all(|c| c.is_ascii_alphabetic()) && !matches!(word, "and" | "or")
        }
        _ => false,
    };
    unit_ok && crate::num::parse_decimal(number).is_some()
}
