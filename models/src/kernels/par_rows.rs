//! The row-parallel split the CPU kernels share: whole rows per task, on rayon's global pool (the
//! one candle's matmuls already use) when the work pays for it. No thread is spawned per call.

use rayon::prelude::*;

fn kernel_threads() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| {
        candle_core::utils::get_num_threads()
            .min(rayon::current_num_threads())
            .max(1)
    })
}

/// How many blocks a row-parallel kernel splits into: one per ~32k units of work, at most one per
/// row and one per core.
fn blocks_for(rows: usize, work_per_row: usize) -> usize {
    const MIN_WORK: usize = 1 << 15;
    let by_work = rows.saturating_mul(work_per_row.max(1)) / MIN_WORK;
    kernel_threads().min(rows).min(by_work).max(1)
}

/// Split `out` into blocks of whole rows of `row_len` and run `f(first_row, block)` on each, in
/// parallel when the work is large enough to pay for it; returns the blocks' results in order.
/// The split depends only on the sizes and the thread count, so results are deterministic on a
/// given machine.
pub(crate) fn par_rows_map<T: Send, R: Send>(
    out: &mut [T],
    row_len: usize,
    work_per_row: usize,
    f: impl Fn(usize, &mut [T]) -> R + Sync,
) -> Vec<R> {
    let row_len = row_len.max(1);
    let rows = out.len() / row_len;
    let blocks = blocks_for(rows, work_per_row);
    if blocks == 1 {
        return vec![f(0, out)];
    }
    let per = rows.div_ceil(blocks);
    out.par_chunks_mut(per * row_len)
        .enumerate()
        .map(|(i, block)| f(i * per, block))
        .collect()
}

/// [`par_rows`] over two outputs of the same length, split identically.
pub(crate) fn par_rows2<T: Send>(
    a: &mut [T],
    b: &mut [T],
    row_len: usize,
    work_per_row: usize,
    f: impl Fn(usize, &mut [T], &mut [T]) + Sync,
) {
    assert_eq!(a.len(), b.len());
    let row_len = row_len.max(1);
    let rows = a.len() / row_len;
    let blocks = blocks_for(rows, work_per_row);
    if blocks == 1 {
        f(0, a, b);
        return;
    }
    let per = rows.div_ceil(blocks);
    a.par_chunks_mut(per * row_len)
        .zip(b.par_chunks_mut(per * row_len))
        .enumerate()
        .for_each(|(i, (x, y))| f(i * per, x, y));
}

/// [`par_rows_map`] without results.
pub(crate) fn par_rows<T: Send>(
    out: &mut [T],
    row_len: usize,
    work_per_row: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    par_rows_map(out, row_len, work_per_row, f);
}
