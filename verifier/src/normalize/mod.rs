//! Canonical text of an answer: math delimiters, markdown, spacing commands,
//! `\text{}` / `\left` / `\right`, degrees and currency are removed in one
//! linear pass; what remains is compared exactly, structurally or numerically.
//!
//! Owns: the order of the normalisation steps, outer wrappers and sentence
//! punctuation, whitespace, and byte caps. Must not know: answer structure,
//! values, or where in a completion the answer was found.

mod latex;
mod thousands;
mod units;

pub(crate) use thousands::remove_thousands;
pub(crate) use units::strip_units;

/// Marker characters for `\{` and `\}` (set braces) after normalisation, so that
/// they are not confused with LaTeX grouping braces.
pub(crate) const SET_OPEN: char = '⦃';
pub(crate) const SET_CLOSE: char = '⦄';

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
    // Inside `$…$` a trailing `!` after a digit or `)` is a factorial (`$5!$`).
    let mut in_math = false;
    for _ in 0..16 {
        let before = s.len();
        s = s.trim();
        s = s.trim_end_matches(['.', ',', ';', ':']);
        if !(in_math && factorial_at_end(s)) {
            s = s.trim_end_matches(['.', ',', ';', ':', '!']);
        }
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
                in_math |= open.starts_with(['$', '\\']);
            }
        }
        s = s.trim_matches('*');
        // `{1,2,3}`: grouping braces around the whole answer.
        if s.len() > 2 && s.starts_with('{') && group_end(s) == Some(s.len() - 1) {
            s = &s[1..s.len() - 1];
        }
        if s.len() == before {
            break;
        }
    }
    s
}

/// `5!`, `(n+1)!`: ends with a factorial sign.
fn factorial_at_end(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2
        && b[b.len() - 1] == b'!'
        && (b[b.len() - 2].is_ascii_digit() || b[b.len() - 2] == b')')
}

/// Offset of the `}` closing the `{` at the start of `s` (escaped `\{` `\}`
/// skipped).
fn group_end(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut depth = 0usize;
    let mut pos = 0;
    while pos < bytes.len() {
        match bytes[pos] {
            b'\\' => pos += 1,
            b'{' => depth += 1,
            b'}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(pos);
                }
            }
            _ => {}
        }
        pos += 1;
    }
    None
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
    // `$5!$`: kept by `strip_outer` inside the delimiters, and so to be kept below.
    let keep_bang = keep_bang || factorial_at_end(s);
    let mut out = String::with_capacity(s.len() + 8);
    latex::rewrite(s, &mut out);
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
    thousands::remove_thousands(&result).unwrap_or(result)
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
        assert_eq!(n("$5!$"), "5!");
        assert_eq!(n("$5!$."), "5!");
        assert_eq!(n("It is 5!"), "It is 5!");
        assert_eq!(n("864 \\mbox{ inches}^2"), "864 inches^2");
        assert_eq!(n("\\cot x"), "\\cot x");
        assert_eq!(n("\\pi r"), "\\pi r");
        assert_eq!(n("{1,2,3}"), "1,2,3");
        assert_eq!(n("{x}^2"), "{x}^2");
        assert_eq!(n("x <= 2"), "x \\le 2");
        assert_eq!(n("1{,}000"), "1000");
        assert_eq!(n("0,111"), "0,111");
        assert_eq!(n("3\\,\\mathrm{m}"), "3");
    }
}
