//! The GSM8K-style benchmark corpus: worked solutions with calculator
//! annotations and the answer marked in the ways GSM8K graders meet.
//!
//! Owns: the synthetic GSM8K-style items. Must not know: timing or grading.

use super::Lcg;

fn with_commas(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `count` deterministic GSM8K-style `(completion, gold)` pairs: worked
/// solutions with calculator annotations ending in `#### N`, "The answer is N.",
/// `\boxed{N}`, a final sentence (last-number fallback) or `#### 1,234`;
/// three in four golds agree with the completion.
pub fn gsm8k_style_corpus(count: usize) -> Vec<(String, String)> {
    let mut rng = Lcg(0x5eed_1234_abcd_0001);
    let names = [
        "Natalia", "Weng", "Betty", "Julie", "James", "Albert", "Mark",
    ];
    let things = [
        "clips", "eggs", "pages", "apples", "dollars", "marbles", "cups",
    ];
    (0..count)
        .map(|k| {
            let name = names[rng.below(names.len() as u64) as usize];
            let thing = things[rng.below(things.len() as u64) as usize];
            let a = 2 + rng.below(90);
            let b = 2 + rng.below(12);
            let c = a * b;
            let d = 1 + rng.below(500);
            let ans = if k % 5 == 4 { c * 100 + d } else { c + d };
            let mut t = String::with_capacity(600);
            t.push_str(&format!(
                "Let's think step by step. We need the total number of {thing} {name} ends up with.\n"
            ));
            t.push_str(&format!(
                "{name} has {a} {thing} in each of {b} boxes.\nSo {name} has {a} * {b} = <<{a}*{b}={c}>>{c} {thing}.\n"
            ));
            t.push_str(&format!(
                "Then {name} gets {d} more, for a total of {c} + {d} = <<{c}+{d}={}>>{} {thing}.\n",
                c + d,
                c + d
            ));
            t.push_str(&format!(
                "Checking: {c} / {b} = <<{c}/{b}={a}>>{a}, which matches the {a} {thing} per box, so the count is consistent.\n"
            ));
            match k % 5 {
                0 => t.push_str(&format!("#### {ans}")),
                1 => t.push_str(&format!("The answer is {ans}.")),
                2 => t.push_str(&format!("So the final answer is $\\boxed{{{ans}}}$.")),
                3 => t.push_str(&format!("In the end {name} has {ans} {thing}.")),
                _ => t.push_str(&format!(
                    "Counting by hundreds gives {}.\n#### {}",
                    ans,
                    with_commas(ans)
                )),
            }
            let gold = if rng.below(4) == 0 { ans + 1 } else { ans };
            (t, gold.to_string())
        })
        .collect()
}
