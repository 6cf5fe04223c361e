//! rlvr: reinforcement learning with verifiable rewards for language models, in one binary.
//!
//! This file only maps subcommands to their modules; each command owns its flags and output
//! and calls into the crates (models, runtime, trainer, verifier) for the work.

mod bench;
mod common;
mod device_check;
mod gen_cmds;
mod hub;
mod malloc_tuning;
mod model_cmds;
mod prompt_fit;
mod push_cmd;
mod sweep;
mod tools;
mod train;
mod verify_cmd;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "rlvr",
    version,
    about = "Reinforcement learning with verifiable rewards for language models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Resolve and cache a model; print where it is and its parameter count.
    Pull(model_cmds::PullArgs),
    /// Per-token log-probs and entropies of JSONL inputs under a model.
    Score(model_cmds::ScoreArgs),
    /// Write a model as a Hugging Face directory (e.g. GGUF → safetensors).
    Export(model_cmds::ExportArgs),
    /// Upload a directory to a Hugging Face Hub model repo (created if needed).
    Push(push_cmd::PushArgs),
    /// Train a model with RL on verifiable rewards (the main job).
    Train(Box<train::TrainArgs>),
    /// Evaluate a model on held-out problems: greedy accuracy, mean@k, pass@k.
    Eval(train::EvalArgs),
    /// Grade answers: JSONL {"gold","pred"} on stdin, or an accuracy report with --data/--completions.
    Verify(verify_cmd::VerifyArgs),
    /// Sample completions with the paged runtime.
    Generate(gen_cmds::GenerateArgs),
    /// Check a device (CUDA) against the CPU and transformers' goldens in f32 and bf16, and paged
    /// decode against full forward there; prints JSON.
    DeviceCheck(device_check::DeviceCheckArgs),
    /// Run a grid of training configurations over several seeds; one summary table and plots.
    Sweep(sweep::SweepArgs),
    /// Benchmarks that print one JSON line.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

fn main() {
    malloc_tuning::apply();
    let cli = Cli::parse();
    let result: Result<()> = match &cli.command {
        Command::Pull(args) => model_cmds::pull(args),
        Command::Score(args) => model_cmds::score(args),
        Command::Export(args) => model_cmds::export(args),
        Command::Push(args) => push_cmd::push(args),
        Command::Train(args) => train::train(args),
        Command::Eval(args) => train::eval_cmd(args),
        Command::Verify(args) => verify_cmd::run(args),
        Command::Generate(args) => gen_cmds::generate(args),
        Command::DeviceCheck(args) => device_check::run(args),
        Command::Sweep(args) => sweep::sweep(args),
        Command::Bench(cmd) => bench::run(cmd),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
