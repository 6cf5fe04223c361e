//! Property tests on arbitrary and adversarial strings: no panic, and every
//! call returns within 10 ms.
//!
//! The time bound is made robust for a loaded CI box: a call is timed, and only
//! if it exceeds the bound is it re-run (up to three more times); the test fails
//! when even the fastest run is over the bound. Debug builds get a 20x allowance
//! (the bound is specified for release builds).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use rlvr_verifier::{
    extract_answer, extract_gold, grade, grade_with_format, is_equivalent, GoldFormat, Reason,
    VerifierConfig,
};

fn bound() -> Duration {
    if cfg!(debug_assertions) {
        Duration::from_millis(200)
    } else {
        Duration::from_millis(10)
    }
}

/// Slowest accepted call so far (nanoseconds), for the report.
static SLOWEST_NS: AtomicU64 = AtomicU64::new(0);

/// Run `f`, timing it; retry when slow; panic if the fastest run is over the bound.
fn timed<T>(what: &str, input: &str, mut f: impl FnMut() -> T) -> T {
    let mut best = Duration::MAX;
    let mut out = None;
    for _ in 0..4 {
        let t = Instant::now();
        let r = f();
        let dt = t.elapsed();
        best = best.min(dt);
        out = Some(r);
        if best <= bound() {
            break;
        }
    }
    SLOWEST_NS.fetch_max(best.as_nanos() as u64, Ordering::Relaxed);
    assert!(
        best <= bound(),
        "{what} took {best:?} (> {:?}) on input of {} bytes starting {:?}",
        bound(),
        input.len(),
        input.chars().take(80).collect::<String>()
    );
    out.expect("ran at least once")
}

/// Exercise every public entry point on (a, b).
fn check_all(a: &str, b: &str) {
    let cfg = VerifierConfig::default();
    let g = timed("grade", a, || grade(a, b, &cfg));
    assert!(g.reward.is_finite());
    assert_ne!(g.reason, Reason::InternalError, "grade panicked internally");
    assert_eq!(g.correct, g.reason.is_match());
    timed("is_equivalent", a, || is_equivalent(a, b, &cfg));
    timed("is_equivalent(rev)", b, || is_equivalent(b, a, &cfg));
    timed("extract_answer", a, || extract_answer(a, &cfg));
    for fmt in [
        GoldFormat::Gsm8k,
        GoldFormat::Math,
        GoldFormat::Raw,
        GoldFormat::Auto,
    ] {
        timed("extract_gold", b, || extract_gold(b, fmt));
        timed("grade_with_format", a, || {
            grade_with_format(a, b, fmt, &cfg)
        });
    }
    // Reflexivity where the answer is found verbatim in a box.
    let boxed = format!("\\boxed{{{b}}}");
    timed("grade(boxed)", &boxed, || grade(&boxed, b, &cfg));
}

const FRAGMENTS: &[&str] = &[
    "\\boxed{",
    "\\fbox{",
    "}",
    "{",
    "\\frac",
    "\\dfrac",
    "\\sqrt",
    "[",
    "]",
    "(",
    ")",
    "^",
    "_",
    "10",
    "9",
    "0",
    "1",
    ".",
    "e",
    "E",
    "i",
    "x",
    "y",
    "ab",
    "\\pi",
    "\\infty",
    ",",
    "=",
    "\\pm",
    "\\cup",
    "\\{",
    "\\}",
    "\\left",
    "\\right",
    "####",
    "the answer is",
    "Answer:",
    "$",
    "$$",
    "\\text{",
    "\\mbox{",
    " ",
    "\n",
    "-",
    "+",
    "*",
    "/",
    "!",
    "%",
    "\\%",
    "1e999999",
    "e-99999",
    "\\begin{pmatrix}",
    "\\end{pmatrix}",
    "&",
    "\\\\",
    "|",
    "\\binom",
    "cm",
    "dollars",
    "°",
    "π",
    "√",
    "−",
    "∞",
    "\\circ",
    "^\\circ",
    "\\in",
    "\\sin",
    "\\log_",
    "\\ln",
    "1,000",
    ",\\!",
    "\\!",
    "\\,",
    "**",
    "`",
    "\\(",
    "\\)",
    "\\[",
    "\\]",
    "(C)",
    "\\text{(B)}",
    "52_8",
    "x \\in",
    "é",
    "日本",
    "\u{0}",
    "\\",
    "10^{10^{10}}",
    "2^{2^{2^{2^{2}}}}",
    "999999999999999999999999999999999999999",
    "0.000000000000000000000000000001",
    "170!",
    "\\binom{1000}{500}",
    "\\sqrt[3]",
    "\\le",
    "<",
    // Extraction and normalisation paths added with unboxed answers.
    "\\(",
    "\\)",
    "$$",
    "La respuesta es",
    "Ответ:",
    "答案是",
    "Final Answer",
    "**",
    "<<",
    ">>",
    "<=",
    ">=",
    "!=",
    "\\ge",
    "\\neq",
    "\\approx",
    "1{,}000",
    "1\\,000",
    "1 000",
    "\u{202f}",
    "1,22",
    ";",
    "\\text{ cm}",
    "\\mathrm{m}",
    "AZYUK2A",
    "x",
    " and ",
    " or ",
    "9999999999999999999999999999999999999999",
    "10^{40}",
    "\\boxed{1} and \\boxed{2}",
    "\\begin{array}{cc}",
    "\\end{array}",
    "\\left[",
    "\\right]",
    "\\quad",
    "\\text{and}",
    ".5",
    "<<1+1=2>>",
];

fn soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 0..120).prop_map(|v| v.concat())
}

fn any_text() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 0..300).prop_map(String::from_iter)
}

/// Cases per property: 3 x 34,000 + 2,000 > 10^5 random and adversarial
/// inputs in release builds (each checked through every entry point); fewer
/// in debug builds, which are 20-50x slower.
fn cases() -> u32 {
    if cfg!(debug_assertions) {
        1000
    } else {
        34_000
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_strings_never_panic_and_are_fast(a in any_text(), b in any_text()) {
        check_all(&a, &b);
    }

    #[test]
    fn latex_soup_never_panics_and_is_fast(a in soup(), b in soup()) {
        check_all(&a, &b);
    }

    #[test]
    fn ascii_soup_never_panics_and_is_fast(
        a in "[-+*/^(){}\\[\\]0-9a-z.,=\\\\ !|_$%#]{0,200}",
        b in "[-+*/^(){}\\[\\]0-9a-z.,=\\\\ !|_$%#]{0,200}",
    ) {
        check_all(&a, &b);
    }

    #[test]
    fn numbers_roundtrip(n in any::<i64>(), d in 1i64..1_000_000) {
        let cfg = VerifierConfig::default();
        let s = n.to_string();
        let completion = format!("#### {s}");
        let next = (n as i128 + 1).to_string();
        prop_assert!(grade(&completion, &s, &cfg).correct);
        prop_assert!(!grade(&completion, &next, &cfg).correct);
        let frac = format!("\\frac{{{n}}}{{{d}}}");
        let slash = format!("{n}/{d}");
        let ok = is_equivalent(&frac, &slash, &cfg).is_some();
        prop_assert!(ok, "{} vs {}", frac, slash);
    }
}

/// Inputs built to provoke blow-ups: huge exponents, deep nesting, long runs,
/// many unclosed boxes, megabyte-sized completions.
#[test]
fn adversarial_inputs_are_bounded() {
    let big_digits = "9".repeat(1_000_000);
    let cases: Vec<(String, String)> = vec![
        ("10^{10^{10}}".into(), "10^{10^{10}}+1".into()),
        ("\\boxed{10^{10^{10}}}".into(), "10^{10^{10^{10}}}".into()),
        ("\\boxed{1e999999}".into(), "1e999998".into()),
        ("\\boxed{2^{2^{2^{2^{2^{2}}}}}}".into(), "2^{65536}".into()),
        ("\\boxed{9^{9^{9^{9}}}}".into(), "0".into()),
        ("\\boxed{170!}".into(), "171!".into()),
        ("\\boxed{1000!!!!!!}".into(), "1".into()),
        (
            "\\boxed{\\binom{1000}{500}}".into(),
            "\\binom{1000}{499}".into(),
        ),
        (format!("\\boxed{{{}}}", "(".repeat(100_000)), "1".into()),
        ("\\boxed{".repeat(200_000), "1".into()),
        ("{".repeat(500_000), "\\frac".repeat(10_000)),
        (format!("#### {big_digits}"), big_digits.clone()),
        (big_digits.clone(), format!("{big_digits}.5")),
        ("1+".repeat(300_000), "1+".repeat(300_000)),
        ("x^".repeat(100_000), "x".into()),
        ("-".repeat(100_000) + "1", "1".into()),
        ("\\sqrt".repeat(50_000), "\\sqrt{2}".into()),
        (
            format!("\\boxed{{{}}}", "\\frac{1}{".repeat(400)),
            "1".into(),
        ),
        (
            format!(
                "\\boxed{{\\{{{}\\}}}}",
                (0..5000)
                    .map(|k| k.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            format!(
                "\\{{{}\\}}",
                (0..5000)
                    .rev()
                    .map(|k| k.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        ),
        (
            format!(
                "\\boxed{{{}}}",
                (0..31)
                    .map(|k| format!("\\binom{{1000}}{{{k}}}"))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            (0..31)
                .rev()
                .map(|k| format!("\\binom{{1000}}{{{k}}}"))
                .collect::<Vec<_>>()
                .join(","),
        ),
        (
            format!(
                "\\boxed{{{}}}",
                vec!["x^{2}+\\sqrt{x}\\sin x"; 31].join(",")
            ),
            vec!["\\sqrt{x}\\sin x + x^2 + 1"; 31].join(","),
        ),
        (
            format!(
                "\\boxed{{{}}}",
                (0..31)
                    .map(|k| format!("x+{k}y=z"))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            (0..31)
                .rev()
                .map(|k| format!("z-{k}y=x"))
                .collect::<Vec<_>>()
                .join(","),
        ),
        ("1 \\pm 2 \\pm 3 \\pm 4 \\pm 5 \\pm 6".into(), "1".into()),
        ("the answer is ".repeat(100_000), "answer".repeat(1000)),
        ("answer".repeat(200_000), "1".into()),
        ("1,".repeat(300_000), "1,000".into()),
        (".".repeat(300_000) + "5", ".5".into()),
        ("日本".repeat(200_000), "日本".into()),
        ("\\text{".repeat(100_000), "}".repeat(100_000)),
        (format!("\\boxed{{{}}}", "a".repeat(2000)), "a".repeat(2000)),
        (format!("\\boxed{{{}}}", "ab".repeat(600)), "ba".repeat(600)),
        (
            "\\begin{pmatrix}".repeat(10_000),
            "\\end{pmatrix}".repeat(10_000),
        ),
        (format!("\\boxed{{{}}}", "|".repeat(1000)), "||".into()),
        ("$".repeat(500_000), "$".repeat(500_000)),
        // Unboxed extraction: unclosed delimiters, long lines, many phrases.
        ("\\(".repeat(200_000), "1".into()),
        ("\\[".repeat(200_000), "1".into()),
        ("$ 1 ".repeat(100_000), "1".into()),
        ("5$ and $".repeat(50_000), "5".into()),
        ("x = ".repeat(100_000) + "5", "5".into()),
        ("x ".repeat(200_000), "x".into()),
        ("( ".repeat(200_000) + "1", "1".into()),
        ("1 ".repeat(200_000), "1".into()),
        ("1,".repeat(200_000) + "22", "1.22".into()),
        ("1 000 ".repeat(100_000), "1000".into()),
        ("<<".repeat(200_000), "1".into()),
        ("<<1".repeat(100_000), "1".into()),
        ("Answer: ".repeat(50_000), "1".into()),
        ("answer is x ".repeat(50_000), "x".into()),
        ("Ответ: ".repeat(50_000), "1".into()),
        ("答案是".repeat(50_000), "1".into()),
        ("respuesta ".repeat(100_000), "1".into()),
        ("\\boxed{1} and ".repeat(50_000), "1".into()),
        (
            format!("{}\\boxed{{1}}", "\\boxed{1}".repeat(100_000)),
            "1".into(),
        ),
        ("a < ".repeat(100_000) + "b", "1".into()),
        ("x \\le ".repeat(5000), "x \\le 1".into()),
        ("\\approx ".repeat(5000), "1".into()),
        (
            "{".repeat(5000) + "1,2,3" + &"}".repeat(5000),
            "1,2,3".into(),
        ),
        ("\\text{m}".repeat(5000), "1".into()),
        ("1\\,\\mathrm{m}^2 ".repeat(5000), "1".into()),
        (format!("\\boxed{{{}}}", "9".repeat(5000)), "9".repeat(5000)),
        (
            format!("{}+1", "9".repeat(1000)),
            "1".to_string() + &"0".repeat(1000),
        ),
        ("(2^{1000})^{1000}".into(), "1".into()),
        ("1000!".into(), "1000!".into()),
        ("\\boxed{1000!-1}".into(), "1000!".into()),
    ];
    for (a, b) in &cases {
        check_all(a, b);
    }
    eprintln!(
        "slowest call so far in this process: {:?}",
        Duration::from_nanos(SLOWEST_NS.load(Ordering::Relaxed))
    );
}
