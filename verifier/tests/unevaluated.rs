//! A gold number asks for a number: a prediction that is a computation with
//! the gold's value (`12 + 30` for 42, the question's operands restated) is
//! graded `unevaluated`, never correct, wherever and however it is written.
//! After `=` the right side is the answer; number notations (fractions, mixed
//! numbers, scientific notation) are numbers; a gold that is itself an
//! expression is compared by value.

use rlvr_verifier::{grade, is_equivalent, verify_jsonl, ExtractMethod, Reason, VerifierConfig};

/// (completion, gold, method the answer is found by)
const UNEVALUATED: &[(&str, &str, ExtractMethod)] = &[
    // The built-in task's collapse: the question's computation restated.
    (
        "To find the answer, add 12 and 30: 12 + 30",
        "42",
        ExtractMethod::LastExpression,
    ),
    ("12+30", "42", ExtractMethod::LastExpression),
    ("So we add: $12 + 30$", "42", ExtractMethod::Latex),
    ("So we add: \\(12 + 30\\)", "42", ExtractMethod::Latex),
    ("Adding:\n\\[ 12 + 30 \\]", "42", ExtractMethod::Latex),
    ("The answer is 12 + 30.", "42", ExtractMethod::AnswerIs),
    ("The answer is $12+30$.", "42", ExtractMethod::AnswerIs),
    ("So $\\boxed{12 + 30}$.", "42", ExtractMethod::Boxed),
    ("\\boxed{12+30}", "42", ExtractMethod::Boxed),
    // Every arithmetic operator, in LaTeX, Unicode and ASCII.
    ("We get $3 \\times 4 + 5$.", "17", ExtractMethod::Latex),
    ("The product is $6 \\cdot 7$.", "42", ExtractMethod::Latex),
    ("The product is 6 × 7", "42", ExtractMethod::LastExpression),
    ("The product is 6*7", "42", ExtractMethod::LastExpression),
    ("It is $84 \\div 2$.", "42", ExtractMethod::Latex),
    ("It is 84 ÷ 2", "42", ExtractMethod::LastExpression),
    ("The answer is 50 - 8.", "42", ExtractMethod::AnswerIs),
    ("The result is $-1.5 - 2$.", "-3.5", ExtractMethod::Latex),
    ("The result is $(6)(7)$.", "42", ExtractMethod::Latex),
    // Gold fractions and decimals are numbers too.
    (
        "So $\\frac{5}{9} + \\frac{5}{9}$.",
        "\\frac{10}{9}",
        ExtractMethod::Latex,
    ),
    (
        "So $\\frac{5}{9} + \\frac{5}{9}$.",
        "10/9",
        ExtractMethod::Latex,
    ),
    ("So \\boxed{0.25 + 0.25}", "0.5", ExtractMethod::Boxed),
    // Powers (other than scientific notation), factorials, binomials, roots.
    (
        "So there are $2^{10}$ subsets.",
        "1024",
        ExtractMethod::Latex,
    ),
    ("\\boxed{2^{10}}", "1024", ExtractMethod::Boxed),
    ("\\boxed{42^1}", "42", ExtractMethod::Boxed),
    ("The number of orders is $5!$.", "120", ExtractMethod::Latex),
    (
        "So there are $\\binom{5}{2}$ ways.",
        "10",
        ExtractMethod::Latex,
    ),
    ("The side is $\\sqrt{1764}$.", "42", ExtractMethod::Latex),
    // An assignment's right side is the answer.
    ("So $x = 12 + 30$.", "42", ExtractMethod::Latex),
    // The gold's format does not matter.
    ("\\boxed{12+30}", "#### 42", ExtractMethod::Boxed),
    ("\\boxed{12+30}", "$42$", ExtractMethod::Boxed),
];

#[test]
fn computations_are_not_answers_to_a_gold_number() {
    let cfg = VerifierConfig::default();
    let mut failures = Vec::new();
    for &(completion, gold, method) in UNEVALUATED {
        let gold =
            rlvr_verifier::extract_gold(gold, rlvr_verifier::GoldFormat::Auto).expect("gold");
        let g = grade(completion, &gold, &cfg);
        if g.correct
            || g.reward != 0.0
            || g.reason != Reason::Unevaluated
            || g.method != Some(method)
        {
            failures.push(format!("{completion:?} for {gold:?}: {g:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// (completion, gold, correct?, reason)
const WITH_EQUALS: &[(&str, &str, bool, Reason)] = &[
    (
        "To find the answer, add 12 and 30: 12 + 30 = 42",
        "42",
        true,
        Reason::MatchExact,
    ),
    ("So $12 + 30 = 42$.", "42", true, Reason::MatchExact),
    ("\\(12+30=42\\)", "42", true, Reason::MatchExact),
    ("\\boxed{12 + 30 = 42}", "42", true, Reason::MatchExact),
    ("$3 \\times 4 + 5 = 17$", "17", true, Reason::MatchExact),
    ("So $2^{10} = 1024$.", "1024", true, Reason::MatchExact),
    ("So $x = 42$.", "42", true, Reason::MatchExact),
    // A wrong value after `=`, and a computation of another value: mismatches.
    ("So $12 + 30 = 32$.", "42", false, Reason::Mismatch),
    ("\\boxed{12 + 30 = 32}", "42", false, Reason::Mismatch),
    ("The answer is $12 + 31$.", "42", false, Reason::Mismatch),
    ("12 + 30", "43", false, Reason::Mismatch),
    // `42 = 12 + 30`: the last side is the answer, and it is a computation.
    ("So $42 = 12 + 30$.", "42", false, Reason::Unevaluated),
];

#[test]
fn after_equals_the_right_side_is_the_answer() {
    let cfg = VerifierConfig::default();
    for &(completion, gold, correct, reason) in WITH_EQUALS {
        let g = grade(completion, gold, &cfg);
        assert_eq!(
            (g.correct, g.reason),
            (correct, reason),
            "{completion:?} for {gold:?}: {g:?}"
        );
    }
}

/// (prediction, gold): numbers written in a usual notation, and golds that
/// are expressions (compared by value, whichever way the prediction is written).
const STILL_EQUAL: &[(&str, &str)] = &[
    // Number notations.
    ("1.5 \\times 10^{3}", "1500"),
    ("1.5 \\cdot 10^3", "1500"),
    ("-6.72 \\times 10^{-5}", "-0.0000672"),
    ("1.5e3", "1500"),
    ("10^{6}", "1000000"),
    ("10^{36}", "1000000000000000000000000000000000000"),
    ("\\frac{84}{2}", "42"),
    ("84/2", "42"),
    ("\\frac{-3}{8}", "-\\frac{3}{8}"),
    ("-\\frac{3}{8}", "\\frac{-3}{8}"),
    ("3/-8", "-0.375"),
    ("2\\frac{1}{2}", "\\frac{5}{2}"),
    ("2 1/2", "2.5"),
    ("(42)", "42"),
    ("+42", "42"),
    ("42\\%", "42"),
    ("\\$42", "42"),
    ("42 \\text{ apples}", "42"),
    ("42^\\circ", "42"),
    ("0.5", "\\frac{1}{2}"),
    ("x = 42", "42"),
    // Golds that are expressions: compared by value.
    (
        "\\frac{1+\\sqrt{3}}{2}",
        "\\frac{1}{2} + \\frac{\\sqrt3}{2}",
    ),
    (
        "\\frac{1}{2} + \\frac{\\sqrt3}{2}",
        "\\frac{1+\\sqrt{3}}{2}",
    ),
    ("1024", "2^{10}"),
    ("2^{10}", "2^{10}"),
    ("4^5", "2^{10}"),
    ("\\sqrt{2} + 1", "1 + \\sqrt{2}"),
    ("120", "5!"),
    ("42", "12 + 30"),
    ("2\\sqrt{3}", "\\sqrt{12}"),
    ("\\pi/2", "\\frac{\\pi}{2}"),
    ("1267650600228229401496703205376", "2^{100}"),
];

#[test]
fn number_notations_and_expression_golds_still_match() {
    let cfg = VerifierConfig::default();
    let failures: Vec<String> = STILL_EQUAL
        .iter()
        .filter(|(pred, gold)| is_equivalent(pred, gold, &cfg).is_none())
        .map(|(pred, gold)| format!("{pred:?} vs {gold:?}"))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Each number of a tuple, set or list is a number: the rule holds item by item.
#[test]
fn items_of_structured_answers_are_numbers_too() {
    let cfg = VerifierConfig::default();
    for (completion, gold) in [
        ("The point is $(1+2, 4)$.", "(3, 4)"),
        ("The roots are $\\{2 \\cdot 3, 1\\}$.", "\\{1, 6\\}"),
    ] {
        let g = grade(completion, gold, &cfg);
        assert_eq!(g.reason, Reason::Unevaluated, "{completion:?}: {g:?}");
    }
    assert!(grade("The point is $(3, 4)$.", "(3, 4)", &cfg).correct);
}

/// Unevaluated is a wrong answer: a marked one gets the format reward, an
/// unmarked one nothing.
#[test]
fn unevaluated_is_rewarded_as_a_wrong_answer() {
    let cfg = VerifierConfig {
        format_reward: Some(0.1),
        boxed_bonus: 0.5,
        ..VerifierConfig::default()
    };
    let boxed = grade("\\boxed{12 + 30}", "42", &cfg);
    assert_eq!((boxed.reason, boxed.reward), (Reason::Unevaluated, 0.1));
    let unmarked = grade("So 12 + 30", "42", &cfg);
    assert_eq!(
        (unmarked.reason, unmarked.reward),
        (Reason::Unevaluated, 0.0)
    );
    assert_eq!(Reason::Unevaluated.as_str(), "unevaluated");
    assert!(!Reason::Unevaluated.is_match());
}

#[test]
fn accept_unevaluated_compares_by_value() {
    let cfg = VerifierConfig {
        accept_unevaluated: true,
        ..VerifierConfig::default()
    };
    for (completion, gold) in [
        ("So 12 + 30", "42"),
        ("\\boxed{2^{10}}", "1024"),
        ("$84 \\div 2$", "42"),
    ] {
        let g = grade(completion, gold, &cfg);
        assert!(g.correct, "{completion:?}: {g:?}");
    }
    assert!(is_equivalent("12 + 30", "42", &cfg).is_some());
    assert!(is_equivalent("12 + 30", "42", &VerifierConfig::default()).is_none());
    assert!(is_equivalent("42", "12 + 30", &VerifierConfig::default()).is_some());
}

/// `rlvr verify`'s line for the reward hack of the issue.
#[test]
fn jsonl_reports_unevaluated() {
    let input = r#"{"gold":"42","pred":"To find the answer, add 12 and 30: 12 + 30"}"#;
    let mut out = Vec::new();
    verify_jsonl(
        input.as_bytes(),
        &mut out,
        &VerifierConfig::default(),
        rlvr_verifier::GoldFormat::Auto,
    )
    .expect("verify");
    let line: serde_json::Value = serde_json::from_slice(&out).expect("json");
    assert_eq!(line["correct"], false);
    assert_eq!(line["reward"], 0.0);
    assert_eq!(line["reason"], "unevaluated");
    assert_eq!(line["extracted"], "12 + 30");
    assert_eq!(line["method"], "last_expression");
}
