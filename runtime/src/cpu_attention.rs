//! One token's attention over its sequence's paged keys and values, on the host: the CPU
//! backend's kernel.
//!
//! Cache layout (one layer), chosen for this kernel:
//! - keys, per block, transposed: `[n_kv, head_dim, block_size]`. A block's scores are then
//!   `block_size`-wide multiply-adds with one query element broadcast — whole vector registers,
//!   no horizontal sum per key;
//! - values as rows: `[block_size, n_kv, head_dim]`, added into `head_dim`-wide accumulators.
//!
//! Both layouts put block `b` at the same offset `b × block_size × n_kv × head_dim`, so a block
//! is copied (copy-on-write) as one range.
//!
//! Numerics: a score sums `q·k` in four partial sums (`d mod 4`) added as `(s0 + s1) + (s2 + s3)`;
//! the weighted values sum even and odd keys apart and add the two at the end. Neither depends on
//! the block size, the batch or the CPU's vector width, so a token's attention has the same bits
//! whatever else is scheduled with it.
//!
//! Owns the arithmetic only; must not know about sequences, blocks being free or scheduling.

use rlvr_models::exp::exp;
use rlvr_models::simd::{lane_max, lane_sum, HotLoop, LANES};

/// The attention's sizes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    pub n_heads: usize,
    pub n_kv: usize,
    pub head_dim: usize,
    pub block_size: usize,
}

impl Shape {
    /// f32 values of one block of keys (or values) of one layer.
    pub fn block_len(&self) -> usize {
        self.block_size * self.n_kv * self.head_dim
    }

    /// Index in the key cache of `(slot, kv_head, d)`.
    pub fn key_index(&self, slot: usize, kv_head: usize, d: usize) -> usize {
        let (block, offset) = (slot / self.block_size, slot % self.block_size);
        block * self.block_len() + (kv_head * self.head_dim + d) * self.block_size + offset
    }
}

/// One token's view of the cache and its output.
pub(crate) struct TokenAttention<'a> {
    /// `[n_heads, head_dim]`.
    pub q: &'a [f32],
    pub k_cache: &'a [f32],
    pub v_cache: &'a [f32],
    /// Its sequence's blocks holding positions `0..n_keys`.
    pub blocks: &'a [u32],
    pub n_keys: usize,
    pub shape: Shape,
    /// `[n_heads, head_dim]`, overwritten.
    pub out: &'a mut [f32],
}

impl TokenAttention<'_> {
    /// Softmax(q·kᵀ / √d)·v for every head. Run it through `rlvr_models::simd::vectorized`
    /// (it is a [`HotLoop`]) so that it is compiled for the CPU's widest vectors.
    #[inline(always)]
    pub fn compute(self) {
        let s = self.shape;
        let cache = SequenceCache {
            k_cache: self.k_cache,
            v_cache: self.v_cache,
            blocks: self.blocks,
            shape: s,
        };
        let group = s.n_heads / s.n_kv;
        let stride = self.blocks.len() * s.block_size;
        let mut scores = vec![0f32; group * stride];
        let scale = 1.0 / (s.head_dim as f32).sqrt();
        for kv_head in 0..s.n_kv {
            for (member, member_scores) in scores.chunks_exact_mut(stride).enumerate() {
                let head = kv_head * group + member;
                let q = &self.q[head * s.head_dim..(head + 1) * s.head_dim];
                cache.scores(q, kv_head, member_scores);
                let weights = &mut member_scores[..self.n_keys];
                softmax_scaled(weights, scale);
                let out = &mut self.out[head * s.head_dim..(head + 1) * s.head_dim];
                cache.weighted_values(weights, kv_head, out);
            }
        }
    }
}

/// One sequence's keys and values in one layer's cache.
#[derive(Clone, Copy)]
struct SequenceCache<'a> {
    k_cache: &'a [f32],
    v_cache: &'a [f32],
    blocks: &'a [u32],
    shape: Shape,
}

impl SequenceCache<'_> {
    /// `out[key] = q·k[key]` for every key of the token's blocks (the last block's unused
    /// positions included; the caller ignores them).
    #[inline(always)]
    fn scores(&self, q: &[f32], kv_head: usize, out: &mut [f32]) {
        let s = self.shape;
        let column_len = s.head_dim * s.block_size;
        for (&block, out) in self.blocks.iter().zip(out.chunks_exact_mut(s.block_size)) {
            let start = block as usize * s.block_len() + kv_head * column_len;
            let keys = &self.k_cache[start..start + column_len];
            match s.block_size {
                16 => block_scores::<16>(q, keys, out),
                32 => block_scores::<32>(q, keys, out),
                _ => block_scores_any(q, keys, out),
            }
        }
    }

    /// `out = Σ_key weights[key] · v[key]` for one head.
    #[inline(always)]
    fn weighted_values(&self, weights: &[f32], kv_head: usize, out: &mut [f32]) {
        let s = self.shape;
        let row = s.n_kv * s.head_dim;
        let rows = self.blocks.iter().flat_map(|&block| {
            let first = block as usize * s.block_size;
            first..first + s.block_size
        });
        let values = rows.map(|slot| {
            let start = slot * row + kv_head * s.head_dim;
            &self.v_cache[start..start + s.head_dim]
        });
        match s.head_dim {
            64 => weighted_rows::<64>(weights, values, out),
            128 => weighted_rows::<128>(weights, values, out),
            _ => weighted_rows_any(weights, values, out),
        }
    }
}

impl HotLoop for TokenAttention<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        self.compute()
    }
}

/// Scores of one block of `BS` keys: `keys` is `[head_dim, BS]`.
#[inline(always)]
fn block_scores<const BS: usize>(q: &[f32], keys: &[f32], out: &mut [f32]) {
    let (mut a0, mut a1, mut a2, mut a3) = ([0f32; BS], [0f32; BS], [0f32; BS], [0f32; BS]);
    let quads = q.chunks_exact(4);
    let rest = quads.remainder();
    for (qs, columns) in quads.zip(keys.chunks_exact(4 * BS)) {
        let (q0, q1, q2, q3) = (qs[0], qs[1], qs[2], qs[3]);
        let c = &columns[..4 * BS];
        for l in 0..BS {
            a0[l] += q0 * c[l];
            a1[l] += q1 * c[BS + l];
            a2[l] += q2 * c[2 * BS + l];
            a3[l] += q3 * c[3 * BS + l];
        }
    }
    let done = q.len() - rest.len();
    let rest_columns = keys[done * BS..].chunks_exact(BS);
    for (acc, (&qd, column)) in [&mut a0, &mut a1, &mut a2]
        .into_iter()
        .zip(rest.iter().zip(rest_columns))
    {
        add_scaled(acc, qd, column);
    }
    let out = &mut out[..BS];
    for l in 0..BS {
        out[l] = (a0[l] + a1[l]) + (a2[l] + a3[l]);
    }
}

/// `acc += w · x`, elementwise over the shorter of the two.
#[inline(always)]
fn add_scaled(acc: &mut [f32], w: f32, x: &[f32]) {
    for (a, &v) in acc.iter_mut().zip(x) {
        *a += w * v;
    }
}

/// [`block_scores`] for any block size, in the same order.
#[inline(always)]
fn block_scores_any(q: &[f32], keys: &[f32], out: &mut [f32]) {
    let bs = out.len();
    for (l, score) in out.iter_mut().enumerate() {
        let mut acc = [0f32; 4];
        for (d, &qd) in q.iter().enumerate() {
            acc[d % 4] += qd * keys[d * bs + l];
        }
        *score = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    }
}

/// `Σ weights[i]·rows[i]` into `out` (`HD` wide), even and odd rows summed apart.
#[inline(always)]
fn weighted_rows<'v, const HD: usize>(
    weights: &[f32],
    mut rows: impl Iterator<Item = &'v [f32]>,
    out: &mut [f32],
) {
    let (mut even, mut odd) = ([0f32; HD], [0f32; HD]);
    let pairs = weights.chunks_exact(2);
    let last = pairs.remainder();
    for pair in pairs {
        if let (Some(r0), Some(r1)) = (rows.next(), rows.next()) {
            add_scaled(&mut even, pair[0], r0);
            add_scaled(&mut odd, pair[1], r1);
        }
    }
    if let (Some(&w), Some(row)) = (last.first(), rows.next()) {
        add_scaled(&mut even, w, row);
    }
    for (o, (e, d)) in out.iter_mut().zip(even.iter().zip(&odd)) {
        *o = e + d;
    }
}

/// [`weighted_rows`] for any width, in the same order.
#[inline(always)]
fn weighted_rows_any<'v>(weights: &[f32], rows: impl Iterator<Item = &'v [f32]>, out: &mut [f32]) {
    let mut acc = vec![0f32; 2 * out.len()];
    let (even, odd) = acc.split_at_mut(out.len());
    for (i, (&w, row)) in weights.iter().zip(rows).enumerate() {
        let acc = if i % 2 == 0 { &mut *even } else { &mut *odd };
        for (a, &x) in acc.iter_mut().zip(row) {
            *a += w * x;
        }
    }
    for ((o, &e), &d) in out.iter_mut().zip(even.iter()).zip(odd.iter()) {
        *o = e + d;
    }
}

/// In place: `x ← softmax(x · scale)`.
#[inline(always)]
fn softmax_scaled(x: &mut [f32], scale: f32) {
    for v in x.iter_mut() {
        *v *= scale;
    }
    let max = lane_max(x);
    let mut sum_lanes = [0f32; LANES];
    let mut chunks = x.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for l in 0..LANES {
            chunk[l] = exp(chunk[l] - max);
            sum_lanes[l] += chunk[l];
        }
    }
    for (l, v) in chunks.into_remainder().iter_mut().enumerate() {
        *v = exp(*v - max);
        sum_lanes[l] += *v;
    }
    let sum = lane_sum(&sum_lanes);
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attention computed in f64 from rows `[slot][n_kv][head_dim]` of keys and values.
    fn reference(q: &[f32], k_rows: &[f32], v_rows: &[f32], slots: &[usize], s: Shape) -> Vec<f64> {
        let group = s.n_heads / s.n_kv;
        let row = s.n_kv * s.head_dim;
        let mut out = vec![0f64; s.n_heads * s.head_dim];
        for head in 0..s.n_heads {
            let kv = head / group;
            let qh = &q[head * s.head_dim..(head + 1) * s.head_dim];
            let scores: Vec<f64> = slots
                .iter()
                .map(|&slot| {
                    let k = &k_rows[slot * row + kv * s.head_dim..][..s.head_dim];
                    let dot: f64 = qh.iter().zip(k).map(|(&a, &b)| a as f64 * b as f64).sum();
                    dot / (s.head_dim as f64).sqrt()
                })
                .collect();
            let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = scores.iter().map(|x| (x - max).exp()).sum();
            for (&slot, x) in slots.iter().zip(&scores) {
                let p = (x - max).exp() / z;
                let v = &v_rows[slot * row + kv * s.head_dim..][..s.head_dim];
                for (o, &vd) in out[head * s.head_dim..].iter_mut().zip(v) {
                    *o += p * vd as f64;
                }
            }
        }
        out
    }

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7919 + seed * 104_729) % 1009) as f32 / 1009.0 - 0.5) * 2.0)
            .collect()
    }

    /// The key cache in the kernel's transposed layout, from rows `[slot][n_kv][head_dim]`.
    fn transposed_keys(k_rows: &[f32], s: Shape) -> Vec<f32> {
        let row = s.n_kv * s.head_dim;
        let mut k_cache = vec![0f32; k_rows.len()];
        for slot in 0..k_rows.len() / row {
            for h in 0..s.n_kv {
                for d in 0..s.head_dim {
                    k_cache[s.key_index(slot, h, d)] = k_rows[slot * row + h * s.head_dim + d];
                }
            }
        }
        k_cache
    }

    /// The kernel's output for one token whose keys are `k_rows` (as rows) in `blocks`.
    fn attend(
        q: &[f32],
        k_rows: &[f32],
        v_rows: &[f32],
        blocks: &[u32],
        n_keys: usize,
        s: Shape,
    ) -> Vec<f32> {
        let k_cache = transposed_keys(k_rows, s);
        let mut out = vec![f32::NAN; s.n_heads * s.head_dim];
        TokenAttention {
            q,
            k_cache: &k_cache,
            v_cache: v_rows,
            blocks,
            n_keys,
            shape: s,
            out: &mut out,
        }
        .compute();
        out
    }

    #[test]
    fn matches_an_f64_reference_for_every_kernel_variant() {
        // (heads, kv heads, head_dim, block_size): the specialised block sizes and head dims
        // and the general paths, GQA and MHA, partial last blocks.
        for (n_heads, n_kv, head_dim, block_size, n_keys) in [
            (9usize, 3usize, 64usize, 16usize, 37usize),
            (4, 2, 128, 32, 33),
            (2, 2, 16, 4, 9),
            (6, 1, 18, 5, 1),
            (3, 3, 64, 16, 16),
        ] {
            let s = Shape {
                n_heads,
                n_kv,
                head_dim,
                block_size,
            };
            let num_blocks = 8;
            let row = n_kv * head_dim;
            let k_rows = values(num_blocks * block_size * row, 1);
            let v_rows = values(num_blocks * block_size * row, 2);
            let blocks: Vec<u32> =
                [5u32, 2, 7, 0, 3, 1, 6, 4][..n_keys.div_ceil(block_size)].to_vec();
            let slots: Vec<usize> = (0..n_keys)
                .map(|p| blocks[p / block_size] as usize * block_size + p % block_size)
                .collect();
            let q = values(n_heads * head_dim, 3);
            let out = attend(&q, &k_rows, &v_rows, &blocks, n_keys, s);
            let want = reference(&q, &k_rows, &v_rows, &slots, s);
            for (i, (&g, &w)) in out.iter().zip(&want).enumerate() {
                assert!(
                    (g as f64 - w).abs() < 1e-5,
                    "{n_heads}/{n_kv}/{head_dim}/{block_size} [{i}]: {g} vs {w}"
                );
            }
        }
    }

    #[test]
    fn the_block_size_does_not_change_a_bit() {
        let (n_heads, n_kv, head_dim, n_keys) = (4usize, 2usize, 64usize, 40usize);
        let row = n_kv * head_dim;
        let k_rows = values(64 * row, 4);
        let v_rows = values(64 * row, 5);
        let q = values(n_heads * head_dim, 6);
        let run = |block_size: usize| {
            let s = Shape {
                n_heads,
                n_kv,
                head_dim,
                block_size,
            };
            // Blocks in order, so position p is slot p at every block size.
            let blocks: Vec<u32> = (0..n_keys.div_ceil(block_size) as u32).collect();
            attend(&q, &k_rows, &v_rows, &blocks, n_keys, s)
        };
        let at16 = run(16);
        for block_size in [4, 8, 32] {
            assert_eq!(run(block_size), at16, "block size {block_size}");
        }
    }
}
