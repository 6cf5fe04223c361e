//! Numbers written out versus computations: `42`, `-3.5`, `\frac{-3}{8}`,
//! `(7)` and scientific notation (`1.5 * 10^{3}`, `10^{36}`) are a value as
//! written; `12 + 30`, `3 * 4`, `2^{10}`, `5!`, `\sqrt{16}`, `|-3|` are
//! operations still to be carried out.
//!
//! Owns: which tree shapes are a number written out. Must not know: how the
//! text was spelled beyond the tree (`\div` against a fraction bar is told
//! apart by the caller), values, or answer structure.

use super::{Expr, Node};
use crate::num::Val;

/// Is this variable-free expression a number written out (a literal, a
/// fraction of two literals, scientific notation, each with an optional
/// sign), rather than a computation?
pub(crate) fn written_out(e: &Expr) -> bool {
    e.vars.is_empty()
        && match &e.root {
            Node::Neg(inner) => unsigned(inner),
            root => unsigned(root),
        }
}

fn unsigned(n: &Node) -> bool {
    match n {
        Node::Num(_) | Node::Literal { .. } => true,
        // `\frac{-3}{8}`, `3/4` (a fraction bar between two literals).
        Node::Div(a, b) => signed_literal(a) && signed_literal(b),
        // `2.5 * 10^{3}`
        Node::Mul(mantissa, power) => signed_literal(mantissa) && power_of_ten(power),
        // `10^{36}`
        Node::Pow(..) => power_of_ten(n),
        _ => false,
    }
}

fn literal(n: &Node) -> bool {
    matches!(n, Node::Num(_) | Node::Literal { .. })
}

fn signed_literal(n: &Node) -> bool {
    match n {
        Node::Neg(inner) => literal(inner),
        other => literal(other),
    }
}

/// `10^{k}` for an integer `k` (of either sign).
fn power_of_ten(n: &Node) -> bool {
    let Node::Pow(base, exponent) = n else {
        return false;
    };
    let ten = matches!(**base, Node::Num(Val::Q(q)) if q.is_int() && q.n == 10);
    let integer = |x: &Node| matches!(x, Node::Num(Val::Q(q)) if q.is_int());
    let exponent_ok = match &**exponent {
        Node::Neg(inner) => integer(inner),
        other => integer(other),
    };
    ten && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::parse;

    fn out(s: &str) -> bool {
        written_out(&parse(s).expect("parses"))
    }

    #[test]
    fn numbers_and_computations() {
        for s in [
            "42",
            "-3.5",
            "(7)",
            "\\frac{-3}{8}",
            "3/-4",
            "2.5 * 10^{3}",
            "-6.72 * 10^{-5}",
            "10^{36}",
            "1.5e3",
        ] {
            assert!(out(s), "{s} is a number written out");
        }
        for s in [
            "12 + 30",
            "12+30",
            "50 - 8",
            "3 * 4 + 5",
            "6 * 7",
            "(6)(7)",
            "2^{10}",
            "42^1",
            "5!",
            "\\sqrt{16}",
            "\\binom{5}{2}",
            "|-3|",
            "\\frac{84}{2} + 0",
            "\\frac{12+30}{1}",
            "--42",
            "2 * 10^{1.5}",
            "\\pi",
            "x",
        ] {
            assert!(!out(s), "{s} is a computation");
        }
    }
}
