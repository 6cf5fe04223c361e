//! Evaluation of an expression tree at given variable values.
//!
//! Owns: the meaning of each node as a value. Must not know: parsing or how
//! sample points are chosen.

use super::{Expr, Func, Node, MAX_NODES};
use crate::num::{Cx, Val};

impl Expr {
    /// Evaluate with `values[k]` bound to `self.vars[k]`. Never panics;
    /// undefined results are NaN.
    pub fn eval(&self, values: &[Cx]) -> Val {
        eval_node(&self.root, values, 0)
    }
}

fn eval_node(node: &Node, vals: &[Cx], depth: usize) -> Val {
    if depth > MAX_NODES + 8 {
        return Val::C(Cx::NAN);
    }
    let eval_child = |m: &Node| eval_node(m, vals, depth + 1);
    match node {
        Node::Num(v) => *v,
        Node::Literal { int, frac, exp } => crate::num::decimal_value(int, frac, *exp),
        Node::Var(k) => Val::C(vals.get(*k).copied().unwrap_or(Cx::NAN)),
        Node::Pi => Val::C(Cx::real(std::f64::consts::PI)),
        Node::E => Val::C(Cx::real(std::f64::consts::E)),
        Node::I => Val::C(Cx { re: 0.0, im: 1.0 }),
        Node::Inf => Val::C(Cx::real(f64::INFINITY)),
        Node::Neg(a) => eval_child(a).neg(),
        Node::Add(a, b) => eval_child(a).add(eval_child(b)),
        Node::Sub(a, b) => eval_child(a).sub(eval_child(b)),
        Node::Mul(a, b) => eval_child(a).mul(eval_child(b)),
        Node::Div(a, b) => eval_child(a).div(eval_child(b)),
        Node::Pow(a, b) => eval_child(a).pow(eval_child(b)),
        Node::Root(x, k) => eval_child(x).root(eval_child(k)),
        Node::Sqrt(a) => eval_child(a).sqrt(),
        Node::Fact(a) => eval_child(a).factorial(),
        Node::Abs(a) => eval_child(a).abs(),
        Node::Binom(a, b) => eval_child(a).binom(eval_child(b)),
        Node::LogBase(b, x) => {
            let (b, x) = (eval_child(b).cx(), eval_child(x).cx());
            Val::C(x.ln().div(b.ln()))
        }
        Node::Fn(f, a) => {
            let v = eval_child(a);
            match f {
                Func::Sin => v.map(|z| z.sin()),
                Func::Cos => v.map(|z| z.cos()),
                Func::Tan => v.map(|z| z.sin().div(z.cos())),
                Func::Cot => v.map(|z| z.cos().div(z.sin())),
                Func::Sec => v.map(|z| Cx::real(1.0).div(z.cos())),
                Func::Csc => v.map(|z| Cx::real(1.0).div(z.sin())),
                Func::Asin => v.map(|z| z.real_fn(f64::asin)),
                Func::Acos => v.map(|z| z.real_fn(f64::acos)),
                Func::Atan => v.map(|z| z.real_fn(f64::atan)),
                Func::Sinh => v.map(|z| z.real_fn(f64::sinh)),
                Func::Cosh => v.map(|z| z.real_fn(f64::cosh)),
                Func::Tanh => v.map(|z| z.real_fn(f64::tanh)),
                Func::Ln => v.map(|z| z.ln()),
                Func::Log10 => v.map(|z| z.ln().div(Cx::real(std::f64::consts::LN_10))),
                Func::Exp => v.map(|z| z.exp()),
            }
        }
    }
}
