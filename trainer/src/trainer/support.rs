//! Scoring under the sampler's truncation (algorithms.md §1.8.7). A token drawn from the top-k /
//! top-p / min-p survivors has the behaviour log-prob `ℓ_b = log softmax_K(logits / T)[y]`, the
//! softmax renormalised over its kept set K. The trainer scores ℓ_θ, ℓ_prox and ℓ_ref of that
//! token under the same K, so every ratio compares one distribution under two sets of weights.
//!
//! Owns the gather of the kept logits and the renormalised log-prob (autograd-capable). Must not
//! know losses or the model: callers hand it `[N, V]` logits of a micro-batch's completion
//! tokens and each sequence's kept sets.

use candle_core::{DType, Device, Tensor, D};

use crate::error::{Result, TrainerError};

/// The rows of a micro-batch's `N` completion tokens that were sampled from a truncated
/// distribution, and their kept sets, padded to the widest (`K`).
pub(crate) struct Support {
    /// `[R]` their row indices among the `N`.
    rows: Tensor,
    /// `[R·K]` flat indices `row·V + token` (i64: N·V may pass 2³²) of the kept tokens
    /// (padding repeats the target).
    kept: Tensor,
    /// `[R, K]` 1 for a kept token, 0 for padding (f32).
    mask: Tensor,
    /// `[R]` flat index of each row's target.
    targets: Tensor,
    /// `[N]` 0 for a truncated row, 1 for the others (f32).
    untruncated: Tensor,
    r: usize,
    k: usize,
    n: usize,
}

impl Support {
    /// `supports[b]`: sequence b's kept set per completion token (empty: never truncated), for
    /// sequences with `targets[b]` completion tokens; `vocab` is V. None when nothing was
    /// truncated.
    pub fn new(
        supports: &[&[Vec<u32>]],
        targets: &[&[u32]],
        vocab: usize,
        device: &Device,
    ) -> Result<Option<Self>> {
        let n: usize = targets.iter().map(|t| t.len()).sum();
        let mut truncated: Vec<(usize, &[u32], u32)> = Vec::new();
        let mut row = 0;
        for (b, (&sets, &tgt)) in supports.iter().zip(targets).enumerate() {
            if sets.is_empty() {
                row += tgt.len();
                continue;
            }
            if sets.len() != tgt.len() {
                return Err(bad(format!(
                    "sequence {b}: {} kept sets for {} completion tokens",
                    sets.len(),
                    tgt.len()
                )));
            }
            for (set, &target) in sets.iter().zip(tgt) {
                if set.iter().any(|&t| t as usize >= vocab) || !set.contains(&target) {
                    return Err(bad(format!(
                        "sequence {b}: a kept set has ids outside the vocabulary ({vocab}) or \
                         lacks the sampled token {target}"
                    )));
                }
                truncated.push((row, set.as_slice(), target));
                row += 1;
            }
        }
        if truncated.is_empty() {
            return Ok(None);
        }
        let (r, k) = (
            truncated.len(),
            truncated.iter().map(|t| t.1.len()).max().unwrap_or(1),
        );
        let mut kept = Vec::with_capacity(r * k);
        let mut mask = Vec::with_capacity(r * k);
        let mut untruncated = vec![1f32; n];
        for &(row, set, target) in &truncated {
            let base = (row * vocab) as i64;
            kept.extend(set.iter().map(|&t| base + i64::from(t)));
            kept.extend(std::iter::repeat_n(base + i64::from(target), k - set.len()));
            mask.extend(std::iter::repeat_n(1f32, set.len()));
            mask.extend(std::iter::repeat_n(0f32, k - set.len()));
            untruncated[row] = 0.0;
        }
        let rows: Vec<u32> = truncated.iter().map(|t| t.0 as u32).collect();
        let flat_targets: Vec<i64> = truncated
            .iter()
            .map(|&(row, _, target)| (row * vocab) as i64 + i64::from(target))
            .collect();
        Ok(Some(Self {
            rows: Tensor::from_vec(rows, r, device)?,
            kept: Tensor::from_vec(kept, r * k, device)?,
            mask: Tensor::from_vec(mask, (r, k), device)?,
            targets: Tensor::from_vec(flat_targets, r, device)?,
            untruncated: Tensor::from_vec(untruncated, n, device)?,
            r,
            k,
            n,
        }))
    }

    /// The kept logits `[R·K]` and the targets' logits `[R]` of `[N, V]` logits (through the
    /// graph when `logits` has one).
    pub fn gather(&self, logits: &Tensor) -> Result<(Tensor, Tensor)> {
        let flat = logits.flatten_all()?;
        Ok((
            flat.index_select(&self.kept, 0)?,
            flat.index_select(&self.targets, 0)?,
        ))
    }

    /// `[R]` f32 log-probs of the targets under softmax(logits / T) renormalised over each
    /// row's kept set, from [`Support::gather`]'s values.
    pub fn logprobs(&self, kept: &Tensor, target: &Tensor, temperature: f64) -> Result<Tensor> {
        let inv_t = 1.0 / temperature;
        let z = kept
            .to_dtype(DType::F32)?
            .reshape((self.r, self.k))?
            .affine(inv_t, 0.0)?;
        // A shift for stability only: its gradient would be exactly zero.
        let max = z.max_keepdim(D::Minus1)?.detach();
        let sum = (z.broadcast_sub(&max)?.exp()? * &self.mask)?.sum_keepdim(D::Minus1)?;
        let lse = (sum.log()? + max)?.squeeze(D::Minus1)?;
        Ok((target.to_dtype(DType::F32)?.affine(inv_t, 0.0)? - lse)?)
    }

    /// `full` `[N]` with the truncated rows' values replaced by `truncated` `[R]`: exactly those
    /// values, and gradient only through them there.
    pub fn merge(&self, full: &Tensor, truncated: &Tensor) -> Result<Tensor> {
        let dtype = full.dtype();
        let scattered = Tensor::zeros(self.n, dtype, full.device())?.index_add(
            &self.rows,
            &truncated.to_dtype(dtype)?,
            0,
        )?;
        Ok(((full * self.untruncated.to_dtype(dtype)?)? + scattered)?)
    }

    /// The truncated rows' values of `[R]` merged into host values `full` (one per row).
    pub fn merge_host(&self, full: &mut [f64], truncated: &Tensor) -> Result<()> {
        let rows = self.rows.to_vec1::<u32>()?;
        let values = truncated.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        for (row, value) in rows.into_iter().zip(values) {
            full[row as usize] = value;
        }
        Ok(())
    }

    /// Add the gradients of [`Support::gather`]'s outputs into `d_logits` `[N, V]`.
    pub fn scatter_grads(
        &self,
        d_logits: Tensor,
        d_kept: &Tensor,
        d_target: &Tensor,
    ) -> Result<Tensor> {
        let shape = d_logits.shape().clone();
        let dtype = d_logits.dtype();
        let flat = d_logits
            .flatten_all()?
            .index_add(&self.kept, &d_kept.to_dtype(dtype)?, 0)?
            .index_add(&self.targets, &d_target.to_dtype(dtype)?, 0)?;
        Ok(flat.reshape(shape)?)
    }
}

fn bad(msg: String) -> TrainerError {
    TrainerError::Config(format!("sampling support: {msg}"))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{fd_check_on, max_abs_grad, shift_prox, taped_and_autograd};
    use super::*;
    use crate::config::TrainerConfig;
    use crate::data::ScoredGroup;
    use crate::loss::LossPreset;
    use crate::optim::OptimizerKind;
    use crate::rng::SplitMix64;
    use crate::test_util::{random_groups, tiny_model_f64, toy_config, VOCAB};
    use crate::trainer::Trainer;
    use rlvr_models::testing::max_abs_diff;

    /// Give every second sample random kept sets (each holding its token, 1 to 8 ids).
    fn with_supports(mut groups: Vec<ScoredGroup>, seed: u64) -> Vec<ScoredGroup> {
        let mut rng = SplitMix64::new(seed);
        for (i, s) in groups.iter_mut().flat_map(|g| &mut g.samples).enumerate() {
            if i % 2 == 1 {
                continue;
            }
            s.sampling_support = s
                .completion_ids
                .iter()
                .map(|&t| {
                    let mut set: Vec<u32> = (0..rng.below(8))
                        .map(|_| rng.below(VOCAB) as u32)
                        .chain([t])
                        .collect();
                    set.sort_unstable();
                    set.dedup();
                    set
                })
                .collect();
        }
        groups
    }

    /// The renormalised log-prob against its definition, with padding and untruncated rows.
    #[test]
    fn truncated_logprob_is_the_softmax_over_the_kept_set() {
        let v = 6;
        let data: Vec<f64> = (0..3 * v)
            .map(|i| ((i * 7 % 11) as f64 - 5.0) * 0.4)
            .collect();
        let logits = Tensor::from_vec(data.clone(), (3, v), &Device::Cpu).unwrap();
        let sets = [vec![1u32, 4], vec![0, 2, 3, 5]];
        let (first, second): (&[Vec<u32>], &[Vec<u32>]) = (&sets, &[]);
        let support = Support::new(&[first, second], &[&[4, 2], &[1]], v, &Device::Cpu)
            .unwrap()
            .unwrap();
        let t = 0.7;
        let (kept, target) = support.gather(&logits).unwrap();
        let got = support.logprobs(&kept, &target, t).unwrap();
        let got: Vec<f32> = got.to_vec1().unwrap();
        for (row, (set, target)) in sets.iter().zip([4u32, 2]).enumerate() {
            let x = |k: u32| data[row * v + k as usize] / t;
            let lse = set.iter().map(|&k| x(k).exp()).sum::<f64>().ln();
            assert!(
                (got[row] as f64 - (x(target) - lse)).abs() < 1e-6,
                "row {row}"
            );
        }
        let full = Tensor::new(&[-1f32, -2.0, -3.0], &Device::Cpu).unwrap();
        let merged: Vec<f32> = support
            .merge(&full, &Tensor::new(&got[..], &Device::Cpu).unwrap())
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(merged, [got[0], got[1], -3.0]);
        let bad = Support::new(&[first], &[&[4, 1]], v, &Device::Cpu);
        assert!(bad.is_err(), "a set without its token is refused");
    }

    /// The hand-written backward of the truncated rows against autograd, and both against
    /// finite differences of the loss (KL, entropy bonus and a temperature on).
    #[test]
    fn truncated_rows_have_the_right_gradient() {
        let model = tiny_model_f64(7);
        let groups = with_supports(random_groups(4, 4, 44), 3);
        let mut cfg = toy_config(OptimizerKind::AdamW, 1e-2);
        cfg.loss = LossPreset::Grpo;
        cfg.num_minibatches = 1;
        cfg.micro_batch_size = 3;
        cfg.kl_coef = 0.1;
        cfg.entropy_coef = 0.05;
        cfg.temperature = 0.7;
        let mut tr = Trainer::new(&model, cfg.clone()).unwrap();
        tr.set_reference(tiny_model_f64(8));
        let mut prep = tr.prepare(&groups).unwrap();
        shift_prox(&mut prep);
        let (a, b) = taped_and_autograd(&tr, &prep);
        assert!(
            (a.loss - b.loss).abs() <= 1e-9 * b.loss.abs(),
            "{} vs {}",
            a.loss,
            b.loss
        );
        let (ga, gb) = (a.grads.unwrap(), b.grads.unwrap());
        let gmax = max_abs_grad(&gb);
        for (x, y) in ga.iter().zip(&gb) {
            let d = max_abs_diff(x.as_ref().unwrap(), y.as_ref().unwrap());
            assert!(d <= 1e-6 * gmax, "max diff {d} vs max grad {gmax}");
        }
        let cfg = TrainerConfig {
            kl_coef: 0.0,
            ..cfg
        };
        fd_check_on(&groups, &model, cfg, None, "grpo, truncated");
    }
}
