//! The optimizer state's zero tensors (Adam's moments), with their memory written at
//! construction. A zeroed allocation (calloc, candle's `Tensor::zeros`) maps the kernel's shared
//! zero page: the first step reads the moments, then writes them, and every 4 KiB page takes a
//! copy-on-write fault (a page clear and a TLB shootdown across the threads) inside that step,
//! ~0.6–1.5 s for a 135M-parameter model on a 2-core machine. Writing the zeros here, in
//! parallel, takes the page faults once, at construction, as plain first-touch faults.
//!
//! Owns the allocation only. Must not know what the moments mean or how they are updated.

use candle_core::{DType, Device, Shape, Tensor};
use rayon::prelude::*;

use crate::error::Result;

/// A zero tensor of `shape`; on the CPU in f32 its memory is written (not just reserved).
pub(super) fn written_zeros(shape: &Shape, dtype: DType, device: &Device) -> Result<Tensor> {
    if dtype != DType::F32 || !device.is_cpu() {
        return Ok(Tensor::zeros(shape, dtype, device)?);
    }
    // An indexed parallel collect writes each element into the (uninitialised) buffer.
    let data: Vec<f32> = (0..shape.elem_count())
        .into_par_iter()
        .map(|_| 0.0)
        .collect();
    Ok(Tensor::from_vec(data, shape, device)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_zeros_are_zero_tensors_of_the_shape() {
        let shape = Shape::from((3, 70_001));
        for dtype in [DType::F32, DType::F64] {
            let t = written_zeros(&shape, dtype, &Device::Cpu).unwrap();
            assert_eq!((t.dims(), t.dtype()), (shape.dims(), dtype));
            let sum = t.abs().unwrap().sum_all().unwrap();
            assert_eq!(
                sum.to_dtype(DType::F64)
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap(),
                0.0
            );
            assert!(t.is_contiguous());
        }
    }
}
