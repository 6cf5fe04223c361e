//! The packed training layout of a GRPO group: its prompt once, then its G completions, as one
//! token stream. Each completion attends causally to the prompt and to itself only, at positions
//! continuing from the prompt's length (the positions the runtime sampled them at), so every
//! per-token value equals the one of the unshared row `prompt + completion`, while the prompt's
//! activations are computed once and their gradient sums the contributions of all completions.
//!
//! Owns the layout (stream ids and positions, the attention's virtual rows, which stream position
//! predicts each completion token) and the attention over it ([`attention`]). Must not know
//! losses, groups' rewards or the trainer's micro-batching: callers hand it units of one prompt
//! and its completions.

pub(crate) mod attention;
#[cfg(test)]
mod tests;

use crate::error::{ModelError, Result};

/// One prompt and completions of it (a whole group, or a part of one).
#[derive(Debug, Clone, Copy)]
pub struct PackedUnit<'a> {
    pub prompt: &'a [u32],
    pub completions: &'a [&'a [u32]],
}

/// Units laid out as one stream `[prompt₁, c₁₁, …, c₁G, prompt₂, …]` of `T` tokens.
///
/// Attention runs over virtual rows: per unit one row for the prompt (keys = queries = the
/// prompt) and one per non-empty completion (keys = prompt + completion, queries = the
/// completion, query i at key `prompt_len + i`). Rows are padded to `q_len` queries and `k_len`
/// keys; padding gathers stream token 0 and is masked.
#[derive(Debug, Clone, PartialEq)]
pub struct PackedLayout {
    pub(crate) ids: Vec<u32>,
    pub(crate) positions: Vec<u32>,
    /// `[rows · q_len]` stream index of each query slot.
    pub(crate) q_index: Vec<u32>,
    /// `[rows · k_len]` stream index of each key slot.
    pub(crate) k_index: Vec<u32>,
    /// `[T]` the query slot of each stream token.
    pub(crate) inverse: Vec<u32>,
    /// Per row: key index of its first query, its real queries, its real keys.
    pub(crate) offsets: Vec<usize>,
    pub(crate) counts: Vec<usize>,
    pub(crate) key_lengths: Vec<usize>,
    pub(crate) q_len: usize,
    pub(crate) k_len: usize,
    /// Per completion token (units, completions and tokens in order), the stream index of the
    /// position that predicts it, and the token.
    predict: Vec<u32>,
    targets: Vec<u32>,
}

/// A virtual row under construction: its key stream indices and how many of them (the last)
/// are queries.
struct Row {
    keys: Vec<u32>,
    queries: usize,
}

impl PackedLayout {
    /// The layout of `units`; an error for a unit with an empty prompt (its first completion
    /// token would have no context).
    pub fn new(units: &[PackedUnit<'_>]) -> Result<Self> {
        let mut ids = Vec::new();
        let mut positions = Vec::new();
        let mut rows = Vec::new();
        let (mut predict, mut targets) = (Vec::new(), Vec::new());
        for (u, unit) in units.iter().enumerate() {
            if unit.prompt.is_empty() {
                return Err(ModelError::Candle {
                    context: format!("packed layout: unit {u}"),
                    source: candle_core::Error::Msg("empty prompt".into()),
                });
            }
            let start = ids.len() as u32;
            let p = unit.prompt.len();
            ids.extend_from_slice(unit.prompt);
            positions.extend(0..p as u32);
            let prompt_keys: Vec<u32> = (start..start + p as u32).collect();
            rows.push(Row {
                keys: prompt_keys.clone(),
                queries: p,
            });
            for c in unit.completions {
                let c_start = ids.len() as u32;
                ids.extend_from_slice(c);
                positions.extend(p as u32..(p + c.len()) as u32);
                for t in 0..c.len() as u32 {
                    // Token 0 is predicted by the prompt's last position, token t by token t−1.
                    predict.push(if t == 0 {
                        start + p as u32 - 1
                    } else {
                        c_start + t - 1
                    });
                }
                targets.extend_from_slice(c);
                if !c.is_empty() {
                    let mut keys = prompt_keys.clone();
                    keys.extend(c_start..c_start + c.len() as u32);
                    rows.push(Row {
                        keys,
                        queries: c.len(),
                    });
                }
            }
        }
        Ok(Self::with_rows(ids, positions, rows, predict, targets))
    }

    fn with_rows(
        ids: Vec<u32>,
        positions: Vec<u32>,
        rows: Vec<Row>,
        predict: Vec<u32>,
        targets: Vec<u32>,
    ) -> Self {
        let q_len = rows.iter().map(|r| r.queries).max().unwrap_or(1).max(1);
        let k_len = rows.iter().map(|r| r.keys.len()).max().unwrap_or(1).max(1);
        let mut layout = PackedLayout {
            inverse: vec![0; ids.len()],
            ids,
            positions,
            q_index: Vec::with_capacity(rows.len() * q_len),
            k_index: Vec::with_capacity(rows.len() * k_len),
            offsets: Vec::with_capacity(rows.len()),
            counts: Vec::with_capacity(rows.len()),
            key_lengths: Vec::with_capacity(rows.len()),
            q_len,
            k_len,
            predict,
            targets,
        };
        for (b, row) in rows.iter().enumerate() {
            let offset = row.keys.len() - row.queries;
            for (i, &key) in row.keys[offset..].iter().enumerate() {
                layout.inverse[key as usize] = (b * q_len + i) as u32;
            }
            let pad = |n: usize| std::iter::repeat_n(0u32, n);
            layout.q_index.extend_from_slice(&row.keys[offset..]);
            layout.q_index.extend(pad(q_len - row.queries));
            layout.k_index.extend_from_slice(&row.keys);
            layout.k_index.extend(pad(k_len - row.keys.len()));
            layout.offsets.push(offset);
            layout.counts.push(row.queries);
            layout.key_lengths.push(row.keys.len());
        }
        layout
    }

    /// Tokens in the stream (T).
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Virtual attention rows.
    pub fn rows(&self) -> usize {
        self.counts.len()
    }

    /// The stream's token ids and positions.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    pub fn positions(&self) -> &[u32] {
        &self.positions
    }

    /// Per completion token (in unit, completion and token order), the stream index whose
    /// hidden state predicts it (a unit's prompt's last position for every first token).
    pub fn completion_positions(&self) -> &[u32] {
        &self.predict
    }

    /// The completion tokens, in the order of [`PackedLayout::completion_positions`].
    pub fn targets(&self) -> &[u32] {
        &self.targets
    }
}
