//! Our own AdamW (readable `m`, `v`), optionally wrapped by Magma or SkipUpdate, with global-norm
//! clipping and LR schedules. Parameters are updated in place (`Var::set`), so the runtime sees
//! the new weights with zero copies.

pub mod adamw;
mod fused;
pub mod magma;
pub mod schedule;

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

pub use adamw::AdamWConfig;
pub use magma::{MagmaConfig, MaskScope};
pub use schedule::LrSchedule;

use crate::error::{Result, TrainerError};
use crate::rng::SplitMix64;
use magma::ScalarF64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    AdamW,
    /// AdamW displacement, per-tensor Bernoulli(p) mask, damped by the alignment score s.
    Magma,
    /// AdamW displacement, per-tensor Bernoulli(p) mask, survivors rescaled by 1/p.
    SkipUpdate,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    pub lr: f64,
    pub schedule: LrSchedule,
    /// Global gradient-norm clip; `None` or ≤ 0 disables it.
    pub max_grad_norm: Option<f64>,
    pub adamw: AdamWConfig,
    pub magma: MagmaConfig,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            kind: OptimizerKind::AdamW,
            lr: 1e-5,
            schedule: LrSchedule::default(),
            max_grad_norm: Some(1.0),
            adamw: AdamWConfig::default(),
            magma: MagmaConfig::default(),
        }
    }
}

/// Statistics of one optimizer step (algorithms.md §2.8).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OptimStats {
    pub lr: f64,
    pub grad_norm_pre_clip: f64,
    pub grad_norm_post_clip: f64,
    /// The step was skipped because the gradient norm was not finite.
    pub skipped_nonfinite: bool,
    /// RMS of the applied update over RMS of the base (AdamW) displacement, all tensors.
    pub update_rms_ratio: f64,
    pub magma: Option<MagmaStats>,
    pub step_ms: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MagmaStats {
    pub s_mean: f64,
    pub s_min: f64,
    pub s_max: f64,
    pub cos_mean: f64,
    pub cos_neg_frac: f64,
    /// Realised fraction of masked tensors whose update survived.
    pub survival_frac: f64,
    /// `mean(z·s)` (Magma) or `mean(z/p)` (SkipUpdate) over masked tensors.
    pub eff_mult_mean: f64,
    /// Its expectation: `p·mean(s)` (Magma) or 1 (SkipUpdate).
    pub eff_mult_expected: f64,
    pub masked_tensors: usize,
    pub masked_params: usize,
    pub unmasked_params: usize,
    pub overhead_ms: f64,
}

/// One parameter tensor's state.
pub struct ParamState {
    pub name: String,
    pub var: Var,
    pub m: Tensor,
    pub v: Tensor,
    /// f32 master copy of a low-precision (bf16/f16) weight.
    pub master: Option<Tensor>,
    /// Gets a Magma/SkipUpdate mask.
    pub masked: bool,
    /// Weight decay applies (matrices only).
    pub decay: bool,
    /// Magma alignment score (masked tensors of a Magma optimizer only).
    pub s: Option<f64>,
    /// Last mask draw (logging).
    pub last_z: Option<bool>,
}

/// The scalar part of the optimizer state, for checkpoints (floats as IEEE bits: exact).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptimizerScalars {
    pub kind: OptimizerKind,
    pub t: u64,
    pub mask_rng: SplitMix64,
    pub mask_draws: u64,
    pub names: Vec<String>,
    pub s_bits: Vec<Option<u64>>,
    pub last_z: Vec<Option<bool>>,
}

pub struct Optimizer {
    pub config: OptimizerConfig,
    params: Vec<ParamState>,
    t: u64,
    mask_rng: SplitMix64,
    mask_draws: u64,
}

impl Optimizer {
    /// Optimizer over named parameters (HF names decide the Magma mask scope).
    pub fn new(params: Vec<(String, Var)>, config: OptimizerConfig) -> Result<Self> {
        let c = &config;
        if !(c.lr >= 0.0 && c.lr.is_finite()) {
            return Err(TrainerError::Config(format!(
                "lr must be ≥ 0, got {}",
                c.lr
            )));
        }
        if c.kind != OptimizerKind::AdamW && !(c.magma.p > 0.0 && c.magma.p <= 1.0) {
            return Err(TrainerError::Config(format!(
                "magma.p must be in (0, 1], got {}",
                c.magma.p
            )));
        }
        if c.kind == OptimizerKind::Magma && c.magma.tau <= 0.0 {
            return Err(TrainerError::Config("magma.tau must be > 0".into()));
        }
        let params = params
            .into_iter()
            .map(|(name, var)| {
                let sd = adamw::state_dtype(var.dtype());
                let m = Tensor::zeros(var.shape(), sd, var.device())?;
                let v = m.zeros_like()?;
                let master = if var.dtype() == sd {
                    None
                } else {
                    Some(var.as_detached_tensor().to_dtype(sd)?)
                };
                let masked = config.kind != OptimizerKind::AdamW
                    && magma::is_masked(&name, config.magma.scope);
                let s = (masked && config.kind == OptimizerKind::Magma).then_some(config.magma.s0);
                Ok(ParamState {
                    decay: var.rank() >= 2,
                    name,
                    var,
                    m,
                    v,
                    master,
                    masked,
                    s,
                    last_z: None,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mask_rng = SplitMix64::new(config.magma.seed);
        Ok(Self {
            config,
            params,
            t: 0,
            mask_rng,
            mask_draws: 0,
        })
    }

    pub fn params(&self) -> &[ParamState] {
        &self.params
    }

    /// Optimizer steps taken so far.
    pub fn t(&self) -> u64 {
        self.t
    }

    pub fn mask_rng(&self) -> SplitMix64 {
        self.mask_rng
    }

    /// Learning rate the next step will use.
    pub fn next_lr(&self) -> f64 {
        self.config.schedule.lr_at(self.config.lr, self.t + 1)
    }

    /// Clip `grads` (aligned with `params()`, `None` = no gradient) to the global norm, then take
    /// one step. A non-finite gradient norm skips the step (no moment update).
    pub fn step(&mut self, grads: &[Option<Tensor>]) -> Result<OptimStats> {
        let start = Instant::now();
        if grads.len() != self.params.len() {
            return Err(TrainerError::Optimizer(format!(
                "{} gradients for {} parameters",
                grads.len(),
                self.params.len()
            )));
        }
        let mut sq = 0.0;
        for g in grads.iter().flatten() {
            sq += fused::sum_sq(g)?;
        }
        let pre = sq.sqrt();
        let lr = self.next_lr();
        let mut stats = OptimStats {
            lr,
            grad_norm_pre_clip: pre,
            ..Default::default()
        };
        if !pre.is_finite() {
            stats.skipped_nonfinite = true;
            stats.grad_norm_post_clip = pre;
            return Ok(stats);
        }
        let clip = match self.config.max_grad_norm {
            Some(max) if max > 0.0 && pre > max => max / (pre + 1e-6),
            _ => 1.0,
        };
        stats.grad_norm_post_clip = pre * clip;
        self.t += 1;
        let t = self.t;
        let cfg = self.config.clone();
        let kind = cfg.kind;
        let mut base_sq = 0.0;
        let mut applied_sq = 0.0;
        let mut overhead = 0.0;
        let mut cosines = Vec::new();
        let mut mults = Vec::new();
        let (mut masked_params, mut unmasked_params) = (0usize, 0usize);
        for (p, g) in self.params.iter_mut().zip(grads) {
            // Draw every masked tensor's z every step, gradient or not: the stream stays aligned.
            let z = if p.masked {
                self.mask_draws += 1;
                Some(self.mask_rng.bernoulli(cfg.magma.p))
            } else {
                None
            };
            if p.masked {
                masked_params += p.var.elem_count();
            } else {
                unmasked_params += p.var.elem_count();
            }
            let Some(g) = g else { continue };
            // f32 weights on the CPU: two fused passes (bit-identical moments and weights).
            let fused_moments = match p.master {
                None => fused::moments(&p.m, &p.v, g, clip, &cfg.adamw)?,
                Some(_) => None,
            };
            let (g, fused_cos) = match fused_moments {
                Some(fm) => {
                    let c = fm.cosine();
                    p.m = fm.m;
                    p.v = fm.v;
                    (None, Some(c))
                }
                None => {
                    let g = g.to_dtype(p.m.dtype())?;
                    let g = if clip != 1.0 { g.affine(clip, 0.0)? } else { g };
                    let (m, v) = adamw::update_moments(&p.m, &p.v, &g, &cfg.adamw)?;
                    p.m = m;
                    p.v = v;
                    (Some(g), None)
                }
            };
            let theta = match &p.master {
                Some(t) => t.clone(),
                None => p.var.as_detached_tensor(),
            };
            let mult = match (kind, z) {
                (OptimizerKind::Magma, Some(z)) => {
                    let o = Instant::now();
                    let c = match (fused_cos, &g) {
                        (Some(c), _) => c,
                        (None, Some(g)) => magma::cosine(&p.m, g)?,
                        (None, None) => 0.0,
                    };
                    let s = magma::ema_update(p.s.unwrap_or(cfg.magma.s0), c, &cfg.magma);
                    p.s = Some(s);
                    cosines.push(c);
                    overhead += o.elapsed().as_secs_f64();
                    if cfg.magma.damping {
                        magma::magma_multiplier(z, s)
                    } else if z {
                        1.0
                    } else {
                        0.0
                    }
                }
                (OptimizerKind::SkipUpdate, Some(z)) => {
                    magma::skip_update_multiplier(z, cfg.magma.p)
                }
                _ => 1.0,
            };
            if z.is_some() {
                p.last_z = z;
                mults.push(mult);
            }
            let decay_masked = cfg.magma.mask_weight_decay || !p.masked;
            if fused_cos.is_some() {
                let u = fused::Update {
                    lr,
                    t,
                    decay: p.decay,
                    decay_masked,
                    mult,
                };
                if let Some(a) = fused::apply(&theta, &p.m, &p.v, &u, &cfg.adamw)? {
                    base_sq += a.base_sq + a.dense_sq;
                    applied_sq += mult * mult * a.base_sq + a.dense_sq;
                    if let Some(nt) = a.theta {
                        p.var.set(&nt)?;
                    }
                    continue;
                }
            }
            let adam = adamw::adam_displacement(&p.m, &p.v, t, lr, &cfg.adamw)?;
            let decay = if p.decay && cfg.adamw.weight_decay != 0.0 {
                Some(adamw::decay_displacement(&theta, lr, &cfg.adamw)?)
            } else {
                None
            };
            // Masked part and dense part of the displacement.
            let (masked_part, dense_part) = match decay {
                Some(d) if decay_masked => ((adam + d)?, None),
                Some(d) => (adam, Some(d)),
                None => (adam, None),
            };
            let base_norm = masked_part.sqr()?.sum_all()?.to_scalar_f64()?;
            let dense_norm = match &dense_part {
                Some(d) => d.sqr()?.sum_all()?.to_scalar_f64()?,
                None => 0.0,
            };
            base_sq += base_norm + dense_norm;
            applied_sq += mult * mult * base_norm + dense_norm;
            let new_theta = match (mult == 0.0, dense_part) {
                (true, None) => None,
                (true, Some(d)) => Some((&theta + d)?),
                (false, dense) => {
                    let upd = if mult == 1.0 {
                        masked_part
                    } else {
                        masked_part.affine(mult, 0.0)?
                    };
                    let th = (&theta + upd)?;
                    Some(match dense {
                        Some(d) => (th + d)?,
                        None => th,
                    })
                }
            };
            if let Some(nt) = new_theta {
                match &mut p.master {
                    Some(master) => {
                        p.var.set(&nt.to_dtype(p.var.dtype())?)?;
                        *master = nt;
                    }
                    None => p.var.set(&nt)?,
                }
            }
        }
        stats.update_rms_ratio = if base_sq > 0.0 {
            (applied_sq / base_sq).sqrt()
        } else {
            1.0
        };
        if kind != OptimizerKind::AdamW {
            let ss: Vec<f64> = self.params.iter().filter_map(|p| p.s).collect();
            let mean = |xs: &[f64]| {
                if xs.is_empty() {
                    0.0
                } else {
                    xs.iter().sum::<f64>() / xs.len() as f64
                }
            };
            let zs: Vec<bool> = self.params.iter().filter_map(|p| p.last_z).collect();
            let s_mean = mean(&ss);
            stats.magma = Some(MagmaStats {
                s_mean,
                s_min: ss.iter().copied().fold(f64::INFINITY, f64::min),
                s_max: ss.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                cos_mean: mean(&cosines),
                cos_neg_frac: if cosines.is_empty() {
                    0.0
                } else {
                    cosines.iter().filter(|c| **c < 0.0).count() as f64 / cosines.len() as f64
                },
                survival_frac: if zs.is_empty() {
                    0.0
                } else {
                    zs.iter().filter(|z| **z).count() as f64 / zs.len() as f64
                },
                eff_mult_mean: mean(&mults),
                eff_mult_expected: match kind {
                    OptimizerKind::Magma if cfg.magma.damping => cfg.magma.p * s_mean,
                    OptimizerKind::Magma => cfg.magma.p,
                    _ => 1.0,
                },
                masked_tensors: zs.len(),
                masked_params,
                unmasked_params,
                overhead_ms: overhead * 1e3,
            });
        }
        stats.step_ms = start.elapsed().as_secs_f64() * 1e3;
        Ok(stats)
    }

    /// Tensors of the state: `m.<name>`, `v.<name>` and `master.<name>`.
    pub fn state_tensors(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for p in &self.params {
            out.insert(format!("m.{}", p.name), p.m.clone());
            out.insert(format!("v.{}", p.name), p.v.clone());
            if let Some(ms) = &p.master {
                out.insert(format!("master.{}", p.name), ms.clone());
            }
        }
        out
    }

    pub fn scalars(&self) -> OptimizerScalars {
        OptimizerScalars {
            kind: self.config.kind,
            t: self.t,
            mask_rng: self.mask_rng,
            mask_draws: self.mask_draws,
            names: self.params.iter().map(|p| p.name.clone()).collect(),
            s_bits: self.params.iter().map(|p| p.s.map(f64::to_bits)).collect(),
            last_z: self.params.iter().map(|p| p.last_z).collect(),
        }
    }

    /// Restore state saved by [`Self::state_tensors`] and [`Self::scalars`].
    pub fn load_state(
        &mut self,
        tensors: &HashMap<String, Tensor>,
        sc: &OptimizerScalars,
    ) -> Result<()> {
        let err = |msg: String| TrainerError::Optimizer(format!("restoring state: {msg}"));
        if sc.kind != self.config.kind {
            return Err(err(format!(
                "checkpoint optimizer is {:?}, config says {:?}",
                sc.kind, self.config.kind
            )));
        }
        let names: Vec<&str> = self.params.iter().map(|p| p.name.as_str()).collect();
        if sc
            .names
            .iter()
            .map(String::as_str)
            .ne(names.iter().copied())
            || sc.s_bits.len() != names.len()
            || sc.last_z.len() != names.len()
        {
            return Err(err("parameter names differ from the model's".into()));
        }
        // Check and gather everything first, so a bad checkpoint leaves the state untouched.
        let mut restored = Vec::with_capacity(self.params.len());
        for (i, p) in self.params.iter().enumerate() {
            let get = |k: String| -> Result<Tensor> {
                let t = tensors
                    .get(&k)
                    .ok_or_else(|| err(format!("missing tensor {k}")))?;
                if t.dims() != p.var.dims() || t.dtype() != p.m.dtype() {
                    return Err(err(format!(
                        "tensor {k}: {:?} {:?}, expected {:?} {:?}",
                        t.dims(),
                        t.dtype(),
                        p.var.dims(),
                        p.m.dtype()
                    )));
                }
                Ok(t.to_device(p.var.device())?)
            };
            let m = get(format!("m.{}", p.name))?;
            let v = get(format!("v.{}", p.name))?;
            let master = match p.master {
                Some(_) => Some(get(format!("master.{}", p.name))?),
                None => None,
            };
            if p.s.is_some() != sc.s_bits[i].is_some() {
                return Err(err(format!("{}: Magma score presence differs", p.name)));
            }
            restored.push((m, v, master));
        }
        for (i, (p, (m, v, master))) in self.params.iter_mut().zip(restored).enumerate() {
            p.m = m;
            p.v = v;
            p.master = master;
            p.s = sc.s_bits[i].map(f64::from_bits);
            p.last_z = sc.last_z[i];
        }
        self.t = sc.t;
        self.mask_rng = sc.mask_rng;
        self.mask_draws = sc.mask_draws;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
