//! `rlvr verify`: grade answers with the `rlvr-verifier` crate. All logic lives
//! in the library; this file only maps flags to its configuration.

use std::io::BufWriter;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use rlvr_verifier::{GoldFormat, VerifierConfig};

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// Data file (JSONL) holding gold answers in `answer_final`, `answer` or
    /// `solution`. With --completions, prints an accuracy report. Without both,
    /// grades stdin JSONL `{"gold", "pred", "gold_format"?}` to stdout, one line
    /// per input line (a bad line gets `{"error": ...}` and the rest go on).
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,
    /// Completions file (JSONL): `{"completion": ...}` or `{"text": ...}`, with an
    /// optional 0-based `"index"`/`"prompt_index"` into --data (else line order).
    #[arg(long, value_name = "FILE")]
    pub completions: Option<PathBuf>,
    /// Where gold answers are: gsm8k (after ####), math (last \boxed), raw, auto.
    #[arg(long, default_value = "auto")]
    pub gold_format: String,
    /// Take only marked answers (\boxed, ####, "the answer is"): no fallback to
    /// the last LaTeX formula, expression or number of a completion.
    #[arg(long)]
    pub no_last_number: bool,
    /// Do not recognise "the (final) answer is ..." phrases.
    #[arg(long)]
    pub no_answer_phrase: bool,
    /// Relative tolerance for non-integer numbers (integers compare exactly).
    #[arg(long, default_value_t = 1e-6)]
    pub rel_tol: f64,
    /// Reward for a wrong answer that was explicitly marked (boxed, ####, "answer is").
    #[arg(long)]
    pub format_reward: Option<f64>,
    /// Bonus added to the reward of a correct answer inside \boxed{}.
    #[arg(long, default_value_t = 0.0)]
    pub boxed_bonus: f64,
}

fn config(args: &VerifyArgs) -> Result<VerifierConfig> {
    let cfg = VerifierConfig {
        rel_tol: args.rel_tol,
        last_number_fallback: !args.no_last_number,
        answer_phrase: !args.no_answer_phrase,
        format_reward: args.format_reward,
        boxed_bonus: args.boxed_bonus,
        ..VerifierConfig::default()
    };
    cfg.validate()?;
    Ok(cfg)
}

pub fn run(args: &VerifyArgs) -> Result<()> {
    let cfg = config(args)?;
    let fmt: GoldFormat = args.gold_format.parse()?;
    match (&args.data, &args.completions) {
        (Some(data), Some(completions)) => {
            let report = rlvr_verifier::accuracy_report(data, completions, Some(fmt), &cfg)
                .context("rlvr verify --data/--completions")?;
            println!("{}", serde_json::to_string(&report)?);
        }
        (None, None) => {
            let stdin = std::io::stdin().lock();
            let stdout = BufWriter::new(std::io::stdout().lock());
            rlvr_verifier::verify_jsonl(stdin, stdout, &cfg, fmt)
                .context("rlvr verify (JSONL on stdin)")?;
        }
        _ => bail!("--data and --completions must be given together"),
    }
    Ok(())
}
