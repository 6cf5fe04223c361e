//! Prompts too long for the model's context or the KV pool are caught before anything runs
//! (`on_long_prompt`): `error` names the item, its length and the limit; `skip` leaves them out
//! and says how many. The tiny model's byte-level tokenizer makes one token per character.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

mod support;

/// The tiny model with its context cut to `context` tokens.
fn model_with_context(dir: &Path, context: usize) {
    support::tiny_model_dir(dir, true, 1);
    let path = dir.join("config.json");
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    cfg["max_position_embeddings"] = context.into();
    std::fs::write(&path, cfg.to_string()).unwrap();
}

fn rlvr(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rlvr"))
        .env("HF_HUB_OFFLINE", "1")
        .args(args)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// 12 digit questions of 16 characters; item 5 (training) and item 10 (the held-out tail)
/// are 100 characters long.
fn data(path: &Path) {
    let lines: Vec<String> = (0..12)
        .map(|i| {
            let d = (i * 7) % 10;
            let q = match i {
                5 | 10 => format!("Say the digit {d}.{}", " Think.".repeat(12)),
                _ => format!("Say the digit {d}."),
            };
            format!("{{\"question\": \"{q}\", \"answer\": \"#### {d}\"}}")
        })
        .collect();
    std::fs::write(path, lines.join("\n")).unwrap();
}

#[test]
fn train_and_eval_check_prompt_lengths_before_running() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    model_with_context(&model, 64);
    let data_path = tmp.path().join("d.jsonl");
    data(&data_path);
    let (m, d) = (model.to_str().unwrap(), data_path.to_str().unwrap());
    let out_dir = |name: &str| tmp.path().join(name).to_str().unwrap().to_string();
    let train = |out: &str, extra: &[&str]| {
        let args = [
            &[
                "train",
                "--model",
                m,
                "--data",
                d,
                "--out",
                out,
                "--max-steps",
                "2",
                "--prompts-per-step",
                "2",
                "--group-size",
                "2",
                "--max-new-tokens",
                "1",
                "--set",
                "chat=false",
                "--set",
                "prompt_template={question}",
                "--set",
                "eval_size=4",
                "--set",
                "eval_k=0",
            ],
            extra,
        ]
        .concat();
        rlvr(&args)
    };

    // Default: an error naming the item, its length and the limit, before the step-0 eval.
    let out = train(&out_dir("a"), &[]);
    let e = stderr(&out);
    assert!(!out.status.success(), "{e}");
    for want in [
        "1 of 8 training prompts are longer than 63 tokens",
        "the model's context of 64 tokens minus max_new_tokens 1",
        "item 5 (\"Say the digit 5. Think. Think.…\") has 100 tokens",
        "on_long_prompt = \"skip\"",
    ] {
        assert!(e.contains(want), "no {want:?} in:\n{e}");
    }
    assert!(
        !e.contains("eval @ step 0"),
        "evaluated before checking:\n{e}"
    );

    // `skip` (here from a TOML config): both long items are left out, with a count.
    let toml = tmp.path().join("run.toml");
    std::fs::write(&toml, "on_long_prompt = \"skip\"\n").unwrap();
    let out = train(&out_dir("b"), &["--config", toml.to_str().unwrap()]);
    let e = stderr(&out);
    assert!(out.status.success(), "{e}");
    assert!(e.contains("1 of 8 training prompts"), "{e}");
    assert!(
        e.contains("1 of 4 held-out prompts") && e.contains("item 10"),
        "{e}"
    );
    let evals = std::fs::read_to_string(tmp.path().join("b/eval.jsonl")).unwrap();
    let first: Value = serde_json::from_str(evals.lines().next().unwrap()).unwrap();
    assert_eq!(
        first["problems"], 3,
        "the long held-out item is not evaluated"
    );
    assert!(std::fs::read_to_string(tmp.path().join("b/config.toml"))
        .unwrap()
        .contains("on_long_prompt = \"skip\""));

    // `rlvr eval` checks the held-out prompts it evaluates (its own KV pool).
    let out = rlvr(&[
        "eval",
        "--model",
        m,
        "--data",
        d,
        "--size",
        "4",
        "--max-new-tokens",
        "1",
        "--set",
        "chat=false",
        "--set",
        "prompt_template={question}",
    ]);
    let e = stderr(&out);
    assert!(!out.status.success(), "{e}");
    assert!(
        e.contains("1 of 4 held-out prompts") && e.contains("item 10"),
        "{e}"
    );
}

#[test]
fn generate_checks_prompt_lengths_against_context_and_kv_pool() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    model_with_context(&model, 64);
    let prompts = tmp.path().join("p.jsonl");
    let lines = ["Say 1.", &"x".repeat(70), "Say 2."].map(|p| format!("{{\"prompt\": \"{p}\"}}"));
    std::fs::write(&prompts, lines.join("\n")).unwrap();
    let gen = |extra: &[&str]| {
        let base = [
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--prompts",
            prompts.to_str().unwrap(),
            "--no-chat",
            "--max-new-tokens",
            "4",
            "--json",
        ];
        rlvr(&[&base[..], extra].concat())
    };
    let out = gen(&[]);
    let e = stderr(&out);
    assert!(!out.status.success(), "{e}");
    assert!(
        e.contains("p.jsonl: 1 of 3 prompts are longer than 60 tokens")
            && e.contains("prompt 1 has 70 tokens"),
        "{e}"
    );

    // Skipped: the others run, and keep their indices (and seeds).
    let out = gen(&["--on-long-prompt", "skip"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let indices: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["prompt_index"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(indices, [0, 2]);

    // A KV pool of one 16-token block is the tighter limit.
    let out = gen(&["--kv-cache-mb", "0"]);
    let e = stderr(&out);
    assert!(!out.status.success(), "{e}");
    assert!(
        e.contains("longer than 12 tokens") && e.contains("the KV pool of 16 tokens"),
        "{e}"
    );
}
