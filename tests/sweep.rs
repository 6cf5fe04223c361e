//! `rlvr sweep` end to end on a tiny model, 2 steps per cell: the 2×2 grid of losses ×
//! optimizers with the matched-lr AdamW arms, its summary and plots, and a second invocation
//! that finds every cell finished.

mod support;

use serde_json::Value;
use support::train::{rlvr, tiny_inputs};

fn sweep_args(model: &str, data: &str, out: &str) -> Vec<String> {
    let mut args: Vec<String> = ["sweep", "--out", out, "--seeds", "1", "--match-lr"]
        .map(String::from)
        .to_vec();
    for grid in ["algo=grpo,stapo", "optimizer=adamw,magma"] {
        args.extend(["--grid".to_string(), grid.to_string()]);
    }
    let sets = [
        format!("model={model}"),
        format!("data={data}"),
        "max_steps=2".into(),
        "prompts_per_step=2".into(),
        "group_size=8".into(),
        "max_new_tokens=1".into(),
        "lr=1e-2".into(),
        "boxed_bonus=0".into(),
        "chat=false".into(),
        "eval_size=4".into(),
        "checkpoint_every=2".into(),
    ];
    for set in sets {
        args.extend(["--set".to_string(), set]);
    }
    args
}

#[test]
fn a_small_grid_runs_summarises_plots_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (model, data) = tiny_inputs(dir.path());
    let out = dir.path().join("sweep");
    let args = sweep_args(
        model.to_str().unwrap(),
        data.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    let first = rlvr().args(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{stderr}");

    let summary: Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let configs = summary["configurations"].as_array().unwrap();
    let labels: Vec<&str> = configs
        .iter()
        .map(|c| c["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels.len(), 6, "{labels:?}");
    assert_eq!(labels[0], "algo=grpo optimizer=adamw");
    assert!(
        labels[4].starts_with("algo=grpo optimizer=adamw lr="),
        "{labels:?}"
    );
    // The matched arm's lr is the AdamW lr times its Magma twin's logged multiplier.
    let mult = configs[1]["eff_mult_mean"].as_f64().unwrap();
    assert!(mult > 0.0 && mult <= 1.0 + 1e-9, "{mult}");
    let lr: f64 = labels[4].rsplit('=').next().unwrap().parse().unwrap();
    assert!(
        (lr - 1e-2 * mult).abs() <= 1e-2 * mult * 1e-3,
        "{lr} vs {mult}"
    );
    for c in configs {
        assert_eq!(c["seeds"], 1);
        let end = c["held_out_end"]["mean"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&end), "{c}");
        assert_eq!(c["reward_last"]["values"].as_array().unwrap().len(), 1);
    }
    // Finished cells keep their results but not their checkpoints (disk).
    let run = out
        .join("runs")
        .join("algo-grpo_optimizer-adamw")
        .join("seed-0");
    assert!(run.join("metrics.jsonl").exists());
    assert!(!run.join("checkpoints").exists());
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert_eq!(md.lines().count(), 2 + 6, "{md}");
    for png in [
        "greedy_accuracy",
        "reward_mean",
        "entropy_mean",
        "response_length",
        "s2t_masked_frac",
    ] {
        let bytes = std::fs::read(out.join("plots").join(format!("{png}.png"))).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "{png}");
    }

    // Again: nothing reruns, the same table comes out.
    let again = rlvr().args(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert_eq!(
        stderr.matches("finished before; skipped").count(),
        6,
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(out.join("summary.md")).unwrap(), md);
}
