//! The pipeline: a generator thread (runtime) → a verifier pool → the trainer (this thread),
//! connected by bounded crossbeam channels, sharing one copy of the weights.
//!
//! Staleness k is enforced deterministically: batch n is generated only once n − k train steps
//! are done, and train step m is applied only once batch m + k has arrived, so batch n always
//! sees the weights after exactly max(0, n − k) steps (no update lands mid-batch). A resumed run
//! therefore repeats an uninterrupted one; batches generated but not yet trained are saved in the
//! checkpoint.
//!
//! Owns the threads, the channels and the order batches are made in. It must not know about
//! training steps beyond their count (`trained`), nor about logging or the run directory.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::{Context, Result};
use crossbeam_channel::{bounded, Receiver, Sender};
use rlvr_models::{Model, TextTokenizer};
use rlvr_runtime::{Completion, Engine, EngineConfig, Request, SamplingParams};
use rlvr_trainer::{ScoredGroup, ScoredSample};
use rlvr_verifier::{grade, ExtractMethod, VerifierConfig};
use serde::{Deserialize, Serialize};

use super::config::RunConfig;
use super::dynamic::{self, DynamicStats, Round};
use super::task::{Dataset, Problem};
use crate::tools::rollout::{generate_rollouts, Rollout, ToolStats};
use crate::tools::Tools;

/// One prompt's completions on their way to the verifiers.
struct RolloutJob {
    batch: u64,
    index: usize,
    problem: Problem,
    completions: Vec<Completion>,
    /// Per completion, the text graded: the model's own turns (tool results left out).
    texts: Vec<String>,
    /// Per completion, what it did with tools (empty without tools).
    tools: Vec<ToolStats>,
    gen_s: f64,
    generated_tokens: usize,
    t_start: u64,
}

/// A scored group, with what the metrics need.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScoredJob {
    pub batch: u64,
    pub index: usize,
    pub group: ScoredGroup,
    pub correct: Vec<bool>,
    pub boxed: Vec<bool>,
    /// Generation wall time of the whole batch this group belongs to.
    pub gen_s: f64,
    pub generated_tokens: usize,
    pub verify_s: f64,
    /// Per sample, its tool use (empty when the run has no tools).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolStats>,
    /// What dynamic sampling did for this group's batch (runs with it on only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic: Option<DynamicStats>,
}

pub enum Event {
    Scored(Box<ScoredJob>),
    /// The generator stopped: no batch at or after this index will come.
    GeneratorDone(u64),
    Failed(String),
}

pub struct Pipeline {
    pub events: Receiver<Event>,
    permits: Option<Sender<u64>>,
    generator: Option<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
}

pub struct GeneratorSpec {
    pub model: Arc<Model>,
    pub tokenizer: TextTokenizer,
    pub dataset: Arc<Dataset>,
    pub cfg: RunConfig,
    pub engine: EngineConfig,
    pub eos: Vec<u32>,
    pub weights_lock: Arc<RwLock<()>>,
    pub stop: Arc<AtomicBool>,
    /// First batch to generate, and train steps already done.
    pub next_batch: u64,
    pub trained: u64,
}

fn seed_for(seed: u64, batch: u64, index: usize) -> u64 {
    let mut z = seed
        ^ batch.wrapping_mul(0xA24B_AED4_963E_E407)
        ^ (index as u64).wrapping_mul(0x9FB2_1C65_1E98_DF25);
    z = (z ^ (z >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z ^ (z >> 32)
}

impl Pipeline {
    pub fn start(spec: GeneratorSpec) -> Result<Self> {
        let cfg = spec.cfg.clone();
        let ahead = cfg.max_staleness as usize;
        let (permit_tx, permit_rx) = bounded::<u64>(1024);
        let (job_tx, job_rx) = bounded::<RolloutJob>(cfg.prompts_per_step * (ahead + 1));
        let (event_tx, event_rx) = bounded::<Event>(cfg.prompts_per_step * (ahead + 2) + 4);
        let verifier = cfg.verifier();
        let workers = (0..cfg.verifier_workers.max(1))
            .map(|_| {
                let (jobs, events, verifier) = (job_rx.clone(), event_tx.clone(), verifier.clone());
                std::thread::spawn(move || {
                    for job in jobs {
                        let scored = score(job, &verifier);
                        if events.send(Event::Scored(Box::new(scored))).is_err() {
                            return;
                        }
                    }
                })
            })
            .collect();
        drop(job_rx);
        let scored = (event_tx.clone(), verifier);
        let generator = std::thread::Builder::new()
            .name("rlvr-generator".into())
            .spawn(move || {
                let end = match generate_loop(spec, permit_rx, job_tx, scored) {
                    Ok(end) => Event::GeneratorDone(end),
                    Err(e) => Event::Failed(format!("{e:#}")),
                };
                let _ = event_tx.send(end);
            })
            .context("spawning the generator thread")?;
        Ok(Self {
            events: event_rx,
            permits: Some(permit_tx),
            generator: Some(generator),
            workers,
        })
    }

    /// Tell the generator that `steps` train steps are done.
    pub fn trained(&self, steps: u64) {
        if let Some(p) = &self.permits {
            let _ = p.send(steps);
        }
    }

    /// Stop generating and wait for the threads (a batch in flight finishes first).
    pub fn shutdown(mut self, wait: bool) {
        self.permits.take();
        if wait {
            // Drain so that no sender blocks while the threads wind down.
            let events = self.events.clone();
            let drainer = std::thread::spawn(move || for _ in events {});
            if let Some(g) = self.generator.take() {
                let _ = g.join();
            }
            for w in self.workers.drain(..) {
                let _ = w.join();
            }
            let _ = drainer.join();
        }
    }
}

/// Generate batches in order until `max_steps`, the end of the data, a stop request, or the
/// trainer hanging up; returns the first batch not generated. With dynamic sampling the
/// generator scores its groups itself (it needs their rewards to fill the batch) and sends the
/// kept ones as `scored`; otherwise the verifier pool scores `jobs`.
fn generate_loop(
    spec: GeneratorSpec,
    permits: Receiver<u64>,
    jobs: Sender<RolloutJob>,
    scored: (Sender<Event>, VerifierConfig),
) -> Result<u64> {
    let cfg = &spec.cfg;
    let mut engine = Engine::new(
        spec.model.clone(),
        Some(spec.tokenizer.clone()),
        spec.engine.clone(),
    )?;
    let tools = spec.cfg.tools.for_model(&spec.tokenizer, spec.cfg.chat)?;
    let mut trained = spec.trained;
    let mut batch = spec.next_batch;
    while batch < cfg.max_steps {
        let weights_version = batch.saturating_sub(cfg.max_staleness);
        while trained < weights_version {
            match permits.recv() {
                Ok(steps) => trained = trained.max(steps),
                Err(_) => return Ok(batch),
            }
        }
        if spec.stop.load(Ordering::SeqCst) {
            return Ok(batch);
        }
        let mut gen = BatchGen {
            spec: &spec,
            engine: &mut engine,
            tools: tools.as_ref(),
            batch,
            weights_version,
        };
        let sent = match cfg.trainer.dynamic_sampling {
            false => gen.send_for_scoring(&jobs)?,
            true => gen.send_filtered(&scored.0, &scored.1)?,
        };
        if !sent {
            return Ok(batch);
        }
        batch += 1;
    }
    Ok(batch)
}

/// Makes the rounds of one batch under one weights version.
struct BatchGen<'a> {
    spec: &'a GeneratorSpec,
    engine: &'a mut Engine,
    tools: Option<&'a Tools>,
    batch: u64,
    weights_version: u64,
}

impl BatchGen<'_> {
    /// Round 0 to the verifier pool; false when the data is used up or the pool hung up.
    fn send_for_scoring(&mut self, jobs: &Sender<RolloutJob>) -> Result<bool> {
        let cfg = &self.spec.cfg;
        let Some(problems) = self
            .spec
            .dataset
            .batch(self.batch, cfg.prompts_per_step, cfg)
        else {
            return Ok(false);
        };
        for job in self.round(0, problems)? {
            if jobs.send(job).is_err() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Rounds scored here until the batch is full of groups with reward variance (or the cap),
    /// then its groups to the step loop; false when the data is used up or it hung up.
    fn send_filtered(&mut self, events: &Sender<Event>, verifier: &VerifierConfig) -> Result<bool> {
        let (spec, batch) = (self.spec, self.batch);
        let (cfg, n) = (&spec.cfg, spec.cfg.prompts_per_step);
        let filled = dynamic::fill(n, cfg.trainer.dynamic_sampling_max_rounds, |r| {
            let problems = match r {
                0 => spec.dataset.batch(batch, n, cfg),
                r => Some(spec.dataset.extra_batch(batch, r, n, cfg)),
            };
            let Some(problems) = problems else {
                return Ok(None);
            };
            let t0 = Instant::now();
            let jobs = self.round(r, problems)?;
            let gen_s = t0.elapsed().as_secs_f64();
            let jobs = jobs.into_iter().map(|job| score(job, verifier)).collect();
            Ok(Some(Round { jobs, gen_s }))
        })?;
        let Some(kept) = filled else {
            return Ok(false);
        };
        for job in kept {
            if events.send(Event::Scored(Box::new(job))).is_err() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Generate round `round` of the batch on `problems`: one job per problem, in order.
    fn round(&mut self, round: u32, problems: Vec<Problem>) -> Result<Vec<RolloutJob>> {
        let spec = self.spec;
        let first_seed = round as usize * spec.cfg.prompts_per_step;
        let requests = batch_requests(spec, self.tools, self.batch, first_seed, &problems)?;
        let t0 = Instant::now();
        let rollouts = {
            // Hold the weights for the whole round: no optimizer step lands mid-batch.
            let _read = spec.weights_lock.read().unwrap_or_else(|p| p.into_inner());
            generate_rollouts(self.engine, &spec.tokenizer, self.tools, requests)?
        };
        let gen_s = t0.elapsed().as_secs_f64();
        let generated_tokens: usize = rollouts.iter().map(|r| r.0.token_ids.len()).sum();
        let mut groups: Vec<Vec<Rollout>> = vec![vec![]; problems.len()];
        for rollout in rollouts {
            groups[rollout.0.request_index].push(rollout);
        }
        let has_tools = self.tools.is_some();
        let jobs = problems.into_iter().zip(groups).enumerate();
        Ok(jobs
            .map(|(index, (problem, group))| {
                let (completions, texts, stats): (Vec<_>, Vec<_>, Vec<_>) = group.into_iter().fold(
                    (vec![], vec![], vec![]),
                    |(mut c, mut t, mut s), (completion, text, stat)| {
                        c.push(completion);
                        t.push(text);
                        s.extend(stat.filter(|_| has_tools));
                        (c, t, s)
                    },
                );
                RolloutJob {
                    batch: self.batch,
                    index,
                    problem,
                    completions,
                    texts,
                    tools: stats,
                    gen_s,
                    generated_tokens,
                    t_start: self.weights_version,
                }
            })
            .collect())
    }
}

/// One request of `group_size` samples per problem of batch `batch`, each seeded by its place
/// (counted from `first_seed`: extra rounds of dynamic sampling continue after round 0's).
fn batch_requests(
    spec: &GeneratorSpec,
    tools: Option<&Tools>,
    batch: u64,
    first_seed: usize,
    problems: &[Problem],
) -> Result<Vec<Request>> {
    let cfg = &spec.cfg;
    problems
        .iter()
        .enumerate()
        .map(|(index, problem)| {
            let format = tools.map(|(_, format)| format);
            Ok(Request {
                prompt_ids: super::task::encode_problem(&spec.tokenizer, cfg, problem, format)?,
                params: SamplingParams {
                    temperature: cfg.temperature,
                    top_p: cfg.top_p,
                    seed: seed_for(cfg.seed, batch, first_seed + index),
                    max_new_tokens: cfg.max_new_tokens,
                    stop_token_ids: spec.eos.clone(),
                    // With top_p < 1 the trainer scores the same truncated distribution.
                    record_support: true,
                    ..Default::default()
                },
                n: cfg.group_size,
            })
        })
        .collect()
}

fn score(job: RolloutJob, verifier: &VerifierConfig) -> ScoredJob {
    let t0 = Instant::now();
    let mut samples = Vec::with_capacity(job.completions.len());
    let mut correct = vec![];
    let mut boxed = vec![];
    for (completion, text) in job.completions.into_iter().zip(&job.texts) {
        let grade = grade(text, &job.problem.gold, verifier);
        let generated_mask = match completion.inserted.is_empty() {
            true => vec![],
            false => completion.generated_mask(),
        };
        correct.push(grade.correct);
        boxed.push(matches!(grade.method, Some(ExtractMethod::Boxed)));
        samples.push(ScoredSample {
            prompt_ids: completion.prompt_token_ids,
            completion_ids: completion.token_ids,
            behaviour_logprobs: completion.sampling_logprobs,
            raw_logprobs: completion.logprobs,
            entropies: completion.entropies,
            policy_versions: completion.policy_versions,
            generated_mask,
            sampling_support: completion.sampling_support,
            reward: grade.reward,
            finish_reason: completion.finish_reason.as_str().to_string(),
        });
    }
    ScoredJob {
        batch: job.batch,
        index: job.index,
        group: ScoredGroup {
            prompt_id: job.problem.id,
            samples,
            t_start: job.t_start,
        },
        correct,
        boxed,
        gen_s: job.gen_s,
        generated_tokens: job.generated_tokens,
        verify_s: t0.elapsed().as_secs_f64(),
        tools: job.tools,
        dynamic: None,
    }
}

/// Scored groups by batch, until each batch is complete.
#[derive(Default, Serialize, Deserialize)]
pub struct Buffer {
    pub batches: BTreeMap<u64, Vec<ScoredJob>>,
}

impl Buffer {
    pub fn push(&mut self, job: ScoredJob) {
        self.batches.entry(job.batch).or_default().push(job);
    }

    /// Whether batch `batch` holds all its groups: `size` (`prompts_per_step`), or with
    /// dynamic sampling the size its groups carry.
    pub fn complete(&self, batch: u64, size: usize) -> bool {
        self.batches
            .get(&batch)
            .is_some_and(|jobs| is_complete(jobs, size))
    }

    /// Take a complete batch, groups in prompt order.
    pub fn take(&mut self, batch: u64) -> Vec<ScoredJob> {
        let mut jobs = self.batches.remove(&batch).unwrap_or_default();
        jobs.sort_by_key(|job| job.index);
        jobs
    }
}

/// Whether `jobs` are all the groups of their batch (see `Buffer::complete`).
pub fn is_complete(jobs: &[ScoredJob], size: usize) -> bool {
    let expected = jobs
        .first()
        .and_then(|job| job.dynamic.as_ref())
        .map_or(size, |d| d.batch_size);
    jobs.len() == expected
}
