//! `rlvr-verifier`: the reward of RL with verifiable rewards for math answers.
//!
//! * [`extract_answer`] finds the final answer of a completion (last `\boxed{}` /
//!   `\fbox{}`, GSM8K `#### N`, "the answer is ..." in several languages, and
//!   optionally the last LaTeX environment, plain expression or number).
//! * [`extract_gold`] reads the reference answer from GSM8K / MATH fields.
//! * [`is_equivalent`] decides equivalence (numbers, fractions, units, percent,
//!   tuples, intervals, sets, matrices, equations, expressions, choices). A
//!   gold number needs a number: a computation with its value (`12 + 30` for
//!   42, `2^{10}` for 1024) is [`Reason::Unevaluated`], never correct.
//! * [`grade`] / [`grade_batch`] turn that into a reward with a reason.
//! * [`calculate`] evaluates an arithmetic expression exactly (the built-in calculator tool).
//!
//! Every call is bounded in time and memory (inputs are length-capped, there is
//! no backtracking, exponents are never expanded beyond a small bound), never
//! panics, and is thread-safe (no shared state).

use std::fmt;
use std::str::FromStr;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

mod bench;
mod calc;
mod equiv;
pub mod error;
mod expr;
mod extract;
mod jsonl;
mod normalize;
mod num;

pub use bench::{
    bench_gsm8k_style, bench_with_threads, gsm8k_style_corpus, latex_style_corpus, BenchReport,
};
pub use calc::{calculate, CalcError, MAX_EXPRESSION_BYTES};
pub use equiv::is_equivalent;
pub use error::VerifierError;
use extract::locate_answer;
pub use extract::{extract_answer, extract_gold};
pub use jsonl::{
    accuracy_report, accuracy_report_from_readers, gold_from_record, verify_jsonl, AccuracyReport,
    VerifyOutput,
};

/// Grading configuration. `Default` is the trainer's default reward.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VerifierConfig {
    /// Relative tolerance for non-integer numeric comparison (integers compare exactly).
    pub rel_tol: f64,
    /// When no answer is marked (box, `####`, answer phrase), take an unmarked
    /// one: the last LaTeX environment or plain expression, else the last number.
    pub last_number_fallback: bool,
    /// Recognise "the (final) answer is X" / "Answer: X".
    pub answer_phrase: bool,
    /// Reward for a wrong answer that was explicitly marked (boxed, `####`, or
    /// "answer is"); `None` gives 0.0.
    pub format_reward: Option<f64>,
    /// Added to the reward of a correct answer written inside `\boxed{}`.
    pub boxed_bonus: f64,
    /// Only the last this-many bytes of a completion are searched.
    pub max_completion_bytes: usize,
    /// Answers (predicted or gold) longer than this are not compared: they are
    /// graded `unverifiable` (never correct).
    pub max_answer_bytes: usize,
    /// Accept a computation (`12 + 30`, `3 \times 4 + 5`, `2^{10}`, `5!`,
    /// `\sqrt{16}`) for a gold answer that is a number (`42`, `-3.5`,
    /// `\frac{10}{9}`) when its value is the gold's. Off by default: the answer
    /// to "compute" is the number, and an unevaluated computation is graded
    /// `unevaluated` (never correct). Golds that are expressions themselves
    /// (`2^{10}`, `\frac{1}{2} + \frac{\sqrt3}{2}`) are compared by value either way.
    pub accept_unevaluated: bool,
}

impl Default for VerifierConfig {
    fn default() -> Self {
        VerifierConfig {
            rel_tol: 1e-6,
            last_number_fallback: true,
            answer_phrase: true,
            format_reward: None,
            boxed_bonus: 0.0,
            max_completion_bytes: 16 * 1024,
            max_answer_bytes: 1024,
            accept_unevaluated: false,
        }
    }
}

impl VerifierConfig {
    /// Check that the numbers make sense.
    pub fn validate(&self) -> Result<(), VerifierError> {
        if !(self.rel_tol.is_finite() && self.rel_tol >= 0.0 && self.rel_tol < 1.0) {
            return Err(VerifierError::InvalidConfig(format!(
                "rel_tol must be in [0, 1), got {}",
                self.rel_tol
            )));
        }
        if let Some(r) = self.format_reward {
            if !r.is_finite() {
                return Err(VerifierError::InvalidConfig(
                    "format_reward must be finite".into(),
                ));
            }
        }
        if !self.boxed_bonus.is_finite() {
            return Err(VerifierError::InvalidConfig(
                "boxed_bonus must be finite".into(),
            ));
        }
        if self.max_completion_bytes == 0 || self.max_answer_bytes == 0 {
            return Err(VerifierError::InvalidConfig(
                "byte limits must be positive".into(),
            ));
        }
        if self.max_completion_bytes > 1 << 24 || self.max_answer_bytes > 1 << 16 {
            return Err(VerifierError::InvalidConfig(
                "byte limits too large for bounded grading (max 16 MiB / 64 KiB)".into(),
            ));
        }
        Ok(())
    }
}

/// How the answer was found in the completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExtractMethod {
    /// The last `\boxed{}` / `\fbox{}`.
    Boxed,
    /// GSM8K's `#### N`.
    Hash,
    /// A final-answer phrase ("the answer is", "Answer:", "La respuesta es", ...).
    AnswerIs,
    /// The last LaTeX environment (`$…$`, `$$…$$`, `\(…\)`, `\[…\]`), unmarked.
    Latex,
    /// The last plain expression (`10/9`, `x <= 2`, `2^{10}`), unmarked.
    LastExpression,
    /// The last number, unmarked.
    LastNumber,
}

impl ExtractMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            ExtractMethod::Boxed => "boxed",
            ExtractMethod::Hash => "hash",
            ExtractMethod::AnswerIs => "answer_is",
            ExtractMethod::Latex => "latex",
            ExtractMethod::LastExpression => "last_expression",
            ExtractMethod::LastNumber => "last_number",
        }
    }
}

/// An answer found in a completion.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extracted {
    pub answer: String,
    pub method: ExtractMethod,
}

/// Why a grade came out the way it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// No answer could be extracted from the completion.
    NoAnswerFound,
    /// The gold answer is empty or could not be extracted.
    NoGold,
    /// An answer was found and is not equivalent to the gold answer.
    Mismatch,
    /// The gold answer is a number and the answer a computation with that
    /// value (`12 + 30` for 42, `2^{10}` for 1024): not evaluated, so not the
    /// answer (see [`VerifierConfig::accept_unevaluated`]).
    Unevaluated,
    /// Equal after normalisation (spacing, delimiters, `\text`, units, ...).
    MatchExact,
    /// Equal as numbers (exact rationals, or within the tolerance).
    MatchNumeric,
    /// Equal as expressions at every sample point (same variables).
    MatchSymbolic,
    /// Same multiple-choice letter.
    MatchChoice,
    /// The answer (or the gold answer) is too long to compare, or may be the
    /// tail of a longer one cut off with the completion: never correct.
    Unverifiable,
    /// The grader hit an internal error (never expected; graded incorrect).
    InternalError,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoAnswerFound => "no_answer_found",
            Reason::NoGold => "no_gold",
            Reason::Mismatch => "mismatch",
            Reason::Unevaluated => "unevaluated",
            Reason::MatchExact => "match_exact",
            Reason::MatchNumeric => "match_numeric",
            Reason::MatchSymbolic => "match_symbolic",
            Reason::MatchChoice => "match_choice",
            Reason::Unverifiable => "unverifiable",
            Reason::InternalError => "internal_error",
        }
    }

    /// Is this one of the `match_*` reasons?
    pub fn is_match(self) -> bool {
        matches!(
            self,
            Reason::MatchExact | Reason::MatchNumeric | Reason::MatchSymbolic | Reason::MatchChoice
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the gold answer sits in a dataset field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum GoldFormat {
    /// GSM8K `answer`: the text after `####`.
    Gsm8k,
    /// MATH `solution`: the last `\boxed{}`.
    Math,
    /// The field is the answer.
    Raw,
    /// `####` -> GSM8K, `\boxed` -> MATH, else raw.
    #[default]
    Auto,
}

impl FromStr for GoldFormat {
    type Err = VerifierError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "gsm8k" => Ok(GoldFormat::Gsm8k),
            "math" => Ok(GoldFormat::Math),
            "raw" => Ok(GoldFormat::Raw),
            "auto" => Ok(GoldFormat::Auto),
            _ => Err(VerifierError::UnknownGoldFormat(s.to_string())),
        }
    }
}

/// The verdict on one completion.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Grade {
    pub reward: f64,
    pub correct: bool,
    pub extracted: Option<String>,
    pub method: Option<ExtractMethod>,
    pub reason: Reason,
}

/// Was the answer marked by the writer (a box, `####`, an answer phrase)?
fn marked(method: ExtractMethod) -> bool {
    matches!(
        method,
        ExtractMethod::Boxed | ExtractMethod::Hash | ExtractMethod::AnswerIs
    )
}

fn reward(correct: bool, method: Option<ExtractMethod>, cfg: &VerifierConfig) -> f64 {
    match (correct, method) {
        (true, Some(ExtractMethod::Boxed)) => 1.0 + cfg.boxed_bonus,
        (true, _) => 1.0,
        (false, Some(m)) if marked(m) => cfg.format_reward.unwrap_or(0.0),
        (false, _) => 0.0,
    }
}

fn grade_inner(completion: &str, gold: &str, cfg: &VerifierConfig) -> Grade {
    let Some(located) = locate_answer(completion, cfg) else {
        return Grade {
            reward: 0.0,
            correct: false,
            extracted: None,
            method: None,
            reason: Reason::NoAnswerFound,
        };
    };
    let ext = located.extracted;
    let reason = judge(&ext.answer, located.at_cut, gold, cfg);
    let correct = reason.is_match();
    Grade {
        reward: if reason == Reason::NoGold {
            0.0
        } else {
            reward(correct, Some(ext.method), cfg)
        },
        correct,
        extracted: Some(ext.answer),
        method: Some(ext.method),
        reason,
    }
}

/// The reason for an extracted answer against the gold answer.
fn judge(answer: &str, at_cut: bool, gold: &str, cfg: &VerifierConfig) -> Reason {
    let gold_norm = normalize::normalize(gold, cfg.max_answer_bytes);
    if gold_norm.is_empty() {
        return Reason::NoGold;
    }
    if at_cut || answer.len() > cfg.max_answer_bytes || gold.trim().len() > cfg.max_answer_bytes {
        return Reason::Unverifiable;
    }
    let pred_norm = normalize::normalize(answer, cfg.max_answer_bytes);
    equiv::verdict(&pred_norm, &gold_norm, cfg)
}

/// Grade a completion against a gold answer (already extracted: `18`, `\frac{1}{2}`).
/// Never fails and never panics; problems show up in `reason`.
pub fn grade(completion: &str, gold: &str, cfg: &VerifierConfig) -> Grade {
    // Defence in depth: grading is written not to panic, but a reward function
    // must never take a training run down with it.
    std::panic::catch_unwind(|| grade_inner(completion, gold, cfg)).unwrap_or(Grade {
        reward: 0.0,
        correct: false,
        extracted: None,
        method: None,
        reason: Reason::InternalError,
    })
}

/// Grade against a dataset field in the given format (GSM8K solution, MATH solution, raw).
pub fn grade_with_format(
    completion: &str,
    gold_field: &str,
    fmt: GoldFormat,
    cfg: &VerifierConfig,
) -> Grade {
    match extract_gold(gold_field, fmt) {
        Some(g) => grade(completion, &g, cfg),
        None => {
            let ext = extract_answer(completion, cfg);
            Grade {
                reward: 0.0,
                correct: false,
                method: ext.as_ref().map(|e| e.method),
                extracted: ext.map(|e| e.answer),
                reason: Reason::NoGold,
            }
        }
    }
}

/// Grade `(completion, gold)` pairs in parallel (rayon); output in input order.
pub fn grade_batch(items: &[(String, String)], cfg: &VerifierConfig) -> Vec<Grade> {
    items
        .par_iter()
        .map(|(completion, gold)| grade(completion, gold, cfg))
        .collect()
}
