//! The RNG the trainer draws from (shared with the rest of rlvr through `rlvr_models`).
//!
//! Owns nothing of its own; checkpoints store its state, so it must stay this one generator.

pub use rlvr_models::rng::SplitMix64;
