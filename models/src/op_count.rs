//! Counting the candle ops a piece of code issues, at no cost to code that does not ask.
//!
//! Every candle op (views included: a reshape or a narrow is an op that launches nothing) makes
//! a new tensor, and candle numbers tensors from one process-wide counter
//! ([`candle_core::Tensor::id`]). A [`OpMark`] reads that counter (by making one scalar tensor);
//! the ops between two marks are the difference, minus the mark's own tensor. Nothing is added
//! to any op, so counting costs only the marks. Tensors made by other threads in between are
//! counted too: count where nothing else runs (a benchmark).
//!
//! The decoder marks its layers only while [`set_enabled`] is on (one relaxed load per forward
//! otherwise) and leaves the count in [`layer_ops`].
//!
//! Owns the counter arithmetic; knows nothing of what is counted.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use candle_core::{Device, Tensor};

static ENABLED: AtomicBool = AtomicBool::new(false);
static LAYER_OPS: AtomicU64 = AtomicU64::new(0);

/// A point in candle's op sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpMark(u64);

impl OpMark {
    /// The current point (makes one scalar tensor on the host).
    pub fn now() -> Self {
        Self(last_tensor_id())
    }

    /// Ops issued since `self`, not counting the marks' own tensors.
    pub fn ops_since(self) -> u64 {
        OpMark::now().0.saturating_sub(self.0 + 1)
    }
}

/// The id of a freshly made tensor: candle's `TensorId` keeps its number private, but prints it.
fn last_tensor_id() -> u64 {
    let id = Tensor::zeros((), candle_core::DType::U8, &Device::Cpu).map(|t| t.id());
    let text = match id {
        Ok(id) => format!("{id:?}"),
        Err(_) => return 0,
    };
    text.chars()
        .filter(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or(0)
}

/// Turn the decoder's per-layer counting on or off (off by default).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Add the ops of a forward's layers (called by the decoder while counting is on).
pub(crate) fn add_layer_ops(ops: u64) {
    LAYER_OPS.fetch_add(ops, Ordering::Relaxed);
}

/// Ops issued inside decoder layers since counting was last reset; resets it.
pub fn take_layer_ops() -> u64 {
    LAYER_OPS.swap(0, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Other tests create tensors on other threads at the same time: each count is at least the
    /// true one, and some try sees nothing else.
    #[test]
    fn counts_the_ops_between_marks() {
        let a = Tensor::new(&[1f32, 2.0, 3.0], &Device::Cpu).unwrap();
        let counts: Vec<(u64, u64)> = (0..50)
            .map(|_| {
                let mark = OpMark::now();
                let b = (&a + &a).unwrap();
                let _c = b.exp().unwrap().reshape((3, 1)).unwrap();
                let three = mark.ops_since();
                (three, OpMark::now().ops_since())
            })
            .collect();
        assert!(counts.iter().all(|&(three, _)| three >= 3), "{counts:?}");
        assert!(counts.contains(&(3, 0)), "{counts:?}");
    }
}
