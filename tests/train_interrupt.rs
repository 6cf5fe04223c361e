//! Ctrl-C (a real SIGINT) at each phase of a run ends it the same way: the current step finished
//! or abandoned, a checkpoint, the resume command, exit 130; and the resumed run ends with the
//! same weights as an uninterrupted one. `--hold-at` (hidden, for tests) parks the run at a known
//! place until the signal arrives.

use std::path::Path;

mod support;

use support::train::{checkpoint_names, final_weights, log_lines, run_ok, train_args, Running};

const STEPS: u64 = 5;

/// Interrupt a run held at `point`; check how it ended and that resuming it gives the reference
/// run's final weights and metrics.
fn interrupt_at(point: &str, k: u64, checkpoint: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = support::train::tiny_inputs(tmp.path());
    let reference = tmp.path().join("reference");
    run_ok(&train_args(&model, &data, &reference, STEPS, k));

    let run = tmp.path().join("run");
    let mut args = train_args(&model, &data, &run, STEPS, k);
    args.extend(["--hold-at".to_string(), point.to_string()]);
    let mut running = Running::start(&args);
    running.wait_for_line("holding at");
    running.interrupt();
    let end = running.wait();
    let stderr = &end.stderr;
    assert_eq!(
        end.status.code(),
        Some(130),
        "{point}: exit status\n{stderr}"
    );
    let resume = format!("Resume with: rlvr train --resume {}", run.display());
    assert!(
        stderr.contains(&resume),
        "{point}: no resume command\n{stderr}"
    );
    for wrong in ["exhausted", "done:", "exported"] {
        assert!(
            !stderr.contains(wrong),
            "{point}: reported as finished\n{stderr}"
        );
    }
    assert!(!run.join("final").exists(), "{point}: exported");
    assert!(
        checkpoint_names(&run).contains(&checkpoint.to_string()),
        "{point}: no {checkpoint}: {:?}\n{stderr}",
        checkpoint_names(&run)
    );

    run_ok(&["train".into(), "--resume".into(), run.display().to_string()]);
    assert!(
        final_weights(&reference) == final_weights(&run),
        "{point}: the resumed run's final weights differ from the uninterrupted run's"
    );
    assert_eq!(metric_steps(&reference), metric_steps(&run), "{point}");
    assert_eq!(
        eval_steps(&reference),
        eval_steps(&run),
        "{point}: eval.jsonl"
    );
}

fn metric_steps(dir: &Path) -> Vec<(u64, String)> {
    log_lines(dir, "metrics.jsonl")
        .iter()
        .map(|l| (l["step"].as_u64().unwrap(), l["loss"].to_string()))
        .collect()
}

fn eval_steps(dir: &Path) -> Vec<u64> {
    log_lines(dir, "eval.jsonl")
        .iter()
        .map(|l| l["step"].as_u64().unwrap())
        .collect()
}

#[test]
fn ctrl_c_before_step_1() {
    interrupt_at("before-step-1", 0, "step-00000000");
}

#[test]
fn ctrl_c_while_training_on_policy() {
    interrupt_at("train:3", 0, "step-00000003");
}

#[test]
fn ctrl_c_while_training_staleness_1() {
    interrupt_at("train:3", 1, "step-00000003");
}

#[test]
fn ctrl_c_after_the_last_step() {
    interrupt_at("finish", 0, "step-00000005");
}
