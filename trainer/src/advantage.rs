//! Group-relative advantages (GRPO z-score, Dr.GRPO mean-only) with optional batch normalisation.
//!
//! Std convention: the **unbiased** sample std (divide by n − 1), as `torch.std` and verl use; a
//! group of one sample has std 0. `Â = (R − mean)/(std + eps)`, so an all-equal group gives
//! exactly 0 (its numerator is exactly 0), never NaN.
//!
//! Owns the advantage formulas. Must not know tokens, losses or the model: rewards in,
//! advantages out.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdvantageMode {
    /// GRPO: `(R − mean)/(std + eps)` within each group.
    GroupZScore,
    /// Dr.GRPO / GLM-5 agentic: `R − mean` within each group, no std division.
    GroupMean,
}

pub const ADV_EPS: f64 = 1e-6;

/// Mean and unbiased std of `xs` (std 0 for fewer than two values).
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    if xs.is_empty() {
        return (0.0, 0.0);
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (mean, 0.0);
    }
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// Advantages of one group's rewards. Exactly 0 for every sample when all rewards are equal.
pub fn group_advantages(rewards: &[f64], mode: AdvantageMode) -> Vec<f64> {
    if rewards.iter().all(|&r| r == rewards[0]) {
        return vec![0.0; rewards.len()];
    }
    let (mean, std) = mean_std(rewards);
    rewards
        .iter()
        .map(|&r| match mode {
            AdvantageMode::GroupZScore => (r - mean) / (std + ADV_EPS),
            AdvantageMode::GroupMean => r - mean,
        })
        .collect()
}

/// Advantages for a batch of groups (`rewards[g][i]`). With `batch_norm`, the group-centred
/// values are further divided by their std over the whole batch (REINFORCE++-style); zeros stay
/// zeros.
pub fn batch_advantages(
    rewards: &[Vec<f64>],
    mode: AdvantageMode,
    batch_norm: bool,
) -> Vec<Vec<f64>> {
    let mut adv: Vec<Vec<f64>> = rewards.iter().map(|r| group_advantages(r, mode)).collect();
    if batch_norm {
        let all: Vec<f64> = adv.iter().flatten().copied().collect();
        let (_, std) = mean_std(&all);
        for a in adv.iter_mut().flatten() {
            *a /= std + ADV_EPS;
        }
    }
    adv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_equal_group_is_exactly_zero() {
        for mode in [AdvantageMode::GroupZScore, AdvantageMode::GroupMean] {
            for r in [vec![1.0; 8], vec![0.0; 8], vec![-1.0; 8], vec![0.3]] {
                let a = group_advantages(&r, mode);
                assert!(a.iter().all(|&x| x == 0.0 && !x.is_nan()));
            }
        }
        let b = batch_advantages(
            &[vec![1.0; 4], vec![0.0; 4]],
            AdvantageMode::GroupZScore,
            true,
        );
        assert!(b.iter().flatten().all(|&x| x == 0.0));
    }

    #[test]
    fn z_score_uses_unbiased_std() {
        // rewards 1,0,0,0: mean 0.25, unbiased var = (0.5625 + 3·0.0625)/3 = 0.25, std 0.5.
        let a = group_advantages(&[1.0, 0.0, 0.0, 0.0], AdvantageMode::GroupZScore);
        assert!((a[0] - 0.75 / (0.5 + 1e-6)).abs() < 1e-12);
        assert!((a[1] + 0.25 / (0.5 + 1e-6)).abs() < 1e-12);
        let m = group_advantages(&[1.0, 0.0, 0.0, 0.0], AdvantageMode::GroupMean);
        assert_eq!(m, vec![0.75, -0.25, -0.25, -0.25]);
        let s: f64 = a.iter().sum();
        assert!(s.abs() < 1e-12);
    }

    #[test]
    fn batch_norm_scales_to_unit_std() {
        let b = batch_advantages(
            &[vec![1.0, 0.0], vec![3.0, 0.0, 0.0]],
            AdvantageMode::GroupMean,
            true,
        );
        let all: Vec<f64> = b.iter().flatten().copied().collect();
        let (_, std) = mean_std(&all);
        assert!((std - 1.0).abs() < 1e-5);
    }
}
