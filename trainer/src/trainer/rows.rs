//! How a micro-batch's sequences reach the model: right-padded rows (`prompt + completion` each,
//! the prompt computed once per sample), or the packed layout (`share_prompt`: consecutive
//! samples with the same prompt become one unit, the prompt once then their completions).
//!
//! Owns the choice of layout and which hidden-state position predicts each completion token.
//! Must not know losses or gradients: the forward module reads positions and targets from here.

use rlvr_models::{Batch, PackedLayout, PackedUnit};

use super::prepare::Seq;
use crate::config::TrainerConfig;
use crate::error::Result;

/// A micro-batch's token rows and prompt lengths, and their packed layout when prompts are
/// shared.
pub(crate) struct MicroRows {
    pub rows: Vec<Vec<u32>>,
    pub prompt_lens: Vec<usize>,
    pub pad_id: u32,
    packed: Option<PackedLayout>,
}

impl MicroRows {
    /// Rows `rows[i]` whose completion starts at `prompt_lens[i]`; packed when `share_prompt`.
    pub fn new(
        rows: Vec<Vec<u32>>,
        prompt_lens: Vec<usize>,
        pad_id: u32,
        share_prompt: bool,
    ) -> Result<Self> {
        let packed = if share_prompt {
            Some(pack(&rows, &prompt_lens)?)
        } else {
            None
        };
        Ok(Self {
            rows,
            prompt_lens,
            pad_id,
            packed,
        })
    }

    /// The rows of a micro-batch of sequences, laid out as `cfg.share_prompt` says.
    pub fn of(seqs: &[Seq], cfg: &TrainerConfig) -> Result<Self> {
        let rows = seqs.iter().map(|q| q.row.clone()).collect();
        let prompt_lens = seqs.iter().map(|q| q.prompt_len).collect();
        Self::new(rows, prompt_lens, cfg.pad_id, cfg.share_prompt)
    }

    pub fn batch(&self) -> Batch<'_> {
        match &self.packed {
            Some(layout) => Batch::packed(layout),
            None => Batch::padded(&self.rows, self.pad_id),
        }
    }

    /// Indices in the flattened `[b·s]` hidden states of the positions predicting each
    /// completion token (sequences and tokens in order), and those tokens.
    pub fn completion_index(&self, seq_len: usize) -> (Vec<u32>, Vec<u32>) {
        if let Some(layout) = &self.packed {
            return (
                layout.completion_positions().to_vec(),
                layout.targets().to_vec(),
            );
        }
        let mut idx = Vec::new();
        let mut targets = Vec::new();
        for (b, (row, &prompt_len)) in self.rows.iter().zip(&self.prompt_lens).enumerate() {
            for (t, &tok) in row.iter().enumerate().skip(prompt_len) {
                idx.push((b * seq_len + t - 1) as u32);
                targets.push(tok);
            }
        }
        (idx, targets)
    }

    /// Each sequence's completion tokens.
    pub fn completions(&self) -> Vec<&[u32]> {
        self.rows
            .iter()
            .zip(&self.prompt_lens)
            .map(|(row, &p)| &row[p..])
            .collect()
    }
}

/// Consecutive rows with the same prompt as units of the packed layout.
fn pack(rows: &[Vec<u32>], prompt_lens: &[usize]) -> Result<PackedLayout> {
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for i in 0..rows.len() {
        let prompt = &rows[i][..prompt_lens[i]];
        match spans.last_mut() {
            Some((start, end)) if &rows[*start][..prompt_lens[*start]] == prompt => *end = i + 1,
            _ => spans.push((i, i + 1)),
        }
    }
    let completions: Vec<&[u32]> = rows
        .iter()
        .zip(prompt_lens)
        .map(|(row, &p)| &row[p..])
        .collect();
    let units: Vec<PackedUnit<'_>> = spans
        .iter()
        .map(|&(start, end)| PackedUnit {
            prompt: &rows[start][..prompt_lens[start]],
            completions: &completions[start..end],
        })
        .collect();
    Ok(PackedLayout::new(&units)?)
}
