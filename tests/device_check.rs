//! `rlvr device-check` end to end on the CPU (the same code compares CUDA with the CPU on a GPU
//! machine): a tiny model, goldens written from its own CPU run, f32 and f16.

mod support;

use std::process::Command;

use serde_json::{json, Value};

fn rlvr() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rlvr"))
}

#[test]
fn device_check_passes_on_the_cpu_and_fails_on_wrong_goldens() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m");
    support::tiny_model_dir(&model, true, 2);
    let golden = dir.path().join("golden.json");
    let case = |ids: Vec<u32>| json!({ "input_ids": ids, "greedy_24": [5, 6, 7] });
    std::fs::write(
        &golden,
        json!({ "cases": [case(vec![1, 40, 41, 42]), case((3..40).collect())] }).to_string(),
    )
    .unwrap();
    let out = rlvr()
        .args([
            "device-check",
            "--device",
            "cpu",
            "--dtypes",
            "f32,f16",
            "--model",
        ])
        .arg(&model)
        .arg("--golden")
        .arg(&golden)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["pass"], true);
    assert_eq!(v["cases"], 2);
    // The device is the CPU: f32 is bit-identical to the reference, f16 is not.
    assert_eq!(v["f32"]["logits_max_abs_diff_vs_cpu_f32"], 0.0);
    let f16 = v["f16"]["logits_max_abs_diff_vs_cpu_f32"].as_f64().unwrap();
    assert!(f16 > 0.0 && f16 < 0.05, "f16 logits diff {f16}");
    let paged = v["f32"]["paged_vs_full_logprob_max_abs_diff"]
        .as_f64()
        .unwrap();
    assert!(paged < 1e-3, "paged vs full {paged}");
    assert_eq!(v["f32"]["paged_tokens_compared"], 2 * (24 + 4 * 32));

    // A malformed goldens file is an error naming it.
    std::fs::write(&golden, "{\"cases\": []}").unwrap();
    let out = rlvr()
        .args(["device-check", "--device", "cpu", "--model"])
        .arg(&model)
        .arg("--golden")
        .arg(&golden)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("golden.json"));
}

#[test]
fn benches_run_random_presets() {
    let out = rlvr()
        .args([
            "bench",
            "train",
            "--model",
            "random:smollm2-135m",
            "--device",
            "cpu",
            "--batch-tokens",
            "16",
            "--micro-batch-tokens",
            "8",
            "--iters",
            "1",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["bench"], "train");
    assert_eq!(v["parameters"], 134_515_008);
    assert!(v["fwd_bwd_peak_mb"].as_f64().unwrap() > 0.0);
    let out = rlvr()
        .args([
            "bench",
            "rollout",
            "--model",
            "random:nope",
            "--device",
            "cpu",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("smollm2-135m"));
}
