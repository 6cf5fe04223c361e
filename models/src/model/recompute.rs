//! Activation recomputation: a taped forward with `recompute_every = k` keeps only the input of
//! layers 0, k, 2k, … (`HiddenTape::record_checkpoint`); the backward re-runs each run of k
//! layers from its input, with the same kernels and so bit for bit the same activations, just
//! before differentiating it, and drops them after. Peak activation memory falls from every
//! layer's tape to one run's tape plus the saved inputs.
//!
//! Owns the re-run of a run of layers. Must not know the backward's arithmetic.

use std::ops::Range;

use candle_core::Tensor;

use super::backward::{HiddenTape, LayerBackward, LayerTape};
use super::forward::{Forward, Pass};
use super::Model;

impl Model {
    /// Re-run layers `range` from their input `x`, keeping every layer's tape.
    pub(super) fn recompute_layers(
        &self,
        range: Range<usize>,
        mut x: Tensor,
        step: &LayerBackward<'_>,
    ) -> candle_core::Result<Vec<LayerTape>> {
        let (lengths, seq_len) = step.lengths();
        let (cos, sin) = step.cos_sin();
        let mut tape = HiddenTape::new(lengths.to_vec(), seq_len, range.len(), None);
        tape.packed = step.packed().cloned();
        let mut pass = Pass {
            fwd: Forward::TRAIN_TAPED,
            cos: cos.clone(),
            sin: sin.clone(),
            eps: self.config.rms_norm_eps as f32,
            attn: None,
            tape: Some(&mut tape),
        };
        for index in range {
            x = self.layer(index, &self.layers[index], x, &mut pass)?;
        }
        drop(pass);
        Ok(tape.layers)
    }
}
