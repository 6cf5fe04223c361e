//! A small counter-free RNG with an explicit u64 state: each sequence owns one, so seeded sampling
//! does not depend on what else is in the batch. Knows nothing of what the numbers are for.

use rlvr_models::rng::SplitMix64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqRng(SplitMix64);

impl SeqRng {
    /// Stream `stream` of `seed` (e.g. the sample index within a group).
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut r = SeqRng(SplitMix64::new(
            seed ^ stream.wrapping_mul(0xD6E8_FEB8_6659_FD93),
        ));
        r.next_u64();
        r
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        self.0.uniform()
    }
}
