//! rlvr-trainer: the RL side of rlvr.
//!
//! - [`Trainer`] consumes batches of [`ScoredGroup`]s and steps the optimizer on the model's own
//!   `Var`s (shared with the runtime); `policy_version` counts optimizer steps.
//! - Losses: GRPO, DAPO, Dr.GRPO and STAPO (S2T mask) presets over one clipped-ratio surrogate
//!   ([`loss`], [`s2t`]), with off-policy correction ([`correction`]).
//! - Optimizers: our own AdamW, Magma and SkipUpdate ([`optim`]), with exact, restorable state.
//! - Checkpoints: atomic, checksummed, keep-last-N, bit-identical resume ([`checkpoint`]).
//!
//! The spec is `docs/algorithms.md` (§1 STAPO, §2 Magma, §3.4 trainer step).
//!
//! The crate must not know the runtime, the verifier or the CLI: rollouts come in as plain
//! [`ScoredGroup`]s, and all it shares with generation is the model's `Var`s, a policy-version
//! counter and an optional weight lock.

pub mod advantage;
pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod correction;
pub mod data;
pub mod error;
pub mod loss;
pub mod optim;
pub mod rng;
pub mod s2t;
pub mod trainer;

#[cfg(test)]
pub(crate) mod test_util;

pub use advantage::AdvantageMode;
pub use bench::{bench_train, BenchReport, GroupShape};
pub use checkpoint::{
    human_bytes, latest_checkpoint, list_checkpoints, remove_stale_temporaries, set_aside_damaged,
    verify_checkpoint, Restored, Verified,
};
pub use config::{ProximalMode, TrainerConfig};
pub use correction::{CorrectionConfig, CorrectionMode};
pub use data::{ScoredGroup, ScoredSample};
pub use error::{Result, TrainerError};
pub use loss::{Aggregation, LossPreset};
pub use optim::{LrSchedule, MagmaConfig, OptimizerConfig, OptimizerKind};
pub use rng::SplitMix64;
pub use trainer::{StepMetrics, Timings, Trainer};
