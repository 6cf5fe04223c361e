//! The LaTeX-heavy benchmark corpus: MATH-style worked solutions whose
//! answers are fractions, radicals, multiples of pi, intervals, tuples, sets
//! and polynomials, written the many ways models write them and marked (or
//! not) the many ways they mark them.
//!
//! Owns: the synthetic MATH-style items. Must not know: timing or grading.

use super::Lcg;

/// One answer: the gold form and an equivalent way a model writes it.
fn answer_pair(rng: &mut Lcg) -> (String, String) {
    let a = 1 + rng.below(9);
    let b = 2 + rng.below(11);
    let c = 2 + rng.below(7);
    match rng.below(7) {
        0 => (
            format!("\\frac{{{a}}}{{{b}}}"),
            format!("\\dfrac{{{}}}{{{}}}", a * c, b * c),
        ),
        1 => (
            format!("{a}\\sqrt{{{c}}}"),
            format!("\\sqrt{{{}}}", a * a * c),
        ),
        2 => (
            format!("\\frac{{{a}\\pi}}{{{b}}}"),
            format!("\\frac{{{a}}}{{{b}}}\\pi"),
        ),
        3 => (
            format!("(-{a}, {b}]"),
            format!("\\left( -{a}, {b} \\right]"),
        ),
        4 => (
            format!("\\left( {a}, -\\frac{{{c}}}{{{b}}} \\right)"),
            format!("({a}, -{c}/{b})"),
        ),
        5 => (
            format!("\\{{{a}, {b}, {}\\}}", a + b),
            format!("\\{{{}, {b}, {a}\\}}", a + b),
        ),
        _ => (
            format!("x^2 + {}x + {}", a + c, a * c),
            format!("(x + {a})(x + {c})"),
        ),
    }
}

/// A wrong answer near `gold`'s form (a changed number).
fn near_miss(gold: &str) -> String {
    match gold.rfind(|c: char| c.is_ascii_digit()) {
        Some(k) => {
            let digit = gold.as_bytes()[k] - b'0';
            let changed = char::from(b'0' + (digit + 1) % 10);
            format!("{}{changed}{}", &gold[..k], &gold[k + 1..])
        }
        None => format!("{gold} + 1"),
    }
}

/// `count` deterministic MATH-style `(completion, gold)` pairs; the answer is
/// boxed, announced, left as the last `$…$` / `\[…\]`, or plain; three in
/// four are equivalent to the gold (written differently), one is a near miss.
pub fn latex_style_corpus(count: usize) -> Vec<(String, String)> {
    let mut rng = Lcg(0x1a7e_5eed_0bad_cafe);
    (0..count)
        .map(|k| {
            let (gold, written) = answer_pair(&mut rng);
            let pred = if rng.below(4) == 0 {
                near_miss(&written)
            } else {
                written
            };
            let p = 2 + rng.below(20);
            let q = 3 + rng.below(20);
            let mut t = String::with_capacity(700);
            t.push_str(&format!(
                "We start from the equation $x^2 - {} x + {} = 0$, whose roots satisfy \\(x_1 + x_2 = {}\\).\n",
                p + q,
                p * q,
                p + q
            ));
            t.push_str(&format!(
                "By Vieta's formulas, $x_1 x_2 = {}$, and so \\[ \\frac{{x_1 + x_2}}{{x_1 x_2}} = \\frac{{{}}}{{{}}}. \\]\n",
                p * q,
                p + q,
                p * q
            ));
            t.push_str(&format!(
                "Substituting $t = \\sqrt{{{q}}}$ gives $\\left( t^2 - {q} \\right) = 0$, which is consistent with $\\dfrac{{{p}}}{{{q}}} \\cdot {q} = {p}$.\n"
            ));
            match k % 5 {
                0 => t.push_str(&format!("Therefore the answer is $\\boxed{{{pred}}}$.")),
                1 => t.push_str(&format!("Therefore, the final answer is ${pred}$. I hope it is correct.")),
                2 => t.push_str(&format!("Putting everything together, we obtain\n\\[ {pred} \\]")),
                3 => t.push_str(&format!("This simplifies to ${pred}$.")),
                _ => t.push_str(&format!("**Final Answer:** {pred}")),
            }
            (t, gold)
        })
        .collect()
}
