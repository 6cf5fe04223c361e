//! Shared CLI pieces: model and device options, loading with a message, JSONL reading.
//! Nothing here knows a particular command.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use rlvr_models::{LoadOptions, LoadedModel, ResolveOptions};

#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// Local HF directory, .gguf file, Hub id (owner/name) or `default` (SmolLM2-135M-Instruct).
    #[arg(long, default_value = "default")]
    pub model: String,
    /// Hub revision (branch, tag or commit).
    #[arg(long)]
    pub revision: Option<String>,
    /// cpu, cuda or cuda:N (default: cuda when built with it and a GPU is present, else cpu).
    #[arg(long)]
    pub device: Option<String>,
    /// Compute dtype: f32, bf16 or f16 (default f32 on CPU, bf16 on CUDA).
    #[arg(long)]
    pub dtype: Option<String>,
    /// A PEFT LoRA adapter directory to apply over the model (unmerged).
    #[arg(long)]
    pub adapter: Option<PathBuf>,
}

pub fn device(spec: Option<&str>) -> Result<Device> {
    match spec {
        None => Ok(default_device()),
        Some("cpu") => Ok(Device::Cpu),
        Some(s) if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal: usize = match s.strip_prefix("cuda:") {
                Some(n) => n
                    .parse()
                    .with_context(|| format!("bad device ordinal in {s:?}"))?,
                None => 0,
            };
            if !cfg!(feature = "cuda") {
                bail!("--device {s}: this rlvr binary was built without the `cuda` feature");
            }
            let d = Device::new_cuda(ordinal)
                .with_context(|| format!("opening CUDA device {ordinal} (no CUDA device?)"))?;
            configure_cuda(&d);
            Ok(d)
        }
        Some(other) => bail!("unknown device {other:?} (expected cpu, cuda or cuda:N)"),
    }
}

fn default_device() -> Device {
    if cfg!(feature = "cuda") {
        if let Ok(d) = Device::new_cuda(0) {
            configure_cuda(&d);
            return d;
        }
    }
    Device::Cpu
}

/// Let CUDA's memory pool keep freed memory (see `device_mem::keep_freed_memory`): every decode
/// step synchronises, and with the driver's default release threshold of 0 each one would hand
/// the step's activations back and map them again. `RLVR_CUDA_KEEP_FREED=0` keeps the driver's
/// default (for comparisons).
fn configure_cuda(d: &Device) {
    if cuda_keeps_freed_memory() {
        rlvr_models::device_mem::keep_freed_memory(d);
    }
}

/// Whether CUDA devices opened here keep freed memory in their pool (`RLVR_CUDA_KEEP_FREED`).
pub fn cuda_keeps_freed_memory() -> bool {
    std::env::var("RLVR_CUDA_KEEP_FREED").as_deref() != Ok("0")
}

pub fn dtype(spec: Option<&str>, device: &Device) -> Result<DType> {
    if device.is_cpu() && matches!(spec, Some("bf16") | Some("bfloat16")) {
        bail!("--dtype bf16 needs a CUDA device: candle's CPU backend has no bf16 matmul (use f32, or f16)");
    }
    Ok(match spec {
        None if device.is_cuda() => DType::BF16,
        None => DType::F32,
        Some("f32") | Some("float32") => DType::F32,
        Some("bf16") | Some("bfloat16") => DType::BF16,
        Some("f16") | Some("float16") => DType::F16,
        Some(other) => bail!("unknown dtype {other:?} (expected f32, bf16 or f16)"),
    })
}

impl ModelArgs {
    pub fn load(&self) -> Result<LoadedModel> {
        let device = device(self.device.as_deref())?;
        let dtype = dtype(self.dtype.as_deref(), &device)?;
        let opts = LoadOptions {
            dtype,
            device,
            resolve: ResolveOptions {
                revision: self.revision.clone(),
                offline: false,
            },
        };
        let loaded = rlvr_models::load(&self.model, &opts)
            .with_context(|| format!("loading model {:?}", self.model))?;
        eprintln!("rlvr: model {}: {}", self.model, loaded.description);
        let mut loaded = loaded;
        if let Some(dir) = &self.adapter {
            attach_adapter(&mut loaded.model, dir, 0)?;
        }
        Ok(loaded)
    }
}

/// Apply the PEFT adapter in `dir` to `model` (its r, α and targets from its config); `seed`
/// is kept as the adapters' seed.
pub fn attach_adapter(model: &mut rlvr_models::Model, dir: &Path, seed: u64) -> Result<()> {
    let (mut config, tensors) = rlvr_models::peft::load_adapter(dir)
        .with_context(|| format!("reading the adapter {}", dir.display()))?;
    config.seed = seed;
    let (rank, alpha) = (config.rank, config.alpha);
    let modules = rlvr_models::peft::module_names(&config.targets);
    model
        .load_lora(config, tensors, dir)
        .with_context(|| format!("applying the adapter {}", dir.display()))?;
    eprintln!(
        "rlvr: adapter {}: LoRA r={rank} alpha={alpha} on {modules}",
        dir.display()
    );
    Ok(())
}

/// The `input_ids` array of a JSONL line, checked against the vocabulary; None if absent.
pub fn input_ids(v: &serde_json::Value, vocab_size: usize) -> Result<Option<Vec<u32>>> {
    let Some(ids) = v.get("input_ids") else {
        return Ok(None);
    };
    let vocab = vocab_size as u64;
    ids.as_array()
        .context("`input_ids` must be an array of integers")?
        .iter()
        .map(|x| match x.as_u64() {
            Some(i) if i < vocab => Ok(i as u32),
            _ => bail!("`input_ids` entry {x} is not a token id below the vocabulary size {vocab}"),
        })
        .collect::<Result<Vec<u32>>>()
        .map(Some)
}

/// Read a JSONL file into values; a bad line is an error naming the file and line.
pub fn read_jsonl(path: &Path) -> Result<Vec<serde_json::Value>> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut out = vec![];
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.with_context(|| format!("{}:{}: reading", path.display(), i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not valid JSON", path.display(), i + 1))?;
        out.push(v);
    }
    Ok(out)
}

/// Peak resident set size of this process in MiB (Linux; 0 elsewhere).
pub fn peak_rss_mb() -> f64 {
    rlvr_models::device_mem::peak_mib(&Device::Cpu)
}
