//! `rlvr bench verify`: the verifier's throughput, one JSON line. The corpus and the timing are
//! `rlvr_verifier::bench_gsm8k_style` (shared with the verifier's own example); this only adds
//! the `bench` key.

use anyhow::Result;
use serde_json::Value;

#[derive(clap::Args, Debug)]
pub struct VerifyBenchArgs {
    /// Completions to grade.
    #[arg(long, default_value_t = 200_000)]
    pub n: usize,
}

pub fn run(args: &VerifyBenchArgs) -> Result<()> {
    let report = rlvr_verifier::bench_gsm8k_style(args.n);
    let mut line = serde_json::to_value(&report)?;
    if let Value::Object(fields) = &mut line {
        fields.insert("bench".into(), "verify".into());
    }
    println!("{line}");
    Ok(())
}
