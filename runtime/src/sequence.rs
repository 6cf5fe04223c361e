//! One request, one sample's state while it runs, and the completion that comes out of it.
//!
//! Owns the per-sample record (tokens, log-probs, entropies, policy versions, and which tokens
//! the model generated and which the environment inserted between turns); knows nothing of
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

impl Request {
    /// `group_size` samples for each prompt; prompt i is seeded with `params.seed + i`.
    pub fn seeded_groups(
        prompts: &[Vec<u32>],
        group_size: usize,
        params: &SamplingParams,
    ) -> Vec<Request> {
        prompts
            .iter()
            .enumerate()
            .map(|(i, prompt)| Request {
                prompt_ids: prompt.clone(),
                params: SamplingParams {
                    seed: params.seed.wrapping_add(i as u64),
                    ..params.clone()
                },
                n: group_size,
            })
            .collect()
    }
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
    /// A pause sequence or string closed a tool call: the sample waits, with its KV blocks, for
    /// [`crate::Engine::resume`] (or [`crate::Engine::release_paused`]).
    ToolCall,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Eos => "eos",
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCall => "tool_call",
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
    /// Log-prob of each token under the sampling distribution actually used (0 for an inserted
    /// token: nothing was sampled there).
    pub sampling_logprobs: Vec<f32>,
    /// Log-prob of each token under the model's own distribution at temperature 1.
    pub logprobs: Vec<f32>,
    /// Entropy of the model's (T = 1) next-token distribution at each step (0 for an inserted
    /// token: the engine does not score the environment's tokens; `logprobs` holds 0 there too).
    pub entropies: Vec<f32>,
    /// Policy version of the weights that produced each token.
    pub policy_versions: Vec<u64>,
    /// Per generated token, the ids its sampling distribution was renormalised over (top-k,
    /// top-p, min-p), when the request set `record_support`; empty otherwise (and when
    /// sampling did not truncate).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sampling_support: Vec<Vec<u32>>,
    /// Per token, whether the environment inserted it ([`crate::Engine::resume`]) rather than
    /// the model generating it. Empty means none was inserted (single-turn completions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inserted: Vec<bool>,
    /// Decoded text of all of `token_ids`, inserted ones included (special tokens skipped; cut
    /// before a stop string).
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
            inserted: vec![],
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

    /// Whether token `k` of the completion was inserted by the environment.
    pub fn is_inserted(&self, k: usize) -> bool {
        self.inserted.get(k).copied().unwrap_or(false)
    }

    /// Per token, true where the model generated it: the trainer's loss mask.
    pub fn generated_mask(&self) -> Vec<bool> {
        (0..self.token_ids.len())
            .map(|k| !self.is_inserted(k))
            .collect()
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
    /// Per completion token: inserted by the environment (true) or generated.
    pub inserted: Vec<bool>,
    /// Index in `tokens` where the model's current turn began (pause matching looks only here).
    pub turn_start: usize,
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
            inserted: vec![],
            turn_start: prompt.len(),
            preempted: false,
        }
    }

    pub fn generated(&self) -> &[u32] {
        &self.tokens[self.prompt_len..]
    }

    /// The tokens of the model's current turn (since the last insertion).
    pub fn turn(&self) -> &[u32] {
        &self.tokens[self.turn_start..]
    }

    /// Append the environment's `tokens` (their KV is not computed yet) under policy `version`;
    /// their log-probs and entropies are placeholders (0): nothing was sampled there. The
    /// model's next turn starts after them.
    pub fn insert(&mut self, tokens: &[u32], version: u64) {
        self.tokens.extend_from_slice(tokens);
        let n = tokens.len();
        self.sampling_logprobs.extend(std::iter::repeat_n(0.0, n));
        self.logprobs.extend(std::iter::repeat_n(0.0, n));
        self.entropies.extend(std::iter::repeat_n(0.0, n));
        self.versions.extend(std::iter::repeat_n(version, n));
        self.inserted.extend(std::iter::repeat_n(true, n));
        if !self.supports.is_empty() {
            // A point mass on the inserted token keeps the sets aligned with the tokens.
            self.supports.extend(tokens.iter().map(|&t| vec![t]));
        }
        self.turn_start = self.tokens.len();
    }

    /// The record so far, as a completion (a paused sample's snapshot).
    pub fn snapshot(&self, text: String, finish_reason: FinishReason) -> Completion {
        self.clone().into_completion(text, finish_reason)
    }

    /// Append a sampled token and its scores, produced by weights of policy `version`.
    pub fn record(&mut self, choice: &TokenChoice, version: u64) {
        self.tokens.push(choice.token);
        self.sampling_logprobs.push(choice.sampling_logprob);
        self.logprobs.push(choice.raw_logprob);
        self.entropies.push(choice.entropy);
        self.versions.push(version);
        self.inserted.push(false);
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
            inserted: match self.inserted.iter().any(|&i| i) {
                true => self.inserted,
                false => vec![],
            },
            text,
            finish_reason,
            preempted: self.preempted,
        }
    }
}
