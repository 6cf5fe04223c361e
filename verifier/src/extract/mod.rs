//! Finding the final answer in a completion and the gold answer in a dataset
//! field. Hand-written scanners: each method is linear in the (capped) input.
//!
//! Owns: the order in which the methods are tried, and the byte caps on what is
//! searched. Must not know: what an answer means (normalisation, equivalence)
//! or rewards.

mod marked;
mod number;
mod phrase;

use marked::{hash_answer, last_boxed};

use crate::normalize::truncate_end;
use crate::{ExtractMethod, Extracted, GoldFormat, VerifierConfig};

/// How many earlier candidates a method may try after a malformed one.
const MAX_TRIES: usize = 8;

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
        if let Some(a) = phrase::answer_phrase(text) {
            return found(a, ExtractMethod::AnswerIs);
        }
    }
    if cfg.last_number_fallback {
        if let Some(a) = number::last_number(text) {
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
