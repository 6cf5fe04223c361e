//! Full-recompute generation (no KV cache): the reference the paged engine is tested against,
//! and the no-cache baseline of `rlvr bench rollout`. Shares only the sampler with the engine:
//! no blocks, no scheduler.

use rlvr_models::{Batch, Forward, Model};

use crate::error::{Ctx, Result};
use crate::rng::SeqRng;
use crate::sampler::{sample as sample_token, SamplingParams};
use crate::sequence::{Completion, FinishReason};

/// Generate `samples` samples of one prompt by recomputing the whole sequence every token,
/// batching them in one padded forward.
pub fn generate_naive(
    model: &Model,
    prompt: &[u32],
    samples: usize,
    params: &SamplingParams,
) -> Result<Vec<Completion>> {
    let mut seqs: Vec<Vec<u32>> = vec![prompt.to_vec(); samples];
    let mut rngs: Vec<SeqRng> = (0..samples)
        .map(|sample| SeqRng::new(params.seed, sample as u64))
        .collect();
    let mut outs: Vec<Completion> = (0..samples)
        .map(|sample| Completion::empty(0, sample, prompt))
        .collect();
    let mut done = vec![params.max_new_tokens == 0; samples];
    while done.iter().any(|d| !d) {
        let live: Vec<usize> = (0..samples).filter(|&sample| !done[sample]).collect();
        let rows: Vec<Vec<u32>> = live.iter().map(|&sample| seqs[sample].clone()).collect();
        let logits = model.forward(Batch::padded(&rows, 0), Forward::INFERENCE)?;
        for (row, &sample) in live.iter().enumerate() {
            let last = seqs[sample].len() - 1;
            let last_logits: Vec<f32> = logits
                .get(row)
                .and_then(|l| l.get(last))
                .and_then(|l| l.to_vec1())
                .ctx("naive logits")?;
            let choice = sample_token(&last_logits, params, &mut rngs[sample]);
            seqs[sample].push(choice.token);
            let out = &mut outs[sample];
            out.token_ids.push(choice.token);
            out.sampling_logprobs.push(choice.sampling_logprob);
            out.logprobs.push(choice.raw_logprob);
            out.entropies.push(choice.entropy);
            out.policy_versions.push(0);
            if let Some(support) = choice.support {
                out.sampling_support.push(support);
            }
            if !params.ignore_eos && params.stop_token_ids.contains(&choice.token) {
                out.finish_reason = FinishReason::Eos;
                done[sample] = true;
            } else if out.token_ids.len() >= params.max_new_tokens {
                done[sample] = true;
            }
        }
    }
    Ok(outs)
}
