//! DAPO's dynamic sampling end to end on a tiny model: every trained group has reward variance
//! (or the cap on extra rounds is hit and logged), and a run stopped and resumed with it on ends
//! with the same weights and metrics as an uninterrupted one.

use std::path::Path;

mod support;

use support::train::{final_weights, log_lines, run, run_ok, tiny_inputs, train_args, Running};

const STEPS: u64 = 5;

/// `train_args` with dynamic sampling on (up to `rounds` extra rounds) and completions long
/// enough that some groups answer right and some do not.
fn dynamic_args(model: &Path, data: &Path, out: &Path, k: u64, rounds: u32) -> Vec<String> {
    let mut args = train_args(model, data, out, STEPS, k);
    for set in [
        "trainer.dynamic_sampling=true".to_string(),
        format!("trainer.dynamic_sampling_max_rounds={rounds}"),
    ] {
        args.extend(["--set".to_string(), set]);
    }
    args
}

/// Per step: groups trained, extra rounds, extra groups, groups dropped, short, loss.
fn dynamic_steps(dir: &Path) -> Vec<(u64, u64, u64, u64, bool, String)> {
    log_lines(dir, "metrics.jsonl")
        .iter()
        .map(|l| {
            let n = |key: &str| l[key].as_u64().unwrap_or_else(|| panic!("{key}: {l}"));
            let short = l["dynamic_short"].as_bool().expect("dynamic_short");
            assert!(l["dynamic_extra_gen_s"].as_f64().is_some(), "{l}");
            let counts = (n("dynamic_groups"), n("dynamic_extra_rounds"));
            let groups = (n("dynamic_extra_groups"), n("dynamic_dropped_groups"));
            (
                counts.0,
                counts.1,
                groups.0,
                groups.1,
                short,
                l["loss"].to_string(),
            )
        })
        .collect()
}

/// Each step's fraction of trained groups with all rewards equal.
fn zero_variance_fractions(dir: &Path) -> Vec<f64> {
    log_lines(dir, "metrics.jsonl")
        .iter()
        .map(|l| {
            l["frac_zero_adv_groups"]
                .as_f64()
                .expect("frac_zero_adv_groups")
        })
        .collect()
}

/// With room for extra rounds every step trains on 2 groups that all have reward variance;
/// some batches needed extra rounds (the filter did drop groups and refill).
#[test]
fn every_trained_group_has_reward_variance() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = tiny_inputs(tmp.path());
    let out = tmp.path().join("run");
    run_ok(&dynamic_args(&model, &data, &out, 0, 3));
    let steps = dynamic_steps(&out);
    assert_eq!(steps.len(), STEPS as usize);
    for (step, (groups, rounds, extra, _, short, _)) in steps.iter().enumerate() {
        assert!(
            !short && *groups == 2,
            "step {}: {:?}",
            step + 1,
            steps[step]
        );
        assert_eq!(*extra, 2 * rounds, "step {}: 2 prompts per round", step + 1);
    }
    assert_eq!(zero_variance_fractions(&out), vec![0.0; STEPS as usize]);
    assert!(
        steps.iter().any(|s| s.1 > 0 && s.3 > 0),
        "no batch needed an extra round: the filter was not exercised: {steps:?}"
    );
}

/// With no extra rounds allowed a batch short of groups with variance trains on those it has
/// (or, with none, on its groups as they are) and says so on the progress line and in the log.
#[test]
fn the_cap_on_extra_rounds_is_hit_and_logged() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = tiny_inputs(tmp.path());
    for (name, tokens) in [("one-token", "1"), ("three-tokens", "3")] {
        let out = tmp.path().join(name);
        let mut args = dynamic_args(&model, &data, &out, 0, 0);
        args.extend(["--set".to_string(), format!("max_new_tokens={tokens}")]);
        let stderr = run_ok(&args);
        let steps = dynamic_steps(&out);
        let fractions = zero_variance_fractions(&out);
        let mut short_steps = 0;
        for (s, frac) in steps.iter().zip(&fractions) {
            assert_eq!((s.1, s.2), (0, 0), "{name}: no extra rounds: {s:?}");
            match (s.4, s.0) {
                (false, 2) => assert_eq!(*frac, 0.0, "{name}: {s:?}"),
                // Short: the groups with variance only, or none of them (all kept as they are).
                (true, 1) => assert_eq!(*frac, 0.0, "{name}: {s:?}"),
                (true, 2) => assert_eq!(*frac, 1.0, "{name}: {s:?}"),
                _ => panic!("{name}: {s:?}"),
            }
            short_steps += s.4 as usize;
        }
        assert!(short_steps > 0, "{name}: the cap was never hit: {steps:?}");
        assert_eq!(
            stderr.matches("(short: cap hit)").count(),
            short_steps,
            "{name}\n{stderr}"
        );
    }
}

/// Stopped after 3 steps and resumed, a run with dynamic sampling ends with the uninterrupted
/// run's weights and per-step log, on policy and with a batch pending (staleness 1).
#[test]
fn stopped_and_resumed_matches_an_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = tiny_inputs(tmp.path());
    for k in [0, 1] {
        let reference = tmp.path().join(format!("reference-{k}"));
        run_ok(&dynamic_args(&model, &data, &reference, k, 3));
        let out = tmp.path().join(format!("run-{k}"));
        let mut args = dynamic_args(&model, &data, &out, k, 3);
        args.extend(["--stop-after".to_string(), "3".to_string()]);
        let end = run(&args);
        assert_eq!(end.status.code(), Some(130), "k={k}\n{}", end.stderr);
        assert!(!out.join("final").exists(), "k={k}: finished");
        run_ok(&["train".into(), "--resume".into(), out.display().to_string()]);
        assert!(
            final_weights(&reference) == final_weights(&out),
            "k={k}: the resumed run's final weights differ from the uninterrupted run's"
        );
        assert_eq!(dynamic_steps(&reference), dynamic_steps(&out), "k={k}");
    }
}

/// Ctrl-C (a real SIGINT) while step 3 trains with a batch ahead being generated (staleness 1):
/// the resumed run ends with the uninterrupted run's weights and per-step log.
#[test]
fn ctrl_c_mid_run_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = tiny_inputs(tmp.path());
    let reference = tmp.path().join("reference");
    run_ok(&dynamic_args(&model, &data, &reference, 1, 3));
    let out = tmp.path().join("run");
    let mut args = dynamic_args(&model, &data, &out, 1, 3);
    args.extend(["--hold-at".to_string(), "train:3".to_string()]);
    let mut running = Running::start(&args);
    running.wait_for_line("holding at");
    running.interrupt();
    let end = running.wait();
    assert_eq!(end.status.code(), Some(130), "{}", end.stderr);
    run_ok(&["train".into(), "--resume".into(), out.display().to_string()]);
    assert!(
        final_weights(&reference) == final_weights(&out),
        "the resumed run's final weights differ from the uninterrupted run's"
    );
    assert_eq!(dynamic_steps(&reference), dynamic_steps(&out));
}
