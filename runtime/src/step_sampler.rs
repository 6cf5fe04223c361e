//! The sampling of one engine step: every draw of the step from the logits the runner left on
//! the model's device, on the host ([`sample`]) or with tensor ops on that device
//! ([`DeviceSampler`]).
//!
//! [`SamplerKind::Device`] copies only `[N]`-sized results to the host. Rows that ask for
//! truncation (top-k / top-p / min-p) are the documented exception: their logits rows (only
//! those) are copied and sampled on the host, because finding a truncation threshold with
//! tensor ops costs a bisection of ~30 full-vocabulary passes and the RL default samples the
//! full distribution. [`SamplerKind::Host`] copies the logits in one flat copy and samples
//! each row on the host's cores; it is the default on the CPU, where it measures faster
//! (`rlvr bench rollout --sampler host|device`).
//!
//! Owns the choice of path and the split of a step's draws between them; knows nothing of
//! scheduling or stop conditions (the caller brings each draw's parameters and RNG).

use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::device_sampler::{DeviceDraw, DeviceSampler};
use crate::error::{Ctx, Result};
use crate::rng::SeqRng;
use crate::sampler::{sample, SamplingParams, TokenChoice};

/// Where a step's tokens are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SamplerKind {
    /// Logits to the host, one row per core.
    Host,
    /// Tensor ops on the logits' device; only `[N]`-sized results come back.
    Device,
}

impl SamplerKind {
    /// The faster path for `device`: the device sampler on a GPU, the host one on the CPU.
    pub fn default_for(device: &Device) -> Self {
        if device.is_cpu() {
            SamplerKind::Host
        } else {
            SamplerKind::Device
        }
    }
}

/// One draw of a step: the logits row it reads, its request's parameters and its sequence's RNG.
pub(crate) struct Draw<'a> {
    pub row: usize,
    pub params: &'a SamplingParams,
    pub rng: &'a mut SeqRng,
}

/// Host↔device traffic of the sampling, for the step counters.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Transfers {
    pub uploads: u64,
    pub syncs: u64,
}

pub(crate) struct StepSampler {
    kind: SamplerKind,
    device: DeviceSampler,
}

impl StepSampler {
    pub fn new(kind: SamplerKind) -> Self {
        Self {
            kind,
            device: DeviceSampler::new(),
        }
    }

    pub fn kind(&self) -> SamplerKind {
        self.kind
    }

    pub fn set_kind(&mut self, kind: SamplerKind) {
        self.kind = kind;
    }

    /// One choice per draw, in order; `logits`: `[rows, vocab]` on the model's device.
    pub fn sample(
        &mut self,
        logits: &Tensor,
        draws: Vec<Draw<'_>>,
        transfers: &mut Transfers,
    ) -> Result<Vec<TokenChoice>> {
        match self.kind {
            SamplerKind::Host => {
                transfers.syncs += 1;
                let rows = logits_to_host(logits)?;
                Ok(host_sample(&rows, draws))
            }
            SamplerKind::Device => self.sample_on_device(logits, draws, transfers),
        }
    }

    fn sample_on_device(
        &mut self,
        logits: &Tensor,
        draws: Vec<Draw<'_>>,
        transfers: &mut Transfers,
    ) -> Result<Vec<TokenChoice>> {
        let n = draws.len();
        let (host_draws, device_draws): (Vec<_>, Vec<_>) = draws
            .into_iter()
            .enumerate()
            .partition(|(_, d)| d.params.truncates());
        let mut out: Vec<Option<TokenChoice>> = vec![None; n];
        if !device_draws.is_empty() {
            let rows: Vec<usize> = device_draws.iter().map(|(_, d)| d.row).collect();
            let picked = select_rows(logits, &rows, transfers)?;
            let mut plan = Vec::with_capacity(device_draws.len());
            let mut slots = Vec::with_capacity(device_draws.len());
            for (i, d) in device_draws {
                plan.push(device_draw(d.params, d.rng));
                // Greedy keeps one token: that is its support.
                slots.push((i, d.params.record_support && d.params.temperature == 0.0));
            }
            transfers.uploads += 1;
            transfers.syncs += 1;
            let choices = self.device.sample(&picked, &plan).ctx("device sampler")?;
            for ((i, greedy_support), mut c) in slots.into_iter().zip(choices) {
                if greedy_support {
                    c.support = Some(vec![c.token]);
                }
                out[i] = Some(c);
            }
        }
        if !host_draws.is_empty() {
            let rows: Vec<usize> = host_draws.iter().map(|(_, d)| d.row).collect();
            let picked = select_rows(logits, &rows, transfers)?;
            transfers.syncs += 1;
            let host_rows = logits_to_host(&picked)?;
            let (index, draws): (Vec<usize>, Vec<Draw<'_>>) = host_draws.into_iter().unzip();
            let positions: Vec<Draw<'_>> = draws
                .into_iter()
                .enumerate()
                .map(|(k, d)| Draw { row: k, ..d })
                .collect();
            for (i, c) in index.into_iter().zip(host_sample(&host_rows, positions)) {
                out[i] = Some(c);
            }
        }
        out.into_iter()
            .map(|c| c.ok_or(crate::RuntimeError::Internal("a draw got no token")))
            .collect()
    }
}

/// The device draw of one row: greedy takes no uniform (as on the host).
fn device_draw(params: &SamplingParams, rng: &mut SeqRng) -> DeviceDraw {
    if params.temperature == 0.0 {
        DeviceDraw {
            inv_temperature: 0.0,
            uniform: 0.0,
        }
    } else {
        DeviceDraw {
            inv_temperature: 1.0 / params.temperature as f64,
            uniform: rng.uniform(),
        }
    }
}

/// `logits` rows `rows`, in order (the tensor itself when that is all of it, in order).
fn select_rows(logits: &Tensor, rows: &[usize], transfers: &mut Transfers) -> Result<Tensor> {
    let total = logits.dim(0).ctx("logits rows")?;
    if rows.len() == total && rows.iter().enumerate().all(|(i, &r)| r == i) {
        return Ok(logits.clone());
    }
    transfers.uploads += 1;
    let index: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
    let index = Tensor::from_vec(index, rows.len(), logits.device()).ctx("sample row index")?;
    logits.index_select(&index, 0).ctx("sample rows")
}

/// Each draw sampled on the host from `rows[draw.row]`, spread over the cores.
fn host_sample(rows: &[Vec<f32>], draws: Vec<Draw<'_>>) -> Vec<TokenChoice> {
    draws
        .into_par_iter()
        .map(|d| sample(&rows[d.row], d.params, d.rng))
        .collect()
}

/// `[n, vocab]` logits as f32 rows on the host, in one flat copy. Half-precision logits cross
/// in their own dtype (half the bytes of f32) and are widened here, which is exact.
pub(crate) fn logits_to_host(logits: &Tensor) -> Result<Vec<Vec<f32>>> {
    fn widen<T: candle_core::WithDType>(
        logits: &Tensor,
        vocab: usize,
    ) -> candle_core::Result<Vec<Vec<f32>>> {
        let flat = logits.flatten_all()?.to_vec1::<T>()?;
        Ok(flat
            .par_chunks(vocab)
            .map(|row| row.iter().map(|x| x.to_f64() as f32).collect())
            .collect())
    }
    let (_, vocab) = logits.dims2().ctx("logits shape")?;
    let vocab = vocab.max(1);
    match logits.dtype() {
        DType::BF16 => widen::<half::bf16>(logits, vocab),
        DType::F16 => widen::<half::f16>(logits, vocab),
        DType::F32 => widen::<f32>(logits, vocab),
        _ => logits
            .to_dtype(DType::F32)
            .and_then(|l| widen::<f32>(&l, vocab)),
    }
    .ctx("logits to host")
}
