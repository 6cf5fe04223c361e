//! Expressions: the tree of a parsed (normalised) LaTeX / plain-text formula
//! and the functions it may call. Parsing, evaluation and sampling live in the
//! submodules.
//!
//! Supported: `+ - * / ^`, implicit multiplication, `\frac`, `\sqrt[n]{}`,
//! `\binom`, `!`, `|x|`, `\pi`, `e`, `i`, `\infty`, trig/log functions, and
//! variables (single letters with optional subscripts, Greek letters).
//!
//! Bounded: recursion depth and node count are capped, every loop advances the
//! input, and evaluation is a single walk over the tree per point.
//!
//! Owns: the expression tree and variable numbering. Must not know: answer
//! structure (tuples, sets, equations between answers), units, extraction, or
//! how values compare beyond `num`.

mod commands;
mod eval;
mod exact;
mod notation;
mod parser;
mod sample;

pub(crate) use exact::exact_integer;
pub(crate) use notation::written_out;
pub(crate) use parser::parse;
pub(crate) use sample::{difference, proportional, sample_values, samples_equal};

use crate::num::Val;

/// Most nodes in one parsed expression.
const MAX_NODES: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Func {
    Sin,
    Cos,
    Tan,
    Cot,
    Sec,
    Csc,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Tanh,
    Ln,
    Log10,
    Exp,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Node {
    Num(Val),
    /// A decimal literal too long to be exact as a `Val` (kept as its digits so
    /// that integers can still be compared exactly): `int.frac * 10^exp`.
    Literal {
        int: Box<str>,
        frac: Box<str>,
        exp: i64,
    },
    Var(usize),
    Pi,
    E,
    I,
    Inf,
    Neg(Box<Node>),
    Add(Box<Node>, Box<Node>),
    Sub(Box<Node>, Box<Node>),
    Mul(Box<Node>, Box<Node>),
    Div(Box<Node>, Box<Node>),
    Pow(Box<Node>, Box<Node>),
    Root(Box<Node>, Box<Node>),
    Sqrt(Box<Node>),
    Fact(Box<Node>),
    Abs(Box<Node>),
    Binom(Box<Node>, Box<Node>),
    Fn(Func, Box<Node>),
    LogBase(Box<Node>, Box<Node>),
}

/// A parsed expression and the names of its free variables (sorted, unique).
#[derive(Clone, Debug)]
pub(crate) struct Expr {
    pub root: Node,
    pub vars: Vec<String>,
}

const GREEK: &[&str] = &[
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "varepsilon",
    "zeta",
    "eta",
    "theta",
    "vartheta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "rho",
    "sigma",
    "tau",
    "upsilon",
    "phi",
    "varphi",
    "chi",
    "psi",
    "omega",
    "Gamma",
    "Delta",
    "Theta",
    "Lambda",
    "Xi",
    "Sigma",
    "Phi",
    "Psi",
    "Omega",
];

fn func_by_name(name: &str) -> Option<Func> {
    Some(match name {
        "sin" => Func::Sin,
        "cos" => Func::Cos,
        "tan" => Func::Tan,
        "cot" => Func::Cot,
        "sec" => Func::Sec,
        "csc" => Func::Csc,
        "arcsin" => Func::Asin,
        "arccos" => Func::Acos,
        "arctan" => Func::Atan,
        "sinh" => Func::Sinh,
        "cosh" => Func::Cosh,
        "tanh" => Func::Tanh,
        "ln" => Func::Ln,
        "log" => Func::Log10,
        "exp" => Func::Exp,
        _ => return None,
    })
}

fn remap(n: Node, from: &[String], to: &[String]) -> Node {
    let map: Vec<usize> = from
        .iter()
        .map(|name| to.iter().position(|t| t == name).unwrap_or(0))
        .collect();
    remap_node(n, &map)
}

fn remap_node(n: Node, map: &[usize]) -> Node {
    let b = |x: Box<Node>| Box::new(remap_node(*x, map));
    match n {
        Node::Var(k) => Node::Var(map.get(k).copied().unwrap_or(k)),
        Node::Neg(a) => Node::Neg(b(a)),
        Node::Add(x, y) => Node::Add(b(x), b(y)),
        Node::Sub(x, y) => Node::Sub(b(x), b(y)),
        Node::Mul(x, y) => Node::Mul(b(x), b(y)),
        Node::Div(x, y) => Node::Div(b(x), b(y)),
        Node::Pow(x, y) => Node::Pow(b(x), b(y)),
        Node::Root(x, y) => Node::Root(b(x), b(y)),
        Node::Sqrt(a) => Node::Sqrt(b(a)),
        Node::Fact(a) => Node::Fact(b(a)),
        Node::Abs(a) => Node::Abs(b(a)),
        Node::Binom(x, y) => Node::Binom(b(x), b(y)),
        Node::Fn(f, a) => Node::Fn(f, b(a)),
        Node::LogBase(x, y) => Node::LogBase(b(x), b(y)),
        other => other,
    }
}
