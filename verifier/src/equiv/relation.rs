//! Relations: `x \le 2`, `a < b \le c`, `x \ne 5` (after normalisation the
//! operators are `<`, `>`, `\le`, `\ge`, `\ne`): splitting a chain into sides
//! and operators, and comparing chains as written, read from the right
//! (`2 \ge x` is `x \le 2`), or, on one variable, as the interval they
//! describe (`x \le 2` is `(-\infty, 2]`).
//!
//! Owns: relation operators and their comparison rules. Must not know: how
//! sides are valued (they are compared as answer trees) or extraction.

use super::atom::Atom;
use super::compare::compare_ordered;
use super::structure::{simple_var, Ans, Kind, MAX_ITEMS};
use super::Ctx;
use crate::normalize::{SET_CLOSE, SET_OPEN};
use crate::Reason;

/// A relation between two sides (after normalisation: `<`, `>`, `\le`, `\ge`, `\ne`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RelOp {
    Lt,
    Le,
    Gt,
    Ge,
    Ne,
}

impl RelOp {
    /// The operator with its sides swapped: `a < b` is `b > a`.
    pub(super) fn flipped(self) -> RelOp {
        match self {
            RelOp::Lt => RelOp::Gt,
            RelOp::Le => RelOp::Ge,
            RelOp::Gt => RelOp::Lt,
            RelOp::Ge => RelOp::Le,
            RelOp::Ne => RelOp::Ne,
        }
    }
}

/// Top-level relations `a < b \le c`: the sides and the operators between
/// them (`None` when there is none, or a side is empty).
pub(super) fn split_relations(text: &str) -> Option<(Vec<&str>, Vec<RelOp>)> {
    let bytes = text.as_bytes();
    let (mut sides, mut ops) = (Vec::new(), Vec::new());
    let (mut depth, mut side_start, mut pos) = (0i32, 0usize, 0usize);
    let (mut open_buf, mut close_buf) = ([0u8; 4], [0u8; 4]);
    let set_open = SET_OPEN.encode_utf8(&mut open_buf).as_bytes();
    let set_close = SET_CLOSE.encode_utf8(&mut close_buf).as_bytes();
    while pos < bytes.len() {
        let op = match bytes[pos] {
            b'(' | b'[' | b'{' => {
                depth += 1;
                None
            }
            b')' | b']' | b'}' => {
                depth -= 1;
                None
            }
            _ if bytes[pos..].starts_with(set_open) => {
                depth += 1;
                pos += set_open.len() - 1;
                None
            }
            _ if bytes[pos..].starts_with(set_close) => {
                depth -= 1;
                pos += set_close.len() - 1;
                None
            }
            b'<' if depth == 0 => Some((RelOp::Lt, 1)),
            b'>' if depth == 0 => Some((RelOp::Gt, 1)),
            b'\\' if depth == 0 => relation_command(&bytes[pos + 1..]).map(|op| (op, 3)),
            _ => None,
        };
        match op {
            Some((op, len)) => {
                sides.push(text[side_start..pos].trim());
                ops.push(op);
                pos += len;
                side_start = pos;
            }
            None => pos += 1,
        }
        if ops.len() > MAX_ITEMS {
            return None;
        }
    }
    sides.push(text[side_start..].trim());
    (!ops.is_empty() && sides.iter().all(|side| !side.is_empty())).then_some((sides, ops))
}

/// `le`, `ge`, `ne` (the normalised relation commands) after a backslash.
fn relation_command(after_backslash: &[u8]) -> Option<RelOp> {
    let op = match after_backslash.get(..2)? {
        b"le" => RelOp::Le,
        b"ge" => RelOp::Ge,
        b"ne" => RelOp::Ne,
        _ => return None,
    };
    let glued = after_backslash.get(2).is_some_and(u8::is_ascii_alphabetic);
    (!glued).then_some(op)
}

/// `a < b \le c` against the same chain, or against it read from the right
/// (`2 \ge x` is `x \le 2`).
pub(super) fn compare_relations(
    pred_sides: &[Ans],
    pred_ops: &[RelOp],
    gold_sides: &[Ans],
    gold_ops: &[RelOp],
    cx: &Ctx,
) -> Option<Reason> {
    if pred_ops == gold_ops {
        if let Some(reason) = compare_ordered(pred_sides, gold_sides, cx) {
            return Some(reason);
        }
    }
    let flipped: Vec<RelOp> = pred_ops.iter().rev().map(|op| op.flipped()).collect();
    if flipped != gold_ops {
        return None;
    }
    let reversed: Vec<Ans> = pred_sides.iter().rev().cloned().collect();
    compare_ordered(&reversed, gold_sides, cx)
}

/// A relation on one variable as the interval it describes: `x \le 2` is
/// `(-\infty, 2]`, `1 < x \le 3` is `(1, 3]`.
pub(super) fn rel_as_interval(sides: &[Ans], ops: &[RelOp]) -> Option<Ans> {
    let is_var = |side: &Ans| matches!(side, Ans::Atom(a) if simple_var(&a.text));
    let infinity =
        |negative: bool| Ans::Atom(Atom::new(if negative { "-\\infty" } else { "\\infty" }));
    // Read every relation as `lower (<|\le) upper`.
    let ascending = |op: RelOp| match op {
        RelOp::Lt | RelOp::Le => Some(op),
        RelOp::Gt | RelOp::Ge => Some(op.flipped()),
        RelOp::Ne => None,
    };
    let (lower, lower_op, upper_op, upper) = match (sides, ops) {
        ([x, bound], [op]) if is_var(x) => match op {
            RelOp::Lt | RelOp::Le => (infinity(true), RelOp::Lt, *op, bound.clone()),
            RelOp::Gt | RelOp::Ge => (bound.clone(), op.flipped(), RelOp::Lt, infinity(false)),
            RelOp::Ne => return None,
        },
        ([bound, x], [op]) if is_var(x) => {
            return rel_as_interval(&[x.clone(), bound.clone()], &[op.flipped()])
        }
        ([a, x, b], [first_op, second_op]) if is_var(x) => {
            let (op1, op2) = (ascending(*first_op)?, ascending(*second_op)?);
            if (op1 == *first_op) != (op2 == *second_op) {
                return None; // `1 < x > 0` is no interval.
            }
            if op1 == *first_op {
                (a.clone(), op1, op2, b.clone())
            } else {
                // `3 > x > 1`: read from the right.
                (b.clone(), op2, op1, a.clone())
            }
        }
        _ => return None,
    };
    let open = if lower_op == RelOp::Le { b'[' } else { b'(' };
    let close = if upper_op == RelOp::Le { b']' } else { b')' };
    Some(Ans::Seq(Kind::Paren(open, close), vec![lower, upper]))
}
