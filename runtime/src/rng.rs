//! A small counter-free RNG with an explicit u64 state: each sequence owns one, so seeded sampling
//! does not depend on what else is in the batch.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqRng(u64);

impl SeqRng {
    /// Stream `stream` of `seed` (e.g. the sample index within a group).
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut r = SeqRng(seed ^ stream.wrapping_mul(0xD6E8_FEB8_6659_FD93));
        r.next_u64();
        r
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}
