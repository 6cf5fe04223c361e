//! Which sequences run in the next step, and with which KV blocks: admission, block allocation,
//! chunked prefill, copy-on-write and preemption, producing a [`StepPlan`].
//!
//! A step is either a prefill (prompt chunks of newly admitted groups and recomputes of preempted
//! samples, within a token budget) or a decode (one token for every running sample). When blocks
//! run out, paused samples give up their blocks first, then the most recently admitted samples are
//! preempted (blocks freed, recomputed later).
//! A paused sample (waiting for a tool's answer) keeps its blocks; when it resumes, only its
//! uncomputed tokens are prefilled (with a copy-on-write of a shared block it writes into). When
//! nothing can run otherwise, paused samples give up their blocks and are recomputed on resume.
//! Owns the waiting queue, the running and paused samples and the [`BlockManager`]; knows
//! nothing of the model, the KV storage, sampling or stop conditions.

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
    /// A preempted sample to recompute, or a paused one to continue from `num_computed`.
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
    /// Block copies `(src, dst)` (copy-on-write of a resumed sample's shared block) come first.
    Prefill {
        chunks: Vec<PrefillChunk>,
        copies: Vec<(u32, u32)>,
    },
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
    paused: Vec<Sequence>,
}

impl Scheduler {
    pub fn new(blocks: BlockManager, max_batch_tokens: usize, max_num_seqs: usize) -> Self {
        Self {
            blocks,
            max_batch_tokens,
            max_num_seqs,
            waiting: VecDeque::new(),
            running: vec![],
            paused: vec![],
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

    /// A prefill if anything waiting fits, else a decode of the running samples. When nothing
    /// runs and nothing waiting fits, paused samples give up their blocks one by one.
    pub fn schedule(&mut self) -> Result<StepPlan> {
        let mut copies = vec![];
        let mut chunks = self.schedule_prefill(&mut copies);
        while chunks.is_empty() && self.running.is_empty() && !self.waiting.is_empty() {
            if !self.evict_paused() {
                break;
            }
            chunks = self.schedule_prefill(&mut copies);
        }
        if !chunks.is_empty() {
            Ok(StepPlan::Prefill { chunks, copies })
        } else if self.running.is_empty() {
            Ok(StepPlan::Idle)
        } else {
            self.schedule_decode()
        }
    }

    /// Admit waiting work within the token budget, allocating each prefill's blocks on its first
    /// chunk (and copying a shared block a resumed sample writes into, into `copies`). Stops at
    /// the first chunk that does not complete its prefill.
    fn schedule_prefill(&mut self, copies: &mut Vec<(u32, u32)>) -> Vec<PrefillChunk> {
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
            if !make_room(&mut self.blocks, front, copies) {
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
            // Idle paused samples give up their blocks before running ones are preempted.
            if self.evict_paused() {
                continue;
            }
            let mut victim = self.running.pop().expect("blocks needed implies running");
            self.blocks.release_all(&victim.block_table);
            victim.block_table.clear();
            victim.num_computed = 0;
            victim.preempted = true;
            preempted += 1;
            self.waiting.push_front(Pending::Resume(victim));
        }
        if self.running.is_empty() {
            // All preempted: their recomputes wait for the next prefill.
            return Ok(StepPlan::Idle);
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

    /// `seq` waits (with its blocks) for the environment.
    pub fn pause(&mut self, seq: Sequence) {
        self.paused.push(seq);
    }

    pub fn num_paused(&self) -> usize {
        self.paused.len()
    }

    /// Sample `sample` of request `request`, if it is paused.
    pub fn paused(&self, request: usize, sample: usize) -> Option<&Sequence> {
        self.paused
            .iter()
            .find(|s| s.request == request && s.sample == sample)
    }

    /// Take sample `sample` of request `request` out of the paused set.
    pub fn take_paused(&mut self, request: usize, sample: usize) -> Option<Sequence> {
        let at = self
            .paused
            .iter()
            .position(|s| s.request == request && s.sample == sample)?;
        Some(self.paused.swap_remove(at))
    }

    /// A paused sample with new tokens continues: its uncomputed tokens wait for a prefill.
    pub fn resume(&mut self, seq: Sequence) {
        self.waiting.push_back(Pending::Resume(seq));
    }

    /// Free the blocks of an idle sample: the most recently paused one that holds any, else a
    /// resumed one waiting behind the front of the queue (it is recomputed when it runs); false
    /// if no idle sample holds blocks.
    fn evict_paused(&mut self) -> bool {
        let paused = self.paused.iter_mut().rev();
        let waiting = self
            .waiting
            .iter_mut()
            .skip(1)
            .rev()
            .filter_map(|w| match w {
                Pending::Resume(seq) => Some(seq),
                Pending::Prompt(_) => None,
            });
        let Some(seq) = paused.chain(waiting).find(|s| !s.block_table.is_empty()) else {
            return false;
        };
        self.blocks.release_all(&seq.block_table);
        seq.block_table.clear();
        seq.num_computed = 0;
        seq.preempted = true;
        true
    }
}

/// Blocks for all of `work`'s tokens, all or nothing: a private copy of the block its first
/// uncomputed position lies in if that block is shared (a resumed sample writing past its
/// group's prompt; the copy goes to `copies`), and new blocks past the end.
fn make_room(blocks: &mut BlockManager, work: &mut Pending, copies: &mut Vec<(u32, u32)>) -> bool {
    let (total, start) = (work.tokens().len(), work.computed());
    let table = work.block_table_mut();
    let index = start / blocks.block_size();
    let cow = index < table.len() && blocks.is_shared(table[index]);
    let need = blocks.blocks_for(total).saturating_sub(table.len()) + usize::from(cow);
    if need > blocks.num_free() {
        return false;
    }
    if cow {
        match blocks.prepare_write(table, start) {
            Ok(copy) => copies.extend(copy),
            Err(_) => return false,
        }
    }
    blocks.grow(table, total)
}
