//! The optimizer's state for checkpoints: tensors (`m.<name>`, `v.<name>`, `master.<name>`) and
//! scalars (step count, mask stream, Magma scores and last draws, floats as IEEE bits: exact).
//!
//! Owns the checkpoint format of the optimizer. Must not know files or the trainer's state: the
//! checkpoint module stores what this returns.

use std::collections::HashMap;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::{Optimizer, OptimizerKind, ParamState};
use crate::error::{Result, TrainerError};
use crate::rng::SplitMix64;

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

fn restore_err(msg: String) -> TrainerError {
    TrainerError::Optimizer(format!("restoring state: {msg}"))
}

/// One tensor's saved moments (and master), checked against its parameter.
type Restored = (Tensor, Tensor, Option<Tensor>);

impl Optimizer {
    /// Tensors of the state: `m.<name>`, `v.<name>` and `master.<name>`.
    pub fn state_tensors(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for p in &self.params {
            out.insert(format!("m.{}", p.name), p.first_moment.clone());
            out.insert(format!("v.{}", p.name), p.second_moment.clone());
            if let Some(master) = &p.master {
                out.insert(format!("master.{}", p.name), master.clone());
            }
        }
        out
    }

    pub fn scalars(&self) -> OptimizerScalars {
        OptimizerScalars {
            kind: self.config.kind,
            t: self.steps_taken,
            mask_rng: self.mask_rng,
            mask_draws: self.mask_draws,
            names: self.params.iter().map(|p| p.name.clone()).collect(),
            s_bits: self
                .params
                .iter()
                .map(|p| p.align_score.map(f64::to_bits))
                .collect(),
            last_z: self.params.iter().map(|p| p.last_mask).collect(),
        }
    }

    /// Restore state saved by [`Self::state_tensors`] and [`Self::scalars`].
    pub fn load_state(
        &mut self,
        tensors: &HashMap<String, Tensor>,
        scalars: &OptimizerScalars,
    ) -> Result<()> {
        self.check_scalars(scalars)?;
        // Check and gather everything first, so a bad checkpoint leaves the state untouched.
        let restored = self
            .params
            .iter()
            .zip(&scalars.s_bits)
            .map(|(p, s_bits)| restored_tensors(p, tensors, s_bits.is_some()))
            .collect::<Result<Vec<Restored>>>()?;
        for (i, (p, (m, v, master))) in self.params.iter_mut().zip(restored).enumerate() {
            p.first_moment = m;
            p.second_moment = v;
            p.master = master;
            p.align_score = scalars.s_bits[i].map(f64::from_bits);
            p.last_mask = scalars.last_z[i];
        }
        self.steps_taken = scalars.t;
        self.mask_rng = scalars.mask_rng;
        self.mask_draws = scalars.mask_draws;
        Ok(())
    }

    /// The saved optimizer is of this kind, over these parameters.
    fn check_scalars(&self, scalars: &OptimizerScalars) -> Result<()> {
        if scalars.kind != self.config.kind {
            return Err(restore_err(format!(
                "checkpoint optimizer is {:?}, config says {:?}",
                scalars.kind, self.config.kind
            )));
        }
        let names: Vec<&str> = self.params.iter().map(|p| p.name.as_str()).collect();
        if scalars
            .names
            .iter()
            .map(String::as_str)
            .ne(names.iter().copied())
            || scalars.s_bits.len() != names.len()
            || scalars.last_z.len() != names.len()
        {
            return Err(restore_err(
                "parameter names differ from the model's".into(),
            ));
        }
        Ok(())
    }
}

/// `p`'s saved moments and master from `tensors`, checked for shape, dtype and Magma score.
fn restored_tensors(
    p: &ParamState,
    tensors: &HashMap<String, Tensor>,
    has_score: bool,
) -> Result<Restored> {
    let get = |key: String| -> Result<Tensor> {
        let t = tensors
            .get(&key)
            .ok_or_else(|| restore_err(format!("missing tensor {key}")))?;
        if t.dims() != p.var.dims() || t.dtype() != p.first_moment.dtype() {
            return Err(restore_err(format!(
                "tensor {key}: {:?} {:?}, expected {:?} {:?}",
                t.dims(),
                t.dtype(),
                p.var.dims(),
                p.first_moment.dtype()
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
    if p.align_score.is_some() != has_score {
        return Err(restore_err(format!(
            "{}: Magma score presence differs",
            p.name
        )));
    }
    Ok((m, v, master))
}
