//! The generation engine: schedule → run → sample, in a loop (continuous batching).
//!
//! Each step is either a prefill step (prompt chunks of newly admitted groups and recomputes of
//! preempted samples, packed into one row) or a decode step (one token for every running sample).
//! A group's prompt is prefilled once; its G samples then share the prompt's blocks, copying the
//! last partial block on their first write. When blocks run out, the most recently admitted
//! samples are preempted (blocks freed, recomputed later): nothing crashes, nothing is dropped.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use rlvr_models::{Batch, Forward, Model, TextTokenizer};
use serde::{Deserialize, Serialize};

use crate::block_manager::BlockManager;
use crate::error::{Ctx, Result, RuntimeError};
use crate::paged_attention::{CpuKvCache, KvBackend, StepLayout, TokenSlot};
use crate::rng::SeqRng;
use crate::sampler::{sample, SamplingParams, TokenChoice};
use crate::sequence::{Completion, FinishReason, Request, Sequence};
use rayon::prelude::*;

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

/// KV budget in bytes for [`EngineConfig::gpu_memory_fraction`] on `device` (CUDA).
#[cfg(feature = "cuda")]
fn kv_budget_from_fraction(fraction: f64, device: &Device) -> Result<usize> {
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
}

enum Pending {
    /// A request's prompt: prefilled once (maybe in chunks), then forked into `n` samples.
    Group {
        request: usize,
        computed: usize,
        block_table: Vec<u32>,
    },
    /// A preempted sample to recompute.
    Resume(Sequence),
}

pub struct Engine {
    model: Arc<Model>,
    tokenizer: Option<TextTokenizer>,
    kv: Box<dyn KvBackend>,
    blocks: BlockManager,
    cfg: EngineConfig,
    requests: Vec<Request>,
    waiting: VecDeque<Pending>,
    running: Vec<Sequence>,
    policy_version: Arc<AtomicU64>,
    weights_lock: Option<Arc<RwLock<()>>>,
    stats: EngineStats,
    on_token: Option<TokenCallback>,
}

/// Called for every sampled token: (request index, sample index, token id).
pub type TokenCallback = Box<dyn FnMut(usize, usize, u32) + Send>;

impl Engine {
    /// An engine over `model` with the CPU paged KV backend.
    pub fn new(
        model: Arc<Model>,
        tokenizer: Option<TextTokenizer>,
        cfg: EngineConfig,
    ) -> Result<Self> {
        let mcfg = &model.config;
        #[cfg(feature = "cuda")]
        if model.device().is_cuda() {
            use crate::cuda_backend::CudaKvCache;
            let per_block = CudaKvCache::bytes_per_block(mcfg, cfg.block_size, model.dtype());
            let budget = match cfg.gpu_memory_fraction {
                Some(f) => kv_budget_from_fraction(f, model.device())?,
                None => cfg.kv_cache_bytes,
            };
            let num_blocks = cfg.num_blocks.unwrap_or(budget / per_block).max(1);
            let kv = CudaKvCache::new(
                mcfg,
                num_blocks,
                cfg.block_size,
                model.dtype(),
                model.device(),
            )
            .ctx("allocating the CUDA KV cache")?;
            return Ok(Self::with_backend(model, tokenizer, cfg, Box::new(kv)));
        }
        let num_blocks = cfg
            .num_blocks
            .unwrap_or_else(|| {
                cfg.kv_cache_bytes / CpuKvCache::bytes_per_block(mcfg, cfg.block_size)
            })
            .max(1);
        let kv: Box<dyn KvBackend> = Box::new(CpuKvCache::new(mcfg, num_blocks, cfg.block_size));
        Ok(Self::with_backend(model, tokenizer, cfg, kv))
    }

    /// An engine with a given KV backend (e.g. CUDA).
    pub fn with_backend(
        model: Arc<Model>,
        tokenizer: Option<TextTokenizer>,
        cfg: EngineConfig,
        kv: Box<dyn KvBackend>,
    ) -> Self {
        let blocks = BlockManager::new(kv.num_blocks(), kv.block_size());
        let stats = EngineStats {
            kv_blocks_total: kv.num_blocks(),
            ..Default::default()
        };
        Self {
            model,
            tokenizer,
            kv,
            blocks,
            cfg,
            requests: vec![],
            waiting: VecDeque::new(),
            running: vec![],
            policy_version: Arc::new(AtomicU64::new(0)),
            weights_lock: None,
            stats,
            on_token: None,
        }
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
            kv_blocks_total: self.blocks.num_blocks(),
            ..Default::default()
        };
    }

    pub fn num_blocks(&self) -> usize {
        self.blocks.num_blocks()
    }

    pub fn free_blocks(&self) -> usize {
        self.blocks.num_free()
    }

    pub fn has_unfinished(&self) -> bool {
        !self.waiting.is_empty() || !self.running.is_empty()
    }

    /// Queue a request; returns its index. Completions come out of [`Engine::step`].
    pub fn add_request(&mut self, req: Request) -> Result<usize> {
        let index = self.requests.len();
        let bad = |msg: String| RuntimeError::BadRequest { index, msg };
        if req.prompt_ids.is_empty() {
            return Err(bad("empty prompt".into()));
        }
        if req.n == 0 {
            return Err(bad("n (samples per prompt) must be ≥ 1".into()));
        }
        req.params.validate().map_err(bad)?;
        let vocab = self.model.config.vocab_size as u32;
        if let Some(t) = req.prompt_ids.iter().find(|&&t| t >= vocab) {
            return Err(bad(format!(
                "token id {t} is outside the vocabulary ({vocab})"
            )));
        }
        let needed = self
            .blocks
            .blocks_for(req.prompt_ids.len() + req.params.max_new_tokens);
        if needed > self.blocks.num_blocks() {
            return Err(RuntimeError::KvTooSmall {
                index,
                needed,
                total: self.blocks.num_blocks(),
                block_size: self.blocks.block_size(),
            });
        }
        self.requests.push(req);
        self.waiting.push_back(Pending::Group {
            request: index,
            computed: 0,
            block_table: vec![],
        });
        Ok(index)
    }

    /// Run all queued requests to completion; completions ordered by (request, sample).
    pub fn generate(&mut self, requests: Vec<Request>) -> Result<Vec<Completion>> {
        let first = self.requests.len();
        for r in requests {
            self.add_request(r)?;
        }
        let mut out = vec![];
        while self.has_unfinished() {
            out.extend(self.step()?);
        }
        out.retain(|c| c.request_index >= first);
        out.sort_by_key(|c| (c.request_index, c.sample_index));
        for c in &mut out {
            c.request_index -= first;
        }
        Ok(out)
    }

    /// G samples for each prompt. Prompt i is seeded with `params.seed + i`.
    pub fn generate_groups(
        &mut self,
        prompts: &[Vec<u32>],
        g: usize,
        params: &SamplingParams,
    ) -> Result<Vec<Completion>> {
        let reqs = prompts
            .iter()
            .enumerate()
            .map(|(i, p)| Request {
                prompt_ids: p.clone(),
                params: SamplingParams {
                    seed: params.seed.wrapping_add(i as u64),
                    ..params.clone()
                },
                n: g,
            })
            .collect();
        self.generate(reqs)
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
        while let Some(Pending::Group { request, .. }) = self.waiting.front() {
            let r = &self.requests[*request];
            if r.params.max_new_tokens > 0 {
                break;
            }
            let request = *request;
            self.waiting.pop_front();
            for s in 0..self.requests[request].n {
                finished.push(self.empty_completion(request, s));
            }
        }
        let t0 = Instant::now();
        if self.prefill_step(version, &mut finished)? {
            self.stats.prefill_s += t0.elapsed().as_secs_f64();
        } else if !self.running.is_empty() {
            self.decode_step(version, &mut finished)?;
            self.stats.decode_s += t0.elapsed().as_secs_f64();
        }
        self.stats.steps += 1;
        self.stats.peak_kv_blocks = self.stats.peak_kv_blocks.max(self.blocks.peak_used());
        Ok(finished)
    }

    fn empty_completion(&self, request: usize, sample: usize) -> Completion {
        Completion {
            request_index: request,
            sample_index: sample,
            prompt_token_ids: self.requests[request].prompt_ids.clone(),
            token_ids: vec![],
            sampling_logprobs: vec![],
            logprobs: vec![],
            entropies: vec![],
            policy_versions: vec![],
            text: String::new(),
            finish_reason: FinishReason::Length,
            preempted: false,
        }
    }

    /// Allocate blocks so that `table` covers `tokens` tokens.
    fn grow(&mut self, table: &mut Vec<u32>, tokens: usize) -> bool {
        let need = self.blocks.blocks_for(tokens).saturating_sub(table.len());
        if need > self.blocks.num_free() {
            return false;
        }
        for _ in 0..need {
            match self.blocks.allocate() {
                Some(b) => table.push(b),
                None => return false,
            }
        }
        true
    }

    /// Admit waiting prompts and recomputes within the token budget and run one packed prefill.
    fn prefill_step(&mut self, version: u64, finished: &mut Vec<Completion>) -> Result<bool> {
        let mut budget = self.cfg.max_batch_tokens.max(1);
        // (entity, first position, token count, completes the prefill)
        let mut batch: Vec<(Pending, usize, usize, bool)> = vec![];
        let mut seqs_after = self.running.len();
        while budget > 0 {
            let Some(front) = self.waiting.front_mut() else {
                break;
            };
            let (total, computed, n) = match front {
                Pending::Group {
                    request, computed, ..
                } => (
                    self.requests[*request].prompt_ids.len(),
                    *computed,
                    self.requests[*request].n,
                ),
                Pending::Resume(s) => (s.tokens.len(), s.num_computed, 1),
            };
            if seqs_after + n > self.cfg.max_num_seqs
                && !(batch.is_empty() && self.running.is_empty())
            {
                break;
            }
            // Allocate the whole prefill's blocks at admission (first chunk).
            let mut front = self.waiting.pop_front().expect("front exists");
            let ok = match &mut front {
                Pending::Group { block_table, .. } => {
                    let mut t = std::mem::take(block_table);
                    let ok = self.grow(&mut t, total);
                    if let Pending::Group { block_table, .. } = &mut front {
                        *block_table = t;
                    }
                    ok
                }
                Pending::Resume(s) => {
                    let mut t = std::mem::take(&mut s.block_table);
                    let ok = self.grow(&mut t, total);
                    s.block_table = t;
                    ok
                }
            };
            if !ok {
                self.waiting.push_front(front);
                break;
            }
            let len = (total - computed).min(budget);
            budget -= len;
            let completes = computed + len == total;
            seqs_after += n;
            batch.push((front, computed, len, completes));
            if !completes {
                break;
            }
        }
        if batch.is_empty() {
            return Ok(false);
        }
        let mut layout = StepLayout::default();
        let mut ids = vec![];
        let mut sample_rows = vec![];
        for (si, (p, start, len, completes)) in batch.iter().enumerate() {
            let (tokens, table) = match p {
                Pending::Group {
                    request,
                    block_table,
                    ..
                } => (&self.requests[*request].prompt_ids, block_table),
                Pending::Resume(s) => (&s.tokens, &s.block_table),
            };
            let bs = self.blocks.block_size();
            for pos in *start..start + len {
                layout.tokens.push(TokenSlot {
                    seq: si as u32,
                    pos: pos as u32,
                    slot: (table[pos / bs] as usize * bs + pos % bs) as u32,
                });
                ids.push(tokens[pos]);
            }
            layout.block_tables.push(table.clone());
            if *completes {
                sample_rows.push(ids.len() - 1);
            }
        }
        self.stats.prefill_tokens += ids.len() as u64;
        let logits = self.forward(&ids, &layout, &sample_rows)?;
        let mut rows = logits.into_iter();
        for (p, _start, len, completes) in batch {
            match p {
                Pending::Group {
                    request,
                    computed,
                    block_table,
                } => {
                    if !completes {
                        self.waiting.push_front(Pending::Group {
                            request,
                            computed: computed + len,
                            block_table,
                        });
                        continue;
                    }
                    let row = rows.next().ok_or(RuntimeError::Internal(
                        "no logits row for a completed prefill",
                    ))?;
                    self.fork_group(request, block_table, &row, version, finished)?;
                }
                Pending::Resume(mut s) => {
                    if !completes {
                        // A long recompute continues in the next prefill step.
                        s.num_computed += len;
                        self.waiting.push_front(Pending::Resume(s));
                        continue;
                    }
                    let row = rows.next().ok_or(RuntimeError::Internal(
                        "no logits row for a completed prefill",
                    ))?;
                    s.num_computed = s.tokens.len();
                    self.push_token(s, &row, version, finished)?;
                }
            }
        }
        Ok(true)
    }

    /// Turn a prefilled prompt into its G samples sharing the prompt's blocks.
    fn fork_group(
        &mut self,
        request: usize,
        table: Vec<u32>,
        row: &[f32],
        version: u64,
        finished: &mut Vec<Completion>,
    ) -> Result<()> {
        let req = self.requests[request].clone();
        let prompt_len = req.prompt_ids.len();
        for &b in &table {
            for _ in 0..req.n {
                self.blocks.share(b);
            }
        }
        self.blocks.release_all(&table);
        self.stats.shared_prompt_blocks_saved += (table.len() * (req.n - 1)) as u64;
        for sample in 0..req.n {
            let s = Sequence {
                request,
                sample,
                tokens: req.prompt_ids.clone(),
                prompt_len,
                block_table: table.clone(),
                num_computed: prompt_len,
                rng: SeqRng::new(req.params.seed, sample as u64),
                sampling_logprobs: vec![],
                logprobs: vec![],
                entropies: vec![],
                versions: vec![],
                preempted: false,
            };
            self.push_token(s, row, version, finished)?;
        }
        Ok(())
    }

    /// Sample the next token of `s` from `row`; finish it or keep it running.
    fn push_token(
        &mut self,
        mut s: Sequence,
        row: &[f32],
        version: u64,
        finished: &mut Vec<Completion>,
    ) -> Result<()> {
        let c = sample(row, &self.requests[s.request].params, &mut s.rng);
        self.push_choice(s, c, version, finished)
    }

    fn push_choice(
        &mut self,
        mut s: Sequence,
        c: TokenChoice,
        version: u64,
        finished: &mut Vec<Completion>,
    ) -> Result<()> {
        let params = &self.requests[s.request].params;
        s.tokens.push(c.token);
        s.sampling_logprobs.push(c.sampling_logprob);
        s.logprobs.push(c.raw_logprob);
        s.entropies.push(c.entropy);
        s.versions.push(version);
        self.stats.generated_tokens += 1;
        if let Some(f) = self.on_token.as_mut() {
            f(s.request, s.sample, c.token);
        }
        let reason = if !params.ignore_eos && params.stop_token_ids.contains(&c.token) {
            Some(FinishReason::Eos)
        } else if !params.stop_strings.is_empty() && self.stop_string_hit(&s).is_some() {
            Some(FinishReason::Stop)
        } else if s.generated().len() >= params.max_new_tokens {
            Some(FinishReason::Length)
        } else {
            None
        };
        match reason {
            Some(r) => finished.push(self.finish(s, r)?),
            None => self.running.push(s),
        }
        Ok(())
    }

    fn text_of(&self, ids: &[u32]) -> Result<String> {
        match &self.tokenizer {
            Some(t) => Ok(t.decode(ids, true)?),
            None => Ok(String::new()),
        }
    }

    /// Byte offset of the first stop string in the generated text, if any.
    fn stop_string_hit(&self, s: &Sequence) -> Option<usize> {
        let text = self.text_of(s.generated()).ok()?;
        self.requests[s.request]
            .params
            .stop_strings
            .iter()
            .filter(|st| !st.is_empty())
            .filter_map(|st| text.find(st.as_str()))
            .min()
    }

    fn finish(&mut self, s: Sequence, reason: FinishReason) -> Result<Completion> {
        self.blocks.release_all(&s.block_table);
        let mut text = self.text_of(s.generated())?;
        if reason == FinishReason::Stop {
            if let Some(cut) = self.stop_string_hit(&s) {
                text.truncate(cut);
            }
        }
        Ok(Completion {
            request_index: s.request,
            sample_index: s.sample,
            prompt_token_ids: s.tokens[..s.prompt_len].to_vec(),
            token_ids: s.tokens[s.prompt_len..].to_vec(),
            sampling_logprobs: s.sampling_logprobs,
            logprobs: s.logprobs,
            entropies: s.entropies,
            policy_versions: s.versions,
            text,
            finish_reason: reason,
            preempted: s.preempted,
        })
    }

    fn needs_block(&self, s: &Sequence) -> bool {
        let bi = s.num_computed / self.blocks.block_size();
        bi == s.block_table.len() || self.blocks.is_shared(s.block_table[bi])
    }

    /// One token for every running sample; preempt the newest samples if blocks run out.
    fn decode_step(&mut self, version: u64, finished: &mut Vec<Completion>) -> Result<()> {
        loop {
            let needed = self.running.iter().filter(|s| self.needs_block(s)).count();
            if needed <= self.blocks.num_free() {
                break;
            }
            let mut victim = self.running.pop().expect("needed > 0 implies running");
            self.blocks.release_all(&victim.block_table);
            victim.block_table.clear();
            victim.num_computed = 0;
            victim.preempted = true;
            self.stats.preemptions += 1;
            self.waiting.push_front(Pending::Resume(victim));
        }
        let bs = self.blocks.block_size();
        let mut layout = StepLayout::default();
        let mut ids = Vec::with_capacity(self.running.len());
        let mut running = std::mem::take(&mut self.running);
        for (si, s) in running.iter_mut().enumerate() {
            let pos = s.num_computed;
            let bi = pos / bs;
            if bi == s.block_table.len() {
                let b = self.blocks.allocate().expect("counted above");
                s.block_table.push(b);
            } else if self.blocks.is_shared(s.block_table[bi]) {
                let b = self.blocks.allocate().expect("counted above");
                self.kv
                    .copy_block(s.block_table[bi], b)
                    .ctx("copy-on-write")?;
                self.blocks.release(s.block_table[bi]);
                s.block_table[bi] = b;
            }
            layout.tokens.push(TokenSlot {
                seq: si as u32,
                pos: pos as u32,
                slot: (s.block_table[bi] as usize * bs + pos % bs) as u32,
            });
            layout.block_tables.push(s.block_table.clone());
            ids.push(s.tokens[pos]);
        }
        self.stats.peak_kv_blocks = self.stats.peak_kv_blocks.max(self.blocks.peak_used());
        self.stats.decode_tokens += ids.len() as u64;
        let rows: Vec<usize> = (0..ids.len()).collect();
        let logits = self.forward(&ids, &layout, &rows)?;
        // Sampling is per-sequence work over the whole vocabulary: spread it over the cores.
        let t_sample = Instant::now();
        let requests = &self.requests;
        let choices: Vec<TokenChoice> = running
            .par_iter_mut()
            .zip(logits.par_iter())
            .map(|(s, row)| sample(row, &requests[s.request].params, &mut s.rng))
            .collect();
        self.stats.sample_s += t_sample.elapsed().as_secs_f64();
        for (mut s, c) in running.into_iter().zip(choices) {
            s.num_computed += 1;
            self.push_choice(s, c, version, finished)?;
        }
        Ok(())
    }

    /// Packed forward of `ids` laid out by `layout`; logits of the rows in `sample_rows`.
    fn forward(
        &mut self,
        ids: &[u32],
        layout: &StepLayout,
        sample_rows: &[usize],
    ) -> Result<Vec<Vec<f32>>> {
        let t_fwd = Instant::now();
        let dev: Device = self.model.device().clone();
        let t = ids.len();
        let input = Tensor::from_slice(ids, (1, t), &dev).ctx("input ids")?;
        let pos: Vec<u32> = layout.tokens.iter().map(|s| s.pos).collect();
        let pos = Tensor::from_vec(pos, (1, t), &dev).ctx("positions")?;
        let mut attn = self.kv.attention(layout);
        let hidden = self
            .model
            .hidden(
                Batch::injected(&input, &pos, attn.as_mut()),
                Forward::INFERENCE,
            )?
            .states;
        drop(attn);
        if sample_rows.is_empty() {
            // A prefill chunk that completes no prompt: only its KV writes matter (and a
            // zero-row index_select is an invalid launch on CUDA).
            self.stats.forward_s += t_fwd.elapsed().as_secs_f64();
            return Ok(vec![]);
        }
        let idx: Vec<u32> = sample_rows.iter().map(|&r| r as u32).collect();
        let idx = Tensor::from_vec(idx, sample_rows.len(), &dev).ctx("row index")?;
        let picked = hidden
            .squeeze(0)
            .and_then(|h| h.index_select(&idx, 0))
            .and_then(|h| h.unsqueeze(0))
            .ctx("select rows")?;
        let logits = self
            .model
            .logits_native(&picked)?
            .squeeze(0)
            .ctx("logits")?;
        let rows = logits_to_host(&logits);
        self.stats.forward_s += t_fwd.elapsed().as_secs_f64();
        rows
    }
}

/// `[n, vocab]` logits as f32 rows on the host. Half-precision logits cross in their own dtype
/// (half the bytes of f32) and are widened here, which is exact.
fn logits_to_host(logits: &Tensor) -> Result<Vec<Vec<f32>>> {
    fn widen<T: candle_core::WithDType>(
        t: &Tensor,
        v: usize,
    ) -> candle_core::Result<Vec<Vec<f32>>> {
        let flat = t.flatten_all()?.to_vec1::<T>()?;
        Ok(flat
            .par_chunks(v)
            .map(|r| r.iter().map(|x| x.to_f64() as f32).collect())
            .collect())
    }
    let (_, v) = logits.dims2().ctx("logits shape")?;
    let v = v.max(1);
    match logits.dtype() {
        DType::BF16 => widen::<half::bf16>(logits, v),
        DType::F16 => widen::<half::f16>(logits, v),
        DType::F32 => widen::<f32>(logits, v),
        _ => logits
            .to_dtype(DType::F32)
            .and_then(|l| widen::<f32>(&l, v)),
    }
    .ctx("logits to host")
}
