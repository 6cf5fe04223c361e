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
    // One output line per input line: the blank second line gets an error.
    assert_eq!(out.len(), 6);
    assert!(out[1]["error"].as_str().unwrap().starts_with("line 2:"));
    let out: Vec<Value> = out
        .into_iter()
        .filter(|v| v.get("error").is_none())
        .collect();
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

/// Regression (reliability issue, item 11): the filter used to stop at the
/// first malformed line (later lines were never graded) and to skip blank
/// lines without an output line, so its output no longer lined up with its
/// input. Now every input line gets exactly one output line.
#[test]
fn filter_answers_every_line_and_goes_on_after_bad_ones() {
    let input = concat!(
        "{\"gold\": \"1\", \"pred\": \"1\"}\n",
        "not json\n",
        "\n",
        "{\"gold\": \"1\"}\n",
        "{\"gold\": \"1\", \"pred\": \"1\", \"gold_format\": \"latex\"}\n",
        "[1, 2]\n",
        "   \r\n",
        "{\"gold\": \"2\", \"pred\": \"so 2\"}\n",
        "{\"gold\": \"3\", \"pred\": \"so 4\"}",
    );
    let (n, out) = filter(input).expect("a bad line is not an error of the whole stream");
    assert_eq!(out.len(), 9, "one output line per input line");
    assert_eq!(n, 3, "three lines graded");
    let error = |k: usize| out[k]["error"].as_str().unwrap_or("").to_string();
    assert_eq!(out[0]["correct"], true);
    assert!(
        error(1).starts_with("line 2:") && error(1).contains("JSON"),
        "{}",
        error(1)
    );
    assert!(
        error(2).starts_with("line 3:") && error(2).contains("blank"),
        "{}",
        error(2)
    );
    assert!(
        error(3).starts_with("line 4:") && error(3).contains("pred"),
        "{}",
        error(3)
    );
    assert!(
        error(4).starts_with("line 5:") && error(4).contains("latex"),
        "{}",
        error(4)
    );
    assert!(
        error(5).starts_with("line 6:") && error(5).contains("object"),
        "{}",
        error(5)
    );
    assert!(error(6).starts_with("line 7:"), "{}", error(6));
    assert_eq!(out[7]["correct"], true);
    assert_eq!(out[8]["correct"], false);
    assert!(out[7].get("error").is_none() && out[8].get("error").is_none());
    // Not UTF-8: an error line, and the next line is graded.
    let mut bytes = b"{\"gold\": \"1\", \"pred\": \"\xff\"}\n".to_vec();
    bytes.extend_from_slice(b"{\"gold\": \"5\", \"pred\": \"5\"}\n");
    let mut sink = Vec::new();
    let graded = verify_jsonl(
        Cursor::new(bytes),
        &mut sink,
        &VerifierConfig::default(),
        GoldFormat::Auto,
    )
    .unwrap();
    let lines: Vec<Value> = String::from_utf8(sink)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!((graded, lines.len()), (1, 2));
    assert!(lines[0]["error"].as_str().unwrap().contains("UTF-8"));
    assert_eq!(lines[1]["correct"], true);
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
    assert_eq!(r.methods.get("last_number"), Some(&1));
    // `x = 5` is an expression, found as such (and its value is the gold 5).
    assert_eq!(r.methods.get("last_expression"), Some(&1));
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
