//! Which sequences run in the next step, and with which KV blocks: admission, block allocation,
//! chunked prefill, copy-on-write and preemption, producing a [`StepPlan`].
//!
//! A step is either a prefill (prompt chunks of newly admitted groups and recomputes of preempted
//! samples, within a token budget) or a decode (one token for every running sample). When blocks
//! run out, the most recently admitted samples are preempted (blocks freed, recomputed later).
//! Owns the waiting queue, the running samples and the [`BlockManager`]; knows nothing of the
//! model, the KV storage, sampling or stop conditions.

use std::collections::VecDeque;

use crate::block_manager::BlockManager;
use crate::error::{Result, RuntimeError};
use crate::sequence::Sequence;

/// A request's prompt: prefilled once (maybe in chunks), then forked into its samples.
pub(crate) struct PromptPrefill {
    pub request: usize,
    pub prompt: Vec<u32>,
    /// Samples of the group (sequences it turns into).
    pub samples: usize,
    /// Prompt tokens whose keys and values are in the cache.
    pub computed: usize,
    pub block_table: Vec<u32>,
}

/// Work waiting for a prefill.
pub(crate) enum Pending {
    Prompt(PromptPrefill),
    /// A preempted sample to recompute.
    Resume(Sequence),
}

impl Pending {
    /// The tokens to prefill (all of them, computed or not).
    pub fn tokens(&self) -> &[u32] {
        match self {
            Pending::Prompt(p) => &p.prompt,
            Pending::Resume(s) => &s.tokens,
        }
    }

    pub fn block_table(&self) -> &[u32] {
        match self {
            Pending::Prompt(p) => &p.block_table,
            Pending::Resume(s) => &s.block_table,
        }
    }

    fn block_table_mut(&mut self) -> &mut Vec<u32> {
        match self {
            Pending::Prompt(p) => &mut p.block_table,
            Pending::Resume(s) => &mut s.block_table,
        }
    }

    fn computed(&self) -> usize {
        match self {
            Pending::Prompt(p) => p.computed,
            Pending::Resume(s) => s.num_computed,
        }
    }

    fn advance(&mut self, tokens: usize) {
        match self {
            Pending::Prompt(p) => p.computed += tokens,
            Pending::Resume(s) => s.num_computed += tokens,
        }
    }

    /// Running sequences it becomes once prefilled.
    fn samples(&self) -> usize {
        match self {
            Pending::Prompt(p) => p.samples,
            Pending::Resume(_) => 1,
        }
    }
}

/// Positions `start..start + len` of a pending prefill, run in this step.
pub(crate) struct PrefillChunk {
    pub work: Pending,
    pub start: usize,
    pub len: usize,
    /// The chunk ends the prefill: its last token's logits are sampled.
    pub completes: bool,
}

/// What the next step runs.
pub(crate) enum StepPlan {
    /// Nothing is waiting or running.
    Idle,
    Prefill(Vec<PrefillChunk>),
    /// One token for each of `seqs` (taken out of the running set; hand them back with
    /// [`Scheduler::run`] or [`Scheduler::free`]). Block copies `(src, dst)` come first.
    Decode {
        seqs: Vec<Sequence>,
        copies: Vec<(u32, u32)>,
        preempted: usize,
    },
}

pub(crate) struct Scheduler {
    blocks: BlockManager,
    max_batch_tokens: usize,
    max_num_seqs: usize,
    waiting: VecDeque<Pending>,
    running: Vec<Sequence>,
}

impl Scheduler {
    pub fn new(blocks: BlockManager, max_batch_tokens: usize, max_num_seqs: usize) -> Self {
        Self {
            blocks,
            max_batch_tokens,
            max_num_seqs,
            waiting: VecDeque::new(),
            running: vec![],
        }
    }

    pub fn blocks(&self) -> &BlockManager {
        &self.blocks
    }

    pub fn has_unfinished(&self) -> bool {
        !self.waiting.is_empty() || !self.running.is_empty()
    }

    /// Queue a prompt behind everything already waiting.
    pub fn add(&mut self, prompt: PromptPrefill) {
        self.waiting.push_back(Pending::Prompt(prompt));
    }

    /// Take the waiting prompt at the front if `wants_no_tokens(request)`.
    pub fn pop_empty_prompt(&mut self, wants_no_tokens: impl Fn(usize) -> bool) -> Option<usize> {
        match self.waiting.front() {
            Some(Pending::Prompt(p)) if wants_no_tokens(p.request) => {
                let request = p.request;
                self.waiting.pop_front();
                Some(request)
            }
            _ => None,
        }
    }

    /// A prefill if anything waiting fits, else a decode of the running samples.
    pub fn schedule(&mut self) -> Result<StepPlan> {
        let chunks = self.schedule_prefill();
        if !chunks.is_empty() {
            Ok(StepPlan::Prefill(chunks))
        } else if self.running.is_empty() {
            Ok(StepPlan::Idle)
        } else {
            self.schedule_decode()
        }
    }

    /// Admit waiting work within the token budget, allocating each prefill's blocks on its first
    /// chunk. Stops at the first chunk that does not complete its prefill.
    fn schedule_prefill(&mut self) -> Vec<PrefillChunk> {
        let mut budget = self.max_batch_tokens.max(1);
        let mut chunks = vec![];
        let mut seqs_after = self.running.len();
        while budget > 0 {
            let Some(front) = self.waiting.front_mut() else {
                break;
            };
            let samples = front.samples();
            if seqs_after + samples > self.max_num_seqs
                && !(chunks.is_empty() && self.running.is_empty())
            {
                break;
            }
            let total = front.tokens().len();
            if !self.blocks.grow(front.block_table_mut(), total) {
                break;
            }
            let start = front.computed();
            let len = (total - start).min(budget);
            let completes = start + len == total;
            budget -= len;
            seqs_after += samples;
            let work = self.waiting.pop_front().expect("front exists");
            chunks.push(PrefillChunk {
                work,
                start,
                len,
                completes,
            });
            if !completes {
                break;
            }
        }
        chunks
    }

    /// Preempt the newest samples until every running one can write its next token, then give
    /// each its block for that token.
    fn schedule_decode(&mut self) -> Result<StepPlan> {
        let mut preempted = 0;
        while self.blocks_needed() > self.blocks.num_free() {
            let mut victim = self.running.pop().expect("blocks needed implies running");
            self.blocks.release_all(&victim.block_table);
            victim.block_table.clear();
            victim.num_computed = 0;
            victim.preempted = true;
            preempted += 1;
            self.waiting.push_front(Pending::Resume(victim));
        }
        let mut seqs = std::mem::take(&mut self.running);
        let mut copies = vec![];
        for seq in &mut seqs {
            let copy = self
                .blocks
                .prepare_write(&mut seq.block_table, seq.num_computed)
                .map_err(|_| RuntimeError::Internal("no free block after preemption"))?;
            copies.extend(copy);
        }
        Ok(StepPlan::Decode {
            seqs,
            copies,
            preempted,
        })
    }

    fn blocks_needed(&self) -> usize {
        let needs = |s: &&Sequence| self.blocks.needs_block(&s.block_table, s.num_computed);
        self.running.iter().filter(needs).count()
    }

    /// A chunk that did not complete its prefill continues in the next prefill step.
    pub fn continue_prefill(&mut self, mut chunk: PrefillChunk) {
        chunk.work.advance(chunk.len);
        self.waiting.push_front(chunk.work);
    }

    /// The prompt's blocks, held once by its prefill, are now held by each of its samples.
    pub fn fork(&mut self, prompt: &PromptPrefill) {
        self.blocks.fork(&prompt.block_table, prompt.samples);
    }

    /// `seq` keeps running.
    pub fn run(&mut self, seq: Sequence) {
        self.running.push(seq);
    }

    /// `seq` is finished: its blocks go back to the pool.
    pub fn free(&mut self, seq: &Sequence) {
        self.blocks.release_all(&seq.block_table);
    }
}
