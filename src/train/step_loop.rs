//! The step loop: wait for the next batch's scored groups (and, for determinism, the batch
//! `max_staleness` ahead), train on it, log the step, and checkpoint / evaluate on their
//! cadence; until `max_steps`, the end of the data, or a stop request.
//!
//! It must not know how batches are generated and scored (pipeline.rs) or what happens once it
//! stops (finish.rs).

use std::time::Instant;

use anyhow::{bail, Result};
use rlvr_trainer::{ScoredGroup, StepMetrics};

use super::interrupt::Interrupt;
use super::pipeline::{Buffer, Event, Pipeline, ScoredJob};
use super::progress::Progress;
use super::run::{Run, Start};
use super::step_log::{StepLog, StepTimes};
use super::RunConfig;

/// Where the loop stopped.
pub struct LoopEnd {
    /// Train steps done.
    pub step: u64,
    /// Scored groups received for batches not yet trained.
    pub pending: Buffer,
    /// Stopped by a stop request (Ctrl-C or `--stop-after`), not by the end of the run or data.
    pub interrupted: bool,
}

pub fn run_steps(
    run: &mut Run,
    pipeline: &Pipeline,
    start: Start,
    interrupt: &Interrupt,
    started: Instant,
) -> Result<LoopEnd> {
    let max_steps = run.cfg.max_steps;
    let progress = Progress::new(max_steps, start.step);
    let Start {
        mut step,
        mut pending,
    } = start;
    let mut generator_end = None;
    let mut interrupted = false;
    while step < max_steps {
        let waiting = Instant::now();
        wait_for_batches(pipeline, &mut pending, &mut generator_end, step, &run.cfg)?;
        let wait_s = waiting.elapsed().as_secs_f64();
        // Before the end-of-data check: a stop request also stops the generator, which then
        // delivers no more batches.
        if interrupt.stop_before(step) {
            interrupted = true;
            break;
        }
        if !pending.complete(step, run.cfg.prompts_per_step) {
            eprintln!("rlvr: the dataset is exhausted after {step} steps");
            break;
        }
        interrupt.hold(&format!("train:{}", step + 1));
        let jobs = pending.take(step);
        let (metrics, train_s) = train_on(run, &jobs)?;
        step += 1;
        pipeline.trained(step);
        let elapsed_s = started.elapsed().as_secs_f64();
        let log = StepLog::new(
            step,
            &jobs,
            StepTimes {
                wait_s,
                train_s,
                elapsed_s,
            },
        );
        run.dir.append_metrics(&log.line(&metrics)?)?;
        run.redraw_plots();
        progress.step(step, log.summary(max_steps, &metrics));
        checkpoint_and_evaluate(run, step, &pending)?;
    }
    progress.finish();
    Ok(LoopEnd {
        step,
        pending,
        interrupted,
    })
}

/// Receive scored groups until batch `step` and batch `step + max_staleness` are complete (or
/// the generator has ended before them).
fn wait_for_batches(
    pipeline: &Pipeline,
    pending: &mut Buffer,
    generator_end: &mut Option<u64>,
    step: u64,
    cfg: &RunConfig,
) -> Result<()> {
    let last = (step + cfg.max_staleness).min(cfg.max_steps - 1);
    let ready = |pending: &Buffer, end: Option<u64>, batch: u64| {
        pending.complete(batch, cfg.prompts_per_step) || end.is_some_and(|end| batch >= end)
    };
    while !(step..=last).all(|batch| ready(pending, *generator_end, batch)) {
        match pipeline.events.recv() {
            Ok(Event::Scored(job)) => pending.push(*job),
            Ok(Event::GeneratorDone(end)) => *generator_end = Some(end),
            Ok(Event::Failed(e)) => bail!("generation failed: {e}"),
            Err(_) => bail!("the generator stopped unexpectedly"),
        }
    }
    Ok(())
}

/// One train step on a batch: the trainer's metrics and the seconds it took.
fn train_on(run: &mut Run, jobs: &[ScoredJob]) -> Result<(StepMetrics, f64)> {
    let groups: Vec<ScoredGroup> = jobs.iter().map(|job| job.group.clone()).collect();
    let t0 = Instant::now();
    let metrics = run.trainer.train_step(&groups)?;
    Ok((metrics, t0.elapsed().as_secs_f64()))
}

/// Checkpoint and evaluate on their cadence; not after the last step (the end of the run does).
fn checkpoint_and_evaluate(run: &Run, step: u64, pending: &Buffer) -> Result<()> {
    let cfg = &run.cfg;
    let before_end = step < cfg.max_steps;
    if cfg.checkpoint_every > 0 && step.is_multiple_of(cfg.checkpoint_every) && before_end {
        run.checkpoint(pending)?;
    }
    if cfg.eval_every > 0 && step.is_multiple_of(cfg.eval_every) && before_end && cfg.eval_size > 0
    {
        run.evaluate(step)?;
    }
    Ok(())
}
