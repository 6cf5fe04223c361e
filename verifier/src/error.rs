//! Typed errors. Grading itself never fails (it returns a [`crate::Reason`]);
//! these cover configuration, input files and JSON lines, and the internal
//! expression parser.

use thiserror::Error;

/// Errors of the I/O-facing parts of the library (JSONL streams, reports, config).
#[derive(Debug, Error)]
pub enum VerifierError {
    #[error("line {line}: invalid JSON: {err}")]
    Json { line: usize, err: serde_json::Error },
    #[error("line {line}: {message}")]
    BadLine { line: usize, message: String },
    #[error("{path}: {err}")]
    File { path: String, err: std::io::Error },
    #[error("i/o error: {0}")]
    Io(std::io::Error),
    #[error("unknown gold format {0:?} (expected gsm8k, math, raw or auto)")]
    UnknownGoldFormat(String),
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
}

// Messages carry their cause inline (no `source()` chain), so error reporters
// that print the chain do not repeat it.
impl From<std::io::Error> for VerifierError {
    fn from(e: std::io::Error) -> Self {
        VerifierError::Io(e)
    }
}

/// Why an answer could not be parsed as an expression (internal; only used to
/// decide which comparison applies).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ExprError {
    #[error("expression nested too deeply")]
    TooDeep,
    #[error("expression too large")]
    TooLarge,
    #[error("unexpected end of input")]
    UnexpectedEnd,
    #[error("unexpected {0:?} at byte {1}")]
    Unexpected(char, usize),
    #[error("expected {0:?} at byte {1}")]
    Expected(char, usize),
    #[error("trailing input at byte {0}")]
    Trailing(usize),
    #[error("unknown command")]
    UnknownCommand,
    #[error("a word, not a formula")]
    Word,
    #[error("number with a base subscript")]
    BaseNumber,
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
}
