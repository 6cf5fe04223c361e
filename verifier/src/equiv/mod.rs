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
    let p = normalize(pred, cfg.max_answer_bytes);
    let g = normalize(gold, cfg.max_answer_bytes);
    equivalent_normalized(&p, &g, cfg)
}

pub(crate) fn equivalent_normalized(p: &str, g: &str, cfg: &VerifierConfig) -> Option<Reason> {
    if p.is_empty() || g.is_empty() {
        return None;
    }
    if compact_eq(p, g) {
        return Some(Reason::MatchExact);
    }
    if let Some(gc) = choice::choice_letter(g, true) {
        if let Some(pc) = choice::choice_letter(p, false) {
            return (pc == gc).then_some(Reason::MatchChoice);
        }
    }
    let cx = Ctx {
        cfg,
        budget: Cell::new(MAX_ATOM_COMPARISONS),
    };
    let pa = structure::parse_struct(p, 0);
    let ga = structure::parse_struct(g, 0);
    compare::compare(&pa, &ga, &cx)
}
