//! Prompts too long to run: each prompt's token count against the model's context minus the
//! generation budget (`max_new_tokens`) and against the KV pool, checked once, before anything
//! is generated. `on_long_prompt = "error"` (the default) fails naming the offenders (item,
//! length, limit); `"skip"` leaves them out and says how many.
//!
//! Why `error` by default: the prompts are data the user chose, and leaving some out silently
//! changes what is trained on and which problems the accuracy is measured over, so that two runs
//! are no longer comparable. vLLM refuses such a request in the same way; `skip` (TRL's
//! filtering) is there for a dataset known to hold a few over-long items.
//!
//! Owns the limit and the policy. It must not know where prompts come from or what is done with
//! them: callers hand it labelled lengths and get back which to keep.

use anyhow::{bail, Result};
use rlvr_models::Model;
use rlvr_runtime::EngineConfig;
use serde::{Deserialize, Serialize};

/// What to do with a prompt that cannot fit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum OnLongPrompt {
    /// Fail before anything runs, naming the prompts.
    #[default]
    Error,
    /// Leave them out, saying how many.
    Skip,
}

/// The longest prompt that can run with a model, an engine and a generation budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptLimit {
    pub context: usize,
    /// Tokens the KV pool holds (one sequence may use all of it).
    pub kv_tokens: usize,
    pub max_new_tokens: usize,
}

impl PromptLimit {
    /// The limit for an engine over `model` with `engine` (its KV pool as it would be sized now).
    pub fn new(model: &Model, engine: &EngineConfig, max_new_tokens: usize) -> Result<Self> {
        let blocks = rlvr_runtime::kv_pool_blocks(model, engine)?;
        Ok(Self {
            context: model.config.max_position_embeddings,
            kv_tokens: blocks * engine.block_size,
            max_new_tokens,
        })
    }

    /// Prompt tokens that leave room for `max_new_tokens` in the context and the KV pool.
    pub fn max_prompt_tokens(&self) -> usize {
        self.context
            .min(self.kv_tokens)
            .saturating_sub(self.max_new_tokens)
    }

    /// Where the limit comes from, and what would raise it.
    fn explain(&self) -> String {
        if self.context <= self.kv_tokens {
            format!(
                "the model's context of {} tokens minus max_new_tokens {}",
                self.context, self.max_new_tokens
            )
        } else {
            format!(
                "the KV pool of {} tokens minus max_new_tokens {}; a larger engine.kv_cache_mb \
                 (--kv-cache-mb) raises it",
                self.kv_tokens, self.max_new_tokens
            )
        }
    }
}

/// One prompt: how messages name it (e.g. `item 12 ("Natalia sold…")`), and its token count.
pub struct Prompt {
    pub label: String,
    pub tokens: usize,
}

/// Prompts listed in an error message, at most.
const LISTED: usize = 5;

/// Which of `prompts` (the `what` of `origin`, e.g. "training prompts" of `data.jsonl`) fit
/// under `limit`: every one, or an error naming those that do not (`Error`), or a mask of those
/// that do, with a line on stderr saying what was left out (`Skip`).
pub fn fit(
    prompts: &[Prompt],
    origin: &str,
    what: &str,
    limit: &PromptLimit,
    policy: OnLongPrompt,
) -> Result<Vec<bool>> {
    let max = limit.max_prompt_tokens();
    let keep: Vec<bool> = prompts.iter().map(|p| p.tokens <= max).collect();
    let long: Vec<&Prompt> = prompts.iter().filter(|p| p.tokens > max).collect();
    if long.is_empty() {
        return Ok(keep);
    }
    let listed: Vec<String> = long
        .iter()
        .take(LISTED)
        .map(|p| format!("{} has {} tokens", p.label, p.tokens))
        .collect();
    let more = match long.len() {
        n if n > LISTED => format!(" and {} more", n - LISTED),
        _ => String::new(),
    };
    let summary = format!(
        "{origin}: {} of {} {what} are longer than {max} tokens ({}): {}{more}",
        long.len(),
        prompts.len(),
        limit.explain(),
        listed.join("; ")
    );
    match policy {
        OnLongPrompt::Error => bail!(
            "{summary}. Shorten them, lower max_new_tokens, or set on_long_prompt = \"skip\" \
             (--on-long-prompt skip) to leave them out"
        ),
        OnLongPrompt::Skip if long.len() == prompts.len() => {
            bail!("{summary}. None is left to run")
        }
        OnLongPrompt::Skip => {
            eprintln!("rlvr: skipping them (on_long_prompt = skip): {summary}");
            Ok(keep)
        }
    }
}

/// The start of `text` for a label: at most `n` characters, on one line.
pub fn preview(text: &str, n: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(n) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompts(lens: &[usize]) -> Vec<Prompt> {
        lens.iter()
            .enumerate()
            .map(|(i, &tokens)| Prompt {
                label: format!("item {i}"),
                tokens,
            })
            .collect()
    }

    #[test]
    fn the_limit_is_the_tighter_of_context_and_kv_pool() {
        let limit = PromptLimit {
            context: 64,
            kv_tokens: 1024,
            max_new_tokens: 48,
        };
        assert_eq!(limit.max_prompt_tokens(), 16);
        let ps = prompts(&[10, 16, 131, 17]);
        let e = fit(
            &ps,
            "d.jsonl",
            "training prompts",
            &limit,
            OnLongPrompt::Error,
        )
        .unwrap_err()
        .to_string();
        for want in [
            "d.jsonl: 2 of 4 training prompts are longer than 16 tokens",
            "the model's context of 64 tokens minus max_new_tokens 48",
            "item 2 has 131 tokens; item 3 has 17 tokens",
            "on_long_prompt = \"skip\"",
        ] {
            assert!(e.contains(want), "no {want:?} in {e}");
        }
        let keep = fit(&ps, "d.jsonl", "prompts", &limit, OnLongPrompt::Skip).unwrap();
        assert_eq!(keep, [true, true, false, false]);
        let all_long = prompts(&[20, 30]);
        assert!(fit(&all_long, "d", "prompts", &limit, OnLongPrompt::Skip).is_err());
        let kv = PromptLimit {
            kv_tokens: 32,
            ..limit
        };
        assert_eq!(kv.max_prompt_tokens(), 0);
        let e = fit(&ps, "d", "prompts", &kv, OnLongPrompt::Error).unwrap_err();
        assert!(e.to_string().contains("KV pool of 32 tokens"), "{e}");
    }

    #[test]
    fn previews_are_short_and_on_one_line() {
        assert_eq!(preview("a\n b  c", 10), "a b c");
        assert_eq!(preview("héllo world", 5), "héllo…");
    }
}
