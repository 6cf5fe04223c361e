//! The generation engine: schedule → run → sample, in a loop (continuous batching).
//!
//! Each step asks the [`Scheduler`] for a plan (a packed prefill of prompt chunks and recomputes,
//! or one decode token for every running sample), runs it on the [`ModelRunner`], samples each
//! completed row and decides whether the sample finished (EOS, stop string, length) or pauses (a
//! pause sequence: a tool call closed). A paused sample keeps its blocks; [`Engine::resume`]
//! appends the environment's tokens and only those are prefilled, while the other samples keep
//! decoding. A group's prompt is prefilled once and forked into its G samples, which share the
//! prompt's blocks.
//! Owns the requests, the public API, stop conditions and the statistics; knows nothing of block
//! arithmetic, attention or the KV storage.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use rlvr_models::op_count::{self, OpMark};
use rlvr_models::{Model, TextTokenizer};
use serde::{Deserialize, Serialize};

use crate::block_manager::BlockManager;
use crate::error::{Result, RuntimeError};
use crate::paged_attention::{CpuKvCache, KvBackend};
use crate::runner::{ModelRunner, StepInputs};
use crate::sampler::{SamplingParams, TokenChoice};
use crate::scheduler::{Pending, PrefillChunk, PromptPrefill, Scheduler, StepPlan};
use crate::sequence::{Completion, FinishReason, Request, Sequence};
use crate::step_sampler::{Draw, SamplerKind, StepSampler, Transfers};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineConfig {
    /// Tokens per KV block.
    pub block_size: usize,
    /// Memory budget for the KV pool, in bytes (used when `num_blocks` is None).
    pub kv_cache_bytes: usize,
    /// Exact pool size in blocks (overrides the budget; tests use tiny pools).
    pub num_blocks: Option<usize>,
    /// CUDA only: size the KV pool so that this process uses at most this fraction of the
    /// device's memory (vLLM's `gpu_memory_utilization`), measured when the engine is created;
    /// overrides `kv_cache_bytes` there. Ignored on the CPU.
    pub gpu_memory_fraction: Option<f64>,
    /// Token budget of one prefill step (longer prompts are prefilled in chunks).
    pub max_batch_tokens: usize,
    /// Samples running at once.
    pub max_num_seqs: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            block_size: 16,
            kv_cache_bytes: 1 << 30,
            num_blocks: None,
            gpu_memory_fraction: None,
            max_batch_tokens: 2048,
            max_num_seqs: 256,
        }
    }
}

/// Counters for benchmarks and metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineStats {
    pub prefill_tokens: u64,
    pub decode_tokens: u64,
    pub generated_tokens: u64,
    pub prefill_s: f64,
    pub decode_s: f64,
    pub steps: u64,
    pub preemptions: u64,
    pub peak_kv_blocks: usize,
    pub kv_blocks_total: usize,
    /// Blocks a group's prompt would have needed without sharing, minus what was allocated.
    pub shared_prompt_blocks_saved: u64,
    /// Time in model forward passes (of prefill_s + decode_s).
    pub forward_s: f64,
    /// Time sampling from logits.
    pub sample_s: f64,
    /// Time asking the scheduler for a plan (of prefill_s + decode_s).
    #[serde(default)]
    pub schedule_s: f64,
    /// Time building a step's inputs on the host: token ids, positions, slots, block tables.
    #[serde(default)]
    pub build_inputs_s: f64,
    /// Time after sampling: recording tokens, stop conditions, finishing samples.
    #[serde(default)]
    pub postprocess_s: f64,
    /// Decode steps (of `steps`), and what they did in all: host → device copies, device →
    /// host copies (syncs), and with [`Engine::set_count_ops`] the candle ops issued (forward
    /// and sampling) and those inside the decoder's layers.
    #[serde(default)]
    pub decode_steps: u64,
    #[serde(default)]
    pub decode_uploads: u64,
    #[serde(default)]
    pub decode_host_syncs: u64,
    #[serde(default)]
    pub decode_ops: u64,
    #[serde(default)]
    pub decode_layer_ops: u64,
    /// Pauses (for the environment, or at a turn end that the caller then finished), and tokens
    /// the environment inserted on resume.
    #[serde(default)]
    pub pauses: u64,
    #[serde(default)]
    pub inserted_tokens: u64,
}

pub struct Engine {
    runner: ModelRunner,
    tokenizer: Option<TextTokenizer>,
    scheduler: Scheduler,
    requests: Vec<Request>,
    policy_version: Arc<AtomicU64>,
    weights_lock: Option<Arc<RwLock<()>>>,
    stats: EngineStats,
    on_token: Option<TokenCallback>,
    sampler: StepSampler,
    count_ops: bool,
}

/// Called for every sampled token: (request index, sample index, token id).
pub type TokenCallback = Box<dyn FnMut(usize, usize, u32) + Send>;

impl Engine {
    /// An engine over `model` with the CUDA paged KV backend on a CUDA device, else the CPU one.
    pub fn new(
        model: Arc<Model>,
        tokenizer: Option<TextTokenizer>,
        cfg: EngineConfig,
    ) -> Result<Self> {
        #[cfg(feature = "cuda")]
        if model.device().is_cuda() {
            let kv = cuda_kv_cache(&model, &cfg)?;
            return Ok(Self::with_backend(model, tokenizer, cfg, kv));
        }
        let num_blocks = kv_pool_blocks(&model, &cfg)?;
        let kv = CpuKvCache::new(&model.config, num_blocks, cfg.block_size);
        Ok(Self::with_backend(model, tokenizer, cfg, Box::new(kv)))
    }

    /// An engine with a given KV backend (e.g. CUDA).
    pub fn with_backend(
        model: Arc<Model>,
        tokenizer: Option<TextTokenizer>,
        cfg: EngineConfig,
        kv: Box<dyn KvBackend>,
    ) -> Self {
        let blocks = BlockManager::new(kv.num_blocks(), kv.block_size());
        let sampler = StepSampler::new(SamplerKind::default_for(model.device()));
        let stats = EngineStats {
            kv_blocks_total: kv.num_blocks(),
            ..Default::default()
        };
        Self {
            runner: ModelRunner::new(model, kv),
            tokenizer,
            scheduler: Scheduler::new(blocks, cfg.max_batch_tokens, cfg.max_num_seqs),
            requests: vec![],
            policy_version: Arc::new(AtomicU64::new(0)),
            weights_lock: None,
            stats,
            on_token: None,
            sampler,
            count_ops: false,
        }
    }

    /// Where tokens are drawn (default: [`SamplerKind::default_for`] the model's device).
    pub fn set_sampler(&mut self, kind: SamplerKind) {
        self.sampler.set_kind(kind);
    }

    pub fn sampler(&self) -> SamplerKind {
        self.sampler.kind()
    }

    /// Count the candle ops of each decode step into the statistics (`decode_ops`,
    /// `decode_layer_ops`). Benchmarks only: the count is process-wide, so tensors made by
    /// other threads meanwhile are counted too.
    pub fn set_count_ops(&mut self, on: bool) {
        self.count_ops = on;
        op_count::set_enabled(on);
    }

    /// Share a policy-version counter with the trainer (bumped after each optimizer step).
    pub fn set_policy_version(&mut self, v: Arc<AtomicU64>) {
        self.policy_version = v;
    }

    pub fn policy_version(&self) -> Arc<AtomicU64> {
        self.policy_version.clone()
    }

    /// Hold this lock (read) during each step, so no forward sees a half-updated model.
    pub fn set_weights_lock(&mut self, lock: Arc<RwLock<()>>) {
        self.weights_lock = Some(lock);
    }

    /// Stream tokens as they are sampled (e.g. to print text as it is generated).
    pub fn set_on_token(&mut self, f: Option<TokenCallback>) {
        self.on_token = f;
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    pub fn reset_stats(&mut self) {
        self.stats = EngineStats {
            kv_blocks_total: self.num_blocks(),
            ..Default::default()
        };
    }

    pub fn num_blocks(&self) -> usize {
        self.scheduler.blocks().num_blocks()
    }

    pub fn free_blocks(&self) -> usize {
        self.scheduler.blocks().num_free()
    }

    pub fn has_unfinished(&self) -> bool {
        self.scheduler.has_unfinished()
    }

    /// Queue a request; returns its index. Completions come out of [`Engine::step`].
    pub fn add_request(&mut self, req: Request) -> Result<usize> {
        let index = self.requests.len();
        self.validate(index, &req)?;
        self.scheduler.add(PromptPrefill {
            request: index,
            prompt: req.prompt_ids.clone(),
            samples: req.n,
            computed: 0,
            block_table: vec![],
        });
        self.requests.push(req);
        Ok(index)
    }

    fn validate(&self, index: usize, req: &Request) -> Result<()> {
        let bad = |msg: String| RuntimeError::BadRequest { index, msg };
        if req.prompt_ids.is_empty() {
            return Err(bad("empty prompt".into()));
        }
        if req.n == 0 {
            return Err(bad("n (samples per prompt) must be ≥ 1".into()));
        }
        req.params.validate().map_err(bad)?;
        if !req.params.pause_strings.is_empty() && self.tokenizer.is_none() {
            return Err(bad("pause_strings need an engine with a tokenizer".into()));
        }
        let vocab = self.runner.model().config.vocab_size as u32;
        if let Some(t) = req.prompt_ids.iter().find(|&&t| t >= vocab) {
            return Err(bad(format!(
                "token id {t} is outside the vocabulary ({vocab})"
            )));
        }
        let context = self.runner.model().config.max_position_embeddings;
        if req.prompt_ids.len() + req.params.max_new_tokens > context {
            return Err(RuntimeError::ContextTooLong {
                index,
                prompt_tokens: req.prompt_ids.len(),
                max_new_tokens: req.params.max_new_tokens,
                context,
            });
        }
        let blocks = self.scheduler.blocks();
        let needed = blocks.blocks_for(req.prompt_ids.len() + req.params.max_new_tokens);
        if needed > blocks.num_blocks() {
            return Err(RuntimeError::KvTooSmall {
                index,
                needed,
                total: blocks.num_blocks(),
                block_size: blocks.block_size(),
            });
        }
        Ok(())
    }

    /// Run all queued requests to completion; completions ordered by (request, sample). The
    /// requests are all checked before any is queued: one that can never run (too long for the
    /// context or the KV pool) fails the call at once and leaves the engine as it was.
    pub fn generate(&mut self, requests: Vec<Request>) -> Result<Vec<Completion>> {
        let first = self.requests.len();
        for (i, r) in requests.iter().enumerate() {
            self.validate(first + i, r)?;
        }
        for r in requests {
            self.add_request(r)?;
        }
        let mut out = vec![];
        while self.has_unfinished() {
            for c in self.step()? {
                // No one resumes a sample here: a tool call ends it.
                if c.finish_reason == FinishReason::ToolCall {
                    self.release_paused(c.request_index, c.sample_index)?;
                }
                out.push(c);
            }
        }
        out.retain(|c| c.request_index >= first);
        out.sort_by_key(|c| (c.request_index, c.sample_index));
        for c in &mut out {
            c.request_index -= first;
        }
        Ok(out)
    }

    /// `group_size` samples for each prompt. Prompt i is seeded with `params.seed + i`.
    pub fn generate_groups(
        &mut self,
        prompts: &[Vec<u32>],
        group_size: usize,
        params: &SamplingParams,
    ) -> Result<Vec<Completion>> {
        self.generate(Request::seeded_groups(prompts, group_size, params))
    }

    /// One engine step; returns the samples that finished in it.
    pub fn step(&mut self) -> Result<Vec<Completion>> {
        let lock = self.weights_lock.clone();
        let _guard = lock
            .as_ref()
            .map(|l| l.read().unwrap_or_else(|p| p.into_inner()));
        let version = self.policy_version.load(Ordering::SeqCst);
        let mut finished = vec![];
        // Requests that want no tokens finish at once.
        let requests = &self.requests;
        while let Some(request) = self
            .scheduler
            .pop_empty_prompt(|r| requests[r].params.max_new_tokens == 0)
        {
            let req = &self.requests[request];
            finished.extend((0..req.n).map(|s| Completion::empty(request, s, &req.prompt_ids)));
        }
        let started = Instant::now();
        let plan = self.scheduler.schedule()?;
        self.stats.schedule_s += started.elapsed().as_secs_f64();
        match plan {
            StepPlan::Idle => {}
            StepPlan::Prefill { chunks, copies } => {
                self.runner.copy_blocks(&copies)?;
                self.prefill_step(chunks, version, &mut finished)?;
                self.stats.prefill_s += started.elapsed().as_secs_f64();
            }
            StepPlan::Decode {
                seqs,
                copies,
                preempted,
            } => {
                self.stats.preemptions += preempted as u64;
                self.runner.copy_blocks(&copies)?;
                self.decode_step(seqs, version, &mut finished)?;
                self.stats.decode_s += started.elapsed().as_secs_f64();
            }
        }
        self.stats.steps += 1;
        let peak = self.scheduler.blocks().peak_used();
        self.stats.peak_kv_blocks = self.stats.peak_kv_blocks.max(peak);
        Ok(finished)
    }

    /// Run one packed prefill of `chunks`; fork completed prompts into their samples, resume
    /// completed recomputes, and draw each one's next token.
    fn prefill_step(
        &mut self,
        chunks: Vec<PrefillChunk>,
        version: u64,
        finished: &mut Vec<Completion>,
    ) -> Result<()> {
        let started = Instant::now();
        let block_size = self.scheduler.blocks().block_size();
        let mut inputs = StepInputs::default();
        for c in &chunks {
            let (tokens, table) = (c.work.tokens(), c.work.block_table());
            inputs.push_sequence(
                tokens,
                table,
                c.start..c.start + c.len,
                block_size,
                c.completes,
            );
        }
        self.stats.prefill_tokens += inputs.ids.len() as u64;
        self.stats.build_inputs_s += started.elapsed().as_secs_f64();
        let mut transfers = Transfers::default();
        let logits = self.forward(&inputs, &mut transfers)?;
        op_count::take_layer_ops();
        // Each completed chunk's logits row, once per sequence that draws from it.
        let mut drawing: Vec<(Sequence, usize)> = vec![];
        let mut row = 0;
        for chunk in chunks {
            if !chunk.completes {
                self.scheduler.continue_prefill(chunk);
                continue;
            }
            match chunk.work {
                Pending::Prompt(prompt) => {
                    drawing.extend(self.fork_group(prompt).into_iter().map(|s| (s, row)))
                }
                Pending::Resume(mut seq) => {
                    seq.num_computed = seq.tokens.len();
                    drawing.push((seq, row));
                }
            }
            row += 1;
        }
        let Some(logits) = logits else {
            return match drawing.is_empty() {
                true => Ok(()),
                false => Err(RuntimeError::Internal("no logits for a completed prefill")),
            };
        };
        if logits.dim(0).ok() != Some(row) {
            return Err(RuntimeError::Internal(
                "a logits row for each completed prefill",
            ));
        }
        let (seqs, rows): (Vec<Sequence>, Vec<usize>) = drawing.into_iter().unzip();
        self.sample_and_push(&logits, seqs, &rows, &mut transfers, version, finished)
    }

    /// Turn a prefilled prompt into its G samples sharing the prompt's blocks.
    fn fork_group(&mut self, prompt: PromptPrefill) -> Vec<Sequence> {
        self.scheduler.fork(&prompt);
        let saved = prompt.block_table.len() * (prompt.samples - 1);
        self.stats.shared_prompt_blocks_saved += saved as u64;
        let seed = self.requests[prompt.request].params.seed;
        (0..prompt.samples)
            .map(|sample| {
                let table = prompt.block_table.clone();
                Sequence::forked(prompt.request, sample, &prompt.prompt, table, seed)
            })
            .collect()
    }

    /// One token for each of `seqs` (their blocks are ready).
    fn decode_step(
        &mut self,
        seqs: Vec<Sequence>,
        version: u64,
        finished: &mut Vec<Completion>,
    ) -> Result<()> {
        let started = Instant::now();
        let block_size = self.scheduler.blocks().block_size();
        let mut inputs = StepInputs::default();
        for s in &seqs {
            let pos = s.num_computed;
            inputs.push_sequence(&s.tokens, &s.block_table, pos..pos + 1, block_size, true);
        }
        self.stats.decode_tokens += inputs.ids.len() as u64;
        self.stats.build_inputs_s += started.elapsed().as_secs_f64();
        let mark = self.count_ops.then(OpMark::now);
        let mut transfers = Transfers::default();
        let logits = self
            .forward(&inputs, &mut transfers)?
            .ok_or(RuntimeError::Internal("a decode step without logits"))?;
        self.stats.decode_layer_ops += op_count::take_layer_ops();
        let rows: Vec<usize> = (0..seqs.len()).collect();
        let mut seqs = seqs;
        for s in &mut seqs {
            s.num_computed += 1;
        }
        self.sample_and_push(&logits, seqs, &rows, &mut transfers, version, finished)?;
        if let Some(mark) = mark {
            self.stats.decode_ops += mark.ops_since();
        }
        self.stats.decode_steps += 1;
        self.stats.decode_uploads += transfers.uploads;
        self.stats.decode_host_syncs += transfers.syncs;
        Ok(())
    }

    /// Draw the next token of each of `seqs` from `logits` row `rows[i]`; then record it and
    /// finish the sample or keep it running.
    fn sample_and_push(
        &mut self,
        logits: &candle_core::Tensor,
        mut seqs: Vec<Sequence>,
        rows: &[usize],
        transfers: &mut Transfers,
        version: u64,
        finished: &mut Vec<Completion>,
    ) -> Result<()> {
        let started = Instant::now();
        let requests = &self.requests;
        let draws = seqs
            .iter_mut()
            .zip(rows)
            .map(|(s, &row)| Draw {
                row,
                params: &requests[s.request].params,
                rng: &mut s.rng,
            })
            .collect();
        let choices = self.sampler.sample(logits, draws, transfers)?;
        let sampled = Instant::now();
        self.stats.sample_s += (sampled - started).as_secs_f64();
        for (seq, choice) in seqs.into_iter().zip(choices) {
            self.push_choice(seq, choice, version, finished)?;
        }
        self.stats.postprocess_s += sampled.elapsed().as_secs_f64();
        Ok(())
    }

    fn forward(
        &mut self,
        inputs: &StepInputs,
        transfers: &mut Transfers,
    ) -> Result<Option<candle_core::Tensor>> {
        let started = Instant::now();
        let logits = self.runner.forward(inputs, transfers);
        self.stats.forward_s += started.elapsed().as_secs_f64();
        logits
    }

    fn push_choice(
        &mut self,
        mut seq: Sequence,
        choice: TokenChoice,
        version: u64,
        finished: &mut Vec<Completion>,
    ) -> Result<()> {
        seq.record(&choice, version);
        self.stats.generated_tokens += 1;
        if let Some(f) = self.on_token.as_mut() {
            f(seq.request, seq.sample, choice.token);
        }
        match self.finish_reason(&seq, choice.token) {
            Some(FinishReason::ToolCall) => finished.push(self.pause(seq)?),
            Some(reason) => finished.push(self.finish(seq, reason)?),
            None => self.scheduler.run(seq),
        }
        Ok(())
    }

    /// `seq` waits for the environment with its blocks; its snapshot comes out now.
    fn pause(&mut self, seq: Sequence) -> Result<Completion> {
        let text = self.text_of(seq.generated())?;
        let snapshot = seq.snapshot(text, FinishReason::ToolCall);
        self.stats.pauses += 1;
        self.scheduler.pause(seq);
        Ok(snapshot)
    }

    /// Samples waiting for [`Engine::resume`].
    pub fn num_paused(&self) -> usize {
        self.scheduler.num_paused()
    }

    /// Continue a paused sample (one that came out with [`FinishReason::ToolCall`]) after the
    /// environment's `tokens`: they are appended as inserted tokens (not sampled; see
    /// [`Completion::inserted`]) and only they (with the last sampled token) are prefilled.
    /// The inserted and generated tokens together stay within `max_new_tokens`, leaving room for
    /// at least one more generated token; otherwise this is an error and the sample stays paused.
    pub fn resume(&mut self, request: usize, sample: usize, tokens: &[u32]) -> Result<()> {
        let room = self.paused_room(request, sample).unwrap_or(0);
        let mut seq = self.take_paused(request, sample)?;
        let params = &self.requests[request].params;
        let vocab = self.runner.model().config.vocab_size as u32;
        let msg = if let Some(t) = tokens.iter().find(|&&t| t >= vocab) {
            Some(format!(
                "inserted token id {t} is outside the vocabulary ({vocab})"
            ))
        } else if tokens.len() > room {
            Some(format!(
                "{} inserted tokens leave no room in max_new_tokens {} (room {room})",
                tokens.len(),
                params.max_new_tokens
            ))
        } else {
            None
        };
        if let Some(msg) = msg {
            self.scheduler.pause(seq);
            return Err(RuntimeError::BadRequest {
                index: request,
                msg,
            });
        }
        let version = self.policy_version.load(Ordering::SeqCst);
        seq.insert(tokens, version);
        self.stats.inserted_tokens += tokens.len() as u64;
        self.scheduler.resume(seq);
        Ok(())
    }

    /// Tokens a paused sample may still take (inserted and generated) within `max_new_tokens`.
    /// `None` if that sample is not paused.
    pub fn paused_room(&self, request: usize, sample: usize) -> Option<usize> {
        let seq = self.scheduler.paused(request, sample)?;
        let max = self.requests[request].params.max_new_tokens;
        Some(max.saturating_sub(seq.generated().len() + 1))
    }

    /// End a paused sample with `reason` (e.g. the turn limit was reached, or `Eos` for a turn
    /// that paused on an end-of-turn token but was no tool call): its blocks go back to the pool
    /// and its completion comes out, as it would have from a run that stopped there.
    pub fn finish_paused(
        &mut self,
        request: usize,
        sample: usize,
        reason: FinishReason,
    ) -> Result<Completion> {
        let seq = self.take_paused(request, sample)?;
        self.finish(seq, reason)
    }

    /// End a paused sample as it is (finish reason `ToolCall`), freeing its blocks.
    pub fn release_paused(&mut self, request: usize, sample: usize) -> Result<Completion> {
        self.finish_paused(request, sample, FinishReason::ToolCall)
    }

    fn take_paused(&mut self, request: usize, sample: usize) -> Result<Sequence> {
        self.scheduler
            .take_paused(request, sample)
            .ok_or_else(|| RuntimeError::BadRequest {
                index: request,
                msg: format!("sample {sample} is not paused"),
            })
    }

    fn finish_reason(&self, seq: &Sequence, token: u32) -> Option<FinishReason> {
        let params = &self.requests[seq.request].params;
        // Pause sequences first: one that ends in a stop token (Llama 3's `<|eot_id|>`) pauses,
        // and the caller decides (resume, or `finish_paused` with `Eos`).
        if params
            .pause_token_seqs
            .iter()
            .any(|p| seq.turn().ends_with(p))
        {
            Some(FinishReason::ToolCall)
        } else if !params.ignore_eos && params.stop_token_ids.contains(&token) {
            Some(FinishReason::Eos)
        } else if !params.stop_strings.is_empty() && self.stop_string_hit(seq).is_some() {
            Some(FinishReason::Stop)
        } else if self.pause_string_hit(seq) {
            Some(FinishReason::ToolCall)
        } else if seq.generated().len() >= params.max_new_tokens {
            Some(FinishReason::Length)
        } else {
            None
        }
    }

    fn text_of(&self, ids: &[u32]) -> Result<String> {
        match &self.tokenizer {
            Some(t) => Ok(t.decode(ids, true)?),
            None => Ok(String::new()),
        }
    }

    /// Whether the text of the model's current turn holds a pause string.
    fn pause_string_hit(&self, seq: &Sequence) -> bool {
        let params = &self.requests[seq.request].params;
        if params.pause_strings.is_empty() {
            return false;
        }
        let Ok(text) = self.text_of(seq.turn()) else {
            return false;
        };
        params
            .pause_strings
            .iter()
            .any(|p| !p.is_empty() && text.contains(p.as_str()))
    }

    /// Byte offset of the first stop string in the text of the model's current turn, if any.
    fn stop_string_hit(&self, seq: &Sequence) -> Option<usize> {
        let text = self.text_of(seq.turn()).ok()?;
        self.requests[seq.request]
            .params
            .stop_strings
            .iter()
            .filter(|stop| !stop.is_empty())
            .filter_map(|stop| text.find(stop.as_str()))
            .min()
    }

    fn finish(&mut self, seq: Sequence, reason: FinishReason) -> Result<Completion> {
        self.scheduler.free(&seq);
        let mut text = self.text_of(seq.generated())?;
        if reason == FinishReason::Stop {
            if let Some(cut) = self.stop_string_hit(&seq) {
                // Earlier turns and insertions whole, the last turn cut before the stop string.
                text = self.text_of(&seq.tokens[seq.prompt_len..seq.turn_start])?;
                let mut turn = self.text_of(seq.turn())?;
                turn.truncate(cut);
                text.push_str(&turn);
            }
        }
        Ok(seq.into_completion(text, reason))
    }
}

/// The CUDA KV pool for `cfg`: `num_blocks`, else as many blocks as the memory budget
/// (`gpu_memory_fraction`, else `kv_cache_bytes`) holds; at least one.
#[cfg(feature = "cuda")]
fn cuda_kv_cache(model: &Model, cfg: &EngineConfig) -> Result<Box<dyn KvBackend>> {
    use crate::cuda_backend::CudaKvCache;
    use crate::error::Ctx;
    let num_blocks = kv_pool_blocks(model, cfg)?;
    let (dtype, device) = (model.dtype(), model.device());
    let kv = CudaKvCache::new(&model.config, num_blocks, cfg.block_size, dtype, device)
        .ctx("allocating the CUDA KV cache")?;
    Ok(Box::new(kv))
}

/// The KV pool, in blocks, that an engine over `model` with `cfg` gets if it is created now:
/// `num_blocks`, else as many blocks as the memory budget holds (on CUDA with
/// `gpu_memory_fraction`, measured now: memory allocated later makes a later pool smaller);
/// at least one. A request whose prompt and `max_new_tokens` need more than this many blocks
/// can never run.
pub fn kv_pool_blocks(model: &Model, cfg: &EngineConfig) -> Result<usize> {
    #[cfg(feature = "cuda")]
    if model.device().is_cuda() {
        use crate::cuda_backend::CudaKvCache;
        let per_block = CudaKvCache::bytes_per_block(&model.config, cfg.block_size, model.dtype());
        let budget = match cfg.gpu_memory_fraction {
            Some(fraction) => kv_budget_from_fraction(fraction, model.device())?,
            None => cfg.kv_cache_bytes,
        };
        return Ok(cfg.num_blocks.unwrap_or(budget / per_block).max(1));
    }
    let per_block = CpuKvCache::bytes_per_block(&model.config, cfg.block_size);
    Ok(cfg
        .num_blocks
        .unwrap_or(cfg.kv_cache_bytes / per_block)
        .max(1))
}

/// KV budget in bytes for [`EngineConfig::gpu_memory_fraction`] on `device` (CUDA).
#[cfg(feature = "cuda")]
fn kv_budget_from_fraction(fraction: f64, device: &candle_core::Device) -> Result<usize> {
    if !(fraction > 0.0 && fraction <= 1.0) {
        return Err(RuntimeError::BadRequest {
            index: 0,
            msg: format!("gpu_memory_fraction must be in (0, 1], got {fraction}"),
        });
    }
    let (free, total) = rlvr_models::device_mem::cuda_free_total(device).ok_or(
        RuntimeError::Internal("no memory information from the CUDA device"),
    )?;
    rlvr_models::device_mem::budget_from_fraction(fraction, free, total)
        .map(|b| b as usize)
        .ok_or(RuntimeError::NoKvMemory {
            fraction,
            used_mib: (total - free) >> 20,
            total_mib: total >> 20,
        })
}
