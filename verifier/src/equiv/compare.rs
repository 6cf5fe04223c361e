//! Comparing two answer trees: ordered for tuples, intervals and matrices,
//! unordered for sets, bare lists and unions, `y = f` against `f`, equations
//! up to a constant factor, vectors against matrices.
//!
//! Owns: which shapes may match which, and the combined reason. Must not
//! know: how text becomes a tree, or how atoms are valued.

use super::atom::{compare_atoms, Atom};
use super::relation::{compare_relations, rel_as_interval};
use super::structure::{names_a_quantity, simple_var, Ans, Kind};
use super::{combine, compact_eq, Ctx};
use crate::expr;
use crate::Reason;

/// Compare a predicted tree with a gold tree.
pub(super) fn compare(pred: &Ans, gold: &Ans, cx: &Ctx) -> Option<Reason> {
    use Ans::*;
    match (pred, gold) {
        (Atom(p), Atom(g)) => compare_atoms(p, g, cx),
        (Eq(pred_lhs, pred_rhs), Eq(gold_lhs, gold_rhs)) => {
            if simple_var(pred_lhs) && simple_var(gold_lhs) && compact_eq(pred_lhs, gold_lhs) {
                // `y = f` and `y = g`: equal exactly when f and g are.
                return compare(pred_rhs, gold_rhs, cx);
            }
            equation_proportional(pred_lhs, pred_rhs, gold_lhs, gold_rhs, cx)
        }
        // `k = 1/3`, `a + b = 7`, `x = 3 + 4 = 7` against a value: the value is
        // the last side, except `... = 0` in variables (an equation in its
        // usual form, not a value). A gold equation only gives way to its value
        // when it names a quantity (`y = 2x + 3` is `2x + 3`, `|AB| = 1` is
        // `1`, `x^2 + y^2 = 1` is not `1`).
        (Eq(lhs, rhs), _) if !equation_form(lhs, rhs) => compare(rhs, gold, cx),
        (Eq(..), _) => None,
        (_, Eq(lhs, rhs)) if names_a_quantity(lhs) => compare(pred, rhs, cx),
        (Rel(pred_sides, pred_ops), Rel(gold_sides, gold_ops)) => {
            compare_relations(pred_sides, pred_ops, gold_sides, gold_ops, cx)
        }
        (Rel(sides, ops), Seq(Kind::Paren(..), _)) => {
            compare(&rel_as_interval(sides, ops)?, gold, cx)
        }
        (Seq(Kind::Paren(..), _), Rel(sides, ops)) => {
            compare(pred, &rel_as_interval(sides, ops)?, cx)
        }
        (Seq(pred_kind, pred_items), Seq(gold_kind, gold_items)) => {
            compare_seqs(*pred_kind, pred_items, *gold_kind, gold_items, cx)
        }
        (Seq(Kind::Set, items), Atom(_)) if items.len() == 1 => compare(&items[0], gold, cx),
        (Atom(_), Seq(Kind::Set, items)) if items.len() == 1 => compare(pred, &items[0], cx),
        // `15\frac{39}{40}, or \frac{639}{40}`: one value written several ways.
        (Seq(Kind::Bare, items), Atom(_)) => all_the_same(items, gold, cx),
        (Atom(_), Seq(Kind::Bare, items)) => all_the_same(items, pred, cx),
        (Union(pred_parts), Union(gold_parts)) => compare_unordered(pred_parts, gold_parts, cx),
        (Matrix(pred_rows), Matrix(gold_rows)) => {
            pairwise(pred_rows, gold_rows, |p, g| compare_ordered(p, g, cx))
        }
        (Matrix(rows), Seq(kind, items)) | (Seq(kind, items), Matrix(rows)) => match kind {
            Kind::Paren(b'(', b')') | Kind::Bare => compare_ordered(&flat_vector(rows)?, items, cx),
            _ => None,
        },
        _ => None,
    }
}

/// Every item of a listed answer is the one value `other` (a value written
/// several ways, not several values).
fn all_the_same(items: &[Ans], other: &Ans, cx: &Ctx) -> Option<Reason> {
    let mut reason = Reason::MatchExact;
    for item in items {
        reason = combine(reason, compare(item, other, cx)?);
    }
    Some(reason)
}

/// `5x - 7y + 11z + 4 = 0`: an equation set to zero, not a value.
fn equation_form(lhs: &str, rhs: &Ans) -> bool {
    let zero = matches!(rhs, Ans::Atom(a) if a.text.trim() == "0");
    zero && !simple_var(lhs) && lhs.bytes().any(|c| c.is_ascii_alphabetic())
}

/// Tuples and intervals need the same brackets; a bare list matches a tuple
/// in order and a set in any order.
fn compare_seqs(
    pred_kind: Kind,
    pred_items: &[Ans],
    gold_kind: Kind,
    gold_items: &[Ans],
    cx: &Ctx,
) -> Option<Reason> {
    match (pred_kind, gold_kind) {
        (Kind::Paren(..), Kind::Paren(..)) if pred_kind == gold_kind => {
            compare_ordered(pred_items, gold_items, cx)
        }
        (Kind::Paren(b'(', b')'), Kind::Bare) | (Kind::Bare, Kind::Paren(b'(', b')')) => {
            compare_ordered(pred_items, gold_items, cx)
        }
        (Kind::Set | Kind::Bare, Kind::Set | Kind::Bare) => {
            compare_unordered(pred_items, gold_items, cx)
        }
        _ => None,
    }
}

/// Item k against item k, all of them; the weakest reason of the pairs.
fn pairwise<T>(
    pred: &[T],
    gold: &[T],
    mut same: impl FnMut(&T, &T) -> Option<Reason>,
) -> Option<Reason> {
    if pred.len() != gold.len() {
        return None;
    }
    let mut reason = Reason::MatchExact;
    for (p, g) in pred.iter().zip(gold) {
        reason = combine(reason, same(p, g)?);
    }
    Some(reason)
}

pub(super) fn compare_ordered(pred: &[Ans], gold: &[Ans], cx: &Ctx) -> Option<Reason> {
    pairwise(pred, gold, |p, g| compare(p, g, cx))
}

/// Every predicted item matches a distinct gold item (greedy, first match).
fn compare_unordered(pred: &[Ans], gold: &[Ans], cx: &Ctx) -> Option<Reason> {
    if pred.len() != gold.len() {
        return None;
    }
    let mut used = vec![false; gold.len()];
    let mut reason = Reason::MatchExact;
    for p in pred {
        let (slot, item_reason) = gold
            .iter()
            .enumerate()
            .filter(|(slot, _)| !used[*slot])
            .find_map(|(slot, g)| compare(p, g, cx).map(|r| (slot, r)))?;
        used[slot] = true;
        reason = combine(reason, item_reason);
    }
    Some(reason)
}

/// A one-row or one-column matrix as a vector.
fn flat_vector(rows: &[Vec<Ans>]) -> Option<Vec<Ans>> {
    if rows.len() == 1 {
        Some(rows[0].clone())
    } else if rows.iter().all(|r| r.len() == 1) {
        Some(rows.iter().map(|r| r[0].clone()).collect())
    } else {
        None
    }
}

/// `lhs = rhs` equations equal up to a constant non-zero factor.
fn equation_proportional(
    pred_lhs: &str,
    pred_rhs: &Ans,
    gold_lhs: &str,
    gold_rhs: &Ans,
    cx: &Ctx,
) -> Option<Reason> {
    let (Ans::Atom(Atom { text: pred_rhs, .. }), Ans::Atom(Atom { text: gold_rhs, .. })) =
        (pred_rhs, gold_rhs)
    else {
        return None;
    };
    // Parsing four sides costs more than comparing two cached atoms.
    if !cx.spend(16) {
        return None;
    }
    let pred = expr::difference(expr::parse(pred_lhs).ok()?, expr::parse(pred_rhs).ok()?);
    let gold = expr::difference(expr::parse(gold_lhs).ok()?, expr::parse(gold_rhs).ok()?);
    expr::proportional(&pred, &gold, cx.cfg.rel_tol).then_some(Reason::MatchSymbolic)
}
