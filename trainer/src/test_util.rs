//! Test helpers: tiny random models, a naive full-recompute sampler and a toy verifiable task.
//!
//! Owns the test fixtures and the reference (unfused) log-softmax and entropy. Must not be
//! reached from non-test code (it is `cfg(test)`).

use candle_core::{DType, Device, Tensor, D};
use rlvr_models::testing::f64_bits;
use rlvr_models::{Architecture, Batch, Forward, Model, ModelConfig};

use crate::config::TrainerConfig;
use crate::data::{ScoredGroup, ScoredSample};
use crate::optim::{LrSchedule, OptimizerKind};
use crate::rng::SplitMix64;

pub const VOCAB: usize = 32;
pub const BOS: u32 = 1;
pub const EOS: u32 = 2;
/// Digits of the toy task are token ids DIGIT0..DIGIT0+N_DIGITS.
pub const DIGIT0: u32 = 3;
pub const N_DIGITS: u32 = 8;

pub fn tiny_config(layers: usize, hidden: usize) -> ModelConfig {
    ModelConfig {
        rms_norm_eps: 1e-5,
        max_position_embeddings: 64,
        tie_word_embeddings: false,
        bos_token_id: Some(BOS),
        eos_token_ids: vec![EOS],
        ..ModelConfig::tiny(Architecture::Llama, VOCAB, hidden, layers)
    }
}

pub fn tiny_model(seed: u64) -> Model {
    Model::random(tiny_config(2, 16), seed, DType::F32, &Device::Cpu).expect("tiny model")
}

pub fn tiny_model_with(layers: usize, hidden: usize) -> Model {
    Model::random(tiny_config(layers, hidden), 0, DType::F32, &Device::Cpu).expect("tiny model")
}

pub fn tiny_model_f64(seed: u64) -> Model {
    Model::random(tiny_config(2, 16), seed, DType::F64, &Device::Cpu).expect("tiny model")
}

/// A test config: one optimizer step per mini-batch, no warm-up, no weight decay.
pub fn toy_config(kind: OptimizerKind, lr: f64) -> TrainerConfig {
    let mut c = TrainerConfig {
        num_minibatches: 2,
        micro_batch_size: 8,
        ..Default::default()
    };
    c.optimizer.kind = kind;
    c.optimizer.lr = lr;
    c.optimizer.schedule = LrSchedule::Constant { warmup_steps: 0 };
    c.optimizer.adamw.weight_decay = 0.0;
    c
}

/// One sampled completion with its per-token statistics.
pub struct Sampled {
    pub completion: Vec<u32>,
    pub behaviour: Vec<f32>,
    pub raw: Vec<f32>,
    pub entropies: Vec<f32>,
}

/// Naive sampler: recompute the full forward for every new token; sample from softmax(logits/T)
/// with a seeded RNG and record the log-probs. All rows of one call share the prompt length, so
/// unfinished rows stay equally long.
pub fn naive_sample(
    model: &Model,
    prompts: &[Vec<u32>],
    max_new: usize,
    temperature: f64,
    rng: &mut SplitMix64,
) -> Vec<Sampled> {
    let mut rows: Vec<Vec<u32>> = prompts.to_vec();
    let mut out: Vec<Sampled> = prompts
        .iter()
        .map(|_| Sampled {
            completion: vec![],
            behaviour: vec![],
            raw: vec![],
            entropies: vec![],
        })
        .collect();
    let mut active: Vec<usize> = (0..prompts.len()).collect();
    for _ in 0..max_new {
        if active.is_empty() {
            break;
        }
        let batch: Vec<Vec<u32>> = active.iter().map(|&i| rows[i].clone()).collect();
        let logits = model
            .forward(Batch::padded(&batch, 0), Forward::INFERENCE)
            .expect("forward");
        let (b, s, _) = logits.dims3().expect("dims");
        let last = logits
            .narrow(1, s - 1, 1)
            .expect("narrow")
            .squeeze(1)
            .expect("squeeze");
        let lp_t = log_softmax(&last.affine(1.0 / temperature, 0.0).expect("temp")).expect("lsm");
        let lp_1 = log_softmax(&last).expect("lsm");
        let ent = entropy_rows(&lp_1)
            .expect("ent")
            .to_vec1::<f32>()
            .expect("vec");
        let lp_t = lp_t.to_vec2::<f32>().expect("vec");
        let lp_1 = lp_1.to_vec2::<f32>().expect("vec");
        let mut still = Vec::new();
        for k in 0..b {
            let i = active[k];
            let u = rng.uniform();
            let mut cum = 0.0;
            let mut tok = lp_t[k].len() - 1;
            for (v, &l) in lp_t[k].iter().enumerate() {
                cum += (l as f64).exp();
                if u < cum {
                    tok = v;
                    break;
                }
            }
            rows[i].push(tok as u32);
            let o = &mut out[i];
            o.completion.push(tok as u32);
            o.behaviour.push(lp_t[k][tok]);
            o.raw.push(lp_1[k][tok]);
            o.entropies.push(ent[k]);
            if tok as u32 != EOS {
                still.push(i);
            }
        }
        active = still;
    }
    out
}

/// Toy verifiable task: prompt `[BOS, d]`, reward 1 iff the first generated token is `d`.
pub fn toy_reward(prompt: &[u32], completion: &[u32]) -> f64 {
    (completion.first() == prompt.last()) as u8 as f64
}

/// `n_prompts` groups of `g` samples of the toy task, sampled from `model` at T = 1.
pub fn toy_rollouts(model: &Model, n_prompts: usize, g: usize, seed: u64) -> Vec<ScoredGroup> {
    toy_rollouts_at(model, n_prompts, g, &mut SplitMix64::new(seed), 1.0, 0)
}

pub fn toy_rollouts_at(
    model: &Model,
    n_prompts: usize,
    g: usize,
    rng: &mut SplitMix64,
    temperature: f64,
    version: u64,
) -> Vec<ScoredGroup> {
    let prompts: Vec<Vec<u32>> = (0..n_prompts)
        .map(|_| vec![BOS, DIGIT0 + rng.below(N_DIGITS as usize) as u32])
        .collect();
    let flat: Vec<Vec<u32>> = prompts
        .iter()
        .flat_map(|p| std::iter::repeat_n(p.clone(), g))
        .collect();
    let sampled = naive_sample(model, &flat, 3, temperature, rng);
    let mut it = sampled.into_iter();
    prompts
        .iter()
        .enumerate()
        .map(|(pi, p)| ScoredGroup {
            prompt_id: pi as u64,
            t_start: 0,
            samples: it
                .by_ref()
                .take(g)
                .map(|s| ScoredSample {
                    prompt_ids: p.clone(),
                    reward: toy_reward(p, &s.completion),
                    policy_versions: vec![version; s.completion.len()],
                    finish_reason: if s.completion.last() == Some(&EOS) {
                        "eos".into()
                    } else {
                        "length".into()
                    },
                    completion_ids: s.completion,
                    behaviour_logprobs: s.behaviour,
                    raw_logprobs: s.raw,
                    entropies: s.entropies,
                    sampling_support: vec![],
                    generated_mask: vec![],
                })
                .collect(),
        })
        .collect()
}

/// Random groups (random completions, rewards and behaviour log-probs) for loss tests.
pub fn random_groups(n_groups: usize, g: usize, seed: u64) -> Vec<ScoredGroup> {
    let mut rng = SplitMix64::new(seed);
    (0..n_groups)
        .map(|gi| ScoredGroup {
            prompt_id: gi as u64,
            t_start: 0,
            samples: (0..g)
                .map(|_| {
                    let plen = 1 + rng.below(3);
                    let clen = 1 + rng.below(5);
                    let prompt: Vec<u32> = (0..plen).map(|_| rng.below(VOCAB) as u32).collect();
                    let comp: Vec<u32> = (0..clen).map(|_| rng.below(VOCAB) as u32).collect();
                    ScoredSample {
                        prompt_ids: prompt,
                        behaviour_logprobs: (0..clen)
                            .map(|_| (-3.5 + 0.3 * rng.normal()) as f32)
                            .collect(),
                        raw_logprobs: vec![],
                        entropies: vec![],
                        policy_versions: vec![],
                        sampling_support: vec![],
                        generated_mask: vec![],
                        completion_ids: comp,
                        reward: rng.below(2) as f64,
                        finish_reason: "eos".into(),
                    }
                })
                .collect(),
        })
        .collect()
}

/// All weights as bit patterns, by name.
pub fn weight_bits(model: &Model) -> Vec<(String, Vec<u64>)> {
    model
        .named_vars()
        .map(|(n, v)| (n.to_string(), f64_bits(&v.as_detached_tensor())))
        .collect()
}

/// Log-softmax over the last dim, in the input's dtype, from autograd-capable ops (the
/// reference the fused kernels are checked against).
pub fn log_softmax(x: &Tensor) -> candle_core::Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?;
    let shifted = x.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    shifted.broadcast_sub(&lse)
}

/// Entropy of each row of log-probs `[N, V]`: `[N]`.
pub fn entropy_rows(log_probs: &Tensor) -> candle_core::Result<Tensor> {
    (log_probs.exp()? * log_probs)?.sum(D::Minus1)?.neg()
}
