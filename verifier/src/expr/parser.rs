//! The recursive-descent parser core: operators, precedence, implicit
//! multiplication, groups and numbers.
//!
//! Owns: the grammar of operators and primaries, and the depth and size caps.
//! Must not know: which LaTeX commands and words exist (see `commands`), how a
//! tree is evaluated, or answer structure.

use super::commands::is_primary_command;
use super::{remap, Expr, Node, MAX_NODES};
use crate::error::ExprError;
use crate::num::{decimal_value, scan_decimal, Val};

const MAX_DEPTH: u32 = 200;

pub(super) struct Parser<'a> {
    pub(super) s: &'a [u8],
    pub(super) pos: usize,
    depth: u32,
    nodes: usize,
    pub(super) vars: Vec<String>,
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
    pub(super) fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }
    pub(super) fn peek_at(&self, k: usize) -> Option<u8> {
        self.s.get(self.pos + k).copied()
    }
    pub(super) fn ws(&mut self) {
        while let Some(c) = self.peek() {
            if c == b' ' || c == b'\t' || c == b'\n' || c == b'\r' {
                self.pos += 1;
            } else {
                break;
            }
        }
    }
    pub(super) fn enter(&mut self) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ExprError::TooDeep);
        }
        Ok(())
    }
    pub(super) fn leave(&mut self) {
        self.depth -= 1;
    }
    pub(super) fn node(&mut self, n: Node) -> Result<Node, ExprError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(ExprError::TooLarge);
        }
        Ok(n)
    }
    pub(super) fn expect(&mut self, c: u8) -> Result<(), ExprError> {
        self.ws();
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(ExprError::Expected(c as char, self.pos))
        }
    }
    /// Command name at the current position (after a backslash), without consuming.
    pub(super) fn command_at(&self, at: usize) -> &'a str {
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

    pub(super) fn expr(&mut self) -> Result<Node, ExprError> {
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
                // `84 \div 2` (normalisation writes `÷` so too).
                Some(b'\\') if self.command_at(self.pos) == "div" => {
                    self.pos += "\\div".len();
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

    pub(super) fn power(&mut self) -> Result<Node, ExprError> {
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

    pub(super) fn group(&mut self, close: u8) -> Result<Node, ExprError> {
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

    /// A decimal literal (`12`, `.5`, `2.5E-3`); `52_8` (a base) is refused.
    fn number(&mut self) -> Result<Node, ExprError> {
        let text = self.s;
        let start = self.pos;
        let scan = scan_decimal(text, start, false).ok_or(ExprError::Unexpected('.', start))?;
        if text.get(scan.end) == Some(&b'_') {
            return Err(ExprError::BaseNumber);
        }
        self.pos = scan.end;
        let part = |range: std::ops::Range<usize>| std::str::from_utf8(&text[range]).unwrap_or("");
        let (int, frac) = (part(scan.int), part(scan.frac));
        match decimal_value(int, frac, scan.exp) {
            value @ Val::Q(_) => self.node(Node::Num(value)),
            _ => self.node(Node::Literal {
                int: int.into(),
                frac: frac.into(),
                exp: scan.exp,
            }),
        }
    }
}
