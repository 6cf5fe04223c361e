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

/// The last complete `\boxed{...}` or `\fbox{...}` (also `\boxed 5`).
pub(super) fn last_boxed(text: &str) -> Option<&str> {
    let mut end = text.len();
    for _ in 0..MAX_TRIES {
        let hay = &text[..end];
        let b = hay.rfind("\\boxed");
        let f = hay.rfind("\\fbox");
        let (i, len) = match (b, f) {
            (Some(x), Some(y)) if y > x => (y, 5),
            (Some(x), _) => (x, 6),
            (None, Some(y)) => (y, 5),
            (None, None) => return None,
        };
        let rest = &text[i + len..];
        let r = rest.trim_start_matches([' ', '\t']);
        if r.starts_with('{') {
            if let Some(c) = braced(r) {
                if !c.trim().is_empty() {
                    return Some(c);
                }
            }
        } else if rest.starts_with(' ') {
            // `\boxed 5`: up to whitespace or `$`.
            let stop = r
                .find(|c: char| c.is_whitespace() || c == '$')
                .unwrap_or(r.len());
            if stop > 0 {
                return Some(&r[..stop]);
            }
        }
        end = i;
    }
    None
}

/// Text after the last `####` up to the end of that line.
pub(super) fn hash_answer(text: &str) -> Option<&str> {
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
        assert_eq!(
            last_boxed("a \\boxed{1} b \\boxed{\\frac{1}{2}}"),
            Some("\\frac{1}{2}")
        );
        assert_eq!(last_boxed("\\fbox{7}"), Some("7"));
        assert_eq!(last_boxed("\\boxed{3} then \\boxed{unclosed"), Some("3"));
        assert_eq!(last_boxed("\\boxed 5$"), Some("5"));
        assert_eq!(last_boxed("\\boxed{\\{1,2\\}}"), Some("\\{1,2\\}"));
    }
}
