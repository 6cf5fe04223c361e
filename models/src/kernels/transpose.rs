//! The transposing copy `[a, b] → [b, a]` of a contiguous CPU f32 matrix: a decode step's
//! `W·xᵀ` result (`[out, rows]`) back to rows. candle's strided copy computes an index per
//! element (about a tenth of a CPU decode step went there); this one reads eight source columns
//! per row of the source and writes eight output rows in order, row blocks in parallel.
//!
//! Owns the copy only; must not know where the matrix comes from. It has no backward: callers
//! use it only for inference numerics, where no graph is recorded.

use candle_core::{DType, Result, Tensor};

use super::{par_rows, with_hosts};

/// Output rows written together (eight f32 are half a cache line of the source row).
const ROWS_AT_ONCE: usize = 8;

/// `t.t().contiguous()` for a 2-D tensor, by a blocked copy where `t` is contiguous CPU f32.
pub(crate) fn transposed(t: &Tensor) -> Result<Tensor> {
    let (a, b) = t.dims2()?;
    if !t.device().is_cpu() || t.dtype() != DType::F32 || !t.is_contiguous() || a * b == 0 {
        return t.t()?.contiguous();
    }
    let mut out = vec![0f32; a * b];
    with_hosts::<f32, _, 1>([t], |[src]| {
        par_rows(&mut out, a, a, |first_row, block| {
            copy_rows(src, b, first_row, block, a)
        });
        Ok(())
    })?;
    Tensor::from_vec(out, (b, a), t.device())
}

/// Output rows `first_row..` (in `block`, rows of `a`) from the source `[a, b]`.
fn copy_rows(src: &[f32], b: usize, first_row: usize, block: &mut [f32], a: usize) {
    for (i, rows) in block.chunks_mut(ROWS_AT_ONCE * a).enumerate() {
        let r0 = first_row + i * ROWS_AT_ONCE;
        let n = rows.len() / a;
        for j in 0..a {
            let column = &src[j * b + r0..j * b + r0 + n];
            for (k, &v) in column.iter().enumerate() {
                rows[k * a + j] = v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn equals_candles_strided_copy() -> Result<()> {
        for (a, b) in [(1, 1), (3, 5), (49, 64), (577, 17), (1000, 9)] {
            let data: Vec<f32> = (0..a * b).map(|i| i as f32 * 0.5 - 3.0).collect();
            let t = Tensor::from_vec(data, (a, b), &Device::Cpu)?;
            let want = t.t()?.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
            let got = transposed(&t)?;
            assert_eq!(got.dims(), &[b, a]);
            assert_eq!(got.flatten_all()?.to_vec1::<f32>()?, want, "{a}x{b}");
        }
        Ok(())
    }
}
