//! Unmarked answers written as plain text: the last expression of a
//! completion (`10/9`, `x <= 2`, `-3.5`, `2^{10}`, `\frac{10}{9}`, `[0, 1)`,
//! `1 000`), not just its last number. Numbers inside words (`AZYUK2A`) are
//! not numbers.
//!
//! Owns: a small lexer of prose-with-math and the rule for which tokens make
//! one expression (spaces only around operators, letters only next to
//! operators, commas only inside brackets). Must not know: LaTeX
//! environments, phrases, or what the answer means.

/// An expression found in the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Found<'a> {
    pub text: &'a str,
    /// Byte offsets of the expression in the searched text.
    pub start: usize,
    pub end: usize,
    /// A single number (with its sign or `%`), not an expression.
    pub plain_number: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Num,
    /// A single letter standing alone.
    Var,
    /// A command that starts or is an operand (`\frac`, `\sqrt`, `\pi`).
    Cmd,
    /// Binary / unary operators and relations.
    Op,
    /// `!`, `%`, `°`, `^\circ` after an operand.
    Postfix,
    Open,
    Close,
    /// A comma (only part of an expression inside brackets).
    Sep,
    Space,
    /// Anything that ends an expression: words, punctuation, line breaks.
    Break,
}

#[derive(Clone, Copy, Debug)]
struct Token {
    kind: Kind,
    start: usize,
    end: usize,
}

/// The last expression of `text` that has a number (or `\pi`, `\infty`) in it.
/// Expressions never span lines, so lines are searched from the last one up,
/// and only lines with a digit or a value in them are looked at.
pub(super) fn last_expression(text: &str) -> Option<Found<'_>> {
    let mut line_end = text.len();
    loop {
        let line_start = text[..line_end].rfind('\n').map_or(0, |k| k + 1);
        let line = &text[line_start..line_end];
        let has_value = line.bytes().any(|c| c.is_ascii_digit())
            || line.contains("\\pi")
            || line.contains("\\infty")
            || line.contains(['π', '∞']);
        if has_value {
            if let Some(found) = last_in_line(line) {
                return Some(Found {
                    start: line_start + found.start,
                    end: line_start + found.end,
                    ..found
                });
            }
        }
        if line_start == 0 {
            return None;
        }
        line_end = line_start - 1;
    }
}

/// The last expression of one line.
fn last_in_line(text: &str) -> Option<Found<'_>> {
    let tokens = lex(text);
    let mut best = None;
    let mut run_start: Option<usize> = None;
    let mut depth = 0i32;
    for (i, token) in tokens.iter().enumerate() {
        let joins = match token.kind {
            Kind::Break => false,
            Kind::Space => bridged(&tokens, i),
            Kind::Sep => depth > 0,
            Kind::Close => depth > 0,
            Kind::Var => var_joins(&tokens, i),
            Kind::Num | Kind::Cmd | Kind::Op | Kind::Postfix | Kind::Open => true,
        };
        if joins {
            match token.kind {
                Kind::Open => depth += 1,
                Kind::Close => depth -= 1,
                _ => {}
            }
            run_start.get_or_insert(i);
            continue;
        }
        if let Some(start) = run_start.take() {
            best = finish(text, &tokens[start..i]).or(best);
        }
        depth = 0;
    }
    if let Some(start) = run_start {
        best = finish(text, &tokens[start..]).or(best);
    }
    best
}

/// A space stays inside an expression only next to an operator, bracket or
/// comma: `x <= 2`, `(3, 4)`, but not `3 4` or `5 apples`.
fn bridged(tokens: &[Token], i: usize) -> bool {
    let before = i.checked_sub(1).map(|k| tokens[k].kind);
    let after = tokens.get(i + 1).map(|t| t.kind);
    matches!(before, Some(Kind::Op | Kind::Open | Kind::Sep | Kind::Cmd))
        || matches!(
            after,
            Some(Kind::Op | Kind::Close | Kind::Sep | Kind::Postfix)
        )
}

/// A lone letter is a variable only next to an operator, bracket or comma:
/// `x = 5`, `2x + 3`, but not `a 5` or `I got 5`.
fn var_joins(tokens: &[Token], i: usize) -> bool {
    let non_space = |k: usize| (tokens[k].kind != Kind::Space).then_some(tokens[k].kind);
    let before = (0..i).rev().find_map(non_space);
    let after = (i + 1..tokens.len()).find_map(non_space);
    matches!(before, Some(Kind::Op | Kind::Open | Kind::Sep))
        || matches!(after, Some(Kind::Op | Kind::Close | Kind::Sep))
}

/// Trim a run to an expression and keep it when it has a value in it.
fn finish<'a>(text: &'a str, run: &[Token]) -> Option<Found<'a>> {
    let run = balanced(trim(run, text));
    let run = trim(run, text);
    let has_value = run.iter().any(|t| {
        t.kind == Kind::Num || (t.kind == Kind::Cmd && is_value_command(&text[t.start..t.end]))
    });
    if !has_value {
        return None;
    }
    let (first, last) = (run.first()?, run.last()?);
    let mut kinds = [Kind::Break; 3];
    for (slot, token) in kinds.iter_mut().zip(run) {
        *slot = token.kind;
    }
    let plain_number = run.len() <= 3
        && matches!(
            &kinds[..run.len()],
            [Kind::Num]
                | [Kind::Op, Kind::Num]
                | [Kind::Num, Kind::Postfix]
                | [Kind::Op, Kind::Num, Kind::Postfix]
        )
        && !text[last.start..last.end].starts_with('!');
    Some(Found {
        text: &text[first.start..last.end],
        start: first.start,
        end: last.end,
        plain_number,
    })
}

fn is_value_command(s: &str) -> bool {
    matches!(s, "\\pi" | "\\infty" | "π" | "∞")
}

/// Drop what cannot start or end an expression: spaces, commas, operators
/// (a sign stays when it is attached), a trailing `!` (an exclamation).
fn trim<'t>(mut run: &'t [Token], text: &str) -> &'t [Token] {
    while let [first, rest @ ..] = run {
        let sign = first.kind == Kind::Op
            && matches!(&text[first.start..first.end], "-" | "+" | "−")
            && rest
                .first()
                .is_some_and(|t| t.start == first.end && t.kind != Kind::Op);
        if matches!(
            first.kind,
            Kind::Space | Kind::Sep | Kind::Postfix | Kind::Close
        ) || (first.kind == Kind::Op && !sign)
        {
            run = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = run {
        let exclamation = last.kind == Kind::Postfix && text[last.start..last.end].starts_with('!');
        if matches!(last.kind, Kind::Space | Kind::Sep | Kind::Op | Kind::Open) || exclamation {
            run = rest;
        } else {
            break;
        }
    }
    run
}

/// Keep what follows the last bracket left open: `(so 5` -> `5`.
fn balanced(run: &[Token]) -> &[Token] {
    let mut open = Vec::new();
    for (k, t) in run.iter().enumerate() {
        match t.kind {
            Kind::Open => open.push(k),
            Kind::Close => {
                open.pop();
            }
            _ => {}
        }
    }
    match open.last() {
        Some(&k) => &run[k + 1..],
        None => run,
    }
}

/// Split the text into tokens (consecutive spaces merged).
fn lex(text: &str) -> Vec<Token> {
    let bytes = text.as_bytes();
    let mut tokens: Vec<Token> = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let after_command = tokens.last().is_some_and(|t| t.kind == Kind::Cmd);
        let (kind, end) = lex_one(text, pos, after_command);
        let end = end.max(pos + 1).min(bytes.len());
        match tokens.last_mut() {
            Some(last) if kind == Kind::Space && last.kind == Kind::Space => last.end = end,
            _ => tokens.push(Token {
                kind,
                start: pos,
                end,
            }),
        }
        pos = end;
        while pos < bytes.len() && !text.is_char_boundary(pos) {
            pos += 1;
        }
    }
    tokens
}

/// The token at `pos`: its kind and end.
fn lex_one(text: &str, pos: usize, after_command: bool) -> (Kind, usize) {
    let bytes = text.as_bytes();
    let byte = bytes[pos];
    match byte {
        b'0'..=b'9' => {
            let in_word = pos > 0 && bytes[pos - 1].is_ascii_alphabetic() && !after_command;
            if in_word {
                (Kind::Break, word_end(bytes, pos))
            } else {
                (Kind::Num, number_end(text, pos))
            }
        }
        b'a'..=b'z' | b'A'..=b'Z' => {
            let end = pos
                + bytes[pos..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphabetic())
                    .count();
            let glued_digit = bytes.get(end).is_some_and(u8::is_ascii_digit);
            if end - pos == 1 && !glued_digit {
                (Kind::Var, end)
            } else {
                (Kind::Break, word_end(bytes, pos))
            }
        }
        b'.' if bytes.get(pos + 1).is_some_and(u8::is_ascii_digit)
            && (pos == 0 || !bytes[pos - 1].is_ascii_alphanumeric()) =>
        {
            // `.4`
            (Kind::Num, number_end(text, pos))
        }
        b'\\' => lex_command(text, pos),
        b' ' | b'\t' => (Kind::Space, pos + 1),
        b'(' | b'[' | b'{' => (Kind::Open, pos + 1),
        b')' | b']' | b'}' => (Kind::Close, pos + 1),
        b'<' if bytes.get(pos + 1) == Some(&b'<') => {
            // GSM8K calculator annotation `<<3*4=12>>`: not part of the answer.
            let close = text[pos..].find(">>").map_or(bytes.len(), |k| pos + k + 2);
            (Kind::Break, close)
        }
        b'<' | b'>' | b'!' if bytes.get(pos + 1) == Some(&b'=') => (Kind::Op, pos + 2),
        b'+' | b'-' | b'*' | b'/' | b'^' | b'=' | b'<' | b'>' | b'_' => (Kind::Op, pos + 1),
        b'!' | b'%' => (Kind::Postfix, pos + 1),
        b',' => (Kind::Sep, pos + 1),
        _ if byte.is_ascii() => (Kind::Break, pos + 1),
        _ => lex_unicode(text, pos),
    }
}

fn word_end(bytes: &[u8], pos: usize) -> usize {
    pos + bytes[pos..]
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric())
        .count()
}

/// `\frac`, `\le`, `\pi`, `\,` ... at `pos`.
fn lex_command(text: &str, pos: usize) -> (Kind, usize) {
    let bytes = text.as_bytes();
    let name_len = bytes[pos + 1..]
        .iter()
        .take_while(|c| c.is_ascii_alphabetic())
        .count();
    if name_len == 0 {
        let kind = match bytes.get(pos + 1) {
            Some(b',' | b'!' | b';' | b':' | b' ') => Kind::Space,
            Some(b'{') => Kind::Open,
            Some(b'}') => Kind::Close,
            Some(b'%') => Kind::Postfix,
            _ => Kind::Break,
        };
        let end = if bytes.get(pos + 1).is_some_and(u8::is_ascii) {
            pos + 2
        } else {
            pos + 1
        };
        return (kind, end);
    }
    let end = pos + 1 + name_len;
    let kind = match &text[pos + 1..end] {
        "frac" | "dfrac" | "tfrac" | "cfrac" | "sqrt" | "binom" | "dbinom" | "pi" | "infty" => {
            Kind::Cmd
        }
        "le" | "leq" | "ge" | "geq" | "ne" | "neq" | "lt" | "gt" | "leqslant" | "geqslant"
        | "times" | "cdot" | "div" | "pm" | "mp" => Kind::Op,
        "circ" | "degree" => Kind::Postfix,
        "left" | "right" | "displaystyle" => Kind::Space,
        _ => Kind::Break,
    };
    (kind, end)
}

fn lex_unicode(text: &str, pos: usize) -> (Kind, usize) {
    let ch = text[pos..].chars().next().unwrap_or(' ');
    let kind = match ch {
        '−' | '×' | '÷' | '·' | '⋅' | '≤' | '≥' | '≠' | '±' | '⩽' | '⩾' => {
            Kind::Op
        }
        '°' => Kind::Postfix,
        'π' | '∞' | '√' => Kind::Cmd,
        '\u{a0}' | '\u{2009}' | '\u{202f}' => Kind::Space,
        _ => Kind::Break,
    };
    (kind, pos + ch.len_utf8())
}

/// End of the number at `pos`: digits, a decimal part, thousands groups
/// (`1,234`, `1 234`, `1\,234`, `1{,}234`, thin spaces) or a decimal comma
/// (`1,22`, where the digits after the comma cannot be a group of three).
fn number_end(text: &str, pos: usize) -> usize {
    let bytes = text.as_bytes();
    let digits = |from: usize| {
        bytes[from..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count()
    };
    let mut end = pos + digits(pos);
    let leading = end - pos;
    let mut grouped = false;
    loop {
        if bytes.get(end) == Some(&b'.') && digits(end + 1) > 0 {
            return end + 1 + digits(end + 1);
        }
        let Some(sep_len) = group_separator(text, end) else {
            return end;
        };
        let group = digits(end + sep_len);
        if group == 3 && (grouped || leading <= 3) {
            end += sep_len + 3;
            grouped = true;
            continue;
        }
        let decimal_comma = bytes.get(end) == Some(&b',') && group > 0 && !grouped;
        return if decimal_comma { end + 1 + group } else { end };
    }
}

/// Length of a thousands separator at `at` (`,`, a space, `\,`, `{,}`, a thin space).
fn group_separator(text: &str, at: usize) -> Option<usize> {
    let rest = &text[at..];
    [
        ",", " ", "\\,", "{,}", "\\ ", "\u{2009}", "\u{202f}", "\u{a0}",
    ]
    .iter()
    .find(|sep| rest.starts_with(**sep))
    .map(|sep| sep.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last(text: &str) -> Option<(&str, bool)> {
        last_expression(text).map(|f| (f.text, f.plain_number))
    }

    #[test]
    fn expressions() {
        assert_eq!(last("so it is 10/9."), Some(("10/9", false)));
        assert_eq!(last("Thus x <= 2 is our answer."), Some(("x <= 2", false)));
        assert_eq!(last("It drops to -3.5 degrees"), Some(("-3.5", true)));
        assert_eq!(last("that is 2^{10} ways"), Some(("2^{10}", false)));
        assert_eq!(last("\\frac{10}{9}"), Some(("\\frac{10}{9}", false)));
        assert_eq!(last("The interval is [0, 1)."), Some(("[0, 1)", false)));
        assert_eq!(last("so 16-3-4=9"), Some(("16-3-4=9", false)));
        assert_eq!(last("x = 5, y = 3."), Some(("y = 3", false)));
        assert_eq!(last("**18**"), Some(("18", true)));
        assert_eq!(last("(so 5)"), Some(("5", true)));
        assert_eq!(last("She is 18!"), Some(("18", true)));
        assert_eq!(last("She got 5! = 120"), Some(("5! = 120", false)));
    }

    #[test]
    fn numbers() {
        assert_eq!(last("about 1 000 people"), Some(("1 000", true)));
        assert_eq!(
            last("total 1,234,567.5 dollars"),
            Some(("1,234,567.5", true))
        );
        assert_eq!(last("it is 1,22 m"), Some(("1,22", true)));
        assert_eq!(last("costs 1\\,000"), Some(("1\\,000", true)));
        assert_eq!(last("costs 1{,}000"), Some(("1{,}000", true)));
        assert_eq!(last("3 4"), Some(("4", true)));
        assert_eq!(last("a 5cm pole"), Some(("5", true)));
        assert_eq!(last("2x"), Some(("2", true)));
        assert_eq!(last("so 25%."), Some(("25%", true)));
        assert_eq!(last("code AZYUK2A"), None);
        assert_eq!(last("=<<3*4=12>>12 eggs"), Some(("12", true)));
        assert_eq!(last("I got a 5"), Some(("5", true)));
        assert_eq!(last("no numbers"), None);
        assert_eq!(last("about .4 of it"), Some((".4", true)));
    }
}
