//! Table-driven, hand-written cases: every answer format, equal and not equal.

use rlvr_verifier::{
    extract_answer, extract_gold, grade, is_equivalent, ExtractMethod, GoldFormat, Reason,
    VerifierConfig,
};

/// (predicted answer, gold answer, equivalent?)
const EQUIV: &[(&str, &str, bool)] = &[
    // integers and decimals
    ("18", "18", true),
    ("18", "19", false),
    ("-3", "-3", true),
    ("-3", "3", false),
    ("+5", "5", true),
    ("1,080", "1080", true),
    ("1,234,567", "1234567", true),
    ("1,234,567", "1234568", false),
    ("5.0", "5", true),
    ("5.50", "5.5", true),
    ("5.05", "5.5", false),
    (".5", "0.5", true),
    ("0.5", "\\frac{1}{2}", true),
    ("0.25", "0.52", false),
    ("1000000", "1000001", false),
    ("123456789012345678", "123456789012345679", false),
    ("007", "7", true),
    ("0", "0.0", true),
    ("0", "-0", true),
    ("0.1", "0.10000000001", true),
    ("0.1", "0.1001", false),
    // percentages
    ("25\\%", "25", true),
    ("25%", "25", true),
    ("25%", "0.25", true),
    ("25 percent", "25", true),
    ("25%", "2.5", false),
    ("50\\%", "\\frac{1}{2}", true),
    ("12.5%", "12.5", true),
    // currency and units
    ("\\$18", "18", true),
    ("$18.90", "18.9", true),
    ("18 dollars", "18", true),
    ("18 dollars", "17", false),
    ("5 cm", "5", true),
    ("5cm", "5", true),
    ("5 cm", "6", false),
    ("864 \\text{ inches}^2", "864", true),
    ("15\\mbox{ cm}^2", "15", true),
    ("5.4 \\text{ cents}", "5.4", true),
    ("\\$32,\\!348", "32348", true),
    ("10,\\!080", "10080", true),
    ("11,\\! 111,\\! 111,\\! 100", "11111111100", true),
    ("11,\\! 111,\\! 111,\\! 100", "11111111110", false),
    ("18 eggs per day", "18", true),
    // scientific notation
    ("1.5e3", "1500", true),
    ("1.5E-3", "0.0015", true),
    ("2.5 \\times 10^{3}", "2500", true),
    ("6.72 \\times 10^{-5}", ".0000672", true),
    ("1e3", "100", false),
    ("1e999999", "1e999998", false),
    ("10^{10^{10}}", "10^{10^{10}+1}", false),
    // fractions
    ("\\frac{1}{2}", "\\frac12", true),
    ("\\dfrac{3}{4}", "\\frac{3}{4}", true),
    ("\\tfrac{3}{4}", "0.75", true),
    ("3/4", "\\frac{3}{4}", true),
    ("6/8", "\\frac{3}{4}", true),
    ("\\frac{3}{4}", "\\frac{4}{3}", false),
    ("\\frac 59", "\\frac{5}{9}", true),
    ("\\frac9{19}", "9/19", true),
    ("\\frac{270}7", "270/7", true),
    ("-\\frac{3}{8}", "-0.375", true),
    ("-\\frac{3}{8}", "0.375", false),
    ("\\frac{-3}{8}", "-\\frac38", true),
    ("1\\frac{4}{5}", "\\frac{9}{5}", true),
    ("1\\frac{4}{5}", "1.8", true),
    ("137 \\frac{1}{2}", "137.5", true),
    ("2 1/2", "2.5", true),
    ("2 1/2", "1", false),
    ("1\\frac{4}{5}", "\\frac{4}{5}", false),
    ("0.333333333", "\\frac{1}{3}", true),
    ("0.33", "\\frac{1}{3}", false),
    // roots, pi, degrees
    ("\\sqrt{2}", "\\sqrt2", true),
    ("2\\sqrt{5}", "\\sqrt{20}", true),
    ("\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt{3}}", true),
    ("\\frac{\\sqrt{3}}{3}", "\\frac{\\sqrt{2}}{3}", false),
    ("11\\sqrt2", "11 \\sqrt{2}", true),
    ("\\sqrt{15}", "4", false),
    ("8\\pi", "8 \\pi", true),
    ("2\\pi", "6.28", false),
    ("\\pi", "\\pi", true),
    ("\\frac{\\pi}{2}", "\\frac12\\pi", true),
    ("\\frac{20000}{\\pi}", "20000/\\pi", true),
    ("18+2\\pi", "2\\pi+18", true),
    ("30^\\circ", "30", true),
    ("30^{\\circ}", "30", true),
    ("30°", "30", true),
    ("30 degrees", "30", true),
    ("30^\\circ", "60", false),
    ("\\frac{270}7\\text{ degrees}", "\\frac{270}{7}", true),
    // text
    ("\\text{Evelyn}", "Evelyn", true),
    ("evelyn", "\\text{Evelyn}", true),
    ("\\text{Navin}", "\\text{Evelyn}", false),
    ("\\textbf{east}", "\\text{east}", true),
    ("east", "\\text{seat}", false),
    ("even", "\\text{odd}", false),
    ("\\text{ellipse}", "ellipse", true),
    // left/right, tuples, ordered pairs
    (
        "\\left( 3, \\frac{\\pi}{2} \\right)",
        "(3,\\frac{\\pi}{2})",
        true,
    ),
    ("(3, \\pi/2)", "\\left( 3, \\frac{\\pi}{2} \\right)", true),
    (
        "(\\frac{\\pi}{2}, 3)",
        "\\left( 3, \\frac{\\pi}{2} \\right)",
        false,
    ),
    ("(8,-2)", "(8, -2)", true),
    ("(-2,8)", "(8,-2)", false),
    ("(1,-16,-4,43)", "(1, -16, -4, 43)", true),
    ("(1,-16,-4)", "(1,-16,-4,43)", false),
    ("(6,31,-1)", "(6.0, 31, -1)", true),
    ("\\left( \\frac{3}{2}, -13 \\right)", "(1.5,-13)", true),
    ("8,-2", "(8,-2)", true),
    // intervals
    ("(3,4]", "(3,4]", true),
    ("(3,4)", "(3,4]", false),
    ("[3,4]", "(3,4]", false),
    (
        "\\left(\\frac{3}{5},\\frac{8}{3}\\right]",
        "(0.6, 8/3]",
        true,
    ),
    ("(-\\infty, 0]", "(-\\infty,0]", true),
    ("(-\\infty, 0]", "(-\\infty,0)", false),
    ("(5,\\infty)", "(5, \\infty)", true),
    (
        "(-\\infty, 2) \\cup (3, \\infty)",
        "(3,\\infty)\\cup(-\\infty,2)",
        true,
    ),
    (
        "(-\\infty, 2) \\cup (3, \\infty)",
        "(-\\infty, 2] \\cup (3, \\infty)",
        false,
    ),
    ("(0,9) \\cup (9,36)", "(0,9)∪(9,36)", true),
    ("[-2,7]", "x \\in [-2,7]", true),
    ("[-2,7]", "x \\in [-2,8]", false),
    (
        "\\left[ \\frac{\\pi^2}{8}, \\frac{5 \\pi^2}{4} \\right]",
        "[\\pi^2/8, 5\\pi^2/4]",
        true,
    ),
    // sets and unordered lists
    ("\\{1,2,3\\}", "\\{3,2,1\\}", true),
    ("\\{1,2\\}", "\\{1,2,3\\}", false),
    ("1,-2", "-2,1", true),
    ("1, -2", "1, 2", false),
    ("3, 5, 7", "7,3,5", true),
    ("\\{1\\pm\\sqrt{5},-2\\}", "-2, 1+\\sqrt5, 1-\\sqrt5", true),
    ("\\{1\\pm\\sqrt{5},-2\\}", "-2, 1+\\sqrt5", false),
    ("3 \\pm 2 \\sqrt{2}", "3+2\\sqrt2, 3-2\\sqrt2", true),
    ("3 \\pm 2 \\sqrt{2}", "3+2\\sqrt2", false),
    ("1 \\pm \\sqrt{19}", "1-\\sqrt{19}, 1+\\sqrt{19}", true),
    ("\\{5\\}", "5", true),
    // matrices and vectors
    (
        "\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}",
        "\\begin{bmatrix} -1 & 0 \\\\ 0 & -1 \\end{bmatrix}",
        true,
    ),
    (
        "\\begin{pmatrix} -1 & 0 \\\\ 0 & 1 \\end{pmatrix}",
        "\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}",
        false,
    ),
    (
        "\\begin{pmatrix} 1/5 \\\\ -18/5 \\end{pmatrix}",
        "\\begin{pmatrix} 0.2 \\\\ -3.6 \\end{pmatrix}",
        true,
    ),
    (
        "(16/49, 48/49, 24/49)",
        "\\begin{pmatrix} 16/49 \\\\ 48/49 \\\\ 24/49 \\end{pmatrix}",
        true,
    ),
    (
        "(16/49, 24/49, 48/49)",
        "\\begin{pmatrix} 16/49 \\\\ 48/49 \\\\ 24/49 \\end{pmatrix}",
        false,
    ),
    // equations and `x = 5`
    ("x = 5", "5", true),
    ("5", "x=5", true),
    ("x = 6", "5", false),
    ("y = 2x + 3", "y=3+2x", true),
    ("y = 2x + 3", "y=2x-3", false),
    ("y - 2x = 3", "y = 2x + 3", true),
    ("-5x + 7y - 11z - 4 = 0", "5x - 7y + 11z + 4 = 0", true),
    ("5x - 7y + 11z - 4 = 0", "5x - 7y + 11z + 4 = 0", false),
    ("k = 2", "k = 2.0", true),
    ("x = 1, x = 2", "1, 2", true),
    // algebraic expressions
    ("x^3+3x-6", "3x + x^3 - 6", true),
    ("x^3+3x-6", "x^3+3x+6", false),
    ("(a+5)(b+2)", "ab + 2a + 5b + 10", true),
    ("(a+5)(b+2)", "ab + 2a + 5b + 11", false),
    ("p - q", "-q + p", true),
    ("p - q", "q - p", false),
    ("8n^2 + 4n + 1", "1 + 4n + 8n^2", true),
    ("6r^2-4r-24", "2(3r^2-2r-12)", true),
    ("2k+2", "2(k+1)", true),
    ("2k", "2k+2", false),
    ("\\frac{11+9a}{20}", "\\frac{11}{20} + \\frac{9a}{20}", true),
    (
        "x^8 + x^7 + x^6 + x^5 + x^4 + x^3 + x^2 + x + 1",
        "\\frac{x^9-1}{x-1}",
        true,
    ),
    ("3R^2", "3 R^2", true),
    ("3R^2", "3r^2", false),
    ("5r^5", "5 r^{5}", true),
    ("\\cot x", "\\frac{\\cos x}{\\sin x}", true),
    ("\\cot x", "\\tan x", false),
    ("x", "y", false),
    ("x+1", "x-1", false),
    ("2x", "2", false),
    ("\\sqrt{x}\\sqrt{y}", "\\sqrt{xy}", true),
    // complex numbers
    ("6+9i", "9i+6", true),
    ("6+9i", "6-9i", false),
    ("1+2i", "(1+2i)", true),
    // bases
    ("52_8", "52_{8}", true),
    ("52_8", "42", false),
    ("4210_{5}", "4210_5", true),
    ("4210_{5}", "4201_5", false),
    // multiple choice
    ("C", "\\text{(C)}", true),
    ("(C)", "C", true),
    ("(c)", "\\text{(C)}", true),
    ("B", "\\text{(C)}", false),
    ("\\text{(E)}", "E", true),
    ("Option D", "(D)", true),
    // markdown and delimiters
    ("**42**", "42", true),
    ("$42$", "42", true),
    ("\\(42\\)", "42", true),
    ("`42`", "42", true),
    ("42.", "42", true),
    ("\\boxed{42}", "42", true),
    ("\\binom{6}{3}", "21", false),
    // more near misses
    ("12", "1,2", false),
    ("1, 000", "1000", false),
    ("3.14", "\\pi", false),
    ("x^2", "x^3", false),
    ("x^2", "2x", false),
    ("\\frac{1}{2}x", "\\frac{x}{2}", true),
    ("50%", "0.05", false),
    ("(1,2)", "\\{1,2\\}", false),
    ("[1,2]", "1,2", false),
    ("-\\sqrt{3}", "\\sqrt{3}", false),
    ("2^{10}", "1023", false),
    ("\\ln 2", "0.693", false),
    ("x=5", "y=5", false),
    ("A", "(B)", false),
    ("\\text{yes}", "\\text{no}", false),
    ("\\infty", "\\infty", true),
    ("-\\infty", "\\infty", false),
    ("1/2", "2/1", false),
    ("c", "\\text{(C)}", false),
    ("0.000001", "0.000002", false),
    ("1e-7", "0", false),
    ("\\frac{1}{3}", "0.3333", false),
    ("(2,4)", "(4,2)", false),
    ("\\{1,2\\}", "\\{1,2,2\\}", false),
    ("x+y", "x+z", false),
    ("\\sin^2 x + \\cos^2 x", "1", false),
    ("2\\sin x \\cos x", "\\sin(2x)", true),
    ("3 \\sqrt{5}", "\\sqrt{45}", true),
    ("3 \\sqrt{5}", "\\sqrt{15}", false),
    // word-separated lists
    ("-2 \\text{ and } 1", "1,-2", true),
    ("x = 1 \\text{ or } x = -2", "1,-2", true),
    ("1, 2, and 3", "\\{1,2,3\\}", true),
    ("1 and 3", "1,2", false),
    // assorted
    ("1 000 000", "1000000", true),
    ("1 000 000", "1000001", false),
    ("\\log_2 8", "4", false),
    ("f(x) = 2x", "2x", true),
    ("f(x) = 2x", "2x+1", false),
    ("\\frac{1}{x}", "x^{-1}", true),
    ("x^2+2x+1", "(x+1)^2", true),
    ("x^2+2x+1", "(x-1)^2", false),
    ("\\text{No solution}", "no solution", true),
    ("\\left\\{ 1, 2 \\right\\}", "\\{2,1\\}", true),
    ("[0, \\infty)", "[0,\\infty)", true),
    ("[0, \\infty)", "(0,\\infty)", false),
    ("π/2", "\\frac{\\pi}{2}", true),
    ("√3/2", "\\frac{\\sqrt{3}}{2}", true),
    ("2/\\sqrt{3}", "\\frac{2\\sqrt3}{3}", true),
    ("0.7071", "\\frac{\\sqrt2}{2}", false),
    // relations
    ("x \\le 2", "2 \\ge x", true),
    ("x <= 2", "x \\leq 2", true),
    ("x ≤ 2", "x \\leqslant 2", true),
    ("x < 2", "x \\le 2", false),
    ("x \\neq 2", "x != 2", true),
    ("x > 4", "x > 5", false),
    ("x \\le 2", "(-\\infty, 2]", true),
    ("x > 3", "(3, \\infty)", true),
    ("x > 3", "[3, \\infty)", false),
    ("1 < x \\le 3", "(1, 3]", true),
    ("3 > x > 1", "1 < x < 3", true),
    ("-2 \\le x \\le 7", "x \\in [-2, 7]", true),
    // exact integers at any length
    (
        "1000000000000000000000000000000000000",
        "1000000000000000000000000000000000001",
        false,
    ),
    ("10^{36}", "1000000000000000000000000000000000000", true),
    ("10^{36}", "1000000000000000000000000000000000001", false),
    ("10^{40}", "10^{40}+1", false),
    ("10^{40}", "1e40", true),
    ("2^{100}", "1267650600228229401496703205377", false),
    // rounding: a decimal that rounds the other value, not two chosen decimals
    ("1000000.5", "1000000.6", false),
    ("12345.67", "12345.68", false),
    ("0.30000000000000004", "0.3", true),
    ("0.333333", "\\frac{1}{3}", true),
    ("1000000", "1000000.4", false),
    // thousands separators and decimal commas
    ("1{,}000", "1000", true),
    ("1\\,000", "1000", true),
    ("1\u{202f}000", "1000", true),
    ("1,22", "1.22", true),
    ("0,111", "0.111", true),
    ("2,74 $", "2.74", true),
    ("6,8", "6 \\text{ and } 8", true),
    // units, names, grouping braces, \approx
    ("3\\,\\mathrm{m}", "3", true),
    ("5\\text{ cm}", "5", true),
    ("{1,2,3}", "3, 2, 1", true),
    ("(3,2)", "(p,q) = (3,2)", true),
    ("5", "|AB| = 5", true),
    ("11 : 21", "V_1 : V_2 = 11 : 21", true),
    ("0", "5x - 7y + 11z + 4 = 0", false),
    ("x \\approx 11", "11", true),
    ("15\\frac{39}{40}, \\frac{639}{40}", "\\frac{639}{40}", true),
    (
        "15\\frac{39}{40}, \\frac{638}{40}",
        "\\frac{639}{40}",
        false,
    ),
    ("-12; -11; -10", "\\{-10, -11, -12\\}", true),
    (
        "\\left[\\begin{array}{cc} 1 & 2 \\\\ 3 & 4 \\end{array}\\right]",
        "\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}",
        true,
    ),
    // garbage and edge cases never match
    ("", "5", false),
    ("5", "", false),
    ("\\frac{1}{0}", "\\frac{2}{0}", false),
    ("\\infty", "10^{400}", false),
    (
        "((((((((((((((((((((((((((((((((((((((((((((((((((((((((1",
        "1",
        false,
    ),
];

#[test]
fn equivalence_table() {
    assert!(EQUIV.len() >= 150, "{} cases", EQUIV.len());
    let cfg = VerifierConfig::default();
    let mut failures = Vec::new();
    let (mut eq, mut ne) = (0, 0);
    for &(pred, gold, expected) in EQUIV {
        let got = is_equivalent(pred, gold, &cfg);
        if expected {
            eq += 1;
        } else {
            ne += 1;
        }
        if got.is_some() != expected {
            failures.push(format!(
                "{pred:?} vs {gold:?}: expected {expected}, got {got:?}"
            ));
        }
        if let Some(r) = got {
            assert!(r.is_match(), "{r:?}");
        }
    }
    eprintln!(
        "equivalence table: {} cases ({eq} equal, {ne} not equal)",
        EQUIV.len()
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// (predicted answer, gold answer, equivalent?) where the direction matters:
/// a predicted equation stands for its value, a gold equation only when its
/// left side names a quantity; a gold number needs a number, a gold
/// expression only the same value.
const EQUIV_DIRECTED: &[(&str, &str, bool)] = &[
    ("a + b = 7", "7", true),
    ("3 + 4 = 7", "7", true),
    ("x = 3 + 4 = 7", "7", true),
    ("7", "a + b = 7", false),
    ("5x - 7y + 11z + 4 = 0", "0", false),
    ("x^2 + y^2 = 1", "1", true),
    ("1", "x^2 + y^2 = 1", false),
    // A gold number asks for a number: a computation with its value is not
    // the answer (`unevaluated`); the same pair the other way round (a gold
    // expression) is compared by value.
    ("\\sqrt[3]{8}", "2", false),
    ("2", "\\sqrt[3]{8}", true),
    ("\\sqrt{16}", "4", false),
    ("4", "\\sqrt{16}", true),
    ("2\\pi", "6.283185307", false),
    ("6.283185307", "2\\pi", true),
    ("e^{i\\pi}", "-1", false),
    ("-1", "e^{i\\pi}", true),
    ("i^2", "-1", false),
    ("-1", "i^2", true),
    ("\\left| -3 \\right|", "3", false),
    ("3", "\\left| -3 \\right|", true),
    ("5!", "120", false),
    ("120", "5!", true),
    ("\\binom{5}{2}", "10", false),
    ("10", "\\binom{5}{2}", true),
    ("\\dbinom{6}{3}", "20", false),
    ("20", "\\dbinom{6}{3}", true),
    ("\\sqrt{4}", "2", false),
    ("2", "\\sqrt{4}", true),
    ("2^{10}", "1024", false),
    ("1024", "2^{10}", true),
    ("e", "2.718281828", false),
    ("2.718281828", "e", true),
    ("\\cos(\\pi/2)", "0", false),
    ("0", "\\cos(\\pi/2)", true),
    ("\\sin(\\pi/6)", "\\frac12", false),
    ("\\frac12", "\\sin(\\pi/6)", true),
    ("\\log_2 8", "3", false),
    ("3", "\\log_2 8", true),
    ("2^{100}", "1267650600228229401496703205376", false),
    ("1267650600228229401496703205376", "2^{100}", true),
    ("30!", "265252859812191058636308480000000", false),
    ("265252859812191058636308480000000", "30!", true),
];

#[test]
fn directed_equivalence_table() {
    let cfg = VerifierConfig::default();
    for &(pred, gold, expected) in EQUIV_DIRECTED {
        let got = is_equivalent(pred, gold, &cfg);
        assert_eq!(got.is_some(), expected, "{pred:?} vs {gold:?}: {got:?}");
    }
}

/// Answers longer than `max_answer_bytes`, and answers that may be the tail
/// of a number cut off with a too-long completion, are never correct.
#[test]
fn too_long_answers_are_unverifiable() {
    let cfg = VerifierConfig::default();
    let a = "7".repeat(1_000_000);
    let b = "7".repeat(999_999) + "8";
    for (completion, gold) in [
        (a.clone(), b.clone()),
        (format!("#### {a}"), b.clone()),
        (format!("\\boxed{{{a}}}"), b.clone()),
        (format!("\\boxed{{{a}}}"), a.clone()),
        (
            format!("The answer is {}.", "9".repeat(2000)),
            "9".repeat(2000),
        ),
    ] {
        let g = grade(&completion, &gold, &cfg);
        assert!(!g.correct, "{:?}", g.reason);
        assert_eq!(g.reason, Reason::Unverifiable);
    }
    assert_eq!(is_equivalent(&a, &a, &cfg), None);
    assert_eq!(Reason::Unverifiable.as_str(), "unverifiable");
}

/// Equivalence is a symmetric relation on these cases.
#[test]
fn equivalence_is_symmetric_on_table() {
    let cfg = VerifierConfig::default();
    let mut failures = Vec::new();
    for &(pred, gold, _) in EQUIV {
        let ab = is_equivalent(pred, gold, &cfg).is_some();
        let ba = is_equivalent(gold, pred, &cfg).is_some();
        // Multiple-choice gold answers are deliberately strict (upper-case only).
        let choice = gold.contains("(C)") || pred.starts_with("(c)");
        if ab != ba && !choice {
            failures.push(format!("{pred:?} / {gold:?}: {ab} vs {ba}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// (completion, expected answer, expected method)
const EXTRACT: &[(&str, Option<&str>, Option<ExtractMethod>)] = &[
    (
        "so the result is \\boxed{42}.",
        Some("42"),
        Some(ExtractMethod::Boxed),
    ),
    (
        "\\boxed{1} first, then \\boxed{\\frac{1}{2}}",
        Some("\\frac{1}{2}"),
        Some(ExtractMethod::Boxed),
    ),
    (
        "nested \\boxed{\\frac{\\sqrt{3}}{2}} ok",
        Some("\\frac{\\sqrt{3}}{2}"),
        Some(ExtractMethod::Boxed),
    ),
    ("\\fbox{7}", Some("7"), Some(ExtractMethod::Boxed)),
    (
        "$\\boxed{\\{1,2\\}}$",
        Some("\\{1,2\\}"),
        Some(ExtractMethod::Boxed),
    ),
    (
        "answer \\boxed{3} and truncated \\boxed{4",
        Some("3"),
        Some(ExtractMethod::Boxed),
    ),
    (
        "9 * 2 = <<9*2=18>>18\n#### 18",
        Some("18"),
        Some(ExtractMethod::Hash),
    ),
    ("#### 1,080\n", Some("1,080"), Some(ExtractMethod::Hash)),
    (
        "The answer is 18.",
        Some("18"),
        Some(ExtractMethod::AnswerIs),
    ),
    (
        "Therefore, the final answer is $\\frac{3}{4}$. I hope",
        Some("\\frac{3}{4}"),
        Some(ExtractMethod::AnswerIs),
    ),
    (
        "**Final Answer:** 3.5\n",
        Some("3.5"),
        Some(ExtractMethod::AnswerIs),
    ),
    ("Answer: (C)", Some("(C)"), Some(ExtractMethod::AnswerIs)),
    ("THE ANSWER IS 7", Some("7"), Some(ExtractMethod::AnswerIs)),
    (
        "She has 3 apples and buys 4 more, so 7 apples.",
        Some("7"),
        Some(ExtractMethod::LastNumber),
    ),
    (
        "Total: $1,250.",
        Some("1250"),
        Some(ExtractMethod::LastNumber),
    ),
    (
        "It drops to -4 degrees",
        Some("-4"),
        Some(ExtractMethod::LastNumber),
    ),
    (
        "about 3.75 hours",
        Some("3.75"),
        Some(ExtractMethod::LastNumber),
    ),
    // unmarked answers: the last LaTeX environment or plain expression
    (
        "Thus $x <= 2$ is our answer.",
        Some("x <= 2"),
        Some(ExtractMethod::Latex),
    ),
    (
        "The interval is $[0,1)$.",
        Some("[0,1)"),
        Some(ExtractMethod::Latex),
    ),
    (
        "so it is 10/9.",
        Some("10/9"),
        Some(ExtractMethod::LastExpression),
    ),
    (
        "\\frac{10}{9}",
        Some("\\frac{10}{9}"),
        Some(ExtractMethod::LastExpression),
    ),
    (
        "We get $x = 3$, so x + 2 = 5.",
        Some("x + 2 = 5"),
        Some(ExtractMethod::LastExpression),
    ),
    (
        "about 1 000 people",
        Some("1000"),
        Some(ExtractMethod::LastNumber),
    ),
    (
        "She earns 3 + 4 = <<3+4=7>>7 dollars.",
        Some("7"),
        Some(ExtractMethod::LastNumber),
    ),
    ("The code is AZYUK2A.", None, None),
    // phrases in other languages, phrases after the box, listed boxes
    (
        "La respuesta es 18.",
        Some("18"),
        Some(ExtractMethod::AnswerIs),
    ),
    ("Ответ: 42", Some("42"), Some(ExtractMethod::AnswerIs)),
    ("所以答案是 18。", Some("18"), Some(ExtractMethod::AnswerIs)),
    (
        "\\boxed{1} and \\boxed{2}",
        Some("1, 2"),
        Some(ExtractMethod::Boxed),
    ),
    (
        "Partial $\\boxed{255}$. Final Answer: The final answer is $10,455$.",
        Some("10,455"),
        Some(ExtractMethod::AnswerIs),
    ),
    (
        "Final Answer: The volume of the box is 120. I hope it is correct.",
        Some("120"),
        Some(ExtractMethod::AnswerIs),
    ),
    (
        "Therefore $\\boxed{44}$.\n\nWe may check our answer: $17\\cdot 44 = 748$, so our answer is correct.",
        Some("44"),
        Some(ExtractMethod::Boxed),
    ),
    ("I cannot solve this.", None, None),
    ("", None, None),
];

#[test]
fn extraction_table() {
    let cfg = VerifierConfig::default();
    let mut failures = Vec::new();
    for &(text, answer, method) in EXTRACT {
        let got = extract_answer(text, &cfg);
        let ok = got.as_ref().map(|e| e.answer.as_str()) == answer
            && got.as_ref().map(|e| e.method) == method;
        if !ok {
            failures.push(format!(
                "{text:?}: expected {answer:?} {method:?}, got {got:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn last_number_fallback_is_configurable() {
    let cfg = VerifierConfig {
        last_number_fallback: false,
        ..VerifierConfig::default()
    };
    assert_eq!(extract_answer("so 7 apples", &cfg), None);
    let g = grade("so 7 apples", "7", &cfg);
    assert!(!g.correct);
    assert_eq!(g.reason, Reason::NoAnswerFound);
    let g = grade("so 7 apples", "7", &VerifierConfig::default());
    assert!(g.correct);
    assert_eq!(g.method, Some(ExtractMethod::LastNumber));
    assert_eq!(g.reward, 1.0);
}

#[test]
fn gold_formats() {
    let gsm = "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\n#### 1,080";
    assert_eq!(
        extract_gold(gsm, GoldFormat::Gsm8k).as_deref(),
        Some("1,080")
    );
    assert_eq!(
        extract_gold(gsm, GoldFormat::Auto).as_deref(),
        Some("1,080")
    );
    let math = "So $x = \\boxed{2}$ or, better, $\\boxed{\\frac{1}{2}}$.";
    assert_eq!(
        extract_gold(math, GoldFormat::Math).as_deref(),
        Some("\\frac{1}{2}")
    );
    assert_eq!(
        extract_gold(math, GoldFormat::Auto).as_deref(),
        Some("\\frac{1}{2}")
    );
    assert_eq!(extract_gold(" 42 ", GoldFormat::Raw).as_deref(), Some("42"));
    assert_eq!(extract_gold("no marker", GoldFormat::Gsm8k), None);
    assert_eq!(extract_gold("no box", GoldFormat::Math), None);
    assert_eq!(extract_gold("   ", GoldFormat::Raw), None);
    assert_eq!("gsm8k".parse::<GoldFormat>().unwrap(), GoldFormat::Gsm8k);
    assert!("latex".parse::<GoldFormat>().is_err());
}

#[test]
fn rewards_and_reasons() {
    let base = VerifierConfig::default();
    let g = grade("so \\boxed{18}", "18", &base);
    assert_eq!(
        (g.correct, g.reward, g.reason),
        (true, 1.0, Reason::MatchExact)
    );
    let g = grade("so \\boxed{0.5}", "\\frac12", &base);
    assert_eq!(g.reason, Reason::MatchNumeric);
    let g = grade("so \\boxed{2(k+1)}", "2k+2", &base);
    assert_eq!(g.reason, Reason::MatchSymbolic);
    let g = grade("so \\boxed{B}", "\\text{(B)}", &base);
    assert_eq!(g.reason, Reason::MatchChoice);
    let g = grade("so \\boxed{17}", "18", &base);
    assert_eq!(
        (g.correct, g.reward, g.reason),
        (false, 0.0, Reason::Mismatch)
    );
    assert_eq!(g.extracted.as_deref(), Some("17"));
    let g = grade("no numbers here", "18", &base);
    assert_eq!(
        (g.reward, g.reason, g.extracted),
        (0.0, Reason::NoAnswerFound, None)
    );
    let g = grade("\\boxed{18}", "  ", &base);
    assert_eq!(g.reason, Reason::NoGold);

    let shaped = VerifierConfig {
        format_reward: Some(0.1),
        boxed_bonus: 0.2,
        ..VerifierConfig::default()
    };
    assert_eq!(grade("\\boxed{18}", "18", &shaped).reward, 1.2);
    assert_eq!(grade("#### 18", "18", &shaped).reward, 1.0);
    assert_eq!(grade("\\boxed{17}", "18", &shaped).reward, 0.1);
    assert_eq!(grade("so 17", "18", &shaped).reward, 0.0);
    // Unmarked answers (a LaTeX environment, an expression) get no format reward.
    assert_eq!(grade("so it is $17$", "18", &shaped).reward, 0.0);
    assert_eq!(grade("so it is 3 + 14 = 17", "18", &shaped).reward, 0.0);
    assert_eq!(grade("The answer is 17.", "18", &shaped).reward, 0.1);

    let tight = VerifierConfig {
        rel_tol: 1e-3,
        ..VerifierConfig::default()
    };
    assert!(grade("\\boxed{3.1416}", "\\pi", &tight).correct);
    assert!(!grade("\\boxed{3.1416}", "\\pi", &base).correct);
    assert!(tight.validate().is_ok());
    assert!(VerifierConfig {
        rel_tol: f64::NAN,
        ..VerifierConfig::default()
    }
    .validate()
    .is_err());
}

#[test]
fn serde_names() {
    let g = grade("\\boxed{18}", "18", &VerifierConfig::default());
    let v = serde_json::to_value(&g).unwrap();
    assert_eq!(v["reason"], "match_exact");
    assert_eq!(v["method"], "boxed");
    assert_eq!(
        serde_json::to_value(Reason::NoAnswerFound).unwrap(),
        "no_answer_found"
    );
    assert_eq!(
        serde_json::to_value(ExtractMethod::LastNumber).unwrap(),
        "last_number"
    );
    assert_eq!(
        serde_json::to_value(ExtractMethod::AnswerIs).unwrap(),
        "answer_is"
    );
    assert_eq!(serde_json::to_value(ExtractMethod::Latex).unwrap(), "latex");
    assert_eq!(
        serde_json::to_value(ExtractMethod::LastExpression).unwrap(),
        "last_expression"
    );
    assert_eq!(
        serde_json::to_value(Reason::Unverifiable).unwrap(),
        "unverifiable"
    );
}

#[test]
fn batch_is_parallel_and_ordered() {
    let items: Vec<(String, String)> = (0..2000)
        .map(|k| {
            (
                format!("#### {k}"),
                if k % 3 == 0 { k + 1 } else { k }.to_string(),
            )
        })
        .collect();
    let out = rlvr_verifier::grade_batch(&items, &VerifierConfig::default());
    assert_eq!(out.len(), items.len());
    for (k, g) in out.iter().enumerate() {
        assert_eq!(g.correct, k % 3 != 0, "item {k}");
        assert_eq!(g.extracted.as_deref(), Some(k.to_string().as_str()));
    }
}
