//! How a run ends once the step loop stops. Interrupted: the batches generated but not trained
//! go into a checkpoint and the process exits 130 with how to resume. Finished: the final
//! checkpoint, evaluation, plots and export, then a one-line report; a Ctrl-C meanwhile stops
//! before the evaluation or the export the same way (the resumed run redoes them).
//!
//! It must not know how the loop ran: only where it stopped (`LoopEnd`).

use std::path::Path;
use std::time::Instant;

use anyhow::Result;

use super::interrupt::Interrupt;
use super::pipeline::{is_complete, Buffer, Event, Pipeline};
use super::run::Run;
use super::step_loop::LoopEnd;
use super::RunConfig;

pub fn finish(
    run: Run,
    pipeline: Pipeline,
    end: LoopEnd,
    started: Instant,
    interrupt: &Interrupt,
) -> Result<()> {
    if end.interrupted {
        let pending = pending_batches(&pipeline, end.pending, end.step, &run.cfg);
        let checkpoint = run.checkpoint(&pending)?;
        pipeline.shutdown(false);
        stopped(&run, end.step, &checkpoint);
    }
    pipeline.shutdown(true);
    let checkpoint = run.checkpoint(&Buffer::default())?;
    interrupt.hold("finish");
    if interrupt.requested() {
        stopped(&run, end.step, &checkpoint);
    }
    if run.cfg.eval_size > 0 {
        run.evaluate(end.step)?;
    }
    run.redraw_plots();
    if interrupt.requested() {
        stopped(&run, end.step, &checkpoint);
    }
    run.export()?;
    eprintln!(
        "rlvr: done: {} steps in {:.1}s; run directory {}",
        end.step,
        started.elapsed().as_secs_f64(),
        run.dir.root.display()
    );
    Ok(())
}

/// Say where the run stopped and how to resume it, and exit 130 (as a Ctrl-C does).
fn stopped(run: &Run, step: u64, checkpoint: &Path) -> ! {
    eprintln!(
        "rlvr: stopped at step {step}; checkpoint {}. Resume with: rlvr train --resume {}",
        checkpoint.display(),
        run.dir.root.display()
    );
    std::process::exit(130);
}

/// The complete batches for steps `step ..` within the staleness window, including those that
/// arrived after the loop stopped waiting: what a resumed run must not generate again.
fn pending_batches(pipeline: &Pipeline, mut pending: Buffer, step: u64, cfg: &RunConfig) -> Buffer {
    while let Ok(event) = pipeline.events.try_recv() {
        if let Event::Scored(job) = event {
            if job.batch >= step && job.batch <= step + cfg.max_staleness {
                pending.push(*job);
            }
        }
    }
    let window_end = step + cfg.max_staleness.max(1);
    pending.batches.retain(|&batch, jobs| {
        batch >= step && batch < window_end && is_complete(jobs, cfg.prompts_per_step)
    });
    pending
}
