//! rlvr-runtime: the paged-attention generation engine of rlvr.
//!
//! - [`sequence`]: requests, one sample's running state, completions.
//! - [`block_manager`]: fixed-size KV blocks with reference counts (group prompt sharing) and the
//!   position → cache slot arithmetic.
//! - `scheduler`: admission, chunked prefill, copy-on-write and preemption → a step plan.
//! - `runner`: packs a step into one row, runs the model over the KV backend, returns logits.
//! - [`paged_attention`]: the KV backend trait and the CPU backend (its cache and step).
//! - `cpu_attention`: the CPU kernel: one token's attention over its blocks.
//! - [`sampler`]: temperature / top-k / top-p / min-p with per-request seeds; raw log-probs and
//!   entropies (one row on the host).
//! - [`device_sampler`]: greedy / full-distribution draws as tensor ops on the logits' device.
//! - [`step_sampler`]: one step's draws, on the host or the device (truncation on the host).
//! - [`engine`]: the public API and the schedule → run → sample loop (continuous batching).
//! - [`naive`]: a full-recompute reference generator (tests and the no-cache baseline).

pub mod block_manager;
mod cpu_attention;
#[cfg(feature = "cuda")]
pub mod cuda_backend;
pub mod device_sampler;
pub mod engine;
pub mod error;
pub mod naive;
pub mod paged_attention;
pub mod rng;
mod runner;
pub mod sampler;
mod scheduler;
pub mod sequence;
pub mod step_sampler;

pub use engine::{kv_pool_blocks, Engine, EngineConfig, EngineStats};
pub use error::{Result, RuntimeError};
pub use sampler::{SamplingParams, TokenChoice};
pub use sequence::{Completion, FinishReason, Request};
pub use step_sampler::SamplerKind;

/// Whether this build has flash-attention prefill (feature `flash-attn`: bf16/f16 prefill on
/// CUDA through candle-flash-attn) and `RLVR_FLASH_ATTN=0` does not turn it off (to compare
/// with the candle path in the same binary).
pub fn flash_attn_enabled() -> bool {
    cfg!(feature = "flash-attn") && std::env::var("RLVR_FLASH_ATTN").as_deref() != Ok("0")
}
