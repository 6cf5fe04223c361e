//! Held-out evaluation with the same runtime and verifier: greedy accuracy, and mean@k / pass@k.
//! With tools, held-out rollouts are multi-turn as in training, graded on the model's own turns.
//!
//! Owns the held-out prompts and the scoring of answers to them. It must not know about
//! training: where results are logged is the caller's business.

use std::sync::Arc;

use anyhow::Result;
use rlvr_models::{Model, TextTokenizer};
use rlvr_runtime::{Completion, Engine, EngineConfig, Request, SamplingParams};
use rlvr_verifier::{grade, ExtractMethod, VerifierConfig};
use serde::{Deserialize, Serialize};

use super::config::RunConfig;
use super::task::{encode_problem, Dataset, Problem};
use crate::tools::rollout::generate_rollouts;
use crate::tools::Tools;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalResult {
    pub problems: usize,
    /// Greedy (T = 0) accuracy.
    pub greedy_accuracy: f64,
    /// k samples per problem at the sampling temperature (0 = not run).
    pub k: usize,
    /// Mean accuracy over the k samples.
    pub mean_at_k: f64,
    /// Fraction of problems with at least one correct sample.
    pub pass_at_k: f64,
    /// Mean response length (tokens) of the greedy answers.
    pub greedy_response_tokens: f64,
    /// Greedy answers inside \boxed{}.
    pub boxed_frac: f64,
    pub wall_s: f64,
}

impl EvalResult {
    /// The line printed after an evaluation at `step`.
    pub fn summary(&self, step: u64) -> String {
        let sampled = if self.k > 0 {
            format!(
                ", mean@{k} {:.3}, pass@{k} {:.3}",
                self.mean_at_k,
                self.pass_at_k,
                k = self.k
            )
        } else {
            String::new()
        };
        format!(
            "rlvr: eval @ step {step}: greedy accuracy {:.3}{sampled} on {} held-out problems ({:.1}s)",
            self.greedy_accuracy, self.problems, self.wall_s
        )
    }
}

/// A run's held-out problems and their encoded prompts.
pub struct Evaluator {
    problems: Vec<Problem>,
    prompts: Vec<Vec<u32>>,
    tools: Option<Tools>,
}

impl Evaluator {
    /// The first `cfg.eval_size` held-out problems of `dataset`, prompted as in training.
    pub fn new(dataset: &Dataset, tokenizer: &TextTokenizer, cfg: &RunConfig) -> Result<Self> {
        let problems = dataset.eval_set(cfg.eval_size);
        let tools = cfg.tools.for_model(tokenizer, cfg.chat)?;
        let format = tools.as_ref().map(|(_, format)| format);
        let prompts = problems
            .iter()
            .map(|problem| encode_problem(tokenizer, cfg, problem, format))
            .collect::<Result<_>>()?;
        Ok(Self {
            problems,
            prompts,
            tools,
        })
    }

    pub fn run(
        &self,
        model: &Arc<Model>,
        tokenizer: &TextTokenizer,
        cfg: &RunConfig,
        eos: &[u32],
    ) -> Result<EvalResult> {
        let engine = engine_config(cfg);
        let spec = EvalSpec {
            prompts: &self.prompts,
            problems: &self.problems,
            k: cfg.eval_k,
            temperature: cfg.temperature,
            max_new_tokens: cfg.max_new_tokens,
            eos: eos.to_vec(),
            seed: cfg.seed ^ 0xE7A1,
            verifier: &cfg.verifier(),
            tools: self.tools.as_ref(),
        };
        evaluate(model, tokenizer, engine, &spec)
    }
}

/// The evaluator's engine: a second pool beside the generator's, of a fixed size (half of
/// `engine.kv_cache_mb`), not a share of the GPU.
pub fn engine_config(cfg: &RunConfig) -> EngineConfig {
    EngineConfig {
        kv_cache_bytes: (cfg.engine.kv_cache_mb << 20) / 2,
        gpu_memory_fraction: None,
        ..cfg.engine_config()
    }
}

pub struct EvalSpec<'a> {
    pub prompts: &'a [Vec<u32>],
    pub problems: &'a [Problem],
    pub k: usize,
    pub temperature: f32,
    pub max_new_tokens: usize,
    pub eos: Vec<u32>,
    pub seed: u64,
    pub verifier: &'a VerifierConfig,
    /// Multi-turn rollouts with these tools (None: single-turn).
    pub tools: Option<&'a Tools>,
}

pub fn evaluate(
    model: &Arc<Model>,
    tokenizer: &TextTokenizer,
    engine_cfg: EngineConfig,
    spec: &EvalSpec,
) -> Result<EvalResult> {
    let t0 = std::time::Instant::now();
    let mut engine = Engine::new(model.clone(), Some(tokenizer.clone()), engine_cfg)?;
    let mut result = greedy_pass(&mut engine, tokenizer, spec)?;
    if spec.k > 0 {
        let correct_per_problem = sampled_pass(&mut engine, tokenizer, spec)?;
        let problems = spec.problems.len();
        result.mean_at_k =
            correct_per_problem.iter().sum::<usize>() as f64 / (problems * spec.k).max(1) as f64;
        result.pass_at_k =
            correct_per_problem.iter().filter(|&&c| c > 0).count() as f64 / problems.max(1) as f64;
    }
    result.wall_s = t0.elapsed().as_secs_f64();
    Ok(result)
}

/// One greedy answer per problem: accuracy, boxed fraction and mean length.
fn greedy_pass(engine: &mut Engine, tok: &TextTokenizer, spec: &EvalSpec) -> Result<EvalResult> {
    let greedy = SamplingParams {
        stop_token_ids: spec.eos.clone(),
        ..SamplingParams::greedy(spec.max_new_tokens)
    };
    let requests = spec
        .prompts
        .iter()
        .map(|prompt| Request {
            prompt_ids: prompt.clone(),
            params: greedy.clone(),
            n: 1,
        })
        .collect();
    let (mut correct, mut boxed, mut tokens) = (0usize, 0usize, 0usize);
    for (completion, text, _) in &generate_rollouts(engine, tok, spec.tools, requests)? {
        let grade = grade_completion(completion, text, spec);
        correct += usize::from(grade.correct);
        boxed += usize::from(matches!(grade.method, Some(ExtractMethod::Boxed)));
        tokens += completion.token_ids.len();
    }
    let problems = spec.problems.len().max(1) as f64;
    Ok(EvalResult {
        problems: spec.problems.len(),
        greedy_accuracy: correct as f64 / problems,
        greedy_response_tokens: tokens as f64 / problems,
        boxed_frac: boxed as f64 / problems,
        k: spec.k,
        ..Default::default()
    })
}

/// `k` samples per problem at the sampling temperature: correct samples per problem.
fn sampled_pass(engine: &mut Engine, tok: &TextTokenizer, spec: &EvalSpec) -> Result<Vec<usize>> {
    let params = SamplingParams {
        temperature: spec.temperature,
        max_new_tokens: spec.max_new_tokens,
        stop_token_ids: spec.eos.clone(),
        // Problem i is seeded with seed + i.
        seed: spec.seed,
        ..Default::default()
    };
    let requests = Request::seeded_groups(spec.prompts, spec.k, &params);
    let mut correct_per_problem = vec![0usize; spec.problems.len()];
    for (completion, text, _) in &generate_rollouts(engine, tok, spec.tools, requests)? {
        if grade_completion(completion, text, spec).correct {
            correct_per_problem[completion.request_index] += 1;
        }
    }
    Ok(correct_per_problem)
}

fn grade_completion(completion: &Completion, text: &str, spec: &EvalSpec) -> rlvr_verifier::Grade {
    let gold = &spec.problems[completion.request_index].gold;
    grade(text, gold, spec.verifier)
}
