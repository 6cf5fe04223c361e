//! The runtime's error type: bad requests, a KV pool too small, tensor-op failures with the
//! place they happened. Knows nothing of how callers report them.

use rlvr_models::ModelError;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Model(#[from] ModelError),

    #[error("tensor op in {context}: {source}")]
    Candle {
        context: &'static str,
        #[source]
        source: candle_core::Error,
    },

    #[error("internal error: {0}")]
    Internal(&'static str),

    #[error("request {index}: {msg}")]
    BadRequest { index: usize, msg: String },

    #[error("gpu_memory_fraction {fraction}: this process already uses {used_mib} MiB of the device's {total_mib} MiB, which leaves no room for a KV cache (raise the fraction)")]
    NoKvMemory {
        fraction: f64,
        used_mib: u64,
        total_mib: u64,
    },

    #[error("request {index}: {prompt_tokens} prompt tokens + max_new_tokens {max_new_tokens} exceed the model's context of {context} tokens (shorten the prompt or lower max_new_tokens)")]
    ContextTooLong {
        index: usize,
        prompt_tokens: usize,
        max_new_tokens: usize,
        context: usize,
    },

    #[error("KV cache too small: request {index} needs {needed} blocks of {block_size} tokens but the pool has only {total} (raise the KV memory budget or lower max_new_tokens)")]
    KvTooSmall {
        index: usize,
        needed: usize,
        total: usize,
        block_size: usize,
    },
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

pub(crate) trait Ctx<T> {
    fn ctx(self, context: &'static str) -> Result<T>;
}

impl<T> Ctx<T> for candle_core::Result<T> {
    fn ctx(self, context: &'static str) -> Result<T> {
        self.map_err(|source| RuntimeError::Candle { context, source })
    }
}
