//! Causal padded softmax of `scale · scores` over the last dim of `[b, n_kv, group*s_q, s_k]`
//! (row r is query `r % s_q` of batch row `r / (n_kv*group*s_q)`). Masked entries are exactly 0,
//! as with an additive −1e9 mask; statistics are accumulated in f64.
//!
//! Two layouts: square (`s_q = s_k`, right-padded rows of real length `len`), and with query
//! offsets (the packed layout's rows: query i of batch row b is key `offset_b + i` and sees keys
//! `0..=offset_b + i`; queries past the row's count are padding and get an all-zero row).

use candle_core::{Result, Shape, Tensor};

use super::{dispatch_dtype, par_rows, with_hosts, Kernel1, Real};

#[derive(Clone)]
pub(crate) struct CausalSoftmax {
    /// Real (non-padding) length of each batch row (keys).
    pub lengths: Vec<usize>,
    /// Padded sequence length (keys, and queries of the square layout).
    pub seq_len: usize,
    pub scale: f64,
    /// The query offsets of the packed layout (`None`: square).
    pub queries: Option<QueryOffsets>,
}

/// Per batch row, where its queries sit among its keys.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct QueryOffsets {
    /// Key index of each row's first query.
    pub offsets: Vec<usize>,
    /// Real queries of each row (`offset + count` = the row's key length).
    pub counts: Vec<usize>,
    /// Padded number of queries per row.
    pub q_len: usize,
}

impl CausalSoftmax {
    /// Padded queries per row.
    fn q_len(&self) -> usize {
        self.queries.as_ref().map_or(self.seq_len, |q| q.q_len)
    }

    /// For row `r` of the scores (`per_batch` rows per batch row): its key index `i` (for the
    /// diagonal), the visible prefix length `n` and whether the diagonal is visible beyond it.
    #[inline(always)]
    fn row_view(&self, r: usize, per_batch: usize) -> (usize, usize, bool) {
        let b = r / per_batch;
        match &self.queries {
            None => {
                let i = r % self.seq_len;
                let (n, diag) = visible(i, self.lengths[b]);
                (i, n, diag)
            }
            Some(q) => {
                let i = r % q.q_len;
                if i < q.counts[b] {
                    (q.offsets[b] + i, q.offsets[b] + i + 1, false)
                } else {
                    (0, 0, false)
                }
            }
        }
    }

    fn check(&self, dims: &[usize]) -> Result<(usize, usize)> {
        let s = self.seq_len;
        let &[b, heads, rows_per_head, s_k] = dims else {
            candle_core::bail!("causal softmax: scores {dims:?} are not 4-d");
        };
        let q_len = self.q_len();
        let offsets_ok = self.queries.as_ref().is_none_or(|q| {
            q.offsets.len() == b
                && q.counts.len() == b
                && q.counts.iter().all(|&c| c <= q_len)
                && q.offsets.iter().zip(&q.counts).all(|(o, c)| o + c <= s)
        });
        if s_k != s || q_len == 0 || rows_per_head % q_len != 0 || b != self.lengths.len() {
            candle_core::bail!(
                "causal softmax: scores {dims:?}, seq {s}, {} rows",
                self.lengths.len()
            );
        }
        if !offsets_ok {
            candle_core::bail!("causal softmax: query offsets do not fit scores {dims:?}");
        }
        Ok((s, heads * rows_per_head))
    }
}

/// Keys visible to query `i` of a row of real length `len`: `j ≤ i` with `j < len`, and the
/// query itself (a padding row sees itself, so no row is empty). Returns the visible prefix
/// length and whether the diagonal is visible on its own beyond it.
#[inline(always)]
fn visible(i: usize, len: usize) -> (usize, bool) {
    if i < len {
        (i + 1, false)
    } else {
        (len, true)
    }
}

impl Kernel1 for CausalSoftmax {
    const NAME: &'static str = "rlvr-causal-softmax";

    fn forward<T: Real>(&self, x: &[T], dims: &[usize]) -> Result<(Vec<T>, Shape)> {
        let (s, per_batch) = self.check(dims)?;
        let mut out = vec![T::from_f64(0.0); x.len()];
        par_rows(&mut out, s, 3 * s, |r0, o| {
            for (k, orow) in o.chunks_exact_mut(s).enumerate() {
                let r = r0 + k;
                let (i, n, diag) = self.row_view(r, per_batch);
                if n > 0 || diag {
                    self.row_forward(&x[r * s..(r + 1) * s], orow, i, n, diag);
                }
            }
        });
        Ok((out, Shape::from(dims.to_vec())))
    }

    fn backward<T: Real>(&self, _x: &Tensor, out: &Tensor, grad: &Tensor) -> Result<Tensor> {
        backward_typed::<T>(out, grad, self)
    }
}

impl CausalSoftmax {
    /// Softmax of the visible entries of one row of scores (the first `n`, plus the diagonal
    /// `i` when `diag`); the rest of `orow` stays 0.
    #[inline(always)]
    fn row_forward<T: Real>(&self, xr: &[T], orow: &mut [T], i: usize, n: usize, diag: bool) {
        let scale = T::from_f64(self.scale);
        let mut m = xr[..n]
            .iter()
            .fold(T::from_f64(f64::NEG_INFINITY), |m, &v| m.fmax(v * scale));
        if diag {
            m = m.fmax(xr[i] * scale);
        }
        let mut sum = 0f64;
        for (o, &v) in orow[..n].iter_mut().zip(&xr[..n]) {
            let e = (v * scale - m).exp();
            *o = e;
            sum += e.to_f64();
        }
        if diag {
            let e = (xr[i] * scale - m).exp();
            orow[i] = e;
            sum += e.to_f64();
        }
        let inv = T::from_f64(1.0 / sum);
        for o in &mut orow[..n] {
            *o *= inv;
        }
        if diag {
            orow[i] *= inv;
        }
    }
}

/// Gradient of the scores given the softmax output `probs` and its gradient.
pub(crate) fn causal_softmax_backward(
    probs: &Tensor,
    grad: &Tensor,
    op: &CausalSoftmax,
) -> Result<Tensor> {
    dispatch_dtype!(probs.dtype(), backward_typed(probs, grad, op))
}

fn backward_typed<T: Real>(y: &Tensor, g: &Tensor, op: &CausalSoftmax) -> Result<Tensor> {
    let (s, per_batch) = op.check(y.dims())?;
    let scale = T::from_f64(op.scale);
    with_hosts::<T, _, 2>([y, g], |[ys, gs]| {
        let mut dx = vec![T::from_f64(0.0); ys.len()];
        par_rows(&mut dx, s, 3 * s, |r0, o| {
            for (k, orow) in o.chunks_exact_mut(s).enumerate() {
                let r = r0 + k;
                let (i, n, diag) = op.row_view(r, per_batch);
                let (yr, gr) = (&ys[r * s..(r + 1) * s], &gs[r * s..(r + 1) * s]);
                let mut dot = 0f64;
                for j in 0..n {
                    dot += (yr[j] * gr[j]).to_f64();
                }
                if diag {
                    dot += (yr[i] * gr[i]).to_f64();
                }
                let dot = T::from_f64(dot);
                for j in 0..n {
                    orow[j] = scale * yr[j] * (gr[j] - dot);
                }
                if diag {
                    orow[i] = scale * yr[i] * (gr[i] - dot);
                }
            }
        });
        Tensor::from_vec(dx, y.shape(), y.device())
    })
}
