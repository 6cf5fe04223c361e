//! Answers announced in prose: "the (final) answer is X", "Answer: X",
//! "**Final Answer:** X", and the same in the languages math datasets use
//! ("La respuesta es X", "Die Antwort ist X", "Ответ: X", "答案是 X", ...), cut
//! at the end of the sentence or math span.
//!
//! Owns: the phrase vocabulary and grammar, and the prose that is not an
//! answer. Must not know: boxes, numbers' syntax, or what the answer means.

use super::latex::find_closer;
use super::MAX_TRIES;

/// Longest answer taken from an "answer is ..." phrase.
const MAX_PHRASE_ANSWER: usize = 300;

/// Non-ASCII words for "answer" (with the case forms they are written in)
/// that need a connector.
const OTHER_WORDS: &[&str] = &[
    "réponse",
    "Réponse",
    "RÉPONSE",
    "ответ",
    "Ответ",
    "ОТВЕТ",
    "odpowiedź",
    "Odpowiedź",
    "đáp án",
    "Đáp án",
    "ĐÁP ÁN",
];

/// Phrases that carry their own connector (scripts without case or spaces).
const OTHER_PHRASES: &[&str] = &[
    "答案是",
    "答案为",
    "答案為",
    "答案：",
    "答案:",
    "答えは",
    "答え：",
    "答え:",
    "解答：",
    "答：",
    "정답은",
    "답은",
    "정답:",
    "답:",
    "উত্তর:",
    "উত্তর হল",
    "คำตอบคือ",
    "คำตอบ:",
    "సమాధానం:",
    "उत्तर:",
    "उत्तर है",
];

/// What joins an answer word to its answer ("is" and its translations, `:`).
const CONNECTORS: &[&str] = &[
    ":",
    "：",
    "=",
    "is",
    "would be",
    "will be",
    "should be",
    "equals",
    "es",
    "est",
    "ist",
    "è",
    "é",
    "ni",
    "equivale a",
    "равен",
    "равно",
    "—",
];

/// The answer of the last "answer" phrase: `"The answer is $18$."` -> `18`.
pub(super) fn answer_phrase(text: &str) -> Option<&str> {
    last_phrase(text).map(|(answer, _)| answer)
}

/// The answer of the last phrase that states a *final* answer ("Final
/// Answer: X", "the final answer is X"); "check our answer: ..." is not one.
pub(super) fn final_answer_phrase(text: &str) -> Option<&str> {
    let (answer, pos) = last_phrase(text)?;
    ends_with_ci(&text[..pos], "final ").then_some(answer)
}

/// The last phrase in any language: `(answer, position of its word)`.
fn last_phrase(text: &str) -> Option<(&str, usize)> {
    let ascii = last_ascii_phrase(text);
    let other = if text.is_ascii() {
        None
    } else {
        last_other_phrase(text)
    };
    match (ascii, other) {
        (Some(a), Some(b)) => Some(if b.1 > a.1 { b } else { a }),
        (found, None) | (None, found) => found,
    }
}

/// The last ASCII answer word with a connector and an answer after it, found
/// in one backward pass over the text: `(answer, position of the word)`.
fn last_ascii_phrase(text: &str) -> Option<(&str, usize)> {
    let bytes = text.as_bytes();
    let mut candidates = 0;
    for pos in (0..bytes.len()).rev() {
        if !FIRST_LETTERS[usize::from(bytes[pos])] {
            continue;
        }
        let second = bytes.get(pos + 1).map(u8::to_ascii_lowercase);
        for word in ascii_words_from(bytes[pos]) {
            if second != word.as_bytes().get(1).copied() {
                continue;
            }
            let end = pos + word.len();
            if end > bytes.len()
                || !bytes[pos..end].eq_ignore_ascii_case(word.as_bytes())
                || !is_whole_word(bytes, pos, end)
            {
                continue;
            }
            candidates += 1;
            if let Some(answer) = after_word(text, pos, end) {
                return Some((answer, pos));
            }
            if candidates >= MAX_TRIES * 2 {
                return None;
            }
        }
    }
    None
}

/// The first letters (either case) of the ASCII words for "answer".
const FIRST_LETTERS: [bool; 256] = {
    let mut table = [false; 256];
    let letters = b"arjcsoARJCSO";
    let mut k = 0;
    while k < letters.len() {
        table[letters[k] as usize] = true;
        k += 1;
    }
    table
};

/// ASCII words for "answer" starting with `first` (matched case-insensitively,
/// as whole words); they need a connector after them (see [`CONNECTORS`]).
fn ascii_words_from(first: u8) -> &'static [&'static str] {
    match first.to_ascii_lowercase() {
        b'a' => &["answer", "antwort", "antwoord"],
        b'r' => &["respuesta", "reponse", "risposta", "resposta"],
        b'j' => &["jibu", "jawaban"],
        b'c' => &["cevap"],
        b's' => &["svar"],
        b'o' => &["odpowiedz"],
        _ => &[],
    }
}

/// The last non-ASCII answer word or phrase with an answer after it.
fn last_other_phrase(text: &str) -> Option<(&str, usize)> {
    let mut best = None;
    for word in OTHER_WORDS {
        for (pos, _) in text.rmatch_indices(word).take(MAX_TRIES) {
            let end = pos + word.len();
            let whole = !text[..pos]
                .chars()
                .next_back()
                .is_some_and(char::is_alphabetic)
                && !text[end..].chars().next().is_some_and(char::is_alphabetic);
            if whole {
                keep_later(&mut best, pos, after_word(text, pos, end));
            }
        }
    }
    for phrase in OTHER_PHRASES {
        for (pos, _) in text.rmatch_indices(phrase).take(MAX_TRIES) {
            let rest = &text[pos + phrase.len()..];
            let answer = phrase_span(rest.trim_start_matches([' ', '*', ':', '：']));
            keep_later(&mut best, pos, answer);
        }
    }
    best
}

fn keep_later<'a>(best: &mut Option<(&'a str, usize)>, pos: usize, answer: Option<&'a str>) {
    if let Some(answer) = answer {
        if best.is_none_or(|(_, known)| pos > known) {
            *best = Some((answer, pos));
        }
    }
}

fn is_whole_word(bytes: &[u8], start: usize, end: usize) -> bool {
    let before = start.checked_sub(1).map(|k| bytes[k]);
    let after = bytes.get(end).copied();
    !before.is_some_and(|c| c.is_ascii_alphabetic())
        && !after.is_some_and(|c| c.is_ascii_alphabetic())
}

/// The answer after the word at `start..end`, when a connector follows it
/// ("answer is", "Answer:", or a line break after "Final Answer").
fn after_word(text: &str, start: usize, end: usize) -> Option<&str> {
    let after = text[end..].trim_start_matches([' ', '*', '_', '\t']);
    let rest = connector(after).or_else(|| {
        let heading = ends_with_ci(&text[..start], "final ");
        let line_break = after
            .trim_start_matches([':', '#', ' ', '*'])
            .strip_prefix('\n');
        heading.then_some(line_break).flatten()
    })?;
    phrase_span(rest)
}

/// `s` after a leading connector.
fn connector(s: &str) -> Option<&str> {
    CONNECTORS.iter().find_map(|c| {
        let rest = strip_ci_prefix(s, c)?;
        // "is" must not be the start of "isn't" or "island".
        let word_like = c.bytes().last().is_some_and(|b| b.is_ascii_alphabetic());
        let glued = rest.chars().next().is_some_and(char::is_alphanumeric);
        (!(word_like && glued)).then_some(rest)
    })
}

fn strip_ci_prefix<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let bytes = s.as_bytes();
    let n = prefix.len();
    (bytes.len() >= n
        && bytes[..n].eq_ignore_ascii_case(prefix.as_bytes())
        && s.is_char_boundary(n))
    .then(|| &s[n..])
}

fn ends_with_ci(s: &str, suffix: &str) -> bool {
    let bytes = s.trim_end_matches(['*', '_', '#']).as_bytes();
    let n = suffix.len();
    bytes.len() >= n && bytes[bytes.len() - n..].eq_ignore_ascii_case(suffix.as_bytes())
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
            if let Ok(k) = find_closer(inner, close, false) {
                let span = inner[..k].trim();
                if !span.is_empty() {
                    return Some(span);
                }
            }
        }
    }
    let cut = sentence_end(line);
    // "The answer is 18!" is an exclamation, not a factorial.
    let span = line[..cut].trim().trim_end_matches('!').trim_end();
    if span.is_empty()
        || span.len() > MAX_PHRASE_ANSWER
        || not_an_answer(span)
        || !looks_like_an_answer(span)
    {
        return None;
    }
    Some(span)
}

/// Where the sentence of `line` ends: ". " / "." at the end (not a decimal
/// point), "。", ", because ..." (a comma followed by a word, not a list
/// item), or a word of another script after the number ("18 个", "18 です").
fn sentence_end(line: &str) -> usize {
    let bytes = line.as_bytes();
    let mut seen_digit = false;
    for (pos, ch) in line.char_indices() {
        match ch {
            '.' if bytes.get(pos + 1).is_none_or(|n| n.is_ascii_whitespace()) => return pos,
            '。' | '．' | '，' | '；' => return pos,
            ',' if bytes.get(pos + 1) == Some(&b' ') => {
                let word = bytes[pos + 2..]
                    .iter()
                    .take_while(|x| x.is_ascii_alphabetic())
                    .count();
                if word >= 3 && !bytes[pos + 2..].starts_with(b"and ") {
                    return pos;
                }
            }
            _ if seen_digit && foreign_letter(ch) => return pos,
            _ => {}
        }
        seen_digit |= ch.is_ascii_digit();
    }
    line.len()
}

/// A letter of a script that is not Latin or Greek (Greek letters are math).
fn foreign_letter(ch: char) -> bool {
    ch.is_alphabetic() && !ch.is_ascii() && !('\u{370}'..='\u{3ff}').contains(&ch) && ch > '\u{24f}'
}

/// An answer has a digit or some math in it, or is a few words at most
/// ("east", "no solution"); a longer clause is a sentence about the answer.
fn looks_like_an_answer(span: &str) -> bool {
    let math = span
        .chars()
        .any(|c| c.is_ascii_digit() || "\\$+-*/^=<>()[]{}|".contains(c) || !c.is_ascii());
    math || span.split_whitespace().count() <= 3
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

    #[test]
    fn languages() {
        assert_eq!(answer_phrase("La respuesta es 18."), Some("18"));
        assert_eq!(
            answer_phrase("La réponse est $\\frac12$."),
            Some("\\frac12")
        );
        assert_eq!(answer_phrase("Die Antwort ist 7."), Some("7"));
        assert_eq!(answer_phrase("La risposta è 5"), Some("5"));
        assert_eq!(answer_phrase("A resposta é 12."), Some("12"));
        assert_eq!(answer_phrase("Ответ: 42"), Some("42"));
        assert_eq!(answer_phrase("所以答案是 18。"), Some("18"));
        assert_eq!(answer_phrase("答えは 18 です。"), Some("18"));
        assert_eq!(answer_phrase("Jibu ni 9."), Some("9"));
        assert_eq!(answer_phrase("## Final Answer\n\n$x = 3$"), Some("x = 3"));
        assert_eq!(
            answer_phrase("The answer is the number of apples she has left."),
            None
        );
        assert_eq!(answer_phrase("Answers vary."), None);
        assert_eq!(final_answer_phrase("**Final Answer:** 7"), Some("7"));
        assert_eq!(
            final_answer_phrase("We may check our answer: $17 \\cdot 44 = 748$."),
            None
        );
    }
}
