//! Held-out evaluation with the same runtime and verifier: greedy accuracy, and mean@k / pass@k.

use std::sync::Arc;

use anyhow::Result;
use rlvr_models::{Model, TextTokenizer};
use rlvr_runtime::{Engine, EngineConfig, Request, SamplingParams};
use rlvr_verifier::{grade, VerifierConfig};
use serde::{Deserialize, Serialize};

use super::task::Problem;

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

pub struct EvalSpec<'a> {
    pub prompts: &'a [Vec<u32>],
    pub problems: &'a [Problem],
    pub k: usize,
    pub temperature: f32,
    pub max_new_tokens: usize,
    pub eos: Vec<u32>,
    pub seed: u64,
    pub verifier: &'a VerifierConfig,
}

pub fn evaluate(
    model: &Arc<Model>,
    tokenizer: &TextTokenizer,
    engine_cfg: EngineConfig,
    spec: &EvalSpec,
) -> Result<EvalResult> {
    let t0 = std::time::Instant::now();
    let mut engine = Engine::new(model.clone(), Some(tokenizer.clone()), engine_cfg)?;
    let n = spec.problems.len();
    let greedy = SamplingParams {
        stop_token_ids: spec.eos.clone(),
        ..SamplingParams::greedy(spec.max_new_tokens)
    };
    let reqs = spec
        .prompts
        .iter()
        .map(|p| Request {
            prompt_ids: p.clone(),
            params: greedy.clone(),
            n: 1,
        })
        .collect();
    let out = engine.generate(reqs)?;
    let mut correct = 0usize;
    let mut boxed = 0usize;
    let mut tokens = 0usize;
    for c in &out {
        let g = grade(&c.text, &spec.problems[c.request_index].gold, spec.verifier);
        correct += usize::from(g.correct);
        boxed += usize::from(matches!(
            g.method,
            Some(rlvr_verifier::ExtractMethod::Boxed)
        ));
        tokens += c.token_ids.len();
    }
    let mut res = EvalResult {
        problems: n,
        greedy_accuracy: correct as f64 / n.max(1) as f64,
        greedy_response_tokens: tokens as f64 / n.max(1) as f64,
        boxed_frac: boxed as f64 / n.max(1) as f64,
        k: spec.k,
        ..Default::default()
    };
    if spec.k > 0 {
        let params = SamplingParams {
            temperature: spec.temperature,
            max_new_tokens: spec.max_new_tokens,
            stop_token_ids: spec.eos.clone(),
            ..Default::default()
        };
        let reqs = spec
            .prompts
            .iter()
            .enumerate()
            .map(|(i, p)| Request {
                prompt_ids: p.clone(),
                params: SamplingParams {
                    seed: spec.seed.wrapping_add(i as u64),
                    ..params.clone()
                },
                n: spec.k,
            })
            .collect();
        let out = engine.generate(reqs)?;
        let mut per_problem = vec![0usize; n];
        for c in &out {
            if grade(&c.text, &spec.problems[c.request_index].gold, spec.verifier).correct {
                per_problem[c.request_index] += 1;
            }
        }
        res.mean_at_k = per_problem.iter().sum::<usize>() as f64 / (n * spec.k).max(1) as f64;
        res.pass_at_k = per_problem.iter().filter(|&&c| c > 0).count() as f64 / n.max(1) as f64;
    }
    res.wall_s = t0.elapsed().as_secs_f64();
    Ok(res)
}
