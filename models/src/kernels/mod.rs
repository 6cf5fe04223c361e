//! CPU kernels with a hand-written backward, for the training forward on the CPU (f32 / f64).
//! Each replaces a chain of composed candle ops (and their temporaries) by one row-parallel pass;
//! other devices and dtypes use the composed ops of [`crate::ops`]. Every kernel's backward is
//! tested against autograd through its composed version.
//!
//! Owns: the float trait the kernels are generic over, the candle custom-op adapters, the
//! row-parallel split, host access to tensors, and one file per kernel. Must not know the
//! decoder, its config or HF tensor names.

pub(crate) mod causal_softmax;
pub(crate) mod embedding;
mod host;
mod op;
mod par_rows;
mod real;
pub(crate) mod rms_norm;
pub(crate) mod rope;
pub(crate) mod swiglu;
pub(crate) mod target_stats;
pub(crate) mod transpose;

pub(crate) use host::{cpu_slice, with_hosts};
pub(crate) use op::{backward1, Kernel1, Kernel2, Op};
pub(crate) use par_rows::{par_rows, par_rows2, par_rows_map};
pub(crate) use real::{dispatch_dtype, Real};

use candle_core::{DType, Device};

/// Whether the CPU kernels handle tensors of this device and dtype.
pub(crate) fn cpu_kernels(device: &Device, dtype: DType) -> bool {
    device.is_cpu() && matches!(dtype, DType::F32 | DType::F64)
}
