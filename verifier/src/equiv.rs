//! Equivalence of two answers: structure first (tuples, intervals, sets, unions,
//! matrices, equations, `\pm`), then atoms (exact text, plain numbers, mixed
//! numbers, expressions evaluated at sample points, words).

use std::cell::{Cell, OnceCell};

use crate::expr;
use crate::normalize::{normalize, strip_units, SET_CLOSE, SET_OPEN};
use crate::num::{parse_decimal, vals_equal, Cx, Rat, Val};
use crate::{Reason, VerifierConfig};

/// Most items in one tuple / set / list / matrix.
const MAX_ITEMS: usize = 32;
/// Most nesting of structures.
const MAX_STRUCT_DEPTH: u32 = 6;
/// Most atom comparisons for one pair of answers.
const MAX_ATOM_COMPARISONS: u32 = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `(a, b)`, `[a, b)`, ... with the opening and closing bracket.
    Paren(u8, u8),
    /// `\{a, b\}`
    Set,
    /// `a, b` without brackets.
    Bare,
}

#[derive(Clone, Debug)]
enum Ans {
    Atom(Atom),
    Seq(Kind, Vec<Ans>),
    Union(Vec<Ans>),
    Matrix(Vec<Vec<Ans>>),
    /// `lhs = rhs`
    Eq(String, Box<Ans>),
}

/// A leaf answer with its analysis computed once, on first use (sets compare
/// every pair of items, so this keeps matching linear in parsing work).
#[derive(Clone, Debug)]
struct Atom {
    text: String,
    info: OnceCell<AtomInfo>,
}

#[derive(Clone, Debug)]
struct AtomInfo {
    /// Text with trailing unit words and `%` removed.
    stripped: String,
    percent: bool,
    /// `52_8` -> ("52", "8").
    base: Option<(String, String)>,
    val: AtomVal,
}

/// Value of an atom: a plain number, a variable-free expression, an expression
/// in variables (sampled), or text.
#[derive(Clone, Debug)]
enum AtomVal {
    Value(Val),
    Expr { vars: Vec<String>, samples: Vec<Cx> },
    Text,
}

impl Ans {
    fn atom(s: &str) -> Ans {
        Ans::Atom(Atom {
            text: s.to_string(),
            info: OnceCell::new(),
        })
    }
}

impl Atom {
    fn info(&self) -> &AtomInfo {
        self.info.get_or_init(|| {
            let st = strip_units(&self.text);
            AtomInfo {
                stripped: st.text.to_string(),
                percent: st.percent,
                base: base_number(&self.text),
                val: atom_value(st.text),
            }
        })
    }
}

fn is_open(c: char) -> bool {
    matches!(c, '(' | '[' | '{' | SET_OPEN)
}
fn is_close(c: char) -> bool {
    matches!(c, ')' | ']' | '}' | SET_CLOSE)
}

/// Split at top level (outside brackets) on `sep`. `None` when `sep` does not occur.
fn split_top<'a>(s: &'a str, sep: &str) -> Option<Vec<&'a str>> {
    let mut parts = Vec::new();
    let mut depth: i32 = 0;
    let mut last = 0;
    let bytes = s.as_bytes();
    let sep_b = sep.as_bytes();
    let word_sep = sep.starts_with('\\');
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c < 0x80 {
            let ch = c as char;
            if is_open(ch) {
                depth += 1;
            } else if is_close(ch) {
                depth -= 1;
            } else if c == b'\\' && depth == 0 && bytes[i..].starts_with(sep_b) {
                let end = i + sep_b.len();
                if !word_sep || !bytes.get(end).is_some_and(|x| x.is_ascii_alphabetic()) {
                    parts.push(&s[last..i]);
                    last = end;
                    i = end;
                    continue;
                }
            } else if c == b'\\' {
                // Skip an escaped ASCII character so `\\` does not count twice.
                i += if bytes.get(i + 1).is_some_and(u8::is_ascii) {
                    2
                } else {
                    1
                };
                continue;
            } else if depth == 0 && !word_sep && bytes[i..].starts_with(sep_b) {
                parts.push(&s[last..i]);
                last = i + sep_b.len();
                i = last;
                continue;
            }
            i += 1;
        } else {
            let ch = s[i..].chars().next().unwrap_or(' ');
            if ch == SET_OPEN {
                depth += 1;
            } else if ch == SET_CLOSE {
                depth -= 1;
            }
            i += ch.len_utf8();
        }
        if parts.len() > MAX_ITEMS {
            return None;
        }
    }
    if parts.is_empty() {
        return None;
    }
    parts.push(&s[last..]);
    Some(parts)
}

/// Index of the bracket matching the opener at byte 0 (any bracket shapes).
fn matching_close(s: &str) -> Option<usize> {
    let mut depth = 0i32;
    for (i, ch) in s.char_indices() {
        if is_open(ch) {
            depth += 1;
        } else if is_close(ch) {
            depth -= 1;
            if depth == 0 {
                return Some(i);
            }
        }
    }
    None
}

/// Top-level `=` that is not part of `<=`, `>=`, `!=`, `==`.
fn split_equation(s: &str) -> Option<(&str, &str)> {
    let b = s.as_bytes();
    let mut depth = 0i32;
    let mut found = None;
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            b'=' if depth == 0 => {
                let prev = if i > 0 { b[i - 1] } else { b' ' };
                let next = b.get(i + 1).copied().unwrap_or(b' ');
                if matches!(prev, b'<' | b'>' | b'!' | b'=') || next == b'=' {
                    return None;
                }
                if found.is_some() {
                    return None;
                }
                found = Some(i);
            }
            _ => {}
        }
    }
    let i = found?;
    let (l, r) = (s[..i].trim(), s[i + 1..].trim());
    if l.is_empty() || r.is_empty() {
        return None;
    }
    Some((l, r))
}

/// `x`, `y_1`, `a_{n}`, `\theta`, `f(x)`.
fn simple_var(s: &str) -> bool {
    let s = s.trim();
    if let [f, b'(', x, b')'] = s.as_bytes() {
        return f.is_ascii_alphabetic() && x.is_ascii_alphabetic();
    }
    let b = s.as_bytes();
    if b.is_empty() {
        return false;
    }
    if b[0] == b'\\' {
        return b.len() > 1 && b[1..].iter().all(u8::is_ascii_alphabetic) && !s.starts_with("\\pi");
    }
    if !b[0].is_ascii_alphabetic() || b[0] == b'e' || b[0] == b'i' {
        return false;
    }
    if b.len() == 1 {
        return true;
    }
    if b[1] != b'_' {
        return false;
    }
    let sub = s[2..].trim_start_matches('{').trim_end_matches('}');
    !sub.is_empty() && sub.bytes().all(|c| c.is_ascii_alphanumeric())
}

fn parse_struct(s: &str, depth: u32) -> Ans {
    let s = s.trim();
    if depth > MAX_STRUCT_DEPTH || s.is_empty() {
        return Ans::atom(s);
    }
    // `x \in [a, b]` -> `[a, b]`
    if let Some(parts) = split_top(s, "\\in") {
        if parts.len() == 2 && simple_var(parts[0]) {
            return parse_struct(parts[1], depth + 1);
        }
    }
    if let Some(parts) = split_top(s, "\\cup") {
        if parts.len() <= MAX_ITEMS && parts.iter().all(|p| !p.trim().is_empty()) {
            return Ans::Union(parts.iter().map(|p| parse_struct(p, depth + 1)).collect());
        }
        return Ans::atom(s);
    }
    if let Some(parts) = split_top(s, ",") {
        if parts.len() <= MAX_ITEMS && parts.iter().all(|p| !p.trim().is_empty()) {
            return Ans::Seq(Kind::Bare, flatten_items(&parts, depth));
        }
        return Ans::atom(s);
    }
    // `1 and -2`, `x = 1 or x = 2`: word-separated lists.
    for sep in [" and ", " or "] {
        if let Some(parts) = split_top(s, sep) {
            if parts.len() <= MAX_ITEMS && parts.iter().all(|p| !p.trim().is_empty()) {
                return Ans::Seq(Kind::Bare, flatten_items(&parts, depth));
            }
        }
    }
    if let Some((l, r)) = split_equation(s) {
        return Ans::Eq(l.to_string(), Box::new(parse_struct(r, depth + 1)));
    }
    let first = s.chars().next().unwrap_or(' ');
    let last = s.chars().last().unwrap_or(' ');
    if (first == '(' || first == '[')
        && (last == ')' || last == ']')
        && matching_close(s) == Some(s.len() - 1)
    {
        let inner = &s[1..s.len() - 1];
        if let Some(parts) = split_top(inner, ",") {
            if parts.len() <= MAX_ITEMS && parts.iter().all(|p| !p.trim().is_empty()) {
                return Ans::Seq(
                    Kind::Paren(first as u8, last as u8),
                    parts.iter().map(|p| parse_struct(p, depth + 1)).collect(),
                );
            }
        }
    }
    if first == SET_OPEN && last == SET_CLOSE {
        let inner = &s[SET_OPEN.len_utf8()..s.len() - SET_CLOSE.len_utf8()];
        if matching_close(s) == Some(s.len() - SET_CLOSE.len_utf8()) {
            let items = match split_top(inner, ",") {
                Some(parts) if parts.len() <= MAX_ITEMS => flatten_items(&parts, depth),
                Some(_) => return Ans::atom(s),
                None => flatten_items(&[inner], depth),
            };
            return Ans::Seq(Kind::Set, items);
        }
    }
    if let Some(m) = parse_matrix(s, depth) {
        return m;
    }
    // `a \pm b` -> {a + b, a - b} (at most two signs expanded).
    for (pm, first_sign, second_sign) in [("\\pm", "+", "-"), ("\\mp", "-", "+")] {
        if let Some(k) = s.find(pm) {
            let after = k + pm.len();
            if s.as_bytes()
                .get(after)
                .is_some_and(|c| c.is_ascii_alphabetic())
            {
                continue;
            }
            if s.matches(pm).count() > 2 {
                return Ans::atom(s);
            }
            let a = format!("{}{}{}", &s[..k], first_sign, &s[after..]);
            let b = format!("{}{}{}", &s[..k], second_sign, &s[after..]);
            let mut items = Vec::new();
            for t in [a, b] {
                match parse_struct(&t, depth + 1) {
                    Ans::Seq(Kind::Bare, v) => items.extend(v),
                    other => items.push(other),
                }
            }
            return Ans::Seq(Kind::Bare, items);
        }
    }
    Ans::atom(s)
}

/// Parse list items; `a \pm b` items (bare lists) are flattened into the list.
fn flatten_items(parts: &[&str], depth: u32) -> Vec<Ans> {
    let mut flat = Vec::with_capacity(parts.len());
    for p in parts {
        // `1, 2, and 3`
        let p = p.trim();
        let p = p
            .strip_prefix("and ")
            .or_else(|| p.strip_prefix("or "))
            .unwrap_or(p);
        match parse_struct(p, depth + 1) {
            Ans::Seq(Kind::Bare, v) => flat.extend(v),
            other => flat.push(other),
        }
    }
    flat
}

fn parse_matrix(s: &str, depth: u32) -> Option<Ans> {
    let rest = s.strip_prefix("\\begin{")?;
    let close = rest.find('}')?;
    let env = &rest[..close];
    if !matches!(
        env,
        "pmatrix" | "bmatrix" | "matrix" | "Bmatrix" | "vmatrix" | "smallmatrix" | "array"
    ) {
        return None;
    }
    let mut body = &rest[close + 1..];
    let end = format!("\\end{{{env}}}");
    body = body.strip_suffix(end.as_str())?;
    if env == "array" {
        // Skip the column spec `{cc}`.
        let b = body.trim_start();
        if b.starts_with('{') {
            body = &b[b.find('}')? + 1..];
        }
    }
    let rows: Vec<&str> = body
        .split("\\\\")
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .collect();
    if rows.is_empty() || rows.len() > MAX_ITEMS {
        return None;
    }
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let cells: Vec<Ans> = r.split('&').map(|c| parse_struct(c, depth + 1)).collect();
        if cells.len() > MAX_ITEMS {
            return None;
        }
        out.push(cells);
    }
    Some(Ans::Matrix(out))
}

fn rank(r: Reason) -> u8 {
    match r {
        Reason::MatchExact => 0,
        Reason::MatchChoice => 1,
        Reason::MatchNumeric => 2,
        Reason::MatchSymbolic => 3,
        _ => 4,
    }
}

fn combine(a: Reason, b: Reason) -> Reason {
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

struct Ctx<'a> {
    cfg: &'a VerifierConfig,
    budget: Cell<u32>,
}

impl Ctx<'_> {
    fn spend(&self, cost: u32) -> bool {
        let b = self.budget.get();
        if b < cost {
            self.budget.set(0);
            return false;
        }
        self.budget.set(b - cost);
        true
    }
}

fn compare_ordered(p: &[Ans], g: &[Ans], cx: &Ctx) -> Option<Reason> {
    if p.len() != g.len() {
        return None;
    }
    let mut reason = Reason::MatchExact;
    for (a, b) in p.iter().zip(g) {
        reason = combine(reason, compare(a, b, cx)?);
    }
    Some(reason)
}

fn compare_unordered(p: &[Ans], g: &[Ans], cx: &Ctx) -> Option<Reason> {
    if p.len() != g.len() {
        return None;
    }
    let mut used = vec![false; g.len()];
    let mut reason = Reason::MatchExact;
    for a in p {
        let mut hit = None;
        for (j, b) in g.iter().enumerate() {
            if used[j] {
                continue;
            }
            if let Some(r) = compare(a, b, cx) {
                hit = Some((j, r));
                break;
            }
        }
        let (j, r) = hit?;
        used[j] = true;
        reason = combine(reason, r);
    }
    Some(reason)
}

fn flat_vector(m: &[Vec<Ans>]) -> Option<Vec<Ans>> {
    if m.len() == 1 {
        Some(m[0].clone())
    } else if m.iter().all(|r| r.len() == 1) {
        Some(m.iter().map(|r| r[0].clone()).collect())
    } else {
        None
    }
}

fn compare(p: &Ans, g: &Ans, cx: &Ctx) -> Option<Reason> {
    use Ans::*;
    match (p, g) {
        (Atom(a), Atom(b)) => compare_atoms(a, b, cx),
        (Eq(pl, pr), Eq(gl, gr)) => {
            if simple_var(pl) && simple_var(gl) && compact_eq(pl, gl) {
                // `y = f` and `y = g`: equal exactly when f and g are.
                return compare(pr, gr, cx);
            }
            equation_proportional(pl, pr, gl, gr, cx)
        }
        (Eq(l, r), other) | (other, Eq(l, r)) => {
            if simple_var(l) {
                compare(r, other, cx)
            } else {
                None
            }
        }
        (Seq(pk, pv), Seq(gk, gv)) => match (pk, gk) {
            (Kind::Paren(a, b), Kind::Paren(c, d)) => {
                if a == c && b == d {
                    compare_ordered(pv, gv, cx)
                } else {
                    None
                }
            }
            (Kind::Paren(b'(', b')'), Kind::Bare) | (Kind::Bare, Kind::Paren(b'(', b')')) => {
                compare_ordered(pv, gv, cx)
            }
            (Kind::Set | Kind::Bare, Kind::Set | Kind::Bare) => compare_unordered(pv, gv, cx),
            _ => None,
        },
        (Seq(Kind::Set, v), Atom(_)) if v.len() == 1 => compare(&v[0], g, cx),
        (Atom(_), Seq(Kind::Set, v)) if v.len() == 1 => compare(p, &v[0], cx),
        (Union(pv), Union(gv)) => compare_unordered(pv, gv, cx),
        (Matrix(pm), Matrix(gm)) => {
            if pm.len() != gm.len() {
                return None;
            }
            let mut reason = Reason::MatchExact;
            for (pr, gr) in pm.iter().zip(gm) {
                reason = combine(reason, compare_ordered(pr, gr, cx)?);
            }
            Some(reason)
        }
        (Matrix(m), Seq(k, v)) | (Seq(k, v), Matrix(m)) => match k {
            Kind::Paren(b'(', b')') | Kind::Bare => compare_ordered(&flat_vector(m)?, v, cx),
            _ => None,
        },
        _ => None,
    }
}

fn equation_proportional(pl: &str, pr: &Ans, gl: &str, gr: &Ans, cx: &Ctx) -> Option<Reason> {
    let (Ans::Atom(Atom { text: pr, .. }), Ans::Atom(Atom { text: gr, .. })) = (pr, gr) else {
        return None;
    };
    // Parsing four sides costs more than comparing two cached atoms.
    if !cx.spend(16) {
        return None;
    }
    let a = expr::difference(expr::parse(pl).ok()?, expr::parse(pr).ok()?);
    let b = expr::difference(expr::parse(gl).ok()?, expr::parse(gr).ok()?);
    expr::proportional(&a, &b, cx.cfg.rel_tol).then_some(Reason::MatchSymbolic)
}

fn compact_eq(a: &str, b: &str) -> bool {
    let mut x = a.chars().filter(|c| !c.is_whitespace());
    let mut y = b.chars().filter(|c| !c.is_whitespace());
    loop {
        match (x.next(), y.next()) {
            (None, None) => return true,
            (Some(c), Some(d)) if c == d => {}
            _ => return false,
        }
    }
}

fn text_eq(a: &str, b: &str) -> bool {
    let mut x = a
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase);
    let mut y = b
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase);
    loop {
        match (x.next(), y.next()) {
            (None, None) => return true,
            (Some(c), Some(d)) if c == d => {}
            _ => return false,
        }
    }
}

/// `52_8`, `4210_{5}` -> (digits, base).
fn base_number(s: &str) -> Option<(String, String)> {
    let (digits, base) = s.split_once('_')?;
    let digits = digits.trim();
    let base = base
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim();
    if digits.is_empty()
        || base.is_empty()
        || !digits.bytes().all(|c| c.is_ascii_alphanumeric())
        || !digits.as_bytes()[0].is_ascii_digit()
        || !base.bytes().all(|c| c.is_ascii_alphanumeric())
    {
        return None;
    }
    Some((digits.to_ascii_uppercase(), base.to_string()))
}

/// Plain numbers: decimals, `a/b`, `\frac{a}{b}`, mixed numbers (`1\frac{4}{5}`,
/// `2 1/2`). `None` for anything else.
fn number_value(s: &str) -> Option<Val> {
    let s = s.trim();
    if let Some(v) = parse_decimal(s) {
        return Some(v);
    }
    let (neg, body) = match s.strip_prefix('-') {
        Some(r) => (true, r.trim_start()),
        None => (false, s.strip_prefix('+').unwrap_or(s).trim_start()),
    };
    let v = simple_fraction(body).or_else(|| mixed_number(body))?;
    Some(if neg { v.neg() } else { v })
}

fn int_digits(s: &str) -> Option<i128> {
    let s = s.trim();
    if s.is_empty() || s.len() > 30 || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `3/4`, `\frac{3}{4}`, `\frac34`, `\frac{270}7`.
fn simple_fraction(s: &str) -> Option<Val> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix("\\frac") {
        let (a, rest) = latex_int_arg(rest)?;
        let (b, rest) = latex_int_arg(rest)?;
        if !rest.trim().is_empty() {
            return None;
        }
        return Rat::new(a, b).map(Val::Q);
    }
    let (a, b) = s.split_once('/')?;
    Rat::new(int_digits(a)?, int_digits(b)?).map(Val::Q)
}

fn latex_int_arg(s: &str) -> Option<(i128, &str)> {
    let s = s.trim_start();
    if let Some(r) = s.strip_prefix('{') {
        let end = r.find('}')?;
        Some((int_digits(&r[..end])?, &r[end + 1..]))
    } else {
        let c = s.chars().next()?;
        let d = c.to_digit(10)? as i128;
        Some((d, &s[1..]))
    }
}

/// `1\frac{4}{5}`, `137 \frac{1}{2}`, `2 1/2`.
fn mixed_number(s: &str) -> Option<Val> {
    let end = s.bytes().position(|c| !c.is_ascii_digit())?;
    if end == 0 {
        return None;
    }
    let whole = int_digits(&s[..end])?;
    let rest = &s[end..];
    if !(rest.starts_with(' ') || rest.starts_with("\\frac")) {
        return None;
    }
    let frac = simple_fraction(rest)?;
    // Proper fraction only: `2 3/2` is not a mixed number.
    match frac {
        Val::Q(q) if q.n >= 0 && q.n < q.d => Some(Val::Q(Rat::int(whole)?.add(q)?)),
        _ => None,
    }
}

fn percent_equal(a: Val, ap: bool, b: Val, bp: bool, tol: f64) -> bool {
    if vals_equal(a, b, tol) {
        return true;
    }
    if ap == bp {
        return false;
    }
    let hundred = Val::int(100);
    let a2 = if ap { a.div(hundred) } else { a };
    let b2 = if bp { b.div(hundred) } else { b };
    vals_equal(a2, b2, tol)
}

fn atom_value(s: &str) -> AtomVal {
    if let Some(v) = number_value(s) {
        return AtomVal::Value(v);
    }
    match expr::parse(s) {
        Ok(e) if e.vars.is_empty() => AtomVal::Value(e.eval(&[])),
        Ok(e) => AtomVal::Expr {
            samples: expr::sample_values(&e),
            vars: e.vars,
        },
        Err(_) => AtomVal::Text,
    }
}

fn compare_atoms(p: &Atom, g: &Atom, cx: &Ctx) -> Option<Reason> {
    if compact_eq(&p.text, &g.text) {
        return Some(Reason::MatchExact);
    }
    if !cx.spend(1) {
        return None;
    }
    let (pi, gi) = (p.info(), g.info());
    if pi.base.is_some() || gi.base.is_some() {
        return (pi.base == gi.base).then_some(Reason::MatchExact);
    }
    if pi.percent == gi.percent && compact_eq(&pi.stripped, &gi.stripped) {
        return Some(Reason::MatchExact);
    }
    let tol = cx.cfg.rel_tol;
    match (&pi.val, &gi.val) {
        (AtomVal::Value(a), AtomVal::Value(b)) => {
            percent_equal(*a, pi.percent, *b, gi.percent, tol).then_some(Reason::MatchNumeric)
        }
        (
            AtomVal::Expr {
                vars: va,
                samples: sa,
            },
            AtomVal::Expr {
                vars: vb,
                samples: sb,
            },
        ) => (pi.percent == gi.percent && va == vb && expr::samples_equal(sa, sb, tol))
            .then_some(Reason::MatchSymbolic),
        (AtomVal::Text, AtomVal::Text) => text_eq(&p.text, &g.text).then_some(Reason::MatchExact),
        _ => None,
    }
}

/// Multiple-choice letter: `C`, `(C)`, `C)`, `Option C`, `(c)`.
/// `strict` (for gold answers) requires an upper-case letter.
fn choice_letter(s: &str, strict: bool) -> Option<char> {
    let mut t = s.trim();
    for prefix in ["Option", "option", "Choice", "choice", "Answer", "answer"] {
        if let Some(r) = t.strip_prefix(prefix) {
            t = r.trim_start_matches([' ', ':']);
        }
    }
    let (inner, paren) = if let Some(r) = t.strip_prefix('(') {
        (r.strip_suffix(')')?, true)
    } else if let Some(r) = t.strip_suffix(')') {
        (r, true)
    } else {
        (t, false)
    };
    let inner = inner.trim();
    let mut chars = inner.chars();
    let c = chars.next()?;
    if chars.next().is_some() {
        return None;
    }
    let upper = c.to_ascii_uppercase();
    if !('A'..='H').contains(&upper) {
        return None;
    }
    if c.is_ascii_uppercase() || (paren && !strict) {
        Some(upper)
    } else {
        None
    }
}

/// Is `pred` equivalent to `gold`? `Some(reason)` with a `match_*` reason, or `None`.
pub fn is_equivalent(pred: &str, gold: &str, cfg: &VerifierConfig) -> Option<Reason> {
    let p = normalize(pred, cfg.max_answer_bytes);
    let g = normalize(gold, cfg.max_answer_bytes);
    equivalent_normalized(&p, &g, cfg)
}

pub(crate) fn equivalent_normalized(p: &str, g: &str, cfg: &VerifierConfig) -> Option<Reason> {
    if p.is_empty() || g.is_empty() {
        return None;
    }
    if compact_eq(p, g) {
        return Some(Reason::MatchExact);
    }
    if let Some(gc) = choice_letter(g, true) {
        if let Some(pc) = choice_letter(p, false) {
            return (pc == gc).then_some(Reason::MatchChoice);
        }
    }
    let cx = Ctx {
        cfg,
        budget: Cell::new(MAX_ATOM_COMPARISONS),
    };
    let pa = parse_struct(p, 0);
    let ga = parse_struct(g, 0);
    compare(&pa, &ga, &cx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structure() {
        assert!(matches!(
            parse_struct("(3,4]", 0),
            Ans::Seq(Kind::Paren(b'(', b']'), _)
        ));
        assert!(matches!(parse_struct("1,-2", 0), Ans::Seq(Kind::Bare, _)));
        assert!(matches!(parse_struct("(a+5)(b+2)", 0), Ans::Atom(_)));
        assert!(matches!(parse_struct("y = 2x+3", 0), Ans::Eq(_, _)));
        assert!(matches!(
            parse_struct("x \\in [-2,7]", 0),
            Ans::Seq(Kind::Paren(b'[', b']'), _)
        ));
        match parse_struct("3 \\pm 2\\sqrt2", 0) {
            Ans::Seq(Kind::Bare, v) => assert_eq!(v.len(), 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(
            number_value("1\\frac{4}{5}"),
            Some(Val::Q(Rat { n: 9, d: 5 }))
        );
        assert_eq!(number_value("2 1/2"), Some(Val::Q(Rat { n: 5, d: 2 })));
        assert_eq!(number_value("-\\frac34"), Some(Val::Q(Rat { n: -3, d: 4 })));
        assert_eq!(
            number_value("\\frac{270}7"),
            Some(Val::Q(Rat { n: 270, d: 7 }))
        );
        assert_eq!(base_number("4210_{5}"), Some(("4210".into(), "5".into())));
    }
}
