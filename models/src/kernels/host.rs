//! Host access to CPU tensors: the contiguous slice behind a storage, or behind several tensors
//! at once.

use candle_core::{CpuStorage, Layout, Result, Storage, Tensor, WithDType};

/// The contiguous CPU slice of a storage/layout pair.
pub(crate) fn cpu_slice<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [T]> {
    let Some((start, end)) = l.contiguous_offsets() else {
        candle_core::bail!("cpu kernel: input is not contiguous");
    };
    Ok(&T::cpu_storage_as_slice(s)?[start..end])
}

/// Run `f` on the host slices of `N` CPU tensors at once (each made contiguous first). The
/// tensors must be distinct (each slice holds a read lock on its storage).
pub(crate) fn with_hosts<T: WithDType, R, const N: usize>(
    tensors: [&Tensor; N],
    f: impl FnOnce([&[T]; N]) -> Result<R>,
) -> Result<R> {
    let contiguous = tensors
        .iter()
        .map(|t| t.contiguous())
        .collect::<Result<Vec<_>>>()?;
    let guards: Vec<_> = contiguous.iter().map(|t| t.storage_and_layout()).collect();
    let slices = guards
        .iter()
        .map(|(storage, layout)| match &**storage {
            Storage::Cpu(cpu) => cpu_slice::<T>(cpu, layout),
            _ => candle_core::bail!("cpu kernel: tensor is not on the cpu"),
        })
        .collect::<Result<Vec<&[T]>>>()?;
    let Ok(slices) = <[&[T]; N]>::try_from(slices) else {
        candle_core::bail!("cpu kernel: expected {N} host slices");
    };
    f(slices)
}
