//! A small expression parser and evaluator for (normalised) LaTeX / plain-text
//! math: `+ - * / ^`, implicit multiplication, `\frac`, `\sqrt[n]{}`, `\binom`,
//! `!`, `|x|`, `\pi`, `e`, `i`, `\infty`, trig/log functions, and variables
//! (single letters with optional subscripts, Greek letters).
//!
//! Bounded: recursion depth and node count are capped, every loop advances the
//! input, and evaluation is a single walk over the tree per point.

use crate::error::ExprError;
use crate::num::{cx_close, Cx, Val};

const MAX_DEPTH: u32 = 200;
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

/// Commands that can start a primary (used for implicit multiplication).
fn is_primary_command(name: &str) -> bool {
    matches!(
        name,
        "frac" | "sqrt" | "binom" | "pi" | "infty" | "mathrm" | "operatorname"
    ) || func_by_name(name).is_some()
        || GREEK.contains(&name)
}

/// Words accepted without a backslash in plain-text answers.
fn plain_word(word: &str) -> bool {
    word == "pi" || word == "sqrt" || word == "inf" || func_by_name(word).is_some()
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    depth: u32,
    nodes: usize,
    vars: Vec<String>,
}

pub(crate) fn parse(src: &str) -> Result<Expr, ExprError> {
    let mut p = Parser {
        s: src.as_bytes(),
        pos: 0,
        depth: 0,
        nodes: 0,
        vars: Vec::new(),
    };
    let root = p.expr()?;
    p.ws();
    if p.pos != p.s.len() {
        return Err(ExprError::Trailing(p.pos));
    }
    let order = p.vars;
    let mut vars = order.clone();
    vars.sort();
    vars.dedup();
    let root = if order == vars {
        root
    } else {
        remap(root, &order, &vars)
    };
    Ok(Expr { root, vars })
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }
    fn peek_at(&self, k: usize) -> Option<u8> {
        self.s.get(self.pos + k).copied()
    }
    fn ws(&mut self) {
        while let Some(c) = self.peek() {
            if c == b' ' || c == b'\t' || c == b'\n' || c == b'\r' {
                self.pos += 1;
            } else {
                break;
            }
        }
    }
    fn enter(&mut self) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ExprError::TooDeep);
        }
        Ok(())
    }
    fn leave(&mut self) {
        self.depth -= 1;
    }
    fn node(&mut self, n: Node) -> Result<Node, ExprError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(ExprError::TooLarge);
        }
        Ok(n)
    }
    fn expect(&mut self, c: u8) -> Result<(), ExprError> {
        self.ws();
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(ExprError::Expected(c as char, self.pos))
        }
    }
    /// Command name at the current position (after a backslash), without consuming.
    fn command_at(&self, at: usize) -> &'a str {
        let s = self.s;
        if s.get(at) != Some(&b'\\') {
            return "";
        }
        let mut j = at + 1;
        while j < s.len() && s[j].is_ascii_alphabetic() {
            j += 1;
        }
        std::str::from_utf8(&s[at + 1..j]).unwrap_or("")
    }

    fn expr(&mut self) -> Result<Node, ExprError> {
        self.enter()?;
        let mut lhs = self.term()?;
        loop {
            self.ws();
            match self.peek() {
                Some(b'+') => {
                    self.pos += 1;
                    let rhs = self.term()?;
                    lhs = self.node(Node::Add(Box::new(lhs), Box::new(rhs)))?;
                }
                Some(b'-') => {
                    self.pos += 1;
                    let rhs = self.term()?;
                    lhs = self.node(Node::Sub(Box::new(lhs), Box::new(rhs)))?;
                }
                _ => break,
            }
        }
        self.leave();
        Ok(lhs)
    }

    fn starts_primary(&mut self) -> bool {
        self.ws();
        match self.peek() {
            Some(c) if c.is_ascii_digit() || c.is_ascii_alphabetic() => true,
            Some(b'.') => self.peek_at(1).is_some_and(|c| c.is_ascii_digit()),
            Some(b'(') | Some(b'[') | Some(b'{') => true,
            Some(b'\\') => is_primary_command(self.command_at(self.pos)),
            _ => false,
        }
    }

    fn term(&mut self) -> Result<Node, ExprError> {
        self.enter()?;
        let mut lhs = self.unary()?;
        loop {
            self.ws();
            match self.peek() {
                Some(b'*') => {
                    self.pos += 1;
                    let rhs = self.unary()?;
                    lhs = self.node(Node::Mul(Box::new(lhs), Box::new(rhs)))?;
                }
                Some(b'/') => {
                    self.pos += 1;
                    let rhs = self.unary()?;
                    lhs = self.node(Node::Div(Box::new(lhs), Box::new(rhs)))?;
                }
                _ if self.starts_primary() => {
                    let rhs = self.power()?;
                    lhs = self.node(Node::Mul(Box::new(lhs), Box::new(rhs)))?;
                }
                _ => break,
            }
        }
        self.leave();
        Ok(lhs)
    }

    fn unary(&mut self) -> Result<Node, ExprError> {
        self.enter()?;
        self.ws();
        let r = match self.peek() {
            Some(b'-') => {
                self.pos += 1;
                let inner = self.unary()?;
                self.node(Node::Neg(Box::new(inner)))
            }
            Some(b'+') => {
                self.pos += 1;
                self.unary()
            }
            _ => self.power(),
        };
        self.leave();
        r
    }

    fn power(&mut self) -> Result<Node, ExprError> {
        self.enter()?;
        let base = self.postfix()?;
        self.ws();
        let r = if self.peek() == Some(b'^') {
            self.pos += 1;
            let exp = self.unary()?;
            self.node(Node::Pow(Box::new(base), Box::new(exp)))
        } else {
            Ok(base)
        };
        self.leave();
        r
    }

    fn postfix(&mut self) -> Result<Node, ExprError> {
        let mut n = self.primary()?;
        loop {
            // No whitespace skipping: "5 !" is unusual, "5!" is factorial.
            if self.peek() == Some(b'!') && self.peek_at(1) != Some(b'=') {
                self.pos += 1;
                n = self.node(Node::Fact(Box::new(n)))?;
            } else {
                break;
            }
        }
        Ok(n)
    }

    fn group(&mut self, close: u8) -> Result<Node, ExprError> {
        self.pos += 1;
        let e = self.expr()?;
        self.expect(close)?;
        Ok(e)
    }

    fn primary(&mut self) -> Result<Node, ExprError> {
        self.enter()?;
        self.ws();
        let r = match self.peek() {
            None => Err(ExprError::UnexpectedEnd),
            Some(c) if c.is_ascii_digit() || c == b'.' => self.number(),
            Some(c) if c.is_ascii_alphabetic() => self.identifier(),
            Some(b'(') => self.group(b')'),
            Some(b'[') => self.group(b']'),
            Some(b'{') => self.group(b'}'),
            Some(b'|') => {
                let inner = self.group(b'|')?;
                self.node(Node::Abs(Box::new(inner)))
            }
            Some(b'\\') => self.command(),
            Some(c) => Err(ExprError::Unexpected(c as char, self.pos)),
        };
        self.leave();
        r
    }

    fn number(&mut self) -> Result<Node, ExprError> {
        let s = self.s;
        let start = self.pos;
        let mut i = self.pos;
        while i < s.len() && s[i].is_ascii_digit() {
            i += 1;
        }
        let int_end = i;
        let mut frac = (i, i);
        if i < s.len() && s[i] == b'.' && s.get(i + 1).is_some_and(|c| c.is_ascii_digit()) {
            let fs = i + 1;
            i = fs;
            while i < s.len() && s[i].is_ascii_digit() {
                i += 1;
            }
            frac = (fs, i);
        }
        if int_end == start && frac.0 == frac.1 {
            return Err(ExprError::Unexpected('.', start));
        }
        // Scientific notation: `1e5`, `2.5E-3` (an `e` followed by digits).
        let mut exp: i64 = 0;
        if i < s.len() && (s[i] == b'e' || s[i] == b'E') {
            let mut j = i + 1;
            let mut neg = false;
            if j < s.len() && (s[j] == b'+' || s[j] == b'-') {
                neg = s[j] == b'-';
                j += 1;
            }
            if j < s.len() && s[j].is_ascii_digit() {
                while j < s.len() && s[j].is_ascii_digit() {
                    exp = (exp * 10 + (s[j] - b'0') as i64).min(1_000_000);
                    j += 1;
                }
                if neg {
                    exp = -exp;
                }
                i = j;
            }
        }
        if s.get(i) == Some(&b'_') {
            return Err(ExprError::BaseNumber);
        }
        self.pos = i;
        let txt = |a: usize, b: usize| std::str::from_utf8(&s[a..b]).unwrap_or("");
        let v = crate::num::decimal_value(txt(start, int_end), txt(frac.0, frac.1), exp);
        self.node(Node::Num(v))
    }

    fn var(&mut self, name: String) -> Result<Node, ExprError> {
        // Optional subscript: x_1, a_{n}, x_{12}.
        let mut name = name;
        if self.peek() == Some(b'_') {
            self.pos += 1;
            let sub = self.raw_arg()?;
            name.push('_');
            name.push_str(&sub);
        }
        let idx = match self.vars.iter().position(|v| *v == name) {
            Some(k) => k,
            None => {
                self.vars.push(name);
                self.vars.len() - 1
            }
        };
        self.node(Node::Var(idx))
    }

    /// Raw text of a single-token or braced argument (for subscripts).
    fn raw_arg(&mut self) -> Result<String, ExprError> {
        let s = self.s;
        match self.peek() {
            Some(b'{') => {
                let start = self.pos + 1;
                let mut j = start;
                while j < s.len() && s[j] != b'}' {
                    if s[j] == b'{' || j - start > 32 {
                        return Err(ExprError::Unsupported("subscript"));
                    }
                    j += 1;
                }
                if j >= s.len() {
                    return Err(ExprError::UnexpectedEnd);
                }
                self.pos = j + 1;
                let t: String = String::from_utf8_lossy(&s[start..j])
                    .chars()
                    .filter(|c| !c.is_whitespace())
                    .collect();
                Ok(t)
            }
            Some(c) if c.is_ascii_alphanumeric() => {
                self.pos += 1;
                Ok((c as char).to_string())
            }
            _ => Err(ExprError::Unsupported("subscript")),
        }
    }

    fn identifier(&mut self) -> Result<Node, ExprError> {
        let s = self.s;
        let start = self.pos;
        let mut j = start;
        while j < s.len() && s[j].is_ascii_alphabetic() {
            j += 1;
        }
        let word = std::str::from_utf8(&s[start..j]).unwrap_or("");
        // At the start of a run of letters, check for known words and prose.
        let at_run_start = start == 0 || !s[start - 1].is_ascii_alphabetic();
        if at_run_start && word.len() >= 2 {
            if plain_word(word) {
                self.pos = j;
                return self.named(word);
            }
            if word.len() >= 3 {
                return Err(ExprError::Word);
            }
        }
        self.pos = start + 1;
        match s[start] {
            b'e' if self.peek() != Some(b'_') => self.node(Node::E),
            b'i' if self.peek() != Some(b'_') => self.node(Node::I),
            c => self.var((c as char).to_string()),
        }
    }

    /// Known names (command or plain word) after they have been consumed.
    fn named(&mut self, name: &str) -> Result<Node, ExprError> {
        match name {
            "pi" => self.node(Node::Pi),
            "infty" | "inf" => self.node(Node::Inf),
            "sqrt" => {
                self.ws();
                if self.peek() == Some(b'[') {
                    self.pos += 1;
                    let k = self.expr()?;
                    self.expect(b']')?;
                    let x = self.latex_arg()?;
                    return self.node(Node::Root(Box::new(x), Box::new(k)));
                }
                let x = self.latex_arg()?;
                self.node(Node::Sqrt(Box::new(x)))
            }
            "frac" => {
                let a = self.latex_arg()?;
                let b = self.latex_arg()?;
                self.node(Node::Div(Box::new(a), Box::new(b)))
            }
            "binom" => {
                let a = self.latex_arg()?;
                let b = self.latex_arg()?;
                self.node(Node::Binom(Box::new(a), Box::new(b)))
            }
            "mathrm" | "operatorname" => {
                // Normalisation unwraps these; a leftover one wraps a group.
                let a = self.latex_arg()?;
                Ok(a)
            }
            _ => {
                if let Some(f) = func_by_name(name) {
                    return self.function(f);
                }
                if GREEK.contains(&name) {
                    return self.var(name.to_string());
                }
                Err(ExprError::UnknownCommand)
            }
        }
    }

    fn command(&mut self) -> Result<Node, ExprError> {
        let name = self.command_at(self.pos);
        if name.is_empty() {
            return Err(ExprError::Unexpected('\\', self.pos));
        }
        self.pos += 1 + name.len();
        self.named(name)
    }

    /// `\sin x`, `\sin^2 x`, `\sin(2x)`, `\log_2 8`, `\ln{x}`.
    fn function(&mut self, f: Func) -> Result<Node, ExprError> {
        let mut base = None;
        if f == Func::Log10 && self.peek() == Some(b'_') {
            self.pos += 1;
            base = Some(self.latex_arg()?);
        }
        self.ws();
        let mut power = None;
        if self.peek() == Some(b'^') {
            self.pos += 1;
            power = Some(self.latex_arg()?);
        }
        self.ws();
        let arg = match self.peek() {
            Some(b'(') | Some(b'{') | Some(b'[') => self.power()?,
            _ => {
                // Juxtaposed factors up to the next operator or command: \sin 2x.
                let mut a = self.power()?;
                loop {
                    self.ws();
                    let c = self.peek();
                    let more = match c {
                        Some(c) if c.is_ascii_alphanumeric() => true,
                        Some(b'(') | Some(b'{') => true,
                        _ => false,
                    };
                    if !more {
                        break;
                    }
                    let b = self.power()?;
                    a = self.node(Node::Mul(Box::new(a), Box::new(b)))?;
                }
                a
            }
        };
        let mut n = match base {
            Some(b) => self.node(Node::LogBase(Box::new(b), Box::new(arg)))?,
            None => self.node(Node::Fn(f, Box::new(arg)))?,
        };
        if let Some(p) = power {
            n = self.node(Node::Pow(Box::new(n), Box::new(p)))?;
        }
        Ok(n)
    }

    /// A LaTeX macro argument: `{...}`, a single digit, a single letter, or a command.
    fn latex_arg(&mut self) -> Result<Node, ExprError> {
        self.enter()?;
        self.ws();
        let r = match self.peek() {
            Some(b'{') => self.group(b'}'),
            Some(c) if c.is_ascii_digit() => {
                self.pos += 1;
                self.node(Node::Num(Val::int((c - b'0') as i128)))
            }
            Some(c) if c.is_ascii_alphabetic() => {
                self.pos += 1;
                match c {
                    b'e' => self.node(Node::E),
                    b'i' => self.node(Node::I),
                    _ => self.var((c as char).to_string()),
                }
            }
            Some(b'(') => self.group(b')'),
            Some(b'\\') => self.command(),
            Some(c) => Err(ExprError::Unexpected(c as char, self.pos)),
            None => Err(ExprError::UnexpectedEnd),
        };
        self.leave();
        r
    }
}

impl Expr {
    /// Evaluate with `values[k]` bound to `self.vars[k]`. Never panics;
    /// undefined results are NaN.
    pub fn eval(&self, values: &[Cx]) -> Val {
        eval_node(&self.root, values, 0)
    }
}

fn eval_node(n: &Node, vals: &[Cx], depth: usize) -> Val {
    if depth > MAX_NODES + 8 {
        return Val::C(Cx::NAN);
    }
    let ev = |m: &Node| eval_node(m, vals, depth + 1);
    match n {
        Node::Num(v) => *v,
        Node::Var(k) => Val::C(vals.get(*k).copied().unwrap_or(Cx::NAN)),
        Node::Pi => Val::C(Cx::real(std::f64::consts::PI)),
        Node::E => Val::C(Cx::real(std::f64::consts::E)),
        Node::I => Val::C(Cx { re: 0.0, im: 1.0 }),
        Node::Inf => Val::C(Cx::real(f64::INFINITY)),
        Node::Neg(a) => ev(a).neg(),
        Node::Add(a, b) => ev(a).add(ev(b)),
        Node::Sub(a, b) => ev(a).sub(ev(b)),
        Node::Mul(a, b) => ev(a).mul(ev(b)),
        Node::Div(a, b) => ev(a).div(ev(b)),
        Node::Pow(a, b) => ev(a).pow(ev(b)),
        Node::Root(x, k) => ev(x).root(ev(k)),
        Node::Sqrt(a) => ev(a).sqrt(),
        Node::Fact(a) => ev(a).factorial(),
        Node::Abs(a) => ev(a).abs(),
        Node::Binom(a, b) => ev(a).binom(ev(b)),
        Node::LogBase(b, x) => {
            let (b, x) = (ev(b).cx(), ev(x).cx());
            Val::C(x.ln().div(b.ln()))
        }
        Node::Fn(f, a) => {
            let v = ev(a);
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

/// Deterministic pseudo-random value for variable `name` at sample `k`, in [0.35, 2.6].
fn sample(name: &str, k: usize) -> f64 {
    // FNV-1a over the name and the sample index, then a xorshift mix.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes().chain((k as u64).to_le_bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    let u = (h >> 11) as f64 / (1u64 << 53) as f64;
    0.35 + 2.25 * u
}

const SAMPLES: usize = 6;

/// Values of `e` at the sample points (variables bound by name, so two
/// expressions with the same variable set are sampled at the same points).
pub(crate) fn sample_values(e: &Expr) -> Vec<Cx> {
    let mut vals = vec![Cx::real(0.0); e.vars.len()];
    (0..SAMPLES)
        .map(|k| {
            for (slot, name) in vals.iter_mut().zip(&e.vars) {
                *slot = Cx::real(sample(name, k));
            }
            e.eval(&vals).cx()
        })
        .collect()
}

/// Equal at every sample point where both are defined (and defined at the same
/// points), with at least half of the points defined.
pub(crate) fn samples_equal(a: &[Cx], b: &[Cx], rel_tol: f64) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut compared = 0;
    for (x, y) in a.iter().zip(b) {
        match (x.is_finite(), y.is_finite()) {
            (true, true) => {
                if !cx_close(*x, *y, rel_tol.max(1e-9), true) {
                    return false;
                }
                compared += 1;
            }
            (false, false) => {}
            _ => return false,
        }
    }
    compared >= a.len().div_ceil(2) && compared > 0
}

/// For equations: are `a` and `b` (each meant as `lhs - rhs = 0`) proportional
/// by a constant non-zero factor at every sample point?
pub(crate) fn proportional(a: &Expr, b: &Expr, rel_tol: f64) -> bool {
    if a.vars != b.vars || a.vars.is_empty() {
        return false;
    }
    let mut vals = vec![Cx::real(0.0); a.vars.len()];
    let mut ratio: Option<Cx> = None;
    let mut compared = 0;
    for k in 0..SAMPLES {
        for (slot, name) in vals.iter_mut().zip(&a.vars) {
            *slot = Cx::real(sample(name, k));
        }
        let x = a.eval(&vals).cx();
        let y = b.eval(&vals).cx();
        if !x.is_finite() || !y.is_finite() {
            return false;
        }
        let tiny = 1e-9;
        match (x.abs() < tiny, y.abs() < tiny) {
            (true, true) => continue,
            (false, false) => {}
            _ => return false,
        }
        let r = x.div(y);
        match ratio {
            None => ratio = Some(r),
            Some(r0) => {
                if !cx_close(r, r0, rel_tol.max(1e-9), true) {
                    return false;
                }
            }
        }
        compared += 1;
    }
    compared >= SAMPLES / 2
}

/// Build `lhs - rhs` from two parsed expressions (variables merged by name).
pub(crate) fn difference(lhs: Expr, rhs: Expr) -> Expr {
    let mut vars = lhs.vars.clone();
    for v in &rhs.vars {
        if !vars.contains(v) {
            vars.push(v.clone());
        }
    }
    vars.sort();
    let l = remap(lhs.root, &lhs.vars, &vars);
    let r = remap(rhs.root, &rhs.vars, &vars);
    Expr {
        root: Node::Sub(Box::new(l), Box::new(r)),
        vars,
    }
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
