//! Learning-rate schedules, indexed by the optimizer step t = 1, 2, …
//!
//! Owns lr(t). Must not know the optimizer's state: the step passes t in.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LrSchedule {
    /// Linear warm-up from lr/warmup to lr over `warmup_steps`, then constant.
    Constant { warmup_steps: u64 },
    /// Linear warm-up, then cosine decay to `min_lr_ratio · lr` at `total_steps` (held after).
    Cosine {
        warmup_steps: u64,
        total_steps: u64,
        min_lr_ratio: f64,
    },
}

impl Default for LrSchedule {
    fn default() -> Self {
        LrSchedule::Constant { warmup_steps: 10 }
    }
}

impl LrSchedule {
    /// Learning rate at optimizer step `t` (1-based) for base rate `lr`.
    pub fn lr_at(&self, lr: f64, t: u64) -> f64 {
        let t = t.max(1);
        let warm = |w: u64| {
            if w > 0 && t <= w {
                Some(lr * t as f64 / w as f64)
            } else {
                None
            }
        };
        match *self {
            LrSchedule::Constant { warmup_steps } => warm(warmup_steps).unwrap_or(lr),
            LrSchedule::Cosine {
                warmup_steps,
                total_steps,
                min_lr_ratio,
            } => {
                if let Some(x) = warm(warmup_steps) {
                    return x;
                }
                let span = total_steps.saturating_sub(warmup_steps).max(1) as f64;
                let progress = ((t - warmup_steps) as f64 / span).clamp(0.0, 1.0);
                let min = lr * min_lr_ratio;
                min + (lr - min) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_and_cosine() {
        let c = LrSchedule::Constant { warmup_steps: 10 };
        assert!((c.lr_at(1.0, 1) - 0.1).abs() < 1e-15);
        assert_eq!(c.lr_at(1.0, 10), 1.0);
        assert_eq!(c.lr_at(1.0, 1000), 1.0);
        assert_eq!(LrSchedule::Constant { warmup_steps: 0 }.lr_at(2.0, 1), 2.0);
        let s = LrSchedule::Cosine {
            warmup_steps: 10,
            total_steps: 110,
            min_lr_ratio: 0.1,
        };
        assert!((s.lr_at(1.0, 5) - 0.5).abs() < 1e-15);
        assert!((s.lr_at(1.0, 10) - 1.0).abs() < 1e-15);
        assert!((s.lr_at(1.0, 60) - 0.55).abs() < 1e-12);
        assert!((s.lr_at(1.0, 110) - 0.1).abs() < 1e-12);
        assert!((s.lr_at(1.0, 500) - 0.1).abs() < 1e-12);
    }
}
