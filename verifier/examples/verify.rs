//! `cargo run -p rlvr-verifier --release --example verify < pairs.jsonl`
//! grades JSON lines `{"gold", "pred", "gold_format"?}` from stdin as
//! `rlvr verify` does (default settings, `gold_format` auto), one output line
//! per input line. It needs only this crate, so it builds in seconds at any
//! revision: `scripts/verifier_reward_drift.py` uses it to grade the same
//! completions with two versions of the verifier.

fn main() {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let cfg = rlvr_verifier::VerifierConfig::default();
    if let Err(e) = rlvr_verifier::verify_jsonl(
        stdin.lock(),
        stdout.lock(),
        &cfg,
        rlvr_verifier::GoldFormat::Auto,
    ) {
        eprintln!("verify: {e}");
        std::process::exit(1);
    }
}
