//! DAPO's dynamic sampling (`trainer.dynamic_sampling`): a batch keeps only the groups whose
//! rewards are not all equal (the others have zero advantage everywhere) and is filled up to
//! `prompts_per_step` groups from extra rounds of prompts, at most
//! `trainer.dynamic_sampling_max_rounds` of them. Still short after the cap, the batch trains on
//! the groups it has; with none at all, on its first round's groups (which carry no gradient).
//!
//! Owns the filter, the round loop and its counts. It must not know how a round's prompts are
//! drawn, generated or scored (the pipeline passes that in), nor about training.

use anyhow::Result;
use rlvr_trainer::ScoredGroup;
use serde::{Deserialize, Serialize};

use super::pipeline::ScoredJob;

/// What dynamic sampling did for one batch; every group of the batch carries it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DynamicStats {
    /// Groups in the batch: `prompts_per_step` unless the cap was hit first.
    pub batch_size: usize,
    pub extra_rounds: u32,
    /// Groups generated in the extra rounds.
    pub extra_groups: usize,
    /// Groups left out because their rewards were all equal (all rounds).
    pub dropped_groups: usize,
    /// Generation seconds of the extra rounds.
    pub extra_gen_s: f64,
    /// The cap on extra rounds was hit before the batch held `prompts_per_step` groups.
    pub short: bool,
}

/// One round's scored groups (in prompt order) and its generation seconds.
pub struct Round {
    pub jobs: Vec<ScoredJob>,
    pub gen_s: f64,
}

/// Whether a group's rewards differ: the group has some non-zero advantage.
pub fn has_variance(group: &ScoredGroup) -> bool {
    let first = group.samples.first().map(|s| s.reward);
    group.samples.iter().any(|s| Some(s.reward) != first)
}

/// Fill a batch of `n` groups: round 0, then extra rounds `1..=max_rounds` while short.
/// `round(r)` makes round r; None for round 0 means the data is used up (the result is then
/// None too). The groups come back indexed `0..` in the order kept, carrying the batch's
/// generation time and tokens over all rounds and the stats.
pub fn fill(
    n: usize,
    max_rounds: u32,
    mut round: impl FnMut(u32) -> Result<Option<Round>>,
) -> Result<Option<Vec<ScoredJob>>> {
    let Some(first) = round(0)? else {
        return Ok(None);
    };
    let mut stats = DynamicStats::default();
    let mut gen_s = first.gen_s;
    let mut tokens = round_tokens(&first.jobs);
    let mut kept = vec![];
    keep(&first.jobs, n, &mut kept, &mut stats);
    while kept.len() < n && stats.extra_rounds < max_rounds {
        let Some(extra) = round(stats.extra_rounds + 1)? else {
            break;
        };
        stats.extra_rounds += 1;
        stats.extra_groups += extra.jobs.len();
        stats.extra_gen_s += extra.gen_s;
        gen_s += extra.gen_s;
        tokens += round_tokens(&extra.jobs);
        keep(&extra.jobs, n, &mut kept, &mut stats);
    }
    stats.short = kept.len() < n;
    if kept.is_empty() {
        kept = first.jobs;
    }
    stats.batch_size = kept.len();
    for (index, job) in kept.iter_mut().enumerate() {
        job.index = index;
        job.gen_s = gen_s;
        job.generated_tokens = tokens;
        job.dynamic = Some(stats.clone());
    }
    Ok(Some(kept))
}

/// Keep the groups of `jobs` with reward variance, up to `n` in all; count those dropped.
fn keep(jobs: &[ScoredJob], n: usize, kept: &mut Vec<ScoredJob>, stats: &mut DynamicStats) {
    for job in jobs {
        if !has_variance(&job.group) {
            stats.dropped_groups += 1;
        } else if kept.len() < n {
            kept.push(job.clone());
        }
    }
}

/// Tokens generated in a round: each of its groups carries the round's total.
fn round_tokens(jobs: &[ScoredJob]) -> usize {
    jobs.first().map_or(0, |job| job.generated_tokens)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rlvr_trainer::ScoredSample;

    /// A scored group of prompt `id` with these rewards, from a round of `tokens` tokens.
    fn job(id: u64, rewards: &[f64], tokens: usize) -> ScoredJob {
        let samples = rewards
            .iter()
            .map(|&reward| ScoredSample {
                reward,
                ..Default::default()
            })
            .collect();
        ScoredJob {
            batch: 7,
            index: 0,
            group: ScoredGroup {
                prompt_id: id,
                samples,
                t_start: 0,
            },
            correct: vec![],
            boxed: vec![],
            gen_s: 1.0,
            generated_tokens: tokens,
            verify_s: 0.0,
            tools: vec![],
            dynamic: None,
        }
    }

    /// Rounds of two groups each: (prompt id, has variance).
    fn rounds(spec: Vec<Vec<(u64, bool)>>) -> impl FnMut(u32) -> Result<Option<Round>> {
        move |r| {
            let jobs = spec.get(r as usize).map(|round| {
                let jobs = round.iter().map(|&(id, var)| {
                    let rewards = if var { [0.0, 1.0] } else { [1.0, 1.0] };
                    job(id, &rewards, 10)
                });
                jobs.collect()
            });
            Ok(jobs.map(|jobs| Round { jobs, gen_s: 1.0 }))
        }
    }

    fn ids(jobs: &[ScoredJob]) -> Vec<u64> {
        jobs.iter().map(|job| job.group.prompt_id).collect()
    }

    #[test]
    fn variance_is_any_reward_differing() {
        assert!(!has_variance(&job(0, &[0.5, 0.5, 0.5], 0).group));
        assert!(has_variance(&job(0, &[0.5, 0.5, 0.6], 0).group));
        assert!(!has_variance(&job(0, &[], 0).group));
    }

    #[test]
    fn fills_from_extra_rounds_in_order_and_counts() {
        let spec = vec![
            vec![(0, false), (1, true)],
            vec![(2, false), (3, false)],
            vec![(4, true), (5, true)],
            vec![(6, true), (7, true)],
        ];
        let kept = fill(2, 3, rounds(spec)).unwrap().unwrap();
        assert_eq!(ids(&kept), [1, 4]);
        let want = DynamicStats {
            batch_size: 2,
            extra_rounds: 2,
            extra_groups: 4,
            dropped_groups: 3,
            extra_gen_s: 2.0,
            short: false,
        };
        for (i, job) in kept.iter().enumerate() {
            assert_eq!(job.index, i);
            assert_eq!(job.dynamic.as_ref(), Some(&want));
            assert_eq!((job.gen_s, job.generated_tokens), (3.0, 30));
        }
    }

    #[test]
    fn the_cap_trains_on_what_there_is_or_the_first_round() {
        let spec = vec![vec![(0, false), (1, true)], vec![(2, false), (3, false)]];
        let kept = fill(2, 1, rounds(spec)).unwrap().unwrap();
        assert_eq!(ids(&kept), [1]);
        let stats = kept[0].dynamic.clone().unwrap();
        assert!(stats.short && stats.batch_size == 1 && stats.dropped_groups == 3);

        let spec = vec![vec![(0, false), (1, false)], vec![(2, false), (3, false)]];
        let kept = fill(2, 5, rounds(spec)).unwrap().unwrap();
        assert_eq!(ids(&kept), [0, 1], "none with variance: round 0 as it is");
        let stats = kept[0].dynamic.clone().unwrap();
        assert!(stats.short && stats.batch_size == 2 && stats.extra_rounds == 1);

        assert!(
            fill(2, 3, rounds(vec![])).unwrap().is_none(),
            "data used up"
        );
    }
}
