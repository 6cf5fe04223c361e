//! Numbers: exact rationals over `i128` with checked arithmetic, a small complex
//! type for everything else, decimal literals, and the comparison rule between
//! values.
//!
//! Nothing here allocates or loops more than a bounded number of times: powers
//! are exact only for small exponents, everything else goes through `f64`, and
//! an `f64` operation that overflows from finite inputs becomes NaN (never equal
//! to anything), so `10^{10^{10}}` or `1e999999` cannot compare equal to another
//! huge number by both being "infinity".
//!
//! Owns: arithmetic on values and the rule for when two values are equal. Must
//! not know: how answers are written (LaTeX, units, structure) or extracted.

mod bigint;
mod combinatorics;
mod complex;
mod decimal;
mod rat;
mod val;

pub(crate) use bigint::BigInt;
pub(crate) use complex::Cx;
pub(crate) use decimal::{decimal_value, parse_decimal, scan_decimal};
pub(crate) use rat::Rat;
pub(crate) use val::{cx_close, vals_equal, Val};
