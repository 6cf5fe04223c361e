//! Explicitly marked answers: the last `\boxed{}` / `\fbox{}` and GSM8K's
//! `#### N`.
//!
//! Owns: brace matching for boxes and the `####` line. Must not know: phrases,
//! numbers, or what the answer means.

use super::MAX_TRIES;

/// Content of the brace group starting at `s[0] == '{'`, nested braces allowed,
/// `\{` / `\}` skipped. `None` if unclosed.
fn braced(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    if b.first() != Some(&b'{') {
        return None;
    }
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                i += 2;
                continue;
            }
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&s[1..i]);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Most boxes joined into one listed answer.
const MAX_LISTED_BOXES: usize = 8;
/// Longest run of separators between two listed boxes, in bytes.
const MAX_LIST_GAP: usize = 64;

/// A box: where its command starts and ends, and its content.
struct BoxedAnswer<'a> {
    command_start: usize,
    end: usize,
    content: &'a str,
}

/// The last complete `\boxed{...}` or `\fbox{...}` (also `\boxed 5`), joined
/// with the boxes listed right before it (`\boxed{1} and \boxed{2}`,
/// `\(\boxed{-2}\), \(\boxed{1}\)`) as `1, 2`: `(answer, offset of the last
/// box's content, end of the last box)`.
pub(super) fn last_boxed(text: &str) -> Option<(String, usize, usize)> {
    // No backslash, no box (a fast byte search first: most GSM8K-style text).
    if !text.contains('\\') {
        return None;
    }
    let last = last_box(text)?;
    let offset = last.content.as_ptr() as usize - text.as_ptr() as usize;
    let end = last.end;
    let mut contents = vec![last.content];
    let mut start = last.command_start;
    while contents.len() < MAX_LISTED_BOXES {
        // A listed box ends with a `}` shortly before this one (a cheap test
        // that spares searching texts with a single box).
        if !text.as_bytes()[start.saturating_sub(MAX_LIST_GAP)..start].contains(&b'}') {
            break;
        }
        match last_box(&text[..start]) {
            Some(prev)
                if start - prev.end <= MAX_LIST_GAP && only_separators(&text[prev.end..start]) =>
            {
                contents.push(prev.content);
                start = prev.command_start;
            }
            _ => break,
        }
    }
    contents.reverse();
    Some((contents.join(", "), offset, end))
}

/// What may stand between listed boxes: spaces, commas, math delimiters,
/// `\quad`, "and" / "or" (plain or in `\text{}`).
fn only_separators(gap: &str) -> bool {
    const SEPARATORS: &[&str] = &[
        ",",
        ";",
        "$",
        "\\(",
        "\\)",
        "\\[",
        "\\]",
        "\\quad",
        "\\qquad",
        "\\,",
        "\\;",
        "\\text{and}",
        "\\text{ and }",
        "\\text{or}",
        "\\text{ or }",
        "and",
        "or",
    ];
    let mut rest = gap.trim_start();
    while !rest.is_empty() {
        if let Some(sep) = SEPARATORS.iter().find(|sep| rest.starts_with(**sep)) {
            rest = rest[sep.len()..].trim_start();
        } else if let Some(after) = variable_equals(rest) {
            // `$n = \boxed{1}$ or $n = \boxed{-2}$`
            rest = after.trim_start();
        } else {
            return false;
        }
    }
    true
}

/// `n =`, `x_1 =` at the start of `s`: what follows it.
fn variable_equals(s: &str) -> Option<&str> {
    let bytes = s.as_bytes();
    if !bytes.first()?.is_ascii_alphabetic() || bytes.get(1).is_some_and(u8::is_ascii_alphabetic) {
        return None;
    }
    let name_end = if bytes.get(1) == Some(&b'_') {
        2 + bytes[2..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'{' | b'}'))
            .count()
    } else {
        1
    };
    s[name_end..].trim_start().strip_prefix('=')
}

/// The last complete box of `text`, trying up to `MAX_TRIES` malformed ones.
fn last_box(text: &str) -> Option<BoxedAnswer<'_>> {
    let mut end = text.len();
    for _ in 0..MAX_TRIES {
        let hay = &text[..end];
        let (start, len) = match (hay.rfind("\\boxed"), hay.rfind("\\fbox")) {
            (Some(b), Some(f)) if f > b => (f, 5),
            (Some(b), _) => (b, 6),
            (None, Some(f)) => (f, 5),
            (None, None) => return None,
        };
        let rest = &text[start + len..];
        let arg = rest.trim_start_matches([' ', '\t']);
        let arg_at = text.len() - arg.len();
        if arg.starts_with('{') {
            if let Some(content) = braced(arg) {
                if !content.trim().is_empty() {
                    return Some(BoxedAnswer {
                        command_start: start,
                        end: arg_at + content.len() + 2,
                        content,
                    });
                }
            }
        } else if rest.starts_with(' ') {
            // `\boxed 5`: up to whitespace or `$`.
            let stop = arg
                .find(|c: char| c.is_whitespace() || c == '$')
                .unwrap_or(arg.len());
            if stop > 0 {
                return Some(BoxedAnswer {
                    command_start: start,
                    end: arg_at + stop,
                    content: &arg[..stop],
                });
            }
        }
        end = start;
    }
    None
}

/// Text after the last `####` up to the end of that line.
pub(super) fn hash_answer(text: &str) -> Option<&str> {
    if !text.contains('#') {
        return None;
    }
    let i = text.rfind("####")?;
    let rest = text[i + 4..].trim_start_matches('#');
    let line = rest.split('\n').next().unwrap_or("").trim();
    (!line.is_empty()).then_some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxed() {
        let boxed = |s: &str| last_boxed(s).map(|(answer, _, _)| answer);
        assert_eq!(
            boxed("a \\boxed{1} b \\boxed{\\frac{1}{2}}").as_deref(),
            Some("\\frac{1}{2}")
        );
        assert_eq!(boxed("\\fbox{7}").as_deref(), Some("7"));
        assert_eq!(
            boxed("\\boxed{3} then \\boxed{unclosed").as_deref(),
            Some("3")
        );
        assert_eq!(boxed("\\boxed 5$").as_deref(), Some("5"));
        assert_eq!(boxed("\\boxed{\\{1,2\\}}").as_deref(), Some("\\{1,2\\}"));
        assert_eq!(boxed("\\boxed{1} and \\boxed{2}").as_deref(), Some("1, 2"));
        assert_eq!(
            boxed("so \\(\\boxed{-2}\\) \\quad \\text{and} \\quad \\(\\boxed{1}\\).").as_deref(),
            Some("-2, 1")
        );
        assert_eq!(boxed("\\boxed{1}\\boxed{2}").as_deref(), Some("1, 2"));
        assert_eq!(
            boxed("\\boxed{5}, so then \\boxed{7}").as_deref(),
            Some("7")
        );
    }
}
