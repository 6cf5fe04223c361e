//! The structure of an answer: tuples and intervals, sets, bare lists, unions,
//! matrices, equations, `x \in S`, and `a \pm b`, down to atoms.
//!
//! Owns: splitting normalised text at top level into an `Ans` tree, and the
//! caps on items and nesting. Must not know: what an atom's value is or how
//! two trees compare.

use super::atom::Atom;
use super::relation::{split_relations, RelOp};
use crate::normalize::{SET_CLOSE, SET_OPEN};

/// Most items in one tuple / set / list / matrix.
pub(super) const MAX_ITEMS: usize = 32;
/// Most nesting of structures.
const MAX_STRUCT_DEPTH: u32 = 6;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// `(a, b)`, `[a, b)`, ... with the opening and closing bracket.
    Paren(u8, u8),
    /// `\{a, b\}`
    Set,
    /// `a, b` without brackets.
    Bare,
}

#[derive(Clone, Debug)]
pub(super) enum Ans {
    Atom(Atom),
    Seq(Kind, Vec<Ans>),
    Union(Vec<Ans>),
    Matrix(Vec<Vec<Ans>>),
    /// `lhs = rhs`
    Eq(String, Box<Ans>),
    /// `a < b \le c`: sides and the operators between them.
    Rel(Vec<Ans>, Vec<RelOp>),
}

impl Ans {
    fn atom(s: &str) -> Ans {
        Ans::Atom(Atom::new(s))
    }
}

fn is_open(c: char) -> bool {
    matches!(c, '(' | '[' | '{' | SET_OPEN)
}
fn is_close(c: char) -> bool {
    matches!(c, ')' | ']' | '}' | SET_CLOSE)
}

/// Split at top level (outside brackets) on `sep`. `None` when `sep` does not occur.
pub(super) fn split_top<'a>(text: &'a str, sep: &str) -> Option<Vec<&'a str>> {
    let mut parts = Vec::new();
    let mut depth: i32 = 0;
    let mut part_start = 0;
    let bytes = text.as_bytes();
    let sep_bytes = sep.as_bytes();
    // `\in`, `\cup`: a command, which must not be the start of a longer name.
    let command_sep = sep.starts_with('\\');
    let mut pos = 0;
    while pos < bytes.len() {
        let byte = bytes[pos];
        // Splits and escapes are not followed by the item-count check (as the
        // count only matters once more text follows).
        let check_count = if byte >= 0x80 {
            let ch = text[pos..].chars().next().unwrap_or(' ');
            if ch == SET_OPEN {
                depth += 1;
            } else if ch == SET_CLOSE {
                depth -= 1;
            }
            pos += ch.len_utf8();
            true
        } else if is_open(byte as char) {
            depth += 1;
            pos += 1;
            true
        } else if is_close(byte as char) {
            depth -= 1;
            pos += 1;
            true
        } else if byte == b'\\' && depth == 0 && bytes[pos..].starts_with(sep_bytes) {
            let end = pos + sep_bytes.len();
            if command_sep && bytes.get(end).is_some_and(|x| x.is_ascii_alphabetic()) {
                pos += 1;
                true
            } else {
                parts.push(&text[part_start..pos]);
                part_start = end;
                pos = end;
                false
            }
        } else if byte == b'\\' {
            // Skip an escaped ASCII character so `\\` does not count twice.
            pos += if bytes.get(pos + 1).is_some_and(u8::is_ascii) {
                2
            } else {
                1
            };
            false
        } else if depth == 0 && !command_sep && bytes[pos..].starts_with(sep_bytes) {
            parts.push(&text[part_start..pos]);
            part_start = pos + sep_bytes.len();
            pos = part_start;
            false
        } else {
            pos += 1;
            true
        };
        if check_count && parts.len() > MAX_ITEMS {
            return None;
        }
    }
    if parts.is_empty() {
        return None;
    }
    parts.push(&text[part_start..]);
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

/// Top-level `=` (not part of `<=`, `>=`, `!=`, `==`): `(lhs, rhs)`. A chain
/// `x = 3 + 4 = 7` gives its first and last sides, `(x, 7)`.
pub(super) fn split_equation(text: &str) -> Option<(&str, &str)> {
    let bytes = text.as_bytes();
    let mut depth = 0i32;
    let (mut first, mut last) = (None, None);
    for (pos, &byte) in bytes.iter().enumerate() {
        match byte {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            b'=' if depth == 0 => {
                let prev = if pos > 0 { bytes[pos - 1] } else { b' ' };
                let next = bytes.get(pos + 1).copied().unwrap_or(b' ');
                if matches!(prev, b'<' | b'>' | b'!' | b'=') || next == b'=' {
                    return None;
                }
                first.get_or_insert(pos);
                last = Some(pos);
            }
            _ => {}
        }
    }
    let (lhs, rhs) = (text[..first?].trim(), text[last? + 1..].trim());
    if lhs.is_empty() || rhs.is_empty() {
        return None;
    }
    Some((lhs, rhs))
}

/// `x`, `y_1`, `a_{n}`, `\theta`, `f(x)`.
pub(super) fn simple_var(s: &str) -> bool {
    let s = s.trim();
    // `(p, q)`: a tuple of variables.
    if let Some(inner) = s.strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
        if inner.contains(',') {
            return inner.split(',').all(|v| {
                let v = v.trim();
                v.len() == 1 && v.bytes().all(|c| c.is_ascii_alphabetic())
            });
        }
    }
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

/// The name of a quantity rather than a formula: a variable, `f(2)`, `|AB|`,
/// `A:B`, `\angle ABC`, `\frac{NO}{BO}`: no operator or relation outside
/// brackets. (`x^2 + y^2` is a formula.)
pub(super) fn names_a_quantity(s: &str) -> bool {
    let s = s.trim();
    if simple_var(s) {
        return true;
    }
    let mut depth = 0i32;
    for byte in s.bytes() {
        match byte {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            b'+' | b'-' | b'*' | b'/' | b'^' | b'<' | b'>' | b'=' | b',' if depth == 0 => {
                return false;
            }
            _ => {}
        }
    }
    !s.is_empty() && s.bytes().any(|c| c.is_ascii_alphabetic())
}

/// Parse normalised answer text into its structure.
pub(super) fn parse_struct(s: &str, depth: u32) -> Ans {
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
    for sep in [",", ";"] {
        if let Some(parts) = split_top(s, sep) {
            if parts.len() <= MAX_ITEMS && parts.iter().all(|p| !p.trim().is_empty()) {
                return Ans::Seq(Kind::Bare, flatten_items(&parts, depth));
            }
            return Ans::atom(s);
        }
    }
    // `x \approx 11` is `11`; `x = 1/3 \approx 0.33` is `x = 1/3`.
    if let Some(parts) = split_top(s, "\\approx") {
        if let [before, after] = parts.as_slice() {
            let kept = if simple_var(before) { after } else { before };
            return parse_struct(kept, depth + 1);
        }
    }
    if let Some(list) = parse_word_list(s, depth) {
        return list;
    }
    if let Some((lhs, rhs)) = split_equation(s) {
        return Ans::Eq(lhs.to_string(), Box::new(parse_struct(rhs, depth + 1)));
    }
    if let Some((sides, ops)) = split_relations(s) {
        let sides = sides
            .iter()
            .map(|side| parse_struct(side, depth + 1))
            .collect();
        return Ans::Rel(sides, ops);
    }
    parse_bracketed(s, depth)
        .or_else(|| parse_set(s, depth))
        .or_else(|| parse_matrix(s, depth))
        .or_else(|| expand_plus_minus(s, depth))
        .unwrap_or_else(|| Ans::atom(s))
}

/// `1 and -2`, `x = 1 or x = 2`: word-separated lists.
fn parse_word_list(s: &str, depth: u32) -> Option<Ans> {
    for sep in [" and ", " or "] {
        if let Some(parts) = split_top(s, sep) {
            if parts.len() <= MAX_ITEMS && parts.iter().all(|p| !p.trim().is_empty()) {
                return Some(Ans::Seq(Kind::Bare, flatten_items(&parts, depth)));
            }
        }
    }
    None
}

/// `(a, b)`, `[a, b)`: a tuple or an interval with its bracket shapes.
fn parse_bracketed(s: &str, depth: u32) -> Option<Ans> {
    let first = s.chars().next()?;
    let last = s.chars().last()?;
    if !((first == '(' || first == '[')
        && (last == ')' || last == ']')
        && matching_close(s) == Some(s.len() - 1))
    {
        return None;
    }
    let inner = &s[1..s.len() - 1];
    let parts = split_top(inner, ",").or_else(|| split_top(inner, ";"))?;
    if parts.len() > MAX_ITEMS || parts.iter().any(|p| p.trim().is_empty()) {
        return None;
    }
    Some(Ans::Seq(
        Kind::Paren(first as u8, last as u8),
        parts.iter().map(|p| parse_struct(p, depth + 1)).collect(),
    ))
}

/// `\{a, b\}`: a set (one item allowed); too many items leave it an atom.
fn parse_set(s: &str, depth: u32) -> Option<Ans> {
    if !(s.starts_with(SET_OPEN) && s.ends_with(SET_CLOSE)) {
        return None;
    }
    let inner = &s[SET_OPEN.len_utf8()..s.len() - SET_CLOSE.len_utf8()];
    if matching_close(s) != Some(s.len() - SET_CLOSE.len_utf8()) {
        return None;
    }
    let items = match split_top(inner, ",") {
        Some(parts) if parts.len() <= MAX_ITEMS => flatten_items(&parts, depth),
        Some(_) => return Some(Ans::atom(s)),
        None => flatten_items(&[inner], depth),
    };
    Some(Ans::Seq(Kind::Set, items))
}

/// `a \pm b` -> {a + b, a - b} (at most two signs expanded; more leave an atom).
fn expand_plus_minus(s: &str, depth: u32) -> Option<Ans> {
    for (pm, first_sign, second_sign) in [("\\pm", "+", "-"), ("\\mp", "-", "+")] {
        let Some(at) = s.find(pm) else {
            continue;
        };
        let after = at + pm.len();
        if s.as_bytes()
            .get(after)
            .is_some_and(|c| c.is_ascii_alphabetic())
        {
            continue;
        }
        if s.matches(pm).count() > 2 {
            return Some(Ans::atom(s));
        }
        let plus = format!("{}{}{}", &s[..at], first_sign, &s[after..]);
        let minus = format!("{}{}{}", &s[..at], second_sign, &s[after..]);
        let mut items = Vec::new();
        for variant in [plus, minus] {
            match parse_struct(&variant, depth + 1) {
                Ans::Seq(Kind::Bare, v) => items.extend(v),
                other => items.push(other),
            }
        }
        return Some(Ans::Seq(Kind::Bare, items));
    }
    None
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
    // `\left[\begin{array}{cc} ... \end{array}\right]` (the `\left` is gone).
    let bracketed = s.len() >= 2
        && matches!(s.as_bytes()[0], b'[' | b'(')
        && matches!(s.as_bytes()[s.len() - 1], b']' | b')')
        && s[1..].trim_start().starts_with("\\begin{");
    let s = if bracketed {
        s[1..s.len() - 1].trim()
    } else {
        s
    };
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
        assert!(matches!(parse_struct("x = 3 + 4 = 7", 0), Ans::Eq(l, _) if l == "x"));
        match parse_struct("1 < x \\le 3", 0) {
            Ans::Rel(sides, ops) => {
                assert_eq!(sides.len(), 3);
                assert_eq!(ops, vec![RelOp::Lt, RelOp::Le]);
            }
            other => panic!("{other:?}"),
        }
        match parse_struct("3 \\pm 2\\sqrt2", 0) {
            Ans::Seq(Kind::Bare, v) => assert_eq!(v.len(), 2),
            other => panic!("{other:?}"),
        }
    }
}
