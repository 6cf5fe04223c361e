//! The JSONL front ends behind `rlvr verify`, and the benchmark entry point.

use std::io::Cursor;

use rlvr_verifier::{
    accuracy_report, accuracy_report_from_readers, bench_gsm8k_style, verify_jsonl, GoldFormat,
    VerifierConfig, VerifierError,
};
use serde_json::Value;

fn filter(input: &str) -> Result<(usize, Vec<Value>), VerifierError> {
    let mut out = Vec::new();
    let r = verify_jsonl(
        Cursor::new(input),
        &mut out,
        &VerifierConfig::default(),
        GoldFormat::Auto,
    );
    let lines = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    r.map(|n| (n, lines))
}

#[test]
fn filter_grades_in_order() {
    let input = concat!(
        r#"{"gold": "18", "pred": "so \\boxed{18}"}"#,
        "\n\n",
        r#"{"gold": "Janet ... #### 1,080", "pred": "she has 1080 dollars", "gold_format": "gsm8k"}"#,
        "\n",
        r#"{"gold": "so $\\boxed{\\frac12}$", "pred": "The answer is 0.6.", "gold_format": "math"}"#,
        "\n",
        r#"{"gold": 7, "pred": "nothing to see"}"#,
        "\n",
        r#"{"gold": "(C)", "pred": "Answer: C", "gold_format": "raw"}"#,
        "\n",
    );
    let (n, out) = filter(input).unwrap();
    assert_eq!(n, 5);
    assert_eq!(out.len(), 5);
    let summary: Vec<(bool, &str)> = out
        .iter()
        .map(|v| {
            (
                v["correct"].as_bool().unwrap(),
                v["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (true, "match_exact"),
            (true, "match_exact"),
            (false, "mismatch"),
            (false, "no_answer_found"),
            (true, "match_choice"),
        ]
    );
    assert_eq!(out[0]["extracted"], "18");
    assert_eq!(out[2]["extracted"], "0.6");
    assert!(out[3]["extracted"].is_null());
}

#[test]
fn filter_rejects_malformed_lines_with_line_number() {
    let input =
        "{\"gold\": \"1\", \"pred\": \"1\"}\nnot json\n{\"gold\": \"2\", \"pred\": \"2\"}\n";
    let err = filter(input).unwrap_err();
    assert!(err.to_string().starts_with("line 2:"), "{err}");
    let err = filter("{\"gold\": \"1\"}\n").unwrap_err();
    assert!(
        err.to_string().contains("line 1") && err.to_string().contains("pred"),
        "{err}"
    );
    let err =
        filter("{\"gold\": \"1\", \"pred\": \"1\", \"gold_format\": \"latex\"}\n").unwrap_err();
    assert!(err.to_string().contains("latex"), "{err}");
    let err = filter("[1, 2]\n").unwrap_err();
    assert!(err.to_string().contains("object"), "{err}");
    // The lines before the bad one were answered.
    let mut out = Vec::new();
    let _ = verify_jsonl(
        Cursor::new(input),
        &mut out,
        &VerifierConfig::default(),
        GoldFormat::Auto,
    );
    assert_eq!(String::from_utf8(out).unwrap().lines().count(), 1);
}

#[test]
fn report_maps_completions_by_index_or_order() {
    let data = concat!(
        r#"{"question": "q0", "answer": "work\n#### 18", "answer_final": "18"}"#,
        "\n",
        r#"{"problem": "p1", "solution": "so $\\boxed{\\frac{1}{2}}$", "answer": "\\frac{1}{2}"}"#,
        "\n",
        r#"{"problem": "p2", "solution": "thus $\\boxed{5}$"}"#,
        "\n",
    );
    let by_index = concat!(
        r#"{"completion": "\\boxed{0.5}", "index": 1}"#,
        "\n",
        "{\"text\": \"#### 18\", \"prompt_index\": 0}",
        "\n",
        r#"{"completion": "I think 17", "index": 0}"#,
        "\n",
        r#"{"completion": "x = 5", "index": 2}"#,
        "\n",
    );
    let cfg = VerifierConfig::default();
    let r =
        accuracy_report_from_readers(Cursor::new(data), Cursor::new(by_index), None, &cfg).unwrap();
    assert_eq!(
        (r.n, r.correct, r.prompts, r.prompts_with_correct),
        (4, 3, 3, 3)
    );
    assert_eq!(r.reasons.get("mismatch"), Some(&1));
    assert_eq!(r.methods.get("last_number"), Some(&2));
    assert!((r.accuracy - 0.75).abs() < 1e-12);

    let in_order = "{\"completion\": \"#### 18\"}\n{\"completion\": \"\\\\boxed{2}\"}\n";
    let r =
        accuracy_report_from_readers(Cursor::new(data), Cursor::new(in_order), None, &cfg).unwrap();
    assert_eq!((r.n, r.correct, r.prompts), (2, 1, 2));
    let json = serde_json::to_value(&r).unwrap();
    for key in ["n", "correct", "accuracy", "reasons"] {
        assert!(json.get(key).is_some(), "{key}");
    }
}

#[test]
fn report_errors_are_clear() {
    let cfg = VerifierConfig::default();
    let data = "{\"answer_final\": \"1\"}\n";
    let err = accuracy_report_from_readers(
        Cursor::new(data),
        Cursor::new("{\"completion\": \"1\", \"index\": 3}\n"),
        None,
        &cfg,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("line 1") && err.to_string().contains("record 3"),
        "{err}"
    );
    let err = accuracy_report_from_readers(
        Cursor::new(data),
        Cursor::new("{\"completion\": \"1\"}\n{\"completion\": \"1\"}\n"),
        None,
        &cfg,
    )
    .unwrap_err();
    assert!(err.to_string().starts_with("line 2:"), "{err}");
    let err = accuracy_report_from_readers(
        Cursor::new("{\"question\": \"no gold\"}\n"),
        Cursor::new(""),
        None,
        &cfg,
    )
    .unwrap_err();
    assert!(err.to_string().contains("no gold"), "{err}");
    let err = accuracy_report(
        std::path::Path::new("/nonexistent/data.jsonl"),
        std::path::Path::new("/nonexistent/c.jsonl"),
        None,
        &cfg,
    )
    .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/data.jsonl"), "{err}");
}

#[test]
fn bench_report_shape() {
    let r = bench_gsm8k_style(500);
    assert_eq!(r.n, 500);
    assert_eq!(r.threads, 1);
    assert!(r.verifications_per_s > 0.0 && r.parallel_verifications_per_s > 0.0);
    // About three in four golds agree with their completion.
    assert!((300..=450).contains(&r.correct), "{}", r.correct);
    let v = serde_json::to_value(&r).unwrap();
    assert!(v.get("verifications_per_s").is_some());
}
