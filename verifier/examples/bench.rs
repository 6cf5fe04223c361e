//! `cargo run -p rlvr-verifier --release --example bench [N] [THREADS]`
//! prints one JSON line: verifications per second on GSM8K-style completions
//! (one thread and THREADS threads) and on LaTeX-heavy completions (one thread).

fn main() {
    let mut args = std::env::args().skip(1);
    let n = args.next().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let threads = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(rayon_threads);
    let report = rlvr_verifier::bench_with_threads(n, threads);
    match serde_json::to_string(&report) {
        Ok(line) => println!("{line}"),
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::exit(1);
        }
    }
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
