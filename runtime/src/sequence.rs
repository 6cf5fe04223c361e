//! One request, one sample's state while it runs, and the completion that comes out of it.
//!
//! Owns the per-sample record (tokens, log-probs, entropies, policy versions); knows nothing of
//! scheduling, KV blocks beyond holding its own block table, or the model.

use serde::{Deserialize, Serialize};

use crate::rng::SeqRng;
use crate::sampler::{SamplingParams, TokenChoice};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub prompt_ids: Vec<u32>,
    pub params: SamplingParams,
    /// Samples of this prompt (a GRPO group): the prompt is prefilled once and its blocks shared.
    pub n: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An EOS / stop token id was sampled (it is the last token id).
    Eos,
    /// A stop string appeared in the text (the text is cut before it).
    Stop,
    /// `max_new_tokens` reached.
    Length,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Eos => "eos",
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// A finished sample with everything the trainer needs, per generated token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    pub request_index: usize,
    pub sample_index: usize,
    pub prompt_token_ids: Vec<u32>,
    pub token_ids: Vec<u32>,
    /// Log-prob of each token under the sampling distribution actually used.
    pub sampling_logprobs: Vec<f32>,
    /// Log-prob of each token under the model's own distribution at temperature 1.
    pub logprobs: Vec<f32>,
    /// Entropy of the model's (T = 1) next-token distribution at each step.
    pub entropies: Vec<f32>,
    /// Policy version of the weights that produced each token.
    pub policy_versions: Vec<u64>,
    /// Per generated token, the ids its sampling distribution was renormalised over (top-k,
    /// top-p, min-p), when the request set `record_support`; empty otherwise (and when
    /// sampling did not truncate).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sampling_support: Vec<Vec<u32>>,
    /// Decoded text (special tokens skipped; cut before a stop string).
    pub text: String,
    pub finish_reason: FinishReason,
    /// The sequence was preempted (blocks freed, recomputed later) at least once.
    pub preempted: bool,
}

impl Completion {
    /// A completion with no tokens yet (finish reason `Length`).
    pub fn empty(request_index: usize, sample_index: usize, prompt: &[u32]) -> Self {
        Self {
            request_index,
            sample_index,
            prompt_token_ids: prompt.to_vec(),
            token_ids: vec![],
            sampling_logprobs: vec![],
            logprobs: vec![],
            entropies: vec![],
            policy_versions: vec![],
            sampling_support: vec![],
            text: String::new(),
            finish_reason: FinishReason::Length,
            preempted: false,
        }
    }

    pub fn prompt_tokens(&self) -> usize {
        self.prompt_token_ids.len()
    }

    pub fn completion_tokens(&self) -> usize {
        self.token_ids.len()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Sequence {
    pub request: usize,
    pub sample: usize,
    /// Prompt followed by generated tokens.
    pub tokens: Vec<u32>,
    pub prompt_len: usize,
    pub block_table: Vec<u32>,
    /// Tokens whose keys and values are in the cache.
    pub num_computed: usize,
    pub rng: SeqRng,
    pub sampling_logprobs: Vec<f32>,
    pub logprobs: Vec<f32>,
    pub entropies: Vec<f32>,
    pub versions: Vec<u64>,
    pub supports: Vec<Vec<u32>>,
    pub preempted: bool,
}

impl Sequence {
    /// Sample `sample` of a group whose prompt is prefilled into `block_table`.
    pub fn forked(
        request: usize,
        sample: usize,
        prompt: &[u32],
        block_table: Vec<u32>,
        seed: u64,
    ) -> Self {
        Self {
            request,
            sample,
            tokens: prompt.to_vec(),
            prompt_len: prompt.len(),
            block_table,
            num_computed: prompt.len(),
            rng: SeqRng::new(seed, sample as u64),
            sampling_logprobs: vec![],
            logprobs: vec![],
            entropies: vec![],
            versions: vec![],
            supports: vec![],
            preempted: false,
        }
    }

    pub fn generated(&self) -> &[u32] {
        &self.tokens[self.prompt_len..]
    }

    /// Append a sampled token and its scores, produced by weights of policy `version`.
    pub fn record(&mut self, choice: &TokenChoice, version: u64) {
        self.tokens.push(choice.token);
        self.sampling_logprobs.push(choice.sampling_logprob);
        self.logprobs.push(choice.raw_logprob);
        self.entropies.push(choice.entropy);
        self.versions.push(version);
        if let Some(support) = &choice.support {
            self.supports.push(support.clone());
        }
    }

    /// The finished sample, with its decoded `text`.
    pub fn into_completion(self, text: String, finish_reason: FinishReason) -> Completion {
        Completion {
            request_index: self.request,
            sample_index: self.sample,
            prompt_token_ids: self.tokens[..self.prompt_len].to_vec(),
            token_ids: self.tokens[self.prompt_len..].to_vec(),
            sampling_logprobs: self.sampling_logprobs,
            logprobs: self.logprobs,
            entropies: self.entropies,
            policy_versions: self.versions,
            sampling_support: self.supports,
            text,
            finish_reason,
            preempted: self.preempted,
        }
    }
}
