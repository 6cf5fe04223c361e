//! Throughput benchmark on synthetic GSM8K-style completions (self-contained:
//! no data files). Used by `rlvr bench verify` and `examples/bench.rs`.

use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use crate::{grade, VerifierConfig};

/// Result of [`bench_gsm8k_style`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BenchReport {
    /// Verifications timed (per run).
    pub n: usize,
    /// Threads of the headline figure (always 1: per-core throughput).
    pub threads: usize,
    /// Single-thread verifications per second.
    pub verifications_per_s: f64,
    /// Threads used by the parallel run (`grade_batch`-style, rayon).
    pub parallel_threads: usize,
    /// Verifications per second with all `parallel_threads`.
    pub parallel_verifications_per_s: f64,
    /// Mean completion length in bytes.
    pub mean_completion_bytes: usize,
    /// How many of the `n` were graded correct (sanity check: about 3/4).
    pub correct: usize,
}

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

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

fn time_single(items: &[(String, String)], cfg: &VerifierConfig) -> (f64, usize) {
    let start = Instant::now();
    let mut correct = 0;
    for (c, g) in items {
        correct += grade(c, g, cfg).correct as usize;
    }
    (start.elapsed().as_secs_f64(), correct)
}

/// Benchmark `n` verifications single-threaded and with the current rayon pool.
pub fn bench_gsm8k_style(n: usize) -> BenchReport {
    bench_with_threads(n, rayon::current_num_threads())
}

/// As [`bench_gsm8k_style`], with an explicit thread count for the parallel run.
pub fn bench_with_threads(n: usize, threads: usize) -> BenchReport {
    let n = n.max(1);
    let threads = threads.max(1);
    let cfg = VerifierConfig::default();
    let items = gsm8k_style_corpus(n);
    let mean_bytes = items.iter().map(|(c, _)| c.len()).sum::<usize>() / n;
    // Warm-up (page in code and data), then timed runs.
    let warm = n.min(2000);
    let _ = time_single(&items[..warm], &cfg);
    let (secs, correct) = time_single(&items, &cfg);
    let single = n as f64 / secs.max(1e-9);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build();
    let parallel = match pool {
        Ok(pool) => pool.install(|| {
            let start = Instant::now();
            let c: usize = items
                .par_iter()
                .map(|(c, g)| grade(c, g, &cfg).correct as usize)
                .sum();
            std::hint::black_box(c);
            n as f64 / start.elapsed().as_secs_f64().max(1e-9)
        }),
        Err(_) => single,
    };
    BenchReport {
        n,
        threads: 1,
        verifications_per_s: single,
        parallel_threads: threads,
        parallel_verifications_per_s: parallel,
        mean_completion_bytes: mean_bytes,
        correct,
    }
}
