//! Data-driven checks on the evaluation sets bundled in the repository's `data/` (GSM8K test,
//! MATH-500). The files are required: a missing file fails the test (it does not skip).

use std::path::PathBuf;

use rayon::prelude::*;
use rlvr_verifier::{extract_gold, grade, grade_with_format, GoldFormat, VerifierConfig};
use serde_json::Value;

fn read_jsonl(name: &str) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../data")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "required data file {} is missing or unreadable ({e}); \
             these tests read the repository's data/ folder",
            path.display()
        )
    });
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(k, l)| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}: line {}: {e}", path.display(), k + 1))
        })
        .collect()
}

fn field<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("record without string field {k:?}: {v}"))
}

/// Independent, conservative "same answer" test used only to exclude pairs of
/// problems whose reference answers are written the same way.
fn same_answer_text(a: &str, b: &str) -> bool {
    fn canon(s: &str) -> String {
        let mut t = s.replace(",\\!", "").replace("\\!", "");
        for (from, to) in [
            ("\\dfrac", "\\frac"),
            ("\\tfrac", "\\frac"),
            ("\\left", ""),
            ("\\right", ""),
            ("^\\circ", ""),
            ("^{\\circ}", ""),
            ("\\$", ""),
        ] {
            t = t.replace(from, to);
        }
        t.chars().filter(|c| !c.is_whitespace()).collect()
    }
    canon(a) == canon(b)
}

/// Grade solution `i` against gold `j` for every ordered pair `i != j` that
/// `differ(i, j)` keeps; `accepted(i, j)` describes a wrong acceptance.
/// Returns (pairs graded, wrong acceptances).
fn cross_grade(
    n: usize,
    differ: impl Fn(usize, usize) -> bool + Sync,
    accepted: impl Fn(usize, usize) -> Option<String> + Sync,
) -> (usize, Vec<String>) {
    (0..n)
        .into_par_iter()
        .map(|i| {
            let mut pairs = 0;
            let mut bad = Vec::new();
            for j in 0..n {
                if i == j || !differ(i, j) {
                    continue;
                }
                pairs += 1;
                bad.extend(accepted(i, j));
            }
            (pairs, bad)
        })
        .reduce(
            || (0, Vec::new()),
            |mut a, b| {
                a.0 += b.0;
                a.1.extend(b.1);
                a
            },
        )
}

#[test]
fn gsm8k_reference_solutions_match_their_answers() {
    let rows = read_jsonl("gsm8k_test.jsonl");
    assert_eq!(
        rows.len(),
        1319,
        "gsm8k_test.jsonl should have 1319 problems"
    );
    let cfg = VerifierConfig::default();
    let mut misses = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let sol = field(r, "answer");
        let fin = field(r, "answer_final");
        let g = grade(sol, fin, &cfg);
        let g2 = grade_with_format(sol, sol, GoldFormat::Gsm8k, &cfg);
        if !g.correct || !g2.correct || g.reward != 1.0 {
            misses.push(format!("#{i}: {:?} / {:?} vs {fin:?}", g, g2));
        }
    }
    eprintln!(
        "GSM8K self-grading: {}/{} correct",
        rows.len() - misses.len(),
        rows.len()
    );
    assert!(misses.is_empty(), "misses:\n{}", misses.join("\n"));
}

#[test]
fn gsm8k_reference_solutions_reject_other_answers() {
    let rows = read_jsonl("gsm8k_test.jsonl");
    let cfg = VerifierConfig::default();
    let sols: Vec<&str> = rows.iter().map(|r| field(r, "answer")).collect();
    let fins: Vec<&str> = rows.iter().map(|r| field(r, "answer_final")).collect();
    let n = rows.len();
    // Every ordered pair (i, j), i != j, with different final answers.
    let (pairs, wrong_accepts) = cross_grade(
        n,
        |i, j| fins[i] != fins[j],
        |i, j| {
            grade(sols[i], fins[j], &cfg).correct.then(|| {
                format!(
                    "solution #{i} ({}) accepted for gold {:?}",
                    fins[i], fins[j]
                )
            })
        },
    );
    let rate = 1.0 - wrong_accepts.len() as f64 / pairs as f64;
    eprintln!(
        "GSM8K cross-grading: {} of {pairs} pairs rejected ({:.4}%)",
        pairs - wrong_accepts.len(),
        100.0 * rate
    );
    for w in wrong_accepts.iter().take(20) {
        eprintln!("  {w}");
    }
    assert!(rate >= 0.995, "only {:.4}% rejected", 100.0 * rate);
}

#[test]
fn math500_solutions_match_their_answers() {
    let rows = read_jsonl("math500_test.jsonl");
    assert_eq!(
        rows.len(),
        500,
        "math500_test.jsonl should have 500 problems"
    );
    let cfg = VerifierConfig::default();
    let mut misses = Vec::new();
    for r in &rows {
        let sol = field(r, "solution");
        let ans = field(r, "answer");
        let g = grade(sol, ans, &cfg);
        if !g.correct {
            misses.push(format!(
                "{}: answer {ans:?}, extracted {:?}, reason {}",
                field(r, "unique_id"),
                g.extracted,
                g.reason
            ));
        }
        // The gold extracted from the solution is equivalent to the answer field.
        let from_solution = extract_gold(sol, GoldFormat::Math).unwrap_or_default();
        if rlvr_verifier::is_equivalent(&from_solution, ans, &cfg).is_none() {
            misses.push(format!(
                "{}: boxed {from_solution:?} not equivalent to answer {ans:?}",
                field(r, "unique_id")
            ));
        }
    }
    let ok = rows.len() - misses.len().min(rows.len());
    eprintln!("MATH-500 self-grading: {ok}/{} correct", rows.len());
    for m in &misses {
        eprintln!("  miss: {m}");
    }
    // Every reference solution grades correct (500/500): a change that loses
    // one is a regression, not noise.
    assert!(misses.is_empty(), "misses:\n{}", misses.join("\n"));
}

#[test]
fn math500_solutions_reject_other_answers() {
    let rows = read_jsonl("math500_test.jsonl");
    let cfg = VerifierConfig::default();
    let sols: Vec<&str> = rows.iter().map(|r| field(r, "solution")).collect();
    let answers: Vec<&str> = rows.iter().map(|r| field(r, "answer")).collect();
    let n = rows.len();
    let (pairs, wrong_accepts) = cross_grade(
        n,
        |i, j| !same_answer_text(answers[i], answers[j]),
        |i, j| {
            let g = grade(sols[i], answers[j], &cfg);
            g.correct.then(|| {
                format!(
                    "solution of {:?} accepted for gold {:?} ({})",
                    answers[i], answers[j], g.reason
                )
            })
        },
    );
    let rate = 1.0 - wrong_accepts.len() as f64 / pairs as f64;
    eprintln!(
        "MATH-500 cross-grading: {} of {pairs} pairs rejected ({:.4}%)",
        pairs - wrong_accepts.len(),
        100.0 * rate
    );
    for w in &wrong_accepts {
        eprintln!("  {w}");
    }
    assert!(rate >= 0.995, "only {:.4}% rejected", 100.0 * rate);
}
