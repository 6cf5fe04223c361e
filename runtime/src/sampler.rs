//! Turning one row of logits into a token: raw (T = 1) log-prob and entropy of the model's
//! distribution, and the log-prob under the sampling distribution actually used.
//!
//! Owns the sampling parameters and the choice of one token from one row; knows nothing of
//! sequences, batching or the model (the caller brings each sequence's RNG).

use serde::{Deserialize, Serialize};

use crate::rng::SeqRng;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    /// Nucleus sampling mass; 1.0 turns it off.
    pub top_p: f32,
    /// Keep the k most likely tokens; 0 turns it off.
    pub top_k: usize,
    /// Drop tokens with probability below `min_p` × the most likely one's; 0 turns it off.
    pub min_p: f32,
    /// Per-request seed: the same seed gives the same tokens whatever else is batched.
    pub seed: u64,
    pub max_new_tokens: usize,
    /// Token ids that end a completion (usually the model's EOS ids).
    pub stop_token_ids: Vec<u32>,
    /// Strings that end a completion; the text is cut before the match.
    pub stop_strings: Vec<String>,
    /// Keep generating through EOS (benchmarks).
    pub ignore_eos: bool,
    /// Record, per token, the ids the sampler kept when it truncated (top-k/top-p/min-p;
    /// greedy keeps one), so that a trainer can score the same truncated distribution
    /// (`Completion::sampling_support`). Off by default: the sets can be large.
    #[serde(default)]
    pub record_support: bool,
    /// Token-id sequences that pause a sample instead of ending it (e.g. the ids of a tool
    /// call's closing tag): the sample comes out with [`FinishReason::ToolCall`], keeps its KV
    /// blocks, and continues after [`Engine::resume`] appends the environment's tokens. Matched
    /// against the tokens the model generated since it last (re)started, before the stop tokens:
    /// a pause sequence ending in a stop token (Llama 3's `<|eot_id|>`, which ends every turn)
    /// pauses there, and the caller decides whether the turn was a tool call (resume) or the
    /// end ([`Engine::finish_paused`] with [`FinishReason::Eos`]: the same completion as a run
    /// that stopped there).
    ///
    /// [`FinishReason::ToolCall`]: crate::FinishReason::ToolCall
    /// [`FinishReason::Eos`]: crate::FinishReason::Eos
    /// [`Engine::resume`]: crate::Engine::resume
    /// [`Engine::finish_paused`]: crate::Engine::finish_paused
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pause_token_seqs: Vec<Vec<u32>>,
    /// Strings that pause a sample as `pause_token_seqs` do (e.g. `"</tool_call>"`), matched in
    /// the decoded text of the model's current turn (needs the engine's tokenizer).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pause_strings: Vec<String>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            seed: 0,
            max_new_tokens: 256,
            stop_token_ids: vec![],
            stop_strings: vec![],
            ignore_eos: false,
            record_support: false,
            pause_token_seqs: vec![],
            pause_strings: vec![],
        }
    }
}

impl SamplingParams {
    pub fn greedy(max_new_tokens: usize) -> Self {
        Self {
            temperature: 0.0,
            max_new_tokens,
            ..Self::default()
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(format!(
                "temperature {} must be finite and ≥ 0",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("top_p {} must be in (0, 1]", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return Err(format!("min_p {} must be in [0, 1]", self.min_p));
        }
        if self.pause_token_seqs.iter().any(|s| s.is_empty()) {
            return Err("pause_token_seqs holds an empty sequence".into());
        }
        Ok(())
    }

    /// Whether top-k, top-p or min-p cut the distribution.
    pub fn truncates(&self) -> bool {
        self.top_k > 0 || self.top_p < 1.0 || self.min_p > 0.0
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TokenChoice {
    pub token: u32,
    /// Log-prob under the distribution sampled from (temperature, top-k/p, min-p applied).
    pub sampling_logprob: f32,
    /// Log-prob under the model's own distribution at temperature 1.
    pub raw_logprob: f32,
    /// Entropy of the model's distribution at temperature 1.
    pub entropy: f32,
    /// The ids the sampling distribution was renormalised over, ascending (when it truncated
    /// and `record_support` is set): `sampling_logprob` is the token's log-softmax of
    /// logits / T over exactly these.
    pub support: Option<Vec<u32>>,
}

/// Log-sum-exp of `x * scale` (f64 accumulation).
fn logsumexp(x: &[f32], scale: f64) -> f64 {
    let max = x
        .iter()
        .fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64 * scale));
    let sum: f64 = x.iter().map(|&v| (v as f64 * scale - max).exp()).sum();
    max + sum.ln()
}

fn argmax(x: &[f32]) -> u32 {
    let mut best = 0usize;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best as u32
}

/// Choose the next token from one row of logits.
pub fn sample(logits: &[f32], params: &SamplingParams, rng: &mut SeqRng) -> TokenChoice {
    let mut exps = Vec::new();
    let (lse, entropy) = rlvr_models::rowstats::lse_entropy(logits, Some(&mut exps));
    let raw = |token: u32| (logits[token as usize] as f64 - lse) as f32;
    if params.temperature == 0.0 {
        let token = argmax(logits);
        return TokenChoice {
            token,
            sampling_logprob: 0.0,
            raw_logprob: raw(token),
            entropy: entropy as f32,
            support: params.record_support.then(|| vec![token]),
        };
    }
    let uniform = rng.uniform();
    let inv_temperature = 1.0 / params.temperature as f64;
    let (token, sampling_logprob, support) = if params.truncates() {
        truncated_sample(logits, params, inv_temperature, uniform)
    } else if params.temperature == 1.0 {
        // The sampling distribution is the model's: reuse the exponentials.
        let token = inverse_cdf_of_weights(&exps, uniform);
        (token, raw(token), None)
    } else {
        let (token, logprob) = tempered_sample(logits, inv_temperature, uniform);
        (token, logprob, None)
    };
    TokenChoice {
        token,
        sampling_logprob,
        raw_logprob: raw(token),
        entropy: entropy as f32,
        support,
    }
}

/// The token whose cumulative share of the unnormalised `weights` first exceeds `uniform`.
fn inverse_cdf_of_weights(weights: &[f32], uniform: f64) -> u32 {
    let total: f64 = weights.iter().map(|&w| w as f64).sum();
    let target = uniform * total;
    let mut acc = 0.0f64;
    let mut chosen = weights.len() - 1;
    for (token, &w) in weights.iter().enumerate() {
        acc += w as f64;
        if target < acc {
            chosen = token;
            break;
        }
    }
    chosen as u32
}

/// Inverse-CDF over the full tempered distribution; the token and its tempered log-prob.
fn tempered_sample(logits: &[f32], inv_temperature: f64, uniform: f64) -> (u32, f32) {
    let lse_t = logsumexp(logits, inv_temperature);
    let mut acc = 0.0f64;
    let mut chosen = logits.len() - 1;
    for (token, &logit) in logits.iter().enumerate() {
        acc += (logit as f64 * inv_temperature - lse_t).exp();
        if uniform < acc {
            chosen = token;
            break;
        }
    }
    (
        chosen as u32,
        (logits[chosen] as f64 * inv_temperature - lse_t) as f32,
    )
}

/// temperature → top-k → top-p → min-p, then sample from the renormalised survivors; the
/// token, its log-prob among them, and (with `record_support`) the survivors' ids, ascending.
fn truncated_sample(
    logits: &[f32],
    params: &SamplingParams,
    inv_temperature: f64,
    uniform: f64,
) -> (u32, f32, Option<Vec<u32>>) {
    let mut candidates: Vec<u32> = (0..logits.len() as u32).collect();
    let logit_of = |token: &u32| logits[*token as usize];
    let top_k = params.top_k;
    if top_k > 0 && top_k < candidates.len() {
        candidates.select_nth_unstable_by(top_k - 1, |a, b| logit_of(b).total_cmp(&logit_of(a)));
        candidates.truncate(top_k);
    }
    candidates.sort_unstable_by(|a, b| logit_of(b).total_cmp(&logit_of(a)).then(a.cmp(b)));
    let scaled: Vec<f64> = candidates
        .iter()
        .map(|&token| logits[token as usize] as f64 * inv_temperature)
        .collect();
    let max = scaled[0];
    let mut probs: Vec<f64> = scaled.iter().map(|s| (s - max).exp()).collect();
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|x| *x /= total);
    let mut keep = probs.len();
    if params.top_p < 1.0 {
        let mut acc = 0.0;
        for (rank, &prob) in probs.iter().enumerate() {
            acc += prob;
            if acc >= params.top_p as f64 {
                keep = rank + 1;
                break;
            }
        }
    }
    if params.min_p > 0.0 {
        let floor = params.min_p as f64 * probs[0];
        keep = keep.min(
            probs
                .iter()
                .take_while(|&&prob| prob >= floor)
                .count()
                .max(1),
        );
    }
    let kept_total: f64 = probs[..keep].iter().sum();
    let mut acc = 0.0;
    let mut chosen = keep - 1;
    for (rank, &prob) in probs[..keep].iter().enumerate() {
        acc += prob / kept_total;
        if uniform < acc {
            chosen = rank;
            break;
        }
    }
    let support = params.record_support.then(|| {
        let mut kept = candidates[..keep].to_vec();
        kept.sort_unstable();
        kept
    });
    (
        candidates[chosen],
        (probs[chosen] / kept_total).ln() as f32,
        support,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_stats_match_definition() {
        let logits = [1.0f32, 2.0, 3.0, 0.5];
        let greedy = sample(&logits, &SamplingParams::greedy(1), &mut SeqRng::new(0, 0));
        assert_eq!(greedy.token, 2);
        let (lp, h) = (greedy.raw_logprob, greedy.entropy);
        let z: f64 = logits.iter().map(|&x| (x as f64).exp()).sum();
        let p: Vec<f64> = logits.iter().map(|&x| (x as f64).exp() / z).collect();
        assert!((lp as f64 - p[2].ln()).abs() < 1e-6);
        let ent: f64 = -p.iter().map(|q| q * q.ln()).sum::<f64>();
        assert!((h as f64 - ent).abs() < 1e-6);
    }

    #[test]
    fn greedy_and_truncation() {
        let logits = [0.0f32, 5.0, 4.9, -3.0];
        let mut rng = SeqRng::new(1, 0);
        let c = sample(&logits, &SamplingParams::greedy(1), &mut rng);
        assert_eq!(c.token, 1);
        assert_eq!(c.sampling_logprob, 0.0);
        // top_k = 1 is greedy with a sampling log-prob of 0.
        let p = SamplingParams {
            top_k: 1,
            ..Default::default()
        };
        for s in 0..20 {
            let c = sample(&logits, &p, &mut SeqRng::new(s, 0));
            assert_eq!(c.token, 1);
            assert!(c.sampling_logprob.abs() < 1e-6);
        }
        // top_k = 2 renormalises over the two survivors.
        let p = SamplingParams {
            top_k: 2,
            ..Default::default()
        };
        let c = sample(&logits, &p, &mut SeqRng::new(3, 0));
        assert!(c.token == 1 || c.token == 2);
        let z = (5.0f64).exp() + (4.9f64).exp();
        let want = (logits[c.token as usize] as f64).exp() / z;
        assert!((c.sampling_logprob as f64 - want.ln()).abs() < 1e-6);
        // min_p removes the unlikely tail.
        let p = SamplingParams {
            min_p: 0.5,
            ..Default::default()
        };
        for s in 0..50 {
            let c = sample(&logits, &p, &mut SeqRng::new(s, 0));
            assert!(c.token == 1 || c.token == 2);
        }
    }

    /// With `record_support`, the recorded set is a top set of the logits and exactly what the
    /// sampling log-prob is normalised over; top-p keeps the smallest such set with mass ≥ p.
    #[test]
    fn recorded_support_is_what_the_sampling_logprob_normalises_over() {
        let logits: Vec<f32> = (0..50).map(|i| (i * 37 % 50) as f32 * 0.13 - 2.0).collect();
        let settings = [(0.9, 0, 0.0, 1.0), (1.0, 5, 0.0, 0.7), (0.8, 10, 0.1, 1.3)];
        for (top_p, top_k, min_p, temperature) in settings {
            let p = SamplingParams {
                temperature,
                top_p,
                top_k,
                min_p,
                record_support: true,
                ..Default::default()
            };
            let inv_t = 1.0 / temperature as f64;
            for seed in 0..20 {
                let c = sample(&logits, &p, &mut SeqRng::new(seed, 0));
                let support = c.support.expect("recorded");
                assert!(support.windows(2).all(|w| w[0] < w[1]), "ascending ids");
                assert!(support.contains(&c.token));
                let weight = |i: u32| (logits[i as usize] as f64 * inv_t).exp();
                let z: f64 = support.iter().map(|&i| weight(i)).sum();
                let want = (weight(c.token) / z).ln();
                assert!((c.sampling_logprob as f64 - want).abs() < 1e-6);
                let lowest_kept = support
                    .iter()
                    .map(|&i| logits[i as usize])
                    .fold(f32::MAX, f32::min);
                let dropped = (0..50u32).filter(|i| !support.contains(i));
                assert!(dropped.map(|i| logits[i as usize]).all(|x| x < lowest_kept));
                if top_k == 0 && min_p == 0.0 {
                    let total: f64 = (0..50u32).map(weight).sum();
                    assert!(z / total >= top_p as f64);
                    let smallest = support.iter().map(|&i| weight(i)).fold(f64::MAX, f64::min);
                    assert!(
                        (z - smallest) / total < top_p as f64,
                        "not the smallest set"
                    );
                }
            }
        }
        // Nothing is recorded without truncation or without the flag.
        let full = SamplingParams {
            record_support: true,
            ..Default::default()
        };
        assert_eq!(sample(&logits, &full, &mut SeqRng::new(1, 0)).support, None);
        let unrecorded = SamplingParams {
            top_p: 0.5,
            ..Default::default()
        };
        assert_eq!(
            sample(&logits, &unrecorded, &mut SeqRng::new(1, 0)).support,
            None
        );
        let greedy = SamplingParams {
            record_support: true,
            ..SamplingParams::greedy(1)
        };
        let c = sample(&logits, &greedy, &mut SeqRng::new(1, 0));
        assert_eq!(c.support, Some(vec![c.token]));
    }

    #[test]
    fn full_distribution_frequencies() {
        let logits = [0.0f32, 1.0, 2.0];
        let p = SamplingParams {
            temperature: 1.0,
            ..Default::default()
        };
        let mut counts = [0usize; 3];
        let mut rng = SeqRng::new(42, 0);
        let n = 20000;
        for _ in 0..n {
            counts[sample(&logits, &p, &mut rng).token as usize] += 1;
        }
        let z: f64 = logits.iter().map(|&x| (x as f64).exp()).sum();
        for i in 0..3 {
            let want = (logits[i] as f64).exp() / z;
            let got = counts[i] as f64 / n as f64;
            assert!((got - want).abs() < 0.015, "token {i}: {got} vs {want}");
        }
        // Temperature sharpens: the sampling log-prob uses logits / T.
        let p = SamplingParams {
            temperature: 0.5,
            ..Default::default()
        };
        let c = sample(&logits, &p, &mut SeqRng::new(7, 0));
        let z: f64 = logits.iter().map(|&x| (2.0 * x as f64).exp()).sum();
        let want = (2.0 * logits[c.token as usize] as f64).exp() / z;
        assert!((c.sampling_logprob as f64 - want.ln()).abs() < 1e-6);
    }
}
