//! Sampling as tensor operations on the device that holds the logits: only `[N]`-sized results
//! (token, sampling log-prob, raw log-prob, entropy) come back, in one copy.
//!
//! Per row: greedy (argmax), or a draw from the full tempered distribution with a uniform the
//! host supplies (each sample's own seeded stream, so a draw does not depend on what else is
//! batched). The draw is the host sampler's inverse CDF — the first token whose cumulative
//! weight exceeds `uniform × total` — computed without a full `[N, vocab]` cumulative sum
//! (candle's `cumsum` is a matmul with a `[vocab, vocab]` triangle): the vocabulary is cut into
//! blocks of [`BLOCK`] tokens, the block is found from the cumulative block sums, then the token
//! inside it from that block's cumulative sum. Block sums are accumulated in f32 over [`BLOCK`]
//! values and everything after that in f64, so the totals, log-probs and entropies stay within
//! ~1e-6 of the host's f64 accumulation (a plain f32 sum over a 49k vocabulary is off by ~1e-4).
//!
//! Truncated sampling (top-k / top-p / min-p) is not done here: [`crate::step_sampler`] sends
//! those rows to the host sampler (their logits rows only).
//!
//! Owns the tensor formulation of one batch of draws; knows nothing of sequences, requests or
//! RNGs (the caller brings the uniforms).

use std::collections::HashMap;

use candle_core::{DType, Device, Result, Tensor, D};

use crate::sampler::TokenChoice;

/// Tokens per block of the two-level inverse CDF.
pub const BLOCK: usize = 256;

/// Value the vocabulary is padded with up to a whole number of blocks: exp() of it is 0 and
/// it is never the maximum.
const PAD_LOGIT: f64 = -1e30;

/// One row's draw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeviceDraw {
    /// 1 / temperature; 0 means greedy.
    pub inv_temperature: f64,
    /// The row's uniform in [0, 1) (ignored when greedy).
    pub uniform: f64,
}

/// Draws from rows of logits with tensor ops; keeps the upper-triangular matrices the
/// cumulative sums multiply by (one per size and device), so a step uploads only its draws.
#[derive(Default)]
pub struct DeviceSampler {
    triangles: HashMap<usize, Tensor>,
}

/// The per-row quantities of one batch, `[n, 1]` f64 unless noted.
struct RowStats {
    /// Logits minus their row max, f32 `[n, b·BLOCK]`, padded.
    shifted: Tensor,
    /// exp(shifted), f32 `[n, b·BLOCK]`.
    exps: Tensor,
    /// ln Σ exp(shifted).
    ln_total: Tensor,
    entropy: Tensor,
    blocks: usize,
}

impl DeviceSampler {
    pub fn new() -> Self {
        Self::default()
    }

    /// One choice per row of `logits` (`[n, vocab]`, any float dtype, any device), `draws[i]`
    /// for row `i`. `support` is left `None`.
    pub fn sample(&mut self, logits: &Tensor, draws: &[DeviceDraw]) -> Result<Vec<TokenChoice>> {
        let (n, vocab) = logits.dims2()?;
        if n != draws.len() {
            candle_core::bail!("device sampler: {n} rows of logits, {} draws", draws.len());
        }
        if n == 0 {
            return Ok(vec![]);
        }
        let device = logits.device().clone();
        let any_greedy = draws.iter().any(|d| d.inv_temperature == 0.0);
        let all_greedy = draws.iter().all(|d| d.inv_temperature == 0.0);
        let tempered = draws
            .iter()
            .any(|d| d.inv_temperature != 0.0 && d.inv_temperature != 1.0);
        // One upload: uniform, 1 / T and the greedy flag of each row (a scalar compared or
        // clamped on the device would be one more upload each in candle).
        let host: Vec<f64> = draws
            .iter()
            .flat_map(|d| {
                let greedy = if d.inv_temperature == 0.0 { 1.0 } else { 0.0 };
                [d.uniform, d.inv_temperature, greedy]
            })
            .collect();
        let params = Tensor::from_vec(host, (n, 3), &device)?;
        let (uniform, inv_t) = (params.narrow(1, 0, 1)?, params.narrow(1, 1, 1)?);
        let stats = row_stats(logits, vocab)?;
        let greedy_token = if any_greedy {
            Some(
                stats
                    .shifted
                    .argmax_keepdim(D::Minus1)?
                    .to_dtype(DType::F64)?,
            )
        } else {
            None
        };
        let (token, sampling_lp) = match (&greedy_token, all_greedy) {
            (Some(g), true) => (g.clone(), g.zeros_like()?),
            _ => {
                let (token, lp) = self.draw(&stats, &uniform, &inv_t, tempered, vocab)?;
                match &greedy_token {
                    Some(g) => {
                        let is_greedy = params.narrow(1, 2, 1)?.to_dtype(DType::U8)?;
                        (
                            is_greedy.where_cond(g, &token)?,
                            is_greedy.where_cond(&lp.zeros_like()?, &lp)?,
                        )
                    }
                    None => (token, lp),
                }
            }
        };
        let raw_lp = (logit_at(&stats.shifted, &token)? - &stats.ln_total)?;
        let out = Tensor::cat(&[&token, &sampling_lp, &raw_lp, &stats.entropy], 1)?;
        Ok(out
            .to_vec2::<f64>()?
            .into_iter()
            .map(|r| TokenChoice {
                token: r[0] as u32,
                sampling_logprob: r[1] as f32,
                raw_logprob: r[2] as f32,
                entropy: r[3] as f32,
                support: None,
            })
            .collect())
    }

    /// Inverse-CDF draw of every row from exp(shifted × inv_t): `[n, 1]` f64 token ids and
    /// their log-probs under that distribution.
    fn draw(
        &mut self,
        stats: &RowStats,
        uniform: &Tensor,
        inv_t: &Tensor,
        tempered: bool,
        vocab: usize,
    ) -> Result<(Tensor, Tensor)> {
        let (n, b) = (stats.exps.dim(0)?, stats.blocks);
        let weights = if tempered {
            let inv = inv_t.to_dtype(DType::F32)?;
            stats.shifted.broadcast_mul(&inv)?.exp()?
        } else {
            stats.exps.clone()
        };
        let weights = weights.reshape((n, b, BLOCK))?;
        let block_sums = weights.sum(D::Minus1)?.to_dtype(DType::F64)?; // [n, b]
        let block_cum = block_sums.matmul(self.triangle(b, weights.device())?)?;
        let total = block_cum.narrow(1, b - 1, 1)?;
        let target = (uniform * &total)?;
        let block = count_le(&block_cum, &target, b)?; // [n, 1] f64
        let block_idx = block.to_dtype(DType::U32)?;
        let before = (block_cum.gather(&block_idx, 1)? - block_sums.gather(&block_idx, 1)?)?;
        let index = block_idx
            .unsqueeze(2)?
            .broadcast_as((n, 1, BLOCK))?
            .contiguous()?;
        let inside = weights
            .gather(&index, 1)?
            .squeeze(1)?
            .to_dtype(DType::F64)?
            .matmul(self.triangle(BLOCK, weights.device())?)?
            .broadcast_add(&before)?;
        let offset = count_le(&inside, &target, BLOCK)?;
        let token = at_most(&(block * BLOCK as f64 + offset)?, (vocab - 1) as f64)?;
        // log p_T(token) = shifted(token) · inv_t − ln Σ exp(shifted · inv_t).
        let lp = (logit_at(&stats.shifted, &token)? * inv_t)? - total.log()?;
        Ok((token, lp?))
    }

    /// The `[size, size]` f64 upper triangle (ones where column ≥ row): `x.matmul(t)` is the
    /// inclusive cumulative sum of `x`'s rows.
    fn triangle(&mut self, size: usize, device: &Device) -> Result<&Tensor> {
        if let Some(t) = self.triangles.get(&size) {
            if t.device().same_device(device) {
                return Ok(&self.triangles[&size]);
            }
        }
        let t = Tensor::triu2(size, DType::F64, device)?;
        self.triangles.insert(size, t);
        Ok(&self.triangles[&size])
    }
}

/// Max-shifted logits, their exponentials, ln of the total and the entropy (all T = 1).
fn row_stats(logits: &Tensor, vocab: usize) -> Result<RowStats> {
    let n = logits.dim(0)?;
    let blocks = vocab.div_ceil(BLOCK);
    let x = logits.to_dtype(DType::F32)?;
    let x = match blocks * BLOCK - vocab {
        0 => x,
        pad => {
            let fill = Tensor::full(PAD_LOGIT as f32, (n, pad), x.device())?;
            Tensor::cat(&[&x, &fill], 1)?
        }
    };
    let shifted = x.broadcast_sub(&x.max_keepdim(D::Minus1)?)?;
    let exps = shifted.exp()?;
    let block_total = |t: &Tensor| -> Result<Tensor> {
        t.reshape((n, blocks, BLOCK))?
            .sum(D::Minus1)?
            .to_dtype(DType::F64)?
            .sum_keepdim(D::Minus1)
    };
    let total = block_total(&exps)?;
    let weighted = block_total(&(&exps * &shifted)?)?;
    let ln_total = total.log()?;
    // H = ln Z − Σ p·(x − max).
    let entropy = (&ln_total - (weighted / total)?)?;
    Ok(RowStats {
        shifted,
        exps,
        ln_total,
        entropy,
        blocks,
    })
}

/// How many entries of each row of `cum` (`[n, m]`, ascending) are ≤ `target` (`[n, 1]`),
/// at most `m − 1` (the last entry is not compared): `[n, 1]` f64.
fn count_le(cum: &Tensor, target: &Tensor, m: usize) -> Result<Tensor> {
    if m == 1 {
        return target.zeros_like();
    }
    cum.narrow(1, 0, m - 1)?
        .broadcast_le(target)?
        .to_dtype(DType::F64)?
        .sum_keepdim(D::Minus1)
}

/// min(x, limit) with unary ops only: limit − relu(limit − x).
fn at_most(x: &Tensor, limit: f64) -> Result<Tensor> {
    x.affine(-1.0, limit)?.relu()?.affine(-1.0, limit)
}

/// `shifted[row, token[row]]` as `[n, 1]` f64 (`token`: `[n, 1]` f64 ids).
fn logit_at(shifted: &Tensor, token: &Tensor) -> Result<Tensor> {
    shifted
        .gather(&token.to_dtype(DType::U32)?, 1)?
        .to_dtype(DType::F64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SeqRng;
    use crate::sampler::{sample, SamplingParams};

    /// A vocabulary that is not a whole number of blocks (padding), greedy and tempered rows in
    /// one batch, and uniforms at the ends of [0, 1): the host sampler's tokens and values.
    #[test]
    fn mixed_rows_and_a_padded_vocabulary_match_the_host() {
        let (rows, vocab) = (12usize, 300usize);
        let values: Vec<f32> = (0..rows * vocab)
            .map(|i| ((i * 7919 % 1013) as f32 / 1013.0 - 0.5) * 9.0)
            .collect();
        let logits = Tensor::from_vec(values.clone(), (rows, vocab), &Device::Cpu).unwrap();
        let temperatures = [0.0f32, 1.0, 0.5, 1.7];
        for round in 0..20u64 {
            let mut rngs: Vec<SeqRng> = (0..rows).map(|r| SeqRng::new(round, r as u64)).collect();
            let params: Vec<SamplingParams> = (0..rows)
                .map(|r| SamplingParams {
                    temperature: temperatures[r % 4],
                    ..Default::default()
                })
                .collect();
            let draws: Vec<DeviceDraw> = (0..rows)
                .map(|r| {
                    let t = params[r].temperature as f64;
                    let mut uniform = rngs[r].clone().uniform();
                    if round == 0 {
                        uniform = if r % 2 == 0 { 0.0 } else { 1.0 - 1e-12 };
                    }
                    DeviceDraw {
                        inv_temperature: if t == 0.0 { 0.0 } else { 1.0 / t },
                        uniform,
                    }
                })
                .collect();
            let got = DeviceSampler::new().sample(&logits, &draws).unwrap();
            let per_row = values.chunks(vocab).zip(&params).zip(&mut rngs);
            for (r, ((row, p), rng)) in per_row.enumerate() {
                if round == 0 && p.temperature != 0.0 {
                    continue;
                }
                let host = sample(row, p, rng);
                let dev = &got[r];
                assert_eq!(host.token, dev.token, "round {round} row {r}");
                assert!((host.sampling_logprob - dev.sampling_logprob).abs() < 1e-5);
                assert!((host.raw_logprob - dev.raw_logprob).abs() < 1e-5);
                assert!((host.entropy - dev.entropy).abs() < 1e-5);
            }
            if round == 0 {
                // u = 0 draws the first token with weight; u → 1 the last one.
                for (r, c) in got.iter().enumerate().filter(|(r, _)| r % 4 != 0) {
                    assert!(c.token < vocab as u32);
                    if r % 2 == 0 {
                        assert_eq!(c.token, 0, "row {r}");
                    }
                }
            }
        }
    }
}
