//! The comparison set (`tests/fixtures/verifier/pairs.jsonl`, made by
//! `scripts/verifier_pairs.py` and labelled by `scripts/verifier_label.py`):
//! every (gold, prediction) pair is graded as `rlvr verify` grades a JSONL line
//! with `gold_format: auto`; agreement with the expected verdicts must be at
//! least 99%, and agreement with math-verify 0.9.0 is printed. The pairs where
//! the verifier deliberately differs from math-verify are listed in the
//! fixture's README; this test checks that list is complete and exact.

use std::collections::BTreeSet;
use std::path::PathBuf;

use rlvr_verifier::{grade_with_format, GoldFormat, VerifierConfig};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/verifier")
        .join(name)
}

struct Pair {
    id: String,
    class: String,
    gold: String,
    pred: String,
    expected: bool,
    math_verify: Option<bool>,
}

fn read_pairs() -> Vec<Pair> {
    let path = fixture("pairs.jsonl");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("required fixture {} is unreadable ({e})", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
            let s = |k: &str| {
                v[k].as_str()
                    .unwrap_or_else(|| panic!("{k} in {l}"))
                    .to_string()
            };
            Pair {
                id: s("id"),
                class: s("class"),
                gold: s("gold"),
                pred: s("pred"),
                expected: v["expected"].as_bool().expect("expected"),
                math_verify: v["math_verify"].as_bool(),
            }
        })
        .collect()
}

/// Ids listed in the README's table of deliberate disagreements with math-verify.
fn listed_disagreements() -> BTreeSet<String> {
    let readme = std::fs::read_to_string(fixture("README.md")).unwrap_or_default();
    readme
        .lines()
        .filter_map(|l| l.strip_prefix("| p"))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(|digits| format!("p{digits}"))
        .collect()
}

#[test]
fn comparison_set_agrees_with_expected_verdicts() {
    let pairs = read_pairs();
    assert!(pairs.len() >= 1000, "{} pairs", pairs.len());
    let cfg = VerifierConfig::default();
    let mut misses = Vec::new();
    let (mut labelled, mut with_mv) = (0usize, 0usize);
    let mut differ_from_mv = BTreeSet::new();
    for p in &pairs {
        let g = grade_with_format(&p.pred, &p.gold, GoldFormat::Auto, &cfg);
        if g.correct != p.expected {
            misses.push(format!(
                "{} [{}] expected {}, got {} ({}, {:?} via {:?})\n    gold {:?}\n    pred {:?}",
                p.id,
                p.class,
                p.expected,
                g.correct,
                g.reason,
                g.extracted,
                g.method,
                p.gold,
                p.pred
            ));
        }
        if let Some(mv) = p.math_verify {
            labelled += 1;
            if mv == g.correct {
                with_mv += 1;
            } else {
                differ_from_mv.insert(p.id.clone());
            }
        }
    }
    let agree = pairs.len() - misses.len();
    let rate = agree as f64 / pairs.len() as f64;
    eprintln!(
        "comparison set: {} pairs; agreement with expected verdicts {agree}/{} ({:.2}%)",
        pairs.len(),
        pairs.len(),
        100.0 * rate
    );
    if labelled > 0 {
        eprintln!(
            "agreement with math-verify 0.9.0: {with_mv}/{labelled} ({:.2}%); math-verify with expected: {}/{labelled}",
            100.0 * with_mv as f64 / labelled as f64,
            pairs.iter().filter(|p| p.math_verify == Some(p.expected)).count()
        );
    }
    for m in &misses {
        eprintln!("  miss: {m}");
    }
    assert!(rate >= 0.99, "agreement {:.2}% < 99%", 100.0 * rate);
    if labelled > 0 {
        let listed = listed_disagreements();
        let unlisted: Vec<_> = differ_from_mv.difference(&listed).collect();
        let stale: Vec<_> = listed.difference(&differ_from_mv).collect();
        assert!(
            unlisted.is_empty() && stale.is_empty(),
            "README disagreement list out of date: not listed {unlisted:?}, listed but agreeing {stale:?}"
        );
    }
}
