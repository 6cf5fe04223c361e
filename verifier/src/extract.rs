//! Finding the final answer in a completion and the gold answer in a dataset
//! field. Hand-written scanners: each method is linear in the (capped) input.

use crate::normalize::truncate_end;
use crate::{ExtractMethod, Extracted, GoldFormat, VerifierConfig};

/// How many earlier candidates a method may try after a malformed one.
const MAX_TRIES: usize = 8;
/// Longest answer taken from an "answer is ..." phrase.
const MAX_PHRASE_ANSWER: usize = 300;

/// Extract the final answer: the last `\boxed{}`/`\fbox{}`, else GSM8K `#### N`,
/// else "the (final) answer is ...", else (if enabled) the last number.
pub fn extract_answer(completion: &str, cfg: &VerifierConfig) -> Option<Extracted> {
    let text = truncate_end(completion, cfg.max_completion_bytes);
    let found = |answer: &str, method| {
        Some(Extracted {
            answer: answer.trim().to_string(),
            method,
        })
    };
    if let Some(a) = last_boxed(text) {
        return found(a, ExtractMethod::Boxed);
    }
    if let Some(a) = hash_answer(text) {
        return found(a, ExtractMethod::Hash);
    }
    if cfg.answer_phrase {
        if let Some(a) = answer_phrase(text) {
            return found(a, ExtractMethod::AnswerIs);
        }
    }
    if cfg.last_number_fallback {
        if let Some(a) = last_number(text) {
            return Some(Extracted {
                answer: a,
                method: ExtractMethod::LastNumber,
            });
        }
    }
    None
}

/// Only the last this-many bytes of a gold field are searched (answers are at
/// the end of GSM8K / MATH solutions); a raw field keeps its first bytes.
const MAX_GOLD_FIELD_BYTES: usize = 64 * 1024;

/// Extract the gold answer from a dataset field.
pub fn extract_gold(field: &str, fmt: GoldFormat) -> Option<String> {
    let field = if fmt == GoldFormat::Raw {
        crate::normalize::truncate_start(field, MAX_GOLD_FIELD_BYTES)
    } else {
        truncate_end(field, MAX_GOLD_FIELD_BYTES)
    };
    let out = match fmt {
        GoldFormat::Gsm8k => hash_answer(field),
        GoldFormat::Math => last_boxed(field),
        GoldFormat::Raw => Some(field),
        GoldFormat::Auto => {
            if field.contains("####") {
                hash_answer(field)
            } else if field.contains("\\boxed") || field.contains("\\fbox") {
                last_boxed(field)
            } else {
                Some(field)
            }
        }
    }?;
    let t = out.trim();
    (!t.is_empty()).then(|| t.to_string())
}

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
pub(crate) fn last_boxed(text: &str) -> Option<&str> {
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
pub(crate) fn hash_answer(text: &str) -> Option<&str> {
    let i = text.rfind("####")?;
    let rest = text[i + 4..].trim_start_matches('#');
    let line = rest.split('\n').next().unwrap_or("").trim();
    (!line.is_empty()).then_some(line)
}

/// Last case-insensitive occurrence of an ASCII needle.
fn rfind_ci(hay: &str, needle: &str) -> Option<usize> {
    let h = hay.as_bytes();
    let n = needle.as_bytes();
    if n.is_empty() || h.len() < n.len() {
        return None;
    }
    (0..=h.len() - n.len())
        .rev()
        .find(|&i| h[i..i + n.len()].eq_ignore_ascii_case(n))
}

fn strip_ci_prefix<'a>(s: &'a str, p: &str) -> Option<&'a str> {
    let b = s.as_bytes();
    if b.len() >= p.len() && b[..p.len()].eq_ignore_ascii_case(p.as_bytes()) {
        Some(&s[p.len()..])
    } else {
        None
    }
}

/// "The (final) answer is X", "Answer: X", "**Final Answer:** X".
pub(crate) fn answer_phrase(text: &str) -> Option<&str> {
    let mut end = text.len();
    for _ in 0..MAX_TRIES * 2 {
        let pos = rfind_ci(&text[..end], "answer")?;
        end = pos;
        // Not the tail of a longer word ("answered" is fine to skip below).
        if pos > 0 && text.as_bytes()[pos - 1].is_ascii_alphabetic() {
            continue;
        }
        let after = text[pos + 6..].trim_start_matches([' ', '*', '_']);
        let rest = if let Some(r) = after.strip_prefix(':') {
            r
        } else if let Some(r) = after.strip_prefix('=') {
            r
        } else {
            let mut hit = None;
            for p in ["is", "would be", "will be", "should be", "equals"] {
                if let Some(r) = strip_ci_prefix(after, p) {
                    if !r
                        .as_bytes()
                        .first()
                        .is_some_and(|c| c.is_ascii_alphanumeric())
                    {
                        hit = Some(r);
                        break;
                    }
                }
            }
            match hit {
                Some(r) => r,
                None => continue,
            }
        };
        if let Some(a) = phrase_span(rest) {
            return Some(a);
        }
    }
    None
}

/// The answer text after an "answer is" phrase: a math span, or the rest of
/// the sentence.
fn phrase_span(rest: &str) -> Option<&str> {
    let r = rest.trim_start_matches([' ', '\t', '*', ':', '_']);
    let r = r.strip_prefix('\n').unwrap_or(r).trim_start();
    let line_end = r.find('\n').unwrap_or(r.len());
    let line = &r[..line_end];
    for (open, close) in [("$$", "$$"), ("\\(", "\\)"), ("\\[", "\\]"), ("$", "$")] {
        if let Some(inner) = line.strip_prefix(open) {
            if let Some(k) = inner.find(close) {
                let span = inner[..k].trim();
                if !span.is_empty() {
                    return Some(span);
                }
            }
        }
    }
    // Up to the end of the sentence: ". " / "." at the end (not a decimal
    // point), or ", because ..." (a comma followed by a word, not a list item).
    let b = line.as_bytes();
    let mut cut = line.len();
    for (i, &c) in b.iter().enumerate() {
        if c == b'.' && b.get(i + 1).is_none_or(|n| n.is_ascii_whitespace()) {
            cut = i;
            break;
        }
        if c == b',' && b.get(i + 1) == Some(&b' ') {
            let word = b[i + 2..]
                .iter()
                .take_while(|x| x.is_ascii_alphabetic())
                .count();
            if word >= 3 && !b[i + 2..].starts_with(b"and ") {
                cut = i;
                break;
            }
        }
    }
    // "The answer is 18!" is an exclamation, not a factorial.
    let span = line[..cut].trim().trim_end_matches('!').trim_end();
    if span.is_empty() || span.len() > MAX_PHRASE_ANSWER || not_an_answer(span) {
        return None;
    }
    Some(span)
}

/// "... the answer is correct", "the answer is as follows": prose, not an answer.
fn not_an_answer(span: &str) -> bool {
    const PROSE: &[&str] = &[
        "correct",
        "incorrect",
        "right",
        "wrong",
        "as follow",
        "below",
        "above",
        "the following",
        "not ",
        "that ",
        "this ",
        "clear",
        "simple",
        "straightforward",
        "given by",
        "shown",
        "obtained",
        "found",
        "calculated",
        "computed",
        "indeed",
        "therefore",
    ];
    let lower = span.as_bytes();
    PROSE
        .iter()
        .any(|p| lower.len() >= p.len() && lower[..p.len()].eq_ignore_ascii_case(p.as_bytes()))
}

/// The last number in the text: `1,080`, `-3.5`, `.5`, `3/4`. Commas removed.
pub(crate) fn last_number(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let last = b.iter().rposition(u8::is_ascii_digit)?;
    let end = last + 1;
    // Walk left over digits, thousands commas (exactly three digits after) and
    // one decimal point.
    let mut start = last;
    let mut run = 1; // digits since the last separator
    let mut seen_point = false;
    let mut seen_comma = false;
    while start > 0 {
        let c = b[start - 1];
        if c.is_ascii_digit() {
            start -= 1;
            run += 1;
        } else if c == b',' && run == 3 && start >= 2 && b[start - 2].is_ascii_digit() {
            start -= 1;
            run = 0;
            seen_comma = true;
        } else if c == b'.' && !seen_point && !seen_comma {
            if start >= 2 && b[start - 2].is_ascii_digit() {
                start -= 1;
                run = 0;
                seen_point = true;
            } else {
                // `.5`
                start -= 1;
                break;
            }
        } else {
            break;
        }
    }
    let mut token: String = text[start..end].chars().filter(|&c| c != ',').collect();
    // Fraction `a/b`.
    if start >= 2 && b[start - 1] == b'/' && b[start - 2].is_ascii_digit() && !token.contains('.') {
        let mut s2 = start - 1;
        while s2 > 0 && b[s2 - 1].is_ascii_digit() {
            s2 -= 1;
        }
        if s2 > 0 && (b[s2 - 1] == b'.' || b[s2 - 1] == b'/') {
            // `1.5/2` or `1/2/3`: keep the last number alone.
        } else {
            token = format!("{}/{}", &text[s2..start - 1], token);
            start = s2;
        }
    }
    // Sign: `-5` but not `3-5`.
    if start >= 1 && b[start - 1] == b'-' {
        let before = if start >= 2 { b[start - 2] } else { b' ' };
        if !(before.is_ascii_alphanumeric() || before == b')' || before == b'}') {
            token.insert(0, '-');
        }
    }
    Some(token)
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

    #[test]
    fn numbers() {
        assert_eq!(last_number("it costs $1,080."), Some("1080".into()));
        assert_eq!(last_number("so 16-3-4=9"), Some("9".into()));
        assert_eq!(last_number("x is -3.5"), Some("-3.5".into()));
        assert_eq!(last_number("half is 3/4 cup"), Some("3/4".into()));
        assert_eq!(last_number("values 3,4"), Some("4".into()));
        assert_eq!(last_number("about .5"), Some(".5".into()));
        assert_eq!(last_number("none"), None);
    }

    #[test]
    fn phrases() {
        assert_eq!(answer_phrase("So the answer is 18."), Some("18"));
        assert_eq!(
            answer_phrase("The final answer is $\\frac{1}{2}$. Done"),
            Some("\\frac{1}{2}")
        );
        assert_eq!(answer_phrase("**Answer:** 3.5\n"), Some("3.5"));
        assert_eq!(
            answer_phrase("The answer is $18 per day."),
            Some("$18 per day")
        );
        assert_eq!(answer_phrase("To answer this, we compute"), None);
        assert_eq!(
            answer_phrase("The answer is 18, because 9 * 2 = 18."),
            Some("18")
        );
        assert_eq!(
            answer_phrase("The answer is 3, 5, and 7."),
            Some("3, 5, and 7")
        );
        assert_eq!(answer_phrase("So the answer is 18!"), Some("18"));
        assert_eq!(
            answer_phrase("So the answer is 12. I hope the answer is correct."),
            Some("12")
        );
    }
}
