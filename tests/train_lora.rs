//! LoRA end to end through the binary on a tiny model: a run with `--lora-rank` exports a PEFT
//! adapter directory; a run interrupted and resumed ends with the same adapter; a new run starts
//! from that adapter with `--adapter`; `rlvr score --adapter` equals the merged export
//! (`rlvr export --adapter`), and `--merge` exports the merged model as an HF directory.

use std::path::Path;

use serde_json::Value;

mod support;

use support::train::{rlvr, run, run_ok, tiny_inputs, train_args};

fn lora_args(model: &Path, data: &Path, out: &Path, steps: u64) -> Vec<String> {
    let mut args = train_args(model, data, out, steps, 0);
    args.extend(
        [
            "--lora-rank",
            "4",
            "--lora-alpha",
            "16",
            "--lora-targets",
            "q,v,down",
        ]
        .map(String::from),
    );
    args
}

fn json_file(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `rlvr score` log-probs of two fixed rows under `model_args`.
fn scores(model_args: &[&str], dir: &Path) -> Vec<f64> {
    let input = dir.join("score.jsonl");
    std::fs::write(
        &input,
        "{\"input_ids\": [1, 5, 9, 3, 7, 2]}\n{\"input_ids\": [1, 4, 4, 8]}\n",
    )
    .unwrap();
    let out = rlvr()
        .args(["score", "--input", input.to_str().unwrap()])
        .args(model_args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .flat_map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["logprobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn lora_runs_export_resume_and_reload_peft_adapters() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (model, data) = tiny_inputs(root);

    // A LoRA run exports a PEFT adapter, not a full model.
    let a = root.join("a");
    let stderr = run_ok(&lora_args(&model, &data, &a, 4));
    assert!(stderr.contains("LoRA r=4"), "{stderr}");
    let fin = a.join("final");
    assert!(!fin.join("model.safetensors").exists());
    let cfg = json_file(&fin.join("adapter_config.json"));
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(
        (cfg["r"].as_u64(), cfg["lora_alpha"].as_f64()),
        (Some(4), Some(16.0))
    );
    assert_eq!(
        cfg["target_modules"],
        serde_json::json!(["q_proj", "v_proj", "down_proj"])
    );
    let weights = std::fs::read(fin.join("adapter_model.safetensors")).unwrap();
    let header = String::from_utf8_lossy(&weights[..weights.len().min(4096)]).into_owned();
    assert!(header.contains("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"));

    // Interrupted after 2 steps and resumed: the same adapter as the uninterrupted run.
    let b = root.join("b");
    let mut args = lora_args(&model, &data, &b, 4);
    args.extend(["--stop-after".to_string(), "2".to_string()]);
    assert_eq!(run(&args).status.code(), Some(130));
    run_ok(&["train".into(), "--resume".into(), b.display().to_string()]);
    assert!(
        std::fs::read(b.join("final/adapter_model.safetensors")).unwrap() == weights,
        "the resumed run's adapter differs"
    );

    // A new run starts from the exported adapter.
    let c = root.join("c");
    let mut args = train_args(&model, &data, &c, 1, 0);
    args.extend(["--adapter".to_string(), fin.display().to_string()]);
    let stderr = run_ok(&args);
    assert!(
        stderr.contains("adapter") && stderr.contains("r=4"),
        "{stderr}"
    );
    assert!(c.join("final/adapter_model.safetensors").is_file());

    // Scoring with the adapter unmerged equals the merged export, and differs from the base.
    let m = model.to_str().unwrap();
    let f = fin.to_str().unwrap();
    let with_adapter = scores(&["--model", m, "--adapter", f], root);
    let merged = root.join("merged");
    let out = rlvr()
        .args(["export", "--model", m, "--adapter", f, "--out"])
        .arg(&merged)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let from_merged = scores(&["--model", merged.to_str().unwrap()], root);
    let base = scores(&["--model", m], root);
    let max_diff = |x: &[f64], y: &[f64]| {
        x.iter()
            .zip(y)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max)
    };
    assert!(max_diff(&with_adapter, &from_merged) <= 1e-5);
    assert!(
        max_diff(&with_adapter, &base) > 1e-4,
        "the adapter changed nothing"
    );

    // --merge exports the merged model as an HF directory.
    let d = root.join("d");
    let mut args = lora_args(&model, &data, &d, 1);
    args.push("--merge".into());
    run_ok(&args);
    assert!(d.join("final/model.safetensors").is_file());
    assert!(!d.join("final/adapter_config.json").exists());
}

#[test]
fn bad_lora_settings_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = tiny_inputs(tmp.path());
    let out = tmp.path().join("x");
    let mut args = train_args(&model, &data, &out, 1, 0);
    args.extend(["--lora-rank", "4", "--lora-targets", "q,lm_head"].map(String::from));
    let e = support::train::run_err(&args);
    assert!(e.contains("lora.targets") && e.contains("lm_head"), "{e}");
    let mut args = train_args(&model, &data, &out, 1, 0);
    args.extend([
        "--adapter".to_string(),
        tmp.path().join("none").display().to_string(),
    ]);
    let e = support::train::run_err(&args);
    assert!(e.contains("adapter_config.json"), "{e}");
    let mut args = train_args(&model, &data, &out, 1, 0);
    args.push("--merge".into());
    let e = support::train::run_err(&args);
    assert!(e.contains("--merge"), "{e}");
}
