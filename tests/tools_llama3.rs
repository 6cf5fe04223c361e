//! `rlvr generate --tools calculator` on a model whose chat template is in the Llama 3.x tool
//! format (a template written for the tests, tests/fixtures/chat_templates/): the tools are
//! offered in Llama 3's form, a bare JSON turn is run as a call and answered in the `ipython`
//! turn, and a turn that is no call ends the sample as `eos`.

use std::process::Command;

use serde_json::Value;

mod support;
use support::llama3_model::{llama3_tool_model_dir, LLAMA_CALL};

#[test]
fn generate_with_tools_speaks_llama3() {
    let tmp = tempfile::tempdir().unwrap();
    llama3_tool_model_dir(tmp.path());
    let model = tmp.path().to_str().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rlvr"))
        .args(["generate", "--model", model, "--prompt", "What is 6*7?"])
        .args(["--tools", "calculator", "--json", "--n", "8", "--seed", "1"])
        .args(["--max-new-tokens", "200"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("bare JSON"), "{stderr}");
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 8);
    let (mut after_calls, mut at_once) = (0, 0);
    for line in &lines {
        let calls = line["tools"]["calls"].as_u64().unwrap();
        let text = line["text"].as_str().unwrap();
        let inserted = line["inserted"].as_array().unwrap();
        assert_eq!(inserted.len(), line["token_ids"].as_array().unwrap().len());
        let runs = inserted
            .windows(2)
            .filter(|w| w[0] == false && w[1] == true);
        assert_eq!(runs.count() as u64, calls, "{line}");
        assert_eq!(line["tools"]["errors"], 0, "{line}");
        if line["finish_reason"] == "eos" {
            assert!(text.ends_with('X'), "{text}");
            match calls {
                0 => at_once += 1,
                _ => after_calls += 1,
            }
        } else {
            assert_eq!(
                line["finish_reason"], "tool_call",
                "past the turn limit: {line}"
            );
            assert_eq!(calls, 5);
        }
        // Each call's result, in the ipython turn as the template writes it (a JSON string).
        let want = format!("{}ipython\n\n\"42\"assistant\n\n", LLAMA_CALL);
        assert_eq!(text.matches(&want).count() as u64, calls.min(4), "{text}");
    }
    assert!(after_calls > 0 && at_once > 0, "both paths: {lines:?}");
}
