//! Names in expressions: LaTeX commands (`\frac`, `\sqrt`, `\sin`, Greek
//! letters), plain words (`pi`, `sqrt`), variables with subscripts, function
//! application and macro arguments.
//!
//! Owns: the vocabulary of commands and functions. Must not know: operator
//! precedence (the core parser) or evaluation.

use super::parser::Parser;
use super::{func_by_name, Func, Node, GREEK};
use crate::error::ExprError;
use crate::num::Val;

/// Commands that can start a primary (used for implicit multiplication).
pub(super) fn is_primary_command(name: &str) -> bool {
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

impl Parser<'_> {
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

    pub(super) fn identifier(&mut self) -> Result<Node, ExprError> {
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

    pub(super) fn command(&mut self) -> Result<Node, ExprError> {
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
