//! rlvr-models: decoder models (Llama / SmolLM2 / Qwen2 / Qwen3) for rlvr.
//!
//! One parametrised decoder whose weights are candle `Var`s with HF names; attention is injected
//! (see [`attention::Attention`]) so the trainer and the paged runtime share one model and one
//! copy of the weights. Loads HF safetensors and GGUF, tokenizers and chat templates, resolves
//! Hub ids, and saves HF-compatible directories.

pub mod attention;
pub mod config;
pub mod device_mem;
pub mod error;
pub mod exp;
pub mod gguf;
mod gguf_tokenizer;
mod kernels;
pub mod loaded;
pub mod logprobs;
pub mod model;
pub mod op_count;
pub mod ops;
pub mod packed;
pub mod peft;
pub mod rng;
pub mod rowstats;
pub mod simd;
pub mod source;
mod template_json;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tokenizer;
pub mod weights;

pub use attention::{Attention, CausalAttention};
pub use config::{Architecture, ModelConfig};
pub use error::{ModelError, Result};
pub use loaded::{load, load_source, save_hf_dir, save_hf_dir_with, LoadOptions, LoadedModel};
pub use model::{Batch, Forward, Grad, Hidden, Model, Numerics};
pub use packed::{PackedLayout, PackedUnit};
pub use source::{resolve, ModelSource, ResolveOptions, Resolved, DEFAULT_MODEL_ID};
pub use tokenizer::{ChatMessage, TextTokenizer};

pub use candle_core;
pub use tokenizers;
