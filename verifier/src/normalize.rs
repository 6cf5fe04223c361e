//! Canonical text of an answer: math delimiters, markdown, spacing commands,
//! `\text{}` / `\left` / `\right`, degrees and currency are removed in one linear
//! pass; what remains is compared exactly, structurally or numerically.

/// Marker characters for `\{` and `\}` (set braces) after normalisation, so that
/// they are not confused with LaTeX grouping braces.
pub(crate) const SET_OPEN: char = '⦃';
pub(crate) const SET_CLOSE: char = '⦄';

/// Commands whose braced argument is kept and the wrapper dropped.
const UNWRAP: &[&str] = &[
    "text",
    "textbf",
    "textit",
    "textrm",
    "textsf",
    "texttt",
    "textnormal",
    "textup",
    "mathrm",
    "mathbf",
    "mathit",
    "mathsf",
    "mathtt",
    "mathnormal",
    "boldsymbol",
    "bm",
    "mbox",
    "hbox",
    "operatorname",
    "boxed",
    "fbox",
    "emph",
    "underline",
    "overline",
];

/// Commands dropped entirely (sizing, spacing).
const DROP: &[&str] = &[
    "left",
    "right",
    "big",
    "Big",
    "bigg",
    "Bigg",
    "bigl",
    "bigr",
    "Bigl",
    "Bigr",
    "biggl",
    "biggr",
    "Biggl",
    "Biggr",
    "displaystyle",
    "textstyle",
    "scriptstyle",
    "limits",
    "nolimits",
    "phantom",
];

/// Cut `s` to at most `max` bytes at a char boundary (keeping the start).
pub(crate) fn truncate_start(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Keep at most the last `max` bytes of `s`, at a char boundary.
pub(crate) fn truncate_end(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while start < s.len() && !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// Strip wrappers that enclose the whole answer: `$...$`, `\(...\)`, `\[...\]`,
/// markdown emphasis and code, and trailing sentence punctuation.
fn strip_outer(mut s: &str) -> &str {
    for _ in 0..16 {
        let before = s.len();
        s = s.trim();
        s = s.trim_end_matches(['.', ',', ';', ':', '!']);
        // `5!` is a factorial, but a lone trailing `!` after a word or `}` is prose;
        // restore it when it follows a digit or closing bracket of an expression.
        s = s.trim_start_matches([':', '=']);
        s = s.trim();
        for (open, close) in [
            ("$$", "$$"),
            ("\\(", "\\)"),
            ("\\[", "\\]"),
            ("$", "$"),
            ("**", "**"),
            ("__", "__"),
            ("`", "`"),
        ] {
            if s.len() >= open.len() + close.len() && s.starts_with(open) && s.ends_with(close) {
                s = &s[open.len()..s.len() - close.len()];
            }
        }
        s = s.trim_matches('*');
        if s.len() == before {
            break;
        }
    }
    s
}

/// Normalise an answer string. Linear in its length (which the caller caps).
pub(crate) fn normalize(input: &str, max_bytes: usize) -> String {
    let raw = truncate_start(input, max_bytes);
    // Protect factorials from punctuation stripping: `5!` keeps its `!`.
    let keep_bang = {
        let t = raw.trim_end();
        t.ends_with('!') && {
            let b = t.as_bytes();
            b.len() >= 2 && (b[b.len() - 2].is_ascii_digit() || b[b.len() - 2] == b')')
        }
    };
    let s = strip_outer(raw);
    let mut out = String::with_capacity(s.len() + 8);
    pass(s, &mut out);
    let mut collapsed = String::with_capacity(out.len());
    let mut prev_space = true;
    for c in out.chars() {
        if c.is_whitespace() {
            if !prev_space {
                collapsed.push(' ');
            }
            prev_space = true;
        } else {
            collapsed.push(c);
            prev_space = false;
        }
    }
    let mut result = strip_outer(&collapsed).to_string();
    if keep_bang
        && !result.ends_with('!')
        && result.ends_with(|c: char| c.is_ascii_digit() || c == ')')
    {
        result.push('!');
    }
    remove_thousands(&result).unwrap_or(result)
}

/// `1,234,567.5` -> `1234567.5` (also `1 234 567`) when the whole string is
/// such a number.
fn remove_thousands(s: &str) -> Option<String> {
    remove_separators(s, b',').or_else(|| remove_separators(s, b' '))
}

fn remove_separators(s: &str, sep: u8) -> Option<String> {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        i += 1;
    }
    let first = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let lead = i - first;
    if lead == 0 || lead > 3 || i >= b.len() || b[i] != sep {
        return None;
    }
    let mut groups = 0;
    while i < b.len() && b[i] == sep {
        if i + 4 > b.len() || !b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            return None;
        }
        if i + 4 < b.len() && b[i + 4].is_ascii_digit() {
            return None;
        }
        i += 4;
        groups += 1;
    }
    if groups == 0 {
        return None;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let fs = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == fs {
            return None;
        }
    }
    if i < b.len() && b[i] == b'%' {
        i += 1;
    }
    if i != b.len() {
        return None;
    }
    Some(s.replace(sep as char, ""))
}

fn pass(s: &str, out: &mut String) {
    let b = s.as_bytes();
    // For each `{` seen: whether its matching `}` is dropped (unwrapped command).
    let mut stack: Vec<bool> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\\' => {
                let mut j = i + 1;
                while j < b.len() && b[j].is_ascii_alphabetic() {
                    j += 1;
                }
                if j == i + 1 {
                    // Non-letter command: `\,` `\!` `\{` `\$` `\%` `\\` ...
                    match b.get(i + 1) {
                        Some(b'!') | Some(b',') | Some(b';') | Some(b':') | Some(b'>') => {}
                        Some(b' ') => out.push(' '),
                        Some(b'{') => out.push(SET_OPEN),
                        Some(b'}') => out.push(SET_CLOSE),
                        Some(b'$') => {}
                        Some(b'%') => out.push('%'),
                        Some(b'|') => out.push('|'),
                        Some(b'\\') => out.push_str("\\\\"),
                        Some(b'(') => out.push(' '),
                        Some(b')') => out.push(' '),
                        Some(b'[') => out.push(' '),
                        Some(b']') => out.push(' '),
                        Some(&o) if o.is_ascii() => {
                            out.push('\\');
                            out.push(o as char);
                        }
                        Some(_) => out.push('\\'),
                        None => {}
                    }
                    i += if b.get(i + 1).is_some_and(|x| x.is_ascii()) {
                        2
                    } else {
                        1
                    };
                    continue;
                }
                let name = &s[i + 1..j];
                i = j;
                if UNWRAP.contains(&name) {
                    let mut k = j;
                    while k < b.len() && b[k] == b' ' {
                        k += 1;
                    }
                    if k < b.len() && b[k] == b'{' {
                        stack.push(true);
                        i = k + 1;
                    }
                    continue;
                }
                if DROP.contains(&name) {
                    if name == "left" || name == "right" {
                        // `\left.` / `\right.` are invisible delimiters.
                        if b.get(i) == Some(&b'.') {
                            i += 1;
                        }
                    }
                    continue;
                }
                let emitted: Option<&str> = match name {
                    "dfrac" | "tfrac" | "cfrac" => Some("\\frac"),
                    "dbinom" | "tbinom" => Some("\\binom"),
                    "circ" | "degree" | "degrees" => {
                        if out.ends_with('^') {
                            out.pop();
                        } else if out.ends_with("^{") {
                            out.pop();
                            out.pop();
                            if let Some(top) = stack.last_mut() {
                                *top = true;
                            }
                        }
                        None
                    }
                    "cdot" | "times" | "ast" | "bullet" => {
                        out.push('*');
                        None
                    }
                    "div" => {
                        out.push('/');
                        None
                    }
                    "quad" | "qquad" | "enspace" | "thinspace" | "medspace" | "thickspace"
                    | "space" | "hfill" => {
                        out.push(' ');
                        None
                    }
                    "lvert" | "rvert" | "vert" => {
                        out.push('|');
                        None
                    }
                    "lbrace" => {
                        out.push(SET_OPEN);
                        None
                    }
                    "rbrace" => {
                        out.push(SET_CLOSE);
                        None
                    }
                    "leq" | "le" | "leqslant" => Some("\\le"),
                    "geq" | "ge" | "geqslant" => Some("\\ge"),
                    "neq" | "ne" => Some("\\ne"),
                    "dots" | "ldots" | "cdots" => Some("\\dots"),
                    "colon" => {
                        out.push(':');
                        None
                    }
                    "infin" => Some("\\infty"),
                    "varnothing" => Some("\\emptyset"),
                    _ => Some(""),
                };
                if let Some(e) = emitted {
                    if e.is_empty() {
                        out.push('\\');
                        out.push_str(name);
                    } else {
                        out.push_str(e);
                    }
                    // Keep a letter after a command from merging into its name.
                    if b.get(i).is_some_and(|x| x.is_ascii_alphabetic()) {
                        out.push(' ');
                    }
                }
            }
            b'{' => {
                stack.push(false);
                out.push('{');
                i += 1;
            }
            b'}' => {
                if stack.pop() != Some(true) {
                    out.push('}');
                }
                i += 1;
            }
            b'$' => i += 1,
            b'~' | b'\t' | b'\n' | b'\r' => {
                out.push(' ');
                i += 1;
            }
            b',' => {
                // `10,\!080`: thousands separator.
                if b[i + 1..].starts_with(b"\\!") && out.ends_with(|ch: char| ch.is_ascii_digit()) {
                    i += 3;
                    while i < b.len() && b[i] == b' ' {
                        i += 1;
                    }
                } else {
                    out.push(',');
                    i += 1;
                }
            }
            c if c.is_ascii() => {
                out.push(c as char);
                i += 1;
            }
            _ => {
                let ch = s[i..].chars().next().unwrap_or(' ');
                i += ch.len_utf8();
                match ch {
                    '−' | '–' | '‒' | '﹣' | '－' => out.push('-'),
                    '×' | '·' | '⋅' | '∗' => out.push('*'),
                    '÷' => out.push('/'),
                    'π' => {
                        out.push_str("\\pi");
                        if b.get(i).is_some_and(|x| x.is_ascii_alphabetic()) {
                            out.push(' ');
                        }
                    }
                    '√' => out.push_str("\\sqrt"),
                    '∞' => out.push_str("\\infty"),
                    '°' => {}
                    '∪' => out.push_str("\\cup "),
                    '≤' => out.push_str("\\le "),
                    '≥' => out.push_str("\\ge "),
                    '≠' => out.push_str("\\ne "),
                    '\u{a0}' | '\u{2009}' | '\u{202f}' | '\u{2002}' | '\u{2003}' | '\u{200b}' => {
                        out.push(' ')
                    }
                    other => out.push(other),
                }
            }
        }
    }
}

/// Words that are mathematics, not units or prose.
fn math_word(w: &str) -> bool {
    matches!(
        w,
        "pi" | "sin"
            | "cos"
            | "tan"
            | "cot"
            | "sec"
            | "csc"
            | "log"
            | "ln"
            | "exp"
            | "sqrt"
            | "inf"
            | "infty"
            | "and"
            | "or"
    )
}

/// Two-letter unit abbreviations that may follow a number.
const SHORT_UNITS: &[&str] = &[
    "cm", "mm", "km", "kg", "mg", "ft", "in", "mi", "lb", "oz", "ml", "hr", "yd", "sq", "cu", "pm",
    "am", "gb", "mb", "kb",
];

/// Attached units accepted without a space: `5cm`, `12kg`.
const ATTACHED_UNITS: &[&str] = &[
    "cm", "mm", "km", "kg", "mg", "ft", "ml", "hrs", "lbs", "mph", "kph", "cents", "dollars",
    "degrees", "meters", "inches", "feet", "miles", "hours", "minutes", "seconds", "days", "years",
    "units", "pounds", "grams",
];

/// Result of removing trailing unit words / prose from a numeric answer.
pub(crate) struct Stripped<'a> {
    pub text: &'a str,
    pub percent: bool,
}

/// Remove trailing unit words (`5 cm`, `18 dollars per day`, `864 inches^2`) and
/// a percent sign, when what remains still contains a digit.
pub(crate) fn strip_units(s: &str) -> Stripped<'_> {
    let mut t = s.trim();
    let mut percent = false;
    for _ in 0..8 {
        let before = t.len();
        if let Some(r) = t.strip_suffix('%') {
            t = r.trim_end();
            percent = true;
        }
        // Last whitespace-separated token.
        if let Some(k) = t.rfind(' ') {
            let tok = &t[k + 1..];
            let prefix = t[..k].trim_end();
            let word = tok
                .strip_suffix("^2")
                .or_else(|| tok.strip_suffix("^3"))
                .or_else(|| tok.strip_suffix("^{2}"))
                .or_else(|| tok.strip_suffix("^{3}"))
                .unwrap_or(tok)
                .trim_end_matches('.');
            let is_word = word.bytes().all(|c| c.is_ascii_alphabetic())
                && (word.len() >= 3 || SHORT_UNITS.contains(&word))
                && !math_word(word);
            if is_word && prefix.bytes().any(|c| c.is_ascii_digit()) {
                if word.eq_ignore_ascii_case("percent") {
                    percent = true;
                }
                t = prefix;
            }
        }
        if t.len() == before {
            break;
        }
    }
    // Attached unit after a plain number: `5cm`.
    let digits_end = t
        .bytes()
        .position(|c| !(c.is_ascii_digit() || c == b'.' || c == b'-' || c == b'+'))
        .unwrap_or(t.len());
    if digits_end > 0 && digits_end < t.len() && t.as_bytes()[0] != b'.' {
        let rest = &t[digits_end..];
        let unit = rest
            .strip_suffix("^2")
            .or_else(|| rest.strip_suffix("^3"))
            .unwrap_or(rest);
        if ATTACHED_UNITS.contains(&unit) {
            t = &t[..digits_end];
        } else if unit == "percent" {
            t = &t[..digits_end];
            percent = true;
        }
    }
    Stripped { text: t, percent }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> String {
        normalize(s, 4096)
    }

    #[test]
    fn basics() {
        assert_eq!(n("$\\frac{1}{2}$."), "\\frac{1}{2}");
        assert_eq!(n("\\(\\dfrac{3}{4}\\)"), "\\frac{3}{4}");
        assert_eq!(n("**18**"), "18");
        assert_eq!(n("\\$18.90"), "18.90");
        assert_eq!(n("10,\\!080"), "10080");
        assert_eq!(n("11,\\! 111,\\! 111,\\! 100"), "11111111100");
        assert_eq!(n("1,080"), "1080");
        assert_eq!(n("1,-2"), "1,-2");
        assert_eq!(n("30^\\circ"), "30");
        assert_eq!(n("30^{\\circ}"), "30");
        assert_eq!(n("\\text{Evelyn}"), "Evelyn");
        assert_eq!(
            n("\\left( 3, \\frac{\\pi}{2} \\right)"),
            "( 3, \\frac{\\pi}{2} )"
        );
        assert_eq!(n("\\{1,2\\}"), "⦃1,2⦄");
        assert_eq!(n("5!"), "5!");
        assert_eq!(n("864 \\mbox{ inches}^2"), "864 inches^2");
        assert_eq!(n("\\cot x"), "\\cot x");
        assert_eq!(n("\\pi r"), "\\pi r");
    }

    #[test]
    fn units() {
        assert_eq!(strip_units("864 inches^2").text, "864");
        assert_eq!(strip_units("18 dollars per day").text, "18");
        assert_eq!(strip_units("5 cm").text, "5");
        assert_eq!(strip_units("5cm").text, "5");
        let p = strip_units("25 %");
        assert!(p.percent);
        assert_eq!(p.text, "25");
        assert_eq!(strip_units("east").text, "east");
        assert_eq!(strip_units("2 xy").text, "2 xy");
    }
}
