//! The embedding table's gradient: each looked-up row's gradient added into its token's row.

use candle_core::{Result, Tensor};

use super::{dispatch_dtype, with_hosts, Real};

/// Gradient of the embedding table `[vocab, h]` from the gradient `dx` of its looked-up rows.
pub(crate) fn embedding_backward(table: &Tensor, ids: &Tensor, dx: &Tensor) -> Result<Tensor> {
    let ids = ids.flatten_all()?.to_vec1::<u32>()?;
    dispatch_dtype!(table.dtype(), scatter_add(table, &ids, dx))
}

fn scatter_add<T: Real>(table: &Tensor, ids: &[u32], dx: &Tensor) -> Result<Tensor> {
    let (vocab, h) = table.dims2()?;
    let mut out = vec![T::from_f64(0.0); vocab * h];
    with_hosts::<T, _, 1>([dx], |[d]| {
        if d.len() != ids.len() * h {
            candle_core::bail!(
                "embedding backward: {} rows for {} ids",
                d.len() / h,
                ids.len()
            );
        }
        for (&id, row) in ids.iter().zip(d.chunks_exact(h)) {
            let dst = &mut out[id as usize * h..(id as usize + 1) * h];
            for (o, &g) in dst.iter_mut().zip(row) {
                *o += g;
            }
        }
        Ok(())
    })?;
    Tensor::from_vec(out, (vocab, h), table.device())
}
