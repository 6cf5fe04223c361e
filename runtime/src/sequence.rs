//! One request's state, and what comes out of it.

use serde::{Deserialize, Serialize};

use crate::rng::SeqRng;
use crate::sampler::SamplingParams;

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
    /// Decoded text (special tokens skipped; cut before a stop string).
    pub text: String,
    pub finish_reason: FinishReason,
    /// The sequence was preempted (blocks freed, recomputed later) at least once.
    pub preempted: bool,
}

impl Completion {
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
    pub preempted: bool,
}

impl Sequence {
    pub fn generated(&self) -> &[u32] {
        &self.tokens[self.prompt_len..]
    }
}
