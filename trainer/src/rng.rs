//! The RNG the trainer draws from (shared with the rest of rlvr through `rlvr_models`).

pub use rlvr_models::rng::SplitMix64;
