//! Access to the f32 data of a contiguous CPU tensor, read-only or in place (through candle's
//! in-place op, so that every view of the storage, the model's `Var` included, sees the change),
//! for the optimizer's fused host kernels. `None` wherever the tensor is not CPU f32 (the caller
//! then takes the composed candle path).
//!
//! Owns the storage access only; must not know what the kernels compute.

use std::cell::RefCell;

use candle_core::{CpuStorage, DType, InplaceOp1, Layout, Storage, Tensor};

use crate::error::Result;

#[cfg(test)]
thread_local! {
    /// Tests: take the composed candle path everywhere, to compare the two.
    pub(crate) static FORCE_COMPOSED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn forced_off() -> bool {
    #[cfg(test)]
    if FORCE_COMPOSED.with(|f| f.get()) {
        return true;
    }
    false
}

fn is_cpu_f32(t: &Tensor) -> bool {
    !forced_off() && t.dtype() == DType::F32 && t.device().is_cpu()
}

/// Whether `t` is a contiguous f32 CPU tensor (the kind [`with_f32_mut`] and [`with_f32`] take).
pub(crate) fn is_host_f32(t: &Tensor) -> bool {
    is_cpu_f32(t) && t.is_contiguous()
}

/// Run `f` on the f32 data of a contiguous CPU tensor; `None` for anything else.
pub(crate) fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Option<R> {
    if !is_cpu_f32(t) {
        return None;
    }
    let (s, l) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*s else { return None };
    let data = cpu.as_slice::<f32>().ok()?;
    let (a, b) = l.contiguous_offsets()?;
    Some(f(&data[a..b]))
}

/// Run `f` on the f32 data of a contiguous CPU tensor, writable: the tensor's storage (shared
/// by every view of it) is changed in place. `None` for anything else.
pub(super) fn with_f32_mut<R>(t: &Tensor, f: impl FnOnce(&mut [f32]) -> R) -> Result<Option<R>> {
    if !is_cpu_f32(t) || !t.is_contiguous() {
        return Ok(None);
    }
    let op = InPlace {
        f: RefCell::new(Some(f)),
        out: RefCell::new(None),
    };
    t.inplace_op1(&op)?;
    Ok(op.out.into_inner())
}

/// [`with_f32_mut`]'s closure as candle's in-place op (the way to a storage's mutable data).
struct InPlace<F, R> {
    f: RefCell<Option<F>>,
    out: RefCell<Option<R>>,
}

impl<F: FnOnce(&mut [f32]) -> R, R> InplaceOp1 for InPlace<F, R> {
    fn name(&self) -> &'static str {
        "rlvr-optimizer-in-place"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("optimizer in-place pass: not f32");
        };
        let Some((a, b)) = layout.contiguous_offsets() else {
            candle_core::bail!("optimizer in-place pass: not contiguous");
        };
        if let Some(f) = self.f.borrow_mut().take() {
            *self.out.borrow_mut() = Some(f(&mut data[a..b]));
        }
        Ok(())
    }
}
