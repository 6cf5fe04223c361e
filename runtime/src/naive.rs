//! Full-recompute generation (no KV cache): the reference the paged engine is tested against,
//! and the no-cache baseline of `rlvr bench rollout`. Shares only the sampler with the engine:
//! no blocks, no scheduler.

use rlvr_models::{Batch, Forward, Model};

use crate::error::{Ctx, Result};
use crate::rng::SeqRng;
use crate::sampler::{sample, SamplingParams};
use crate::sequence::{Completion, FinishReason};

/// Generate `n` samples of one prompt by recomputing the whole sequence every token, batching
/// the `n` samples in one padded forward.
pub fn generate_naive(
    model: &Model,
    prompt: &[u32],
    n: usize,
    params: &SamplingParams,
) -> Result<Vec<Completion>> {
    let mut seqs: Vec<Vec<u32>> = vec![prompt.to_vec(); n];
    let mut rngs: Vec<SeqRng> = (0..n).map(|i| SeqRng::new(params.seed, i as u64)).collect();
    let mut outs: Vec<Completion> = (0..n).map(|i| Completion::empty(0, i, prompt)).collect();
    let mut done = vec![params.max_new_tokens == 0; n];
    while done.iter().any(|d| !d) {
        let live: Vec<usize> = (0..n).filter(|&i| !done[i]).collect();
        let rows: Vec<Vec<u32>> = live.iter().map(|&i| seqs[i].clone()).collect();
        let logits = model.forward(Batch::padded(&rows, 0), Forward::INFERENCE)?;
        for (bi, &i) in live.iter().enumerate() {
            let last = seqs[i].len() - 1;
            let row: Vec<f32> = logits
                .get(bi)
                .and_then(|l| l.get(last))
                .and_then(|l| l.to_vec1())
                .ctx("naive logits")?;
            let c = sample(&row, params, &mut rngs[i]);
            seqs[i].push(c.token);
            let o = &mut outs[i];
            o.token_ids.push(c.token);
            o.sampling_logprobs.push(c.sampling_logprob);
            o.logprobs.push(c.raw_logprob);
            o.entropies.push(c.entropy);
            o.policy_versions.push(0);
            if !params.ignore_eos && params.stop_token_ids.contains(&c.token) {
                o.finish_reason = FinishReason::Eos;
                done[i] = true;
            } else if o.token_ids.len() >= params.max_new_tokens {
                done[i] = true;
            }
        }
    }
    Ok(outs)
}
