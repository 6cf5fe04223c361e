//! Finding the final answer in a completion and the gold answer in a dataset
//! field. Hand-written scanners: each method is linear in the (capped) input.
//!
//! The order, from the most to the least explicit: the last `\boxed{}` /
//! `\fbox{}`, GSM8K's `#### N`, a final-answer phrase ("the answer is", in
//! several languages), then, when unmarked answers are allowed, whichever ends
//! last of the last LaTeX environment and the last plain expression, and
//! finally the last number.
//!
//! Owns: the order in which the methods are tried, and the byte caps on what is
//! searched. Must not know: what an answer means (normalisation, equivalence)
//! or rewards.

mod expression;
mod latex;
mod marked;
mod number;
mod phrase;

use marked::{hash_answer, last_boxed};

use crate::normalize::{remove_thousands, truncate_end};
use crate::{ExtractMethod, Extracted, GoldFormat, VerifierConfig};

/// How many earlier candidates a method may try after a malformed one.
const MAX_TRIES: usize = 8;

/// An extracted answer, and whether it starts where a too-long completion was
/// cut (then it may be the tail of a longer answer and cannot be compared).
pub(crate) struct Located {
    pub extracted: Extracted,
    pub at_cut: bool,
}

/// Extract the final answer (see the module comment for the order).
pub fn extract_answer(completion: &str, cfg: &VerifierConfig) -> Option<Extracted> {
    locate_answer(completion, cfg).map(|l| l.extracted)
}

/// [`extract_answer`], also saying whether the answer touches the cut.
pub(crate) fn locate_answer(completion: &str, cfg: &VerifierConfig) -> Option<Located> {
    let text = truncate_end(completion, cfg.max_completion_bytes);
    let cut = text.len() < completion.len();
    let located = |answer: &str, start: usize, method| Located {
        extracted: Extracted {
            answer: answer.trim().to_string(),
            method,
        },
        at_cut: cut && text[..start].trim().is_empty(),
    };
    let offset = |part: &str| part.as_ptr() as usize - text.as_ptr() as usize;
    if let Some((answer, at, end)) = last_boxed(text) {
        // A final-answer phrase after the last box has the last word.
        let after = &text[end..];
        let restated = cfg.answer_phrase && phrase::final_answer_phrase(after).is_some();
        if let Some((answer, sentence)) = phrase(after).filter(|_| restated) {
            return Some(located(&answer, offset(sentence), ExtractMethod::AnswerIs));
        }
        return Some(located(&answer, at, ExtractMethod::Boxed));
    }
    if let Some(a) = hash_answer(text) {
        return Some(located(a, offset(a), ExtractMethod::Hash));
    }
    if cfg.answer_phrase {
        if let Some((answer, sentence)) = phrase(text) {
            return Some(located(&answer, offset(sentence), ExtractMethod::AnswerIs));
        }
    }
    if !cfg.last_number_fallback {
        return None;
    }
    if let Some((answer, start, method)) = last_unmarked(text) {
        return Some(located(&answer, start, method));
    }
    // The last resort has no position; a cut completion makes it suspect.
    let number = number::last_number(text)?;
    Some(located(&number, 0, ExtractMethod::LastNumber))
}

/// The answer of the last answer phrase, and the sentence it was taken from.
fn phrase(text: &str) -> Option<(String, &str)> {
    let sentence = phrase::answer_phrase(text)?;
    // "Final Answer: The volume of $V$ is 120." -> 120.
    let answer = if prose(sentence) {
        last_unmarked(sentence).map_or(sentence.to_string(), |(a, _, _)| a)
    } else {
        sentence.to_string()
    };
    Some((answer, sentence))
}

/// The last unmarked answer: whichever ends last of the last LaTeX
/// environment and the last plain expression (`(answer, start, method)`).
fn last_unmarked(text: &str) -> Option<(String, usize, ExtractMethod)> {
    let expr = expression::last_expression(text);
    // An environment can only end after the expression if a `$` or a
    // backslash follows it (most plain-text completions: no scan at all).
    let tail = &text[expr.map_or(0, |found| found.end)..];
    let env = if tail.bytes().any(|c| c == b'$' || c == b'\\') {
        latex::last_environment(text)
    } else {
        None
    };
    // The environment wins unless an expression ends after it.
    let expr = expr.filter(|found| env.as_ref().is_none_or(|(_, env_end)| found.end > *env_end));
    match (env, expr) {
        (_, Some(found)) if found.plain_number => {
            let number = remove_thousands(found.text).unwrap_or_else(|| found.text.to_string());
            Some((number, found.start, ExtractMethod::LastNumber))
        }
        (_, Some(found)) => Some((
            found.text.to_string(),
            found.start,
            ExtractMethod::LastExpression,
        )),
        (Some((content, _)), None) => Some((content, text.len(), ExtractMethod::Latex)),
        (None, None) => None,
    }
}

/// A sentence rather than an answer: two or more plain words of three letters
/// or more ("The volume of $V$ is 120"), not counting "and" / "or".
fn prose(span: &str) -> bool {
    span.split_whitespace()
        .filter(|word| {
            let word = word.trim_end_matches([',', '.', ';', ':']);
            word.len() >= 3
                && word.bytes().all(|c| c.is_ascii_alphabetic())
                && !matches!(word, "and" | "or")
        })
        .count()
        >= 2
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
    let boxed = |field: &str| last_boxed(field).map(|(answer, _, _)| answer);
    let out = match fmt {
        GoldFormat::Gsm8k => hash_answer(field).map(str::to_string),
        GoldFormat::Math => boxed(field),
        GoldFormat::Raw => Some(field.to_string()),
        GoldFormat::Auto => {
            if field.contains("####") {
                hash_answer(field).map(str::to_string)
            } else if field.contains("\\boxed") || field.contains("\\fbox") {
                boxed(field)
            } else {
                Some(field.to_string())
            }
        }
    }?;
    let t = out.trim();
    (!t.is_empty()).then(|| t.to_string())
}
