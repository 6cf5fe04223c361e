//! The trainer's input: plain, serialisable data (no dependency on the runtime crate).
//!
//! Owns the input types and their validation. Must not know the runtime or the verifier: whoever
//! samples and scores rollouts fills these in.

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainerError};

/// One scored completion. Every per-token vector is aligned with `completion_ids`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScoredSample {
    pub prompt_ids: Vec<u32>,
    pub completion_ids: Vec<u32>,
    /// Log-prob of each sampled token under the sampling distribution (temperature, top-p): `ℓ_b`.
    pub behaviour_logprobs: Vec<f32>,
    /// Log-prob of each sampled token under the raw model (temperature 1). May be empty when
    /// the trainer recomputes it (the default).
    #[serde(default)]
    pub raw_logprobs: Vec<f32>,
    /// Entropy of the raw (temperature 1) next-token distribution. May be empty as above.
    #[serde(default)]
    pub entropies: Vec<f32>,
    /// Policy version that produced each token. May be empty (staleness metrics then skip it).
    #[serde(default)]
    pub policy_versions: Vec<u64>,
    /// Per completion token, the token ids the sampler renormalised over when it truncated
    /// (top-k/top-p/min-p), ascending; `behaviour_logprobs` are log-probs under that truncated
    /// distribution, and the trainer scores ℓ_θ (and ℓ_prox, ℓ_ref) under the same sets
    /// (algorithms.md §1.8.7). Empty when sampling used the full distribution.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sampling_support: Vec<Vec<u32>>,
    /// Per completion token, true where the model generated it and false where the environment
    /// inserted it (a tool result in a multi-turn rollout). Inserted tokens are context only:
    /// no loss, no ratio, no S2T statistic and no normalisation count; their log-probs and
    /// entropies above are placeholders. Empty = every token generated (single-turn data).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub generated_mask: Vec<bool>,
    pub reward: f64,
    /// `eos | length | stop_string | tool_call | aborted | env_failure`.
    #[serde(default)]
    pub finish_reason: String,
}

/// The G samples of one prompt; advantages are computed within a group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScoredGroup {
    pub prompt_id: u64,
    pub samples: Vec<ScoredSample>,
    /// The train step `T` at which this group's generation was admitted.
    #[serde(default)]
    pub t_start: u64,
}

impl ScoredSample {
    /// Check the per-token vectors against the completion length.
    pub fn validate(&self, group: usize, sample: usize) -> Result<()> {
        let n = self.completion_ids.len();
        let bad = |msg: String| TrainerError::InvalidSample { group, sample, msg };
        if self.prompt_ids.is_empty() {
            return Err(bad(
                "empty prompt (the first completion token needs a context)".into(),
            ));
        }
        if self.behaviour_logprobs.len() != n {
            return Err(bad(format!(
                "behaviour_logprobs has {} entries for {n} completion tokens",
                self.behaviour_logprobs.len()
            )));
        }
        for (name, len) in [
            ("raw_logprobs", self.raw_logprobs.len()),
            ("entropies", self.entropies.len()),
            ("policy_versions", self.policy_versions.len()),
            ("generated_mask", self.generated_mask.len()),
        ] {
            if len != 0 && len != n {
                return Err(bad(format!(
                    "{name} has {len} entries for {n} completion tokens"
                )));
            }
        }
        self.validate_support().map_err(bad)?;
        if !self.reward.is_finite() {
            return Err(bad(format!("non-finite reward {}", self.reward)));
        }
        Ok(())
    }

    /// `sampling_support`: empty, or per completion token a non-empty ascending set holding the
    /// token.
    fn validate_support(&self) -> std::result::Result<(), String> {
        let n = self.completion_ids.len();
        if self.sampling_support.is_empty() {
            return Ok(());
        }
        if self.sampling_support.len() != n {
            return Err(format!(
                "sampling_support has {} entries for {n} completion tokens",
                self.sampling_support.len()
            ));
        }
        for (t, (set, token)) in self
            .sampling_support
            .iter()
            .zip(&self.completion_ids)
            .enumerate()
        {
            if !set.windows(2).all(|w| w[0] < w[1]) || set.binary_search(token).is_err() {
                return Err(format!(
                    "sampling_support of token {t} is not an ascending set holding token {token}"
                ));
            }
        }
        Ok(())
    }

    /// Whether completion token `t` was generated by the model (not inserted).
    pub fn is_generated(&self, t: usize) -> bool {
        self.generated_mask.get(t).copied().unwrap_or(true)
    }

    /// Prompt followed by completion: the row the model reads.
    pub fn full_row(&self) -> Vec<u32> {
        let mut r = Vec::with_capacity(self.prompt_ids.len() + self.completion_ids.len());
        r.extend_from_slice(&self.prompt_ids);
        r.extend_from_slice(&self.completion_ids);
        r
    }
}
