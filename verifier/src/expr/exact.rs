//! Exact evaluation of integer expressions (`10^{40}+1`, `2^{200}`, `30!`,
//! a 60-digit literal) for comparisons that `f64` cannot decide.
//!
//! Owns: which nodes have an exact integer value. Must not know: sampling,
//! tolerances, or answer structure. Anything that is not an integer built
//! from integers with `+ - * ^ ! |.|` has no exact value here (`None`).

use super::{Expr, Node};
use crate::num::{BigInt, Val};

/// Largest `n` of an exactly evaluated `n!` (1000! has 2,568 digits).
const MAX_EXACT_FACTORIAL: u64 = 1000;

/// The exact integer value of a variable-free expression, if it has one that
/// the integer operations reach.
pub(crate) fn exact_integer(e: &Expr) -> Option<BigInt> {
    if !e.vars.is_empty() {
        return None;
    }
    exact_node(&e.root)
}

fn exact_node(node: &Node) -> Option<BigInt> {
    match node {
        Node::Num(Val::Q(q)) if q.is_int() => Some(BigInt::from_i128(q.n)),
        Node::Literal { int, frac, exp } => literal_integer(int, frac, *exp),
        Node::Neg(a) => Some(exact_node(a)?.neg()),
        Node::Abs(a) => Some(exact_node(a)?.abs()),
        Node::Add(a, b) => exact_node(a)?.add(&exact_node(b)?),
        Node::Sub(a, b) => exact_node(a)?.sub(&exact_node(b)?),
        Node::Mul(a, b) => exact_node(a)?.mul(&exact_node(b)?),
        Node::Pow(base, exponent) => {
            let exponent = exact_node(exponent)?.to_small(u64::MAX)?;
            exact_node(base)?.pow(exponent)
        }
        Node::Fact(a) => {
            let n = exact_node(a)?.to_small(MAX_EXACT_FACTORIAL)?;
            (2..=n).try_fold(BigInt::from_i128(1), |acc, k| acc.mul_small(k as u32))
        }
        _ => None,
    }
}

/// `int.frac * 10^exp` when it is an integer.
fn literal_integer(int: &str, frac: &str, exp: i64) -> Option<BigInt> {
    let frac = frac.trim_end_matches('0');
    let zeros = exp.checked_sub(i64::try_from(frac.len()).ok()?)?;
    if zeros < 0 {
        return None;
    }
    let digits = format!("{int}{frac}");
    BigInt::from_digits(&digits)?.shifted(u64::try_from(zeros).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::parse;

    fn exact(s: &str) -> Option<BigInt> {
        exact_integer(&parse(s).expect("parses"))
    }

    #[test]
    fn integers() {
        let ten36 = exact("10^{36}").expect("exact");
        assert_eq!(exact("1000000000000000000000000000000000000"), Some(ten36));
        assert_ne!(exact("10^{40}"), exact("10^{40}+1"));
        assert_eq!(exact("10^{40}"), exact("1e40"));
        assert_eq!(
            exact("2^{200}"),
            exact("1606938044258990275541962092341162602522202993782792835301376")
        );
        assert_eq!(exact("30!"), exact("265252859812191058636308480000000"));
        assert_eq!(exact("\\frac{1}{2}"), None);
        assert_eq!(exact("10^{10^{10}}"), None);
        assert_eq!(exact("2^{-3}"), None);
    }
}
