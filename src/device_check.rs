//! `rlvr device-check`: a device (CUDA) against the CPU and transformers' goldens, in f32 and
//! bf16, and the paged runtime on that device against its own full-sequence forward. Prints one
//! JSON object; exits non-zero when a check fails.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use rlvr_models::logprobs::log_softmax_f32;
use rlvr_models::{Batch, CausalAttention, Forward, LoadOptions, Model, ResolveOptions};
use rlvr_runtime::{Engine, EngineConfig, Request, SamplingParams};
use serde_json::{json, Value};

#[derive(clap::Args, Debug)]
pub struct DeviceCheckArgs {
    /// The model the goldens were made with (default: SmolLM2-135M-Instruct Q4_1 GGUF).
    #[arg(long, default_value = "default")]
    pub model: String,
    /// Device under test (default: cuda when built with it and present, else cpu).
    #[arg(long)]
    pub device: Option<String>,
    /// transformers' reference outputs (JSON with `cases[].input_ids`, `top10_ids`,
    /// `top10_logits`, `greedy_24`).
    #[arg(long)]
    pub golden: PathBuf,
    /// f32 passes with max |Δ logit| vs the CPU ≤ this, and paged vs full max |Δ log-prob| ≤ 10×
    /// this.
    #[arg(long, default_value_t = 1e-4)]
    pub f32_tol: f64,
    /// Half precision passes with max |Δ logit| / max |logit| vs the CPU ≤ this, and paged vs
    /// full mean |Δ log-prob| ≤ this.
    #[arg(long, default_value_t = 2e-2)]
    pub bf16_tol: f64,
    /// Dtypes to check (f32, bf16, f16); half precision uses --bf16-tol. candle's CPU backend
    /// has no bf16 matmul: a CPU dry run uses f32,f16.
    #[arg(long, value_delimiter = ',', default_value = "f32,bf16")]
    pub dtypes: Vec<String>,
}

struct Case {
    ids: Vec<u32>,
    top10_ids: Vec<Vec<u32>>,
    top10_logits: Vec<Vec<f32>>,
    greedy: Vec<u32>,
}

fn u32s(v: &Value) -> Vec<u32> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_u64)
                .map(|x| x as u32)
                .collect()
        })
        .unwrap_or_default()
}

fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_f64)
                .map(|x| x as f32)
                .collect()
        })
        .unwrap_or_default()
}

fn read_cases(path: &PathBuf) -> Result<Vec<Case>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let g: Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    let cases = g["cases"]
        .as_array()
        .with_context(|| format!("{}: no `cases` array", path.display()))?;
    let out: Vec<Case> = cases
        .iter()
        .map(|c| Case {
            ids: u32s(&c["input_ids"]),
            top10_ids: c["top10_ids"]
                .as_array()
                .map_or(vec![], |a| a.iter().map(u32s).collect()),
            top10_logits: c["top10_logits"]
                .as_array()
                .map_or(vec![], |a| a.iter().map(f32s).collect()),
            greedy: u32s(&c["greedy_24"]),
        })
        .collect();
    if out.is_empty() || out.iter().any(|c| c.ids.is_empty()) {
        bail!("{}: a case without input_ids", path.display());
    }
    Ok(out)
}

fn load(spec: &str, dtype: DType, device: &Device) -> Result<Model> {
    let opts = LoadOptions {
        dtype,
        device: device.clone(),
        resolve: ResolveOptions::default(),
    };
    Ok(rlvr_models::load(spec, &opts)
        .with_context(|| format!("loading {spec} ({dtype:?} on {device:?})"))?
        .model)
}

/// Full-sequence logits of one row, `[L][V]` in f32 on the host.
fn full_logits(model: &Model, ids: &[u32]) -> Result<Vec<Vec<f32>>> {
    let dev = model.device();
    let n = ids.len();
    let x = Tensor::from_vec(ids.to_vec(), (1, n), dev)?;
    let pos = Tensor::from_vec((0..n as u32).collect::<Vec<_>>(), (1, n), dev)?;
    let mut attn = CausalAttention::new(&[n], n, model.dtype(), dev)?.inference();
    let logits = model.forward(Batch::injected(&x, &pos, &mut attn), Forward::INFERENCE)?;
    Ok(logits
        .squeeze(0)?
        .to_dtype(DType::F32)?
        .to_device(&Device::Cpu)?
        .to_vec2::<f32>()?)
}

fn log_softmax_rows(rows: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
    let v = rows.first().map_or(0, Vec::len);
    let t = Tensor::from_vec(rows.concat(), (rows.len(), v), &Device::Cpu)?;
    Ok(log_softmax_f32(&t)?.to_vec2::<f32>()?)
}

fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs() as f64))
        .fold(0.0, f64::max)
}

/// Paged decode on `model`'s device vs its own full forward: max |Δ log-prob| of the generated
/// tokens, for greedy samples and for a sampled group of 4 (shared prompt blocks, copy-on-write).
fn paged_vs_full(model: &Arc<Model>, cases: &[Case]) -> Result<(f64, f64, Vec<Vec<u32>>, usize)> {
    let cfg = EngineConfig {
        block_size: 16,
        kv_cache_bytes: 256 << 20,
        ..Default::default()
    };
    let mut engine = Engine::new(model.clone(), None, cfg)?;
    let mut reqs: Vec<Request> = cases
        .iter()
        .map(|c| Request {
            prompt_ids: c.ids.clone(),
            params: SamplingParams::greedy(24),
            n: 1,
        })
        .collect();
    reqs.extend(cases.iter().map(|c| Request {
        prompt_ids: c.ids.clone(),
        params: SamplingParams {
            temperature: 1.0,
            seed: 11,
            max_new_tokens: 32,
            ignore_eos: true,
            ..Default::default()
        },
        n: 4,
    }));
    let outs = engine.generate(reqs)?;
    let (mut worst, mut sum) = (0.0f64, 0.0f64);
    let mut tokens = 0;
    let mut greedy = vec![vec![]; cases.len()];
    for c in &outs {
        let mut row = c.prompt_token_ids.clone();
        row.extend(&c.token_ids);
        let lp = log_softmax_rows(&full_logits(model, &row)?)?;
        let p = c.prompt_token_ids.len();
        for (t, (&tok, &eng)) in c.token_ids.iter().zip(&c.logprobs).enumerate() {
            let full = lp[p + t - 1][tok as usize];
            worst = worst.max((full - eng).abs() as f64);
            sum += (full - eng).abs() as f64;
            tokens += 1;
        }
        if c.request_index < cases.len() {
            greedy[c.request_index] = c.token_ids.clone();
        }
    }
    Ok((worst, sum / tokens.max(1) as f64, greedy, tokens))
}

pub fn run(a: &DeviceCheckArgs) -> Result<()> {
    let cases = read_cases(&a.golden)?;
    let device = crate::common::device(a.device.as_deref())?;
    let t0 = std::time::Instant::now();
    let cpu = load(&a.model, DType::F32, &Device::Cpu)?;
    let cpu_logits: Vec<Vec<Vec<f32>>> = cases
        .iter()
        .map(|c| full_logits(&cpu, &c.ids))
        .collect::<Result<_>>()?;
    let cpu_lp: Vec<Vec<Vec<f32>>> = cpu_logits
        .iter()
        .map(|l| log_softmax_rows(l))
        .collect::<Result<_>>()?;
    drop(cpu);
    let max_logit = cpu_logits
        .iter()
        .flatten()
        .flatten()
        .fold(0.0f64, |m, x| m.max(x.abs() as f64));

    let mut report = json!({
        "check": "device",
        "model": a.model,
        "device": format!("{device:?}"),
        "cases": cases.len(),
        "cpu_max_abs_logit": max_logit,
        "flash_attn_prefill": rlvr_runtime::flash_attn_enabled() && device.is_cuda(),
    });
    let mut all_pass = true;
    for name in &a.dtypes {
        let (dtype, tol) = match name.as_str() {
            "f32" => (DType::F32, a.f32_tol),
            "bf16" => (DType::BF16, a.bf16_tol),
            "f16" => (DType::F16, a.bf16_tol),
            other => bail!("--dtypes: unknown dtype {other:?} (f32, bf16, f16)"),
        };
        let model = Arc::new(load(&a.model, dtype, &device)?);
        let (mut d_logit, mut d_lp, mut d_top10) = (0.0f64, 0.0f64, 0.0f64);
        for (ci, c) in cases.iter().enumerate() {
            let l = full_logits(&model, &c.ids)?;
            d_logit = d_logit.max(max_abs_diff(&l, &cpu_logits[ci]));
            d_lp = d_lp.max(max_abs_diff(&log_softmax_rows(&l)?, &cpu_lp[ci]));
            for (pos, (ids, vals)) in c.top10_ids.iter().zip(&c.top10_logits).enumerate() {
                for (&i, &v) in ids.iter().zip(vals) {
                    if let Some(x) = l.get(pos).and_then(|r| r.get(i as usize)) {
                        d_top10 = d_top10.max((x - v).abs() as f64);
                    }
                }
            }
        }
        let (d_paged, d_paged_mean, greedy, paged_tokens) = paged_vs_full(&model, &cases)?;
        let greedy_match: usize = cases
            .iter()
            .zip(&greedy)
            .map(|(c, g)| c.greedy.iter().zip(g).take_while(|(a, b)| a == b).count())
            .sum();
        let greedy_total: usize = cases.iter().map(|c| c.greedy.len()).sum();
        let rel = d_logit / max_logit.max(1e-12);
        let pass = if dtype == DType::F32 {
            d_logit <= tol && d_paged <= 10.0 * tol
        } else {
            rel <= tol && d_paged_mean <= tol
        };
        all_pass &= pass;
        report[name.as_str()] = json!({
            "logits_max_abs_diff_vs_cpu_f32": d_logit,
            "logits_rel_diff_vs_cpu_f32": rel,
            "logprobs_max_abs_diff_vs_cpu_f32": d_lp,
            "top10_logits_max_abs_diff_vs_transformers": d_top10,
            "paged_vs_full_logprob_max_abs_diff": d_paged,
            "paged_vs_full_logprob_mean_abs_diff": d_paged_mean,
            "paged_tokens_compared": paged_tokens,
            "greedy_tokens_matching_transformers": greedy_match,
            "greedy_tokens_total": greedy_total,
            "tolerance": tol,
            "pass": pass,
        });
    }
    report["criteria"] = json!({
        "f32": "max|dlogit| vs CPU f32 <= f32_tol; paged vs full max|dlogprob| <= 10 f32_tol",
        "half": "max|dlogit|/max|logit| vs CPU f32 <= bf16_tol; paged vs full mean|dlogprob| <= bf16_tol",
    });
    report["pass"] = json!(all_pass);
    report["wall_s"] = json!(t0.elapsed().as_secs_f64());
    println!("{report}");
    if !all_pass {
        bail!("device check failed (see the JSON above)");
    }
    Ok(())
}
