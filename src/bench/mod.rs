//! `rlvr bench …`: the benchmarks, one file each, every one printing one JSON line on stdout
//! (scripts/gpu-check.sh and CI read their keys: keep them stable).
//!
//! Owns the command-line side of measuring: flags, building the workload, timing it, the JSON.
//! It must not know how a library does its work: measurements that need a crate's private
//! pieces stay in that crate (`rlvr_trainer::bench_train` uses the trainer's forward/backward
//! internals; `rlvr_verifier::bench_gsm8k_style` shares its corpus with the verifier's example)
//! and are called from here.

mod forward;
mod model;
mod rollout;
mod step;
mod train;
mod verify;

use anyhow::Result;

#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Full-sequence forward (no cache): tokens/s.
    Forward(forward::ForwardArgs),
    /// Group rollouts with the paged engine (or the naive no-cache baseline).
    Rollout(rollout::RolloutArgs),
    /// Trainer forward+backward throughput and optimizer step time (AdamW vs Magma).
    Train(train::TrainBenchArgs),
    /// Seconds per RL step of the default run and its split (generation / verification / training).
    Step(step::StepArgs),
    /// Verifier throughput on GSM8K-style completions.
    Verify(verify::VerifyBenchArgs),
}

pub fn run(cmd: &BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Forward(args) => forward::run(args),
        BenchCommand::Rollout(args) => rollout::run(args),
        BenchCommand::Train(args) => train::run(args),
        BenchCommand::Step(args) => step::run(args),
        BenchCommand::Verify(args) => verify::run(args),
    }
}
