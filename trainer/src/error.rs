//! Typed errors of the trainer crate.
//!
//! Owns the error variants. Must not know the caller: the binary adds its context with anyhow.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainerError {
    #[error("group {group} sample {sample}: {msg}")]
    InvalidSample {
        group: usize,
        sample: usize,
        msg: String,
    },

    #[error("invalid trainer config: {0}")]
    Config(String),

    #[error("optimizer: {0}")]
    Optimizer(String),

    #[error("checkpoint {path}: {msg}")]
    Checkpoint { path: PathBuf, msg: String },

    /// A checkpoint file that is not as it was written (checksum, truncation, unreadable).
    #[error("{path}: {msg}")]
    CheckpointDamaged { path: PathBuf, msg: String },

    #[error(
        "not enough free space for a checkpoint in {path}: it needs {needed}, {available} is free"
    )]
    NoSpace {
        path: PathBuf,
        needed: String,
        available: String,
    },

    /// The cause is in the message, not chained as a source: `{:#}` would print it twice.
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },

    #[error("model: {0}")]
    Model(#[from] rlvr_models::ModelError),

    #[error("tensor op: {0}")]
    Candle(#[from] candle_core::Error),

    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

pub type Result<T, E = TrainerError> = std::result::Result<T, E>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TrainerError {
    let path = path.into();
    move |cause| TrainerError::Io { path, cause }
}
