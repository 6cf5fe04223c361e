//! Typed errors of the models crate: every one names the file, tensor or key it is about.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: file not found")]
    MissingFile { path: PathBuf },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: malformed config: {msg}")]
    Config { path: PathBuf, msg: String },

    #[error("{path}: unknown model_type {model_type:?} (supported: llama, smollm2 (llama), qwen2, qwen3)")]
    UnknownArchitecture { path: PathBuf, model_type: String },

    #[error("{path}: invalid safetensors file: {msg}")]
    Safetensors { path: PathBuf, msg: String },

    /// Writing a file failed (a full disk, …); the cause is in `msg`.
    #[error("{path}: writing: {msg}")]
    Write { path: PathBuf, msg: String },

    #[error("{path}: missing tensor {name}")]
    MissingTensor { path: PathBuf, name: String },

    #[error("{path}: tensor {name} has shape {got:?}, expected {expected:?}")]
    WrongShape {
        path: PathBuf,
        name: String,
        got: Vec<usize>,
        expected: Vec<usize>,
    },

    #[error("{path}: tensor {name} has unsupported dtype {dtype}")]
    UnsupportedDType {
        path: PathBuf,
        name: String,
        dtype: String,
    },

    #[error("{path}: invalid GGUF file: {msg}")]
    Gguf { path: PathBuf, msg: String },

    #[error("{path}: tensor {name} uses GGML type {ggml_type} ({type_name}), which rlvr cannot dequantise (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q8_K)")]
    UnsupportedQuant {
        path: PathBuf,
        name: String,
        ggml_type: u32,
        type_name: &'static str,
    },

    #[error("{path}: tokenizer: {msg}")]
    Tokenizer { path: PathBuf, msg: String },

    #[error("chat template: {0}")]
    ChatTemplate(String),

    #[error("model source {source_name:?}: {msg}")]
    Source { source_name: String, msg: String },

    #[error("{context}: {source}")]
    Candle {
        context: String,
        #[source]
        source: candle_core::Error,
    },
}

impl ModelError {
    /// An I/O error on `path`: [`ModelError::MissingFile`] when it does not exist.
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            ModelError::MissingFile { path: path.into() }
        } else {
            ModelError::Io {
                path: path.into(),
                source,
            }
        }
    }
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;

/// Attach a human context to candle errors.
pub(crate) trait CandleContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> CandleContext<T> for candle_core::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| ModelError::Candle {
            context: context(),
            source,
        })
    }
}

impl From<candle_core::Error> for ModelError {
    fn from(source: candle_core::Error) -> Self {
        ModelError::Candle {
            context: "tensor op".into(),
            source,
        }
    }
}
