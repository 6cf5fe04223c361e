//! The CLI on the default model: `generate --json` log-probs equal `score`'s; export round trip;
//! `pull` reports the model.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

fn rlvr() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rlvr"))
}

fn gguf() -> String {
    rlvr_models::source::default_gguf(false)
        .expect("default GGUF")
        .to_str()
        .unwrap()
        .to_string()
}

fn stdout_of(c: &mut Command) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}",
        c,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn generate_json_matches_score() {
    let model = gguf();
    let gen = stdout_of(rlvr().args([
        "generate",
        "--model",
        &model,
        "--prompt",
        "What is 3 + 4? Put the final answer in \\boxed{}.",
        "-n",
        "2",
        "--max-new-tokens",
        "24",
        "--seed",
        "5",
        "--json",
    ]));
    let lines: Vec<Value> = gen
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("ids.jsonl");
    let mut f = std::fs::File::create(&input).unwrap();
    for l in &lines {
        let mut ids: Vec<u64> = l["prompt_token_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect();
        ids.extend(
            l["token_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap()),
        );
        writeln!(f, "{}", serde_json::json!({ "input_ids": ids })).unwrap();
    }
    drop(f);
    let scored = stdout_of(rlvr().args([
        "score",
        "--model",
        &model,
        "--input",
        input.to_str().unwrap(),
    ]));
    for (g, s) in lines.iter().zip(scored.lines()) {
        let s: Value = serde_json::from_str(s).unwrap();
        let p = g["prompt_token_ids"].as_array().unwrap().len();
        let n = g["token_ids"].as_array().unwrap().len();
        for k in 0..n {
            for (a, b) in [("logprobs", "logprobs"), ("entropies", "entropies")] {
                let x = g[a][k].as_f64().unwrap();
                let y = s[b][p - 1 + k].as_f64().unwrap();
                assert!((x - y).abs() < 1e-4, "{a}[{k}]: generate {x} vs score {y}");
            }
        }
        assert!(["eos", "length", "stop"].contains(&g["finish_reason"].as_str().unwrap()));
    }
}

#[test]
fn export_round_trip_and_pull() {
    let model = gguf();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("hf");
    stdout_of(rlvr().args(["export", "--model", &model, "--out", out.to_str().unwrap()]));
    let pulled: Value =
        serde_json::from_str(&stdout_of(rlvr().args(["pull", out.to_str().unwrap()]))).unwrap();
    assert_eq!(pulled["parameters"], 134515008);
    assert_eq!(pulled["architecture"], "llama");
    // Same scores from the GGUF and from the exported safetensors directory.
    let mut child = rlvr()
        .args(["score", "--model", &model, "--input", "/dev/stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"{\"prompt\": \"The capital of France is\", \"chat\": false, \"completion\": \" Paris.\"}\n").unwrap();
    let a = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
    let mut child = rlvr()
        .args([
            "score",
            "--model",
            out.to_str().unwrap(),
            "--input",
            "/dev/stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"{\"prompt\": \"The capital of France is\", \"chat\": false, \"completion\": \" Paris.\"}\n").unwrap();
    let b = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
    assert!(!a.is_empty());
    assert_eq!(a, b, "GGUF and exported directory score differently");
}

/// `generate --tools calculator` on the default model: SmolLM2's template renders no tools, so
/// the command says it falls back to the Hermes system message, the prompt grows by the tool
/// instructions, and each JSON line carries the tool statistics and a per-token `inserted`
/// flag aligned with `token_ids`. An unknown tool name is an error that names it.
#[test]
fn generate_with_tools_offers_them_in_hermes_form() {
    let model = gguf();
    let prompt = "What is 347 * 829? Use the calculator tool.";
    let base = ["generate", "--model", &model, "--prompt", prompt];
    let common = ["--max-new-tokens", "16", "--temperature", "0", "--json"];
    let plain = stdout_of(rlvr().args(base).args(common));
    let plain: Value = serde_json::from_str(plain.lines().next().unwrap()).unwrap();
    let out = rlvr()
        .args(base)
        .args(common)
        .args(["--tools", "calculator"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("renders no tools"), "{stderr}");
    let line: Value = serde_json::from_slice(out.stdout.split(|&b| b == b'\n').next().unwrap())
        .expect("one JSON line");
    let prompt_len = |v: &Value| v["prompt_token_ids"].as_array().unwrap().len();
    assert!(
        prompt_len(&line) > prompt_len(&plain) + 20,
        "no tool instructions"
    );
    let tokens = line["token_ids"].as_array().unwrap().len();
    assert_eq!(line["inserted"].as_array().unwrap().len(), tokens);
    assert!(line["tools"]["turns"].as_u64().unwrap() >= 1, "{line}");
    let bad = rlvr()
        .args(base)
        .args(common)
        .args(["--tools", "abacus"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("abacus"));
}
