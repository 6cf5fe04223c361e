//! `rlvr device-check`: a device (CUDA) against the CPU and transformers' goldens, in f32 and
//! bf16, and the paged runtime on that device against its own full-sequence forward. Prints one
//! JSON object; exits non-zero when a check fails.
//!
//! Owns the comparisons and their tolerances; it must not know how the model or the runtime
//! compute (it only calls their public entry points).

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

/// The items of a JSON array that `convert` accepts (none when it is not an array).
fn array_of<T>(v: &Value, convert: impl Fn(&Value) -> Option<T>) -> Vec<T> {
    v.as_array()
        .map(|items| items.iter().filter_map(&convert).collect())
        .unwrap_or_default()
}

fn u32s(v: &Value) -> Vec<u32> {
    array_of(v, |x| Some(x.as_u64()? as u32))
}

fn f32s(v: &Value) -> Vec<f32> {
    array_of(v, |x| Some(x.as_f64()? as f32))
}

fn read_cases(path: &PathBuf) -> Result<Vec<Case>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let golden: Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    let cases = golden["cases"]
        .as_array()
        .with_context(|| format!("{}: no `cases` array", path.display()))?;
    let out: Vec<Case> = cases
        .iter()
        .map(|case| Case {
            ids: u32s(&case["input_ids"]),
            top10_ids: array_of(&case["top10_ids"], |row| Some(u32s(row))),
            top10_logits: array_of(&case["top10_logits"], |row| Some(f32s(row))),
            greedy: u32s(&case["greedy_24"]),
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

/// Paged decode on a device against the same model's full forward there.
struct PagedCheck {
    max_abs_diff: f64,
    mean_abs_diff: f64,
    /// The greedy continuation of each case.
    greedy: Vec<Vec<u32>>,
    tokens: usize,
}

/// Paged decode on `model`'s device vs its own full forward: |Δ log-prob| of the generated
/// tokens, for greedy samples and for a sampled group of 4 (shared prompt blocks, copy-on-write).
fn paged_vs_full(model: &Arc<Model>, cases: &[Case]) -> Result<PagedCheck> {
    let cfg = EngineConfig {
        block_size: 16,
        kv_cache_bytes: 256 << 20,
        ..Default::default()
    };
    let mut engine = Engine::new(model.clone(), None, cfg)?;
    let mut requests: Vec<Request> = cases
        .iter()
        .map(|case| Request {
            prompt_ids: case.ids.clone(),
            params: SamplingParams::greedy(24),
            n: 1,
        })
        .collect();
    requests.extend(cases.iter().map(|case| Request {
        prompt_ids: case.ids.clone(),
        params: SamplingParams {
            temperature: 1.0,
            seed: 11,
            max_new_tokens: 32,
            ignore_eos: true,
            ..Default::default()
        },
        n: 4,
    }));
    let (mut worst, mut sum, mut tokens) = (0.0f64, 0.0f64, 0usize);
    let mut greedy = vec![vec![]; cases.len()];
    for completion in &engine.generate(requests)? {
        let mut row = completion.prompt_token_ids.clone();
        row.extend(&completion.token_ids);
        let full = log_softmax_rows(&full_logits(model, &row)?)?;
        let prompt_len = completion.prompt_token_ids.len();
        let generated = completion.token_ids.iter().zip(&completion.logprobs);
        for (t, (&token, &paged)) in generated.enumerate() {
            let diff = (full[prompt_len + t - 1][token as usize] - paged).abs() as f64;
            worst = worst.max(diff);
            sum += diff;
            tokens += 1;
        }
        if completion.request_index < cases.len() {
            greedy[completion.request_index] = completion.token_ids.clone();
        }
    }
    Ok(PagedCheck {
        max_abs_diff: worst,
        mean_abs_diff: sum / tokens.max(1) as f64,
        greedy,
        tokens,
    })
}

/// The CPU f32 reference of every case.
struct Reference {
    logits: Vec<Vec<Vec<f32>>>,
    logprobs: Vec<Vec<Vec<f32>>>,
    max_abs_logit: f64,
}

fn cpu_reference(model_spec: &str, cases: &[Case]) -> Result<Reference> {
    let cpu = load(model_spec, DType::F32, &Device::Cpu)?;
    let logits: Vec<Vec<Vec<f32>>> = cases
        .iter()
        .map(|case| full_logits(&cpu, &case.ids))
        .collect::<Result<_>>()?;
    let logprobs = logits
        .iter()
        .map(|rows| log_softmax_rows(rows))
        .collect::<Result<_>>()?;
    let max_abs_logit = logits
        .iter()
        .flatten()
        .flatten()
        .fold(0.0f64, |max, x| max.max(x.abs() as f64));
    Ok(Reference {
        logits,
        logprobs,
        max_abs_logit,
    })
}

pub fn run(args: &DeviceCheckArgs) -> Result<()> {
    let cases = read_cases(&args.golden)?;
    let device = crate::common::device(args.device.as_deref())?;
    let t0 = std::time::Instant::now();
    let reference = cpu_reference(&args.model, &cases)?;
    let mut report = json!({
        "check": "device",
        "model": args.model,
        "device": format!("{device:?}"),
        "cases": cases.len(),
        "cpu_max_abs_logit": reference.max_abs_logit,
        "flash_attn_prefill": rlvr_runtime::flash_attn_enabled() && device.is_cuda(),
    });
    let mut all_pass = true;
    for name in &args.dtypes {
        let (entry, pass) = check_dtype(args, name, &device, &cases, &reference)?;
        report[name.as_str()] = entry;
        all_pass &= pass;
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

/// One dtype on the device under test: its entry in the report, and whether it passes.
fn check_dtype(
    args: &DeviceCheckArgs,
    name: &str,
    device: &Device,
    cases: &[Case],
    reference: &Reference,
) -> Result<(Value, bool)> {
    let (dtype, tol) = match name {
        "f32" => (DType::F32, args.f32_tol),
        "bf16" => (DType::BF16, args.bf16_tol),
        "f16" => (DType::F16, args.bf16_tol),
        other => bail!("--dtypes: unknown dtype {other:?} (f32, bf16, f16)"),
    };
    let model = Arc::new(load(&args.model, dtype, device)?);
    let (mut d_logit, mut d_logprob, mut d_top10) = (0.0f64, 0.0f64, 0.0f64);
    for (i, case) in cases.iter().enumerate() {
        let logits = full_logits(&model, &case.ids)?;
        d_logit = d_logit.max(max_abs_diff(&logits, &reference.logits[i]));
        let logprobs = log_softmax_rows(&logits)?;
        d_logprob = d_logprob.max(max_abs_diff(&logprobs, &reference.logprobs[i]));
        d_top10 = d_top10.max(top10_diff(case, &logits));
    }
    let paged = paged_vs_full(&model, cases)?;
    let greedy_match: usize = cases
        .iter()
        .zip(&paged.greedy)
        .map(|(case, ours)| {
            case.greedy
                .iter()
                .zip(ours)
                .take_while(|(a, b)| a == b)
                .count()
        })
        .sum();
    let greedy_total: usize = cases.iter().map(|case| case.greedy.len()).sum();
    let rel = d_logit / reference.max_abs_logit.max(1e-12);
    let pass = if dtype == DType::F32 {
        d_logit <= tol && paged.max_abs_diff <= 10.0 * tol
    } else {
        rel <= tol && paged.mean_abs_diff <= tol
    };
    let entry = json!({
        "logits_max_abs_diff_vs_cpu_f32": d_logit,
        "logits_rel_diff_vs_cpu_f32": rel,
        "logprobs_max_abs_diff_vs_cpu_f32": d_logprob,
        "top10_logits_max_abs_diff_vs_transformers": d_top10,
        "paged_vs_full_logprob_max_abs_diff": paged.max_abs_diff,
        "paged_vs_full_logprob_mean_abs_diff": paged.mean_abs_diff,
        "paged_tokens_compared": paged.tokens,
        "greedy_tokens_matching_transformers": greedy_match,
        "greedy_tokens_total": greedy_total,
        "tolerance": tol,
        "pass": pass,
    });
    Ok((entry, pass))
}

/// Max |Δ| between our logits and transformers' top-10 logits at each position.
fn top10_diff(case: &Case, logits: &[Vec<f32>]) -> f64 {
    let mut worst = 0.0f64;
    for (pos, (ids, values)) in case.top10_ids.iter().zip(&case.top10_logits).enumerate() {
        for (&id, &value) in ids.iter().zip(values) {
            if let Some(ours) = logits.get(pos).and_then(|row| row.get(id as usize)) {
                worst = worst.max((ours - value).abs() as f64);
            }
        }
    }
    worst
}
