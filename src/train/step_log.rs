//! The step log line: what metrics.jsonl records for each step (the batch's rewards, accuracy,
//! lengths, staleness, tool use and timings, then the trainer's own metrics), and the one-line summary
//! shown as progress. It must not know where lines go or how the step was run.

use anyhow::Result;
use rlvr_trainer::StepMetrics;
use serde_json::{json, Value};

use super::dynamic::DynamicStats;
use super::pipeline::ScoredJob;

/// Seconds of one step, measured by the step loop.
pub struct StepTimes {
    /// Waiting for the batch (generation and verification not hidden behind training).
    pub wait_s: f64,
    pub train_s: f64,
    /// Since the step loop started.
    pub elapsed_s: f64,
}

pub struct StepLog {
    step: u64,
    reward_mean: f64,
    reward_std: f64,
    accuracy: f64,
    boxed_frac: f64,
    response_length: f64,
    staleness_max: u64,
    generation_s: f64,
    verification_s: f64,
    generated_tokens: usize,
    tools: Option<ToolSummary>,
    dynamic: Option<DynamicStats>,
    times: StepTimes,
}

/// Tool use over a step's samples (runs with tools only).
struct ToolSummary {
    /// Samples that called a tool at least once.
    call_rate: f64,
    calls_per_sample: f64,
    turns_per_sample: f64,
    /// Calls answered with an error, over all calls.
    error_rate: f64,
    errors: usize,
    tool_s: f64,
}

impl ToolSummary {
    fn new(jobs: &[ScoredJob]) -> Option<Self> {
        let stats: Vec<_> = jobs.iter().flat_map(|job| &job.tools).collect();
        if stats.is_empty() {
            return None;
        }
        let n = stats.len() as f64;
        let calls: usize = stats.iter().map(|s| s.calls).sum();
        let errors: usize = stats.iter().map(|s| s.errors).sum();
        Some(Self {
            call_rate: stats.iter().filter(|s| s.calls > 0).count() as f64 / n,
            calls_per_sample: calls as f64 / n,
            turns_per_sample: stats.iter().map(|s| s.turns).sum::<usize>() as f64 / n,
            error_rate: errors as f64 / calls.max(1) as f64,
            errors,
            tool_s: stats.iter().map(|s| s.tool_s).sum(),
        })
    }
}

impl StepLog {
    /// Step `step` (steps done, from 1), which trained on `jobs`: the groups of batch `step - 1`.
    pub fn new(step: u64, jobs: &[ScoredJob], times: StepTimes) -> Self {
        let rewards: Vec<f64> = samples(jobs).map(|sample| sample.reward).collect();
        let count = rewards.len().max(1) as f64;
        let reward_mean = rewards.iter().sum::<f64>() / count;
        let variance = rewards
            .iter()
            .map(|r| (r - reward_mean).powi(2))
            .sum::<f64>()
            / count;
        let fraction = |flags: fn(&ScoredJob) -> &[bool]| {
            jobs.iter().flat_map(flags).filter(|flag| **flag).count() as f64 / count
        };
        let response_tokens: usize = samples(jobs).map(|s| s.completion_ids.len()).sum();
        // Every group of a batch carries the batch's generation time and tokens.
        let first = jobs.first();
        Self {
            step,
            reward_mean,
            reward_std: variance.sqrt(),
            accuracy: fraction(|job| job.correct.as_slice()),
            boxed_frac: fraction(|job| job.boxed.as_slice()),
            response_length: response_tokens as f64 / count,
            staleness_max: jobs
                .iter()
                .map(|job| (step - 1).saturating_sub(job.group.t_start))
                .max()
                .unwrap_or(0),
            generation_s: first.map_or(0.0, |job| job.gen_s),
            verification_s: jobs.iter().map(|job| job.verify_s).sum(),
            generated_tokens: first.map_or(0, |job| job.generated_tokens),
            tools: ToolSummary::new(jobs),
            dynamic: first.and_then(|job| job.dynamic.clone()),
            times,
        }
    }

    fn generation_tokens_per_s(&self) -> f64 {
        self.generated_tokens as f64 / self.generation_s.max(1e-9)
    }

    /// The metrics.jsonl line: this step's fields, then the trainer's metrics not already set.
    pub fn line(&self, metrics: &StepMetrics) -> Result<Value> {
        let mut line = json!({
            "step": self.step,
            "reward_mean": self.reward_mean,
            "reward_std": self.reward_std,
            "accuracy": self.accuracy,
            "boxed_frac": self.boxed_frac,
            "response_length": self.response_length,
            "staleness_max": self.staleness_max,
            "generation_s": self.generation_s,
            "verification_s": self.verification_s,
            "train_s": self.times.train_s,
            "wait_s": self.times.wait_s,
            "generated_tokens": self.generated_tokens,
            "generation_tokens_per_s": self.generation_tokens_per_s(),
            "elapsed_s": self.times.elapsed_s,
        });
        if let Some(t) = &self.tools {
            set_fields(
                &mut line,
                [
                    ("tool_call_rate", json!(t.call_rate)),
                    ("tool_calls_per_sample", json!(t.calls_per_sample)),
                    ("turns_per_sample", json!(t.turns_per_sample)),
                    ("tool_errors", json!(t.errors)),
                    ("tool_error_rate", json!(t.error_rate)),
                    ("tool_s", json!(t.tool_s)),
                ],
            );
        }
        if let Some(d) = &self.dynamic {
            set_fields(
                &mut line,
                [
                    ("dynamic_groups", json!(d.batch_size)),
                    ("dynamic_extra_rounds", json!(d.extra_rounds)),
                    ("dynamic_extra_groups", json!(d.extra_groups)),
                    ("dynamic_dropped_groups", json!(d.dropped_groups)),
                    ("dynamic_extra_gen_s", json!(d.extra_gen_s)),
                    ("dynamic_short", json!(d.short)),
                ],
            );
        }
        if let (Some(fields), Value::Object(trainer)) =
            (line.as_object_mut(), serde_json::to_value(metrics)?)
        {
            for (key, value) in trainer {
                fields.entry(key).or_insert(value);
            }
        }
        Ok(line)
    }

    /// The progress line.
    pub fn summary(&self, max_steps: u64, metrics: &StepMetrics) -> String {
        let mut line = self.base_summary(max_steps, metrics);
        if let Some(d) = &self.dynamic {
            line = format!(
                "{line} | dynamic +{} rounds, {} groups{}",
                d.extra_rounds,
                d.batch_size,
                if d.short { " (short: cap hit)" } else { "" }
            );
        }
        match &self.tools {
            Some(t) => format!(
                "{line} | tools {:.2}/sample ({:.0}% call) err {}",
                t.calls_per_sample,
                100.0 * t.call_rate,
                t.errors
            ),
            None => line,
        }
    }

    fn base_summary(&self, max_steps: u64, metrics: &StepMetrics) -> String {
        format!(
            "step {}/{max_steps}: reward {:.3} acc {:.3} len {:.1} H {:.3} s2t {:.1e} clip {:.3} | gen {:.1}s train {:.1}s {:.0} tok/s",
            self.step,
            self.reward_mean,
            self.accuracy,
            self.response_length,
            metrics.entropy_mean,
            metrics.s2t_masked_frac,
            metrics.clip_frac,
            self.generation_s,
            self.times.train_s,
            self.generation_tokens_per_s()
        )
    }
}

fn samples(jobs: &[ScoredJob]) -> impl Iterator<Item = &rlvr_trainer::ScoredSample> {
    jobs.iter().flat_map(|job| job.group.samples.iter())
}

/// Set `fields` on the JSON object `line` (replacing values already there).
fn set_fields<const N: usize>(line: &mut Value, fields: [(&str, Value); N]) {
    if let Some(object) = line.as_object_mut() {
        for (key, value) in fields {
            object.insert(key.into(), value);
        }
    }
}
