//! The pipeline: a generator thread (runtime) → a verifier pool → the trainer (this thread),
//! connected by bounded crossbeam channels, sharing one copy of the weights.
//!
//! Staleness k is enforced deterministically: batch n is generated only once n − k train steps
//! are done, and train step m is applied only once batch m + k has arrived, so batch n always
//! sees the weights after exactly max(0, n − k) steps (no update lands mid-batch). A resumed run
//! therefore repeats an uninterrupted one; batches generated but not yet trained are saved in the
//! checkpoint.

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
use rlvr_verifier::{grade, VerifierConfig};
use serde::{Deserialize, Serialize};

use super::config::RunConfig;
use super::task::{Dataset, Problem};

/// One prompt's completions on their way to the verifiers.
struct RolloutJob {
    batch: u64,
    index: usize,
    problem: Problem,
    completions: Vec<Completion>,
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
        let k = cfg.max_staleness;
        let (permit_tx, permit_rx) = bounded::<u64>(1024);
        let (job_tx, job_rx) = bounded::<RolloutJob>(cfg.prompts_per_step * (k as usize + 1));
        let (ev_tx, ev_rx) = bounded::<Event>(cfg.prompts_per_step * (k as usize + 2) + 4);
        let verifier = cfg.verifier();
        let mut workers = vec![];
        for _ in 0..cfg.verifier_workers.max(1) {
            let rx = job_rx.clone();
            let tx = ev_tx.clone();
            let vc = verifier.clone();
            workers.push(std::thread::spawn(move || {
                for job in rx {
                    let ev = score(job, &vc);
                    if tx.send(Event::Scored(Box::new(ev))).is_err() {
                        return;
                    }
                }
            }));
        }
        drop(job_rx);
        let gen_ev = ev_tx.clone();
        drop(ev_tx);
        let generator = std::thread::Builder::new()
            .name("rlvr-generator".into())
            .spawn(move || {
                let end = match generate_loop(spec, permit_rx, job_tx) {
                    Ok(end) => Event::GeneratorDone(end),
                    Err(e) => Event::Failed(format!("{e:#}")),
                };
                let _ = gen_ev.send(end);
            })
            .context("spawning the generator thread")?;
        Ok(Self {
            events: ev_rx,
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

fn generate_loop(
    spec: GeneratorSpec,
    permits: Receiver<u64>,
    jobs: Sender<RolloutJob>,
) -> Result<u64> {
    let cfg = &spec.cfg;
    let k = cfg.max_staleness;
    let mut engine = Engine::new(
        spec.model.clone(),
        Some(spec.tokenizer.clone()),
        spec.engine.clone(),
    )?;
    let mut trained = spec.trained;
    let mut n = spec.next_batch;
    while n < cfg.max_steps {
        while trained < n.saturating_sub(k) {
            match permits.recv() {
                Ok(t) => trained = trained.max(t),
                Err(_) => return Ok(n),
            }
        }
        if spec.stop.load(Ordering::SeqCst) {
            return Ok(n);
        }
        let Some(problems) = spec.dataset.batch(n, cfg.prompts_per_step, cfg) else {
            return Ok(n);
        };
        let mut reqs = Vec::with_capacity(problems.len());
        for (i, p) in problems.iter().enumerate() {
            reqs.push(Request {
                prompt_ids: super::task::encode_problem(&spec.tokenizer, cfg, p)?,
                params: SamplingParams {
                    temperature: cfg.temperature,
                    top_p: cfg.top_p,
                    seed: seed_for(cfg.seed, n, i),
                    max_new_tokens: cfg.max_new_tokens,
                    stop_token_ids: spec.eos.clone(),
                    ..Default::default()
                },
                n: cfg.group_size,
            });
        }
        let t0 = Instant::now();
        let out = {
            // Hold the weights for the whole batch: no optimizer step lands mid-batch.
            let _read = spec.weights_lock.read().unwrap_or_else(|p| p.into_inner());
            engine.generate(reqs)?
        };
        let gen_s = t0.elapsed().as_secs_f64();
        let generated_tokens: usize = out.iter().map(|c| c.token_ids.len()).sum();
        let mut groups: Vec<Vec<Completion>> = vec![vec![]; problems.len()];
        for c in out {
            groups[c.request_index].push(c);
        }
        for (i, (problem, completions)) in problems.into_iter().zip(groups).enumerate() {
            let job = RolloutJob {
                batch: n,
                index: i,
                problem,
                completions,
                gen_s,
                generated_tokens,
                t_start: n.saturating_sub(k),
            };
            if jobs.send(job).is_err() {
                return Ok(n);
            }
        }
        n += 1;
    }
    Ok(n)
}

fn score(job: RolloutJob, vc: &VerifierConfig) -> ScoredJob {
    let t0 = Instant::now();
    let mut samples = Vec::with_capacity(job.completions.len());
    let mut correct = vec![];
    let mut boxed = vec![];
    for c in job.completions {
        let g = grade(&c.text, &job.problem.gold, vc);
        correct.push(g.correct);
        boxed.push(matches!(
            g.method,
            Some(rlvr_verifier::ExtractMethod::Boxed)
        ));
        samples.push(ScoredSample {
            prompt_ids: c.prompt_token_ids,
            completion_ids: c.token_ids,
            behaviour_logprobs: c.sampling_logprobs,
            raw_logprobs: c.logprobs,
            entropies: c.entropies,
            policy_versions: c.policy_versions,
            reward: g.reward,
            finish_reason: c.finish_reason.as_str().to_string(),
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

    pub fn complete(&self, batch: u64, size: usize) -> bool {
        self.batches.get(&batch).is_some_and(|v| v.len() == size)
    }

    /// Take a complete batch, groups in prompt order.
    pub fn take(&mut self, batch: u64) -> Vec<ScoredJob> {
        let mut v = self.batches.remove(&batch).unwrap_or_default();
        v.sort_by_key(|j| j.index);
        v
    }
}
