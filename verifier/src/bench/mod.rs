//! Throughput benchmark on synthetic completions (self-contained: no data
//! files): GSM8K-style (numbers, `####`, phrases) and LaTeX-heavy (MATH-style
//! answers, boxed or not). Used by `rlvr bench verify` and `examples/bench.rs`.
//!
//! Owns: timing and the report. Must not know: how grading works.

mod gsm8k;
mod latex;

pub use gsm8k::gsm8k_style_corpus;
pub use latex::latex_style_corpus;

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
    /// Single-thread verifications per second on the LaTeX-heavy corpus
    /// ([`latex_style_corpus`], `n` items).
    pub latex_verifications_per_s: f64,
    /// Mean LaTeX-heavy completion length in bytes.
    pub latex_mean_completion_bytes: usize,
    /// How many of the LaTeX-heavy items were graded correct (about 3/4).
    pub latex_correct: usize,
}

/// A deterministic generator for the synthetic corpora.
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
    let (single, correct) = single_thread_rate(&items, &cfg);
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
    let latex_items = latex_style_corpus(n);
    let (latex_single, latex_correct) = single_thread_rate(&latex_items, &cfg);
    BenchReport {
        n,
        threads: 1,
        verifications_per_s: single,
        parallel_threads: threads,
        parallel_verifications_per_s: parallel,
        mean_completion_bytes: mean_bytes(&items),
        correct,
        latex_verifications_per_s: latex_single,
        latex_mean_completion_bytes: mean_bytes(&latex_items),
        latex_correct,
    }
}

/// Verifications per second on one thread after a warm-up (pages in code and
/// data), and how many were correct.
fn single_thread_rate(items: &[(String, String)], cfg: &VerifierConfig) -> (f64, usize) {
    let warm = items.len().min(2000);
    let _ = time_single(&items[..warm], cfg);
    let (secs, correct) = time_single(items, cfg);
    (items.len() as f64 / secs.max(1e-9), correct)
}

fn mean_bytes(items: &[(String, String)]) -> usize {
    items.iter().map(|(c, _)| c.len()).sum::<usize>() / items.len().max(1)
}
