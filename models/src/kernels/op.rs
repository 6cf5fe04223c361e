//! Adapters from a kernel written on host slices to candle's custom-op traits: the dtype
//! dispatch, the storage plumbing and the op's name are written once here.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor};

use super::{cpu_slice, Real};

/// A one-input CPU kernel: a forward on the host slice and its backward on tensors.
pub(crate) trait Kernel1: Send + Sync {
    const NAME: &'static str;
    /// The output values and shape for the contiguous input `x` of shape `dims`.
    fn forward<T: Real>(&self, x: &[T], dims: &[usize]) -> Result<(Vec<T>, Shape)>;
    /// The input gradient given the input, the forward's output and the output gradient.
    fn backward<T: Real>(&self, x: &Tensor, out: &Tensor, grad: &Tensor) -> Result<Tensor>;
}

/// A two-input CPU kernel: a forward on the host slices and its backward on tensors.
pub(crate) trait Kernel2: Send + Sync {
    const NAME: &'static str;
    fn forward<T: Real>(&self, a: (&[T], &[usize]), b: (&[T], &[usize]))
        -> Result<(Vec<T>, Shape)>;
    /// The gradients of both inputs.
    fn backward<T: Real>(
        &self,
        a: &Tensor,
        b: &Tensor,
        out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Tensor, Tensor)>;
}

/// [`Kernel1::backward`] at the float type of `x`.
pub(crate) fn backward1<K: Kernel1>(
    kernel: &K,
    x: &Tensor,
    out: &Tensor,
    grad: &Tensor,
) -> Result<Tensor> {
    match x.dtype() {
        DType::F32 => kernel.backward::<f32>(x, out, grad),
        DType::F64 => kernel.backward::<f64>(x, out, grad),
        d => candle_core::bail!("{}: unsupported dtype {d:?}", K::NAME),
    }
}

/// A [`Kernel1`] or [`Kernel2`] as a candle custom op (`apply_op1` / `apply_op2`).
pub(crate) struct Op<K>(pub K);

fn unsupported(s: &CpuStorage) -> candle_core::Error {
    candle_core::Error::Msg(format!("cpu kernel: unsupported dtype {:?}", s.dtype()))
}

fn forward1<T: Real, K: Kernel1>(k: &K, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
    let (out, shape) = k.forward(cpu_slice::<T>(s, l)?, l.dims())?;
    Ok((T::to_cpu_storage_owned(out), shape))
}

fn forward2<T: Real, K: Kernel2>(
    k: &K,
    (s1, l1): (&CpuStorage, &Layout),
    (s2, l2): (&CpuStorage, &Layout),
) -> Result<(CpuStorage, Shape)> {
    let a = (cpu_slice::<T>(s1, l1)?, l1.dims());
    let b = (cpu_slice::<T>(s2, l2)?, l2.dims());
    let (out, shape) = k.forward(a, b)?;
    Ok((T::to_cpu_storage_owned(out), shape))
}

impl<K: Kernel1> CustomOp1 for Op<K> {
    fn name(&self) -> &'static str {
        K::NAME
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        match s {
            CpuStorage::F32(_) => forward1::<f32, K>(&self.0, s, l),
            CpuStorage::F64(_) => forward1::<f64, K>(&self.0, s, l),
            other => Err(unsupported(other)),
        }
    }

    fn bwd(&self, x: &Tensor, out: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(backward1(&self.0, x, out, grad)?))
    }
}

impl<K: Kernel2> CustomOp2 for Op<K> {
    fn name(&self) -> &'static str {
        K::NAME
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        match s1 {
            CpuStorage::F32(_) => forward2::<f32, K>(&self.0, (s1, l1), (s2, l2)),
            CpuStorage::F64(_) => forward2::<f64, K>(&self.0, (s1, l1), (s2, l2)),
            other => Err(unsupported(other)),
        }
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (da, db) = match a.dtype() {
            DType::F32 => self.0.backward::<f32>(a, b, out, grad)?,
            DType::F64 => self.0.backward::<f64>(a, b, out, grad)?,
            d => candle_core::bail!("{}: unsupported dtype {d:?}", K::NAME),
        };
        Ok((Some(da), Some(db)))
    }
}
