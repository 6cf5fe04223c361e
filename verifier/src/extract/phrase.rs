//! Answers announced in prose: "the (final) answer is X", "Answer: X",
//! "**Final Answer:** X", cut at the end of the sentence or math span.
//!
//! Owns: the phrase grammar and the prose that is not an answer. Must not
//! know: boxes, numbers' syntax, or what the answer means.

use super::MAX_TRIES;

/// Longest answer taken from an "answer is ..." phrase.
const MAX_PHRASE_ANSWER: usize = 300;

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
pub(super) fn answer_phrase(text: &str) -> Option<&str> {
    let mut end = text.len();
    for _ in 0..MAX_TRIES * 2 {
        let pos = rfind_ci(&text[..end], "answer")?;
        end = pos;
        // Not the tail of a longer word ("answered" is fine to skip below).
        if pos > 0 && text.as_bytes()[pos - 1].is_ascii_alphabetic() {
            continue;
        }
        let after = text[pos + 6..].trim_start_matches([' ', '*', '_']);
        let rest = if let Some(after_marker) = after.strip_prefix(':') {
            after_marker
        } else if let Some(after_marker) = after.strip_prefix('=') {
            after_marker
        } else {
            let mut hit = None;
            for p in ["is", "would be", "will be", "should be", "equals"] {
                if let Some(after_marker) = strip_ci_prefix(after, p) {
                    if !after_marker
                        .as_bytes()
                        .first()
                        .is_some_and(|c| c.is_ascii_alphanumeric())
                    {
                        hit = Some(after_marker);
                        break;
                    }
                }
            }
            match hit {
                Some(after_marker) => after_marker,
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
    let answer = rest.trim_start_matches([' ', '\t', '*', ':', '_']);
    let answer = answer.strip_prefix('\n').unwrap_or(answer).trim_start();
    let line_end = answer.find('\n').unwrap_or(answer.len());
    let line = &answer[..line_end];
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
    let bytes = line.as_bytes();
    let mut cut = line.len();
    for (pos, &byte) in bytes.iter().enumerate() {
        if byte == b'.' && bytes.get(pos + 1).is_none_or(|n| n.is_ascii_whitespace()) {
            cut = pos;
            break;
        }
        if byte == b',' && bytes.get(pos + 1) == Some(&b' ') {
            let word = bytes[pos + 2..]
                .iter()
                .take_while(|x| x.is_ascii_alphabetic())
                .count();
            if word >= 3 && !bytes[pos + 2..].starts_with(b"and ") {
                cut = pos;
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

#[cfg(test)]
mod tests {
    use super::*;

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
