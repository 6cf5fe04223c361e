//! Multi-turn rollouts on the engine: every sample pauses where it may have written a tool call
//! (at `</tool_call>`; in Llama 3's bare-JSON form at every end of its turn, which then ends the
//! sample unless the turn was a call), the call runs on its own thread while the other samples
//! keep decoding, and the result's tokens are inserted and the sample resumes; until the model
//! ends its turn without a call, the turn limit, or the token budget.
//!
//! Owns the turn loop and the per-sample tool statistics. Must not know about rewards or
//! training: it returns completions (with their inserted-token flags) and what the model wrote.

use std::collections::HashMap;
use std::sync::mpsc;

use anyhow::{Context, Result};
use rlvr_models::TextTokenizer;
use rlvr_runtime::{Completion, Engine, FinishReason, Request};
use serde::{Deserialize, Serialize};

use super::render::ToolFormat;
use super::{ToolBox, ToolOutcome, Tools};

/// What one sample did with tools.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolStats {
    /// Model turns (1 + resumed turns).
    pub turns: usize,
    /// Tool calls the model closed (those past `max_turns` included).
    pub calls: usize,
    /// Calls answered with an error (unreadable call, unknown tool, failure, timeout).
    pub errors: usize,
    /// Seconds spent running tools.
    pub tool_s: f64,
}

/// One finished sample of a tool rollout.
#[derive(Debug, Clone)]
pub struct ToolRollout {
    pub completion: Completion,
    pub stats: ToolStats,
    /// The model's own text (its turns, without the inserted tool results): what is graded.
    pub model_text: String,
}

type Key = (usize, usize);

/// A completion, the text to grade (the model's own turns), and its tool use (None without
/// tools).
pub type Rollout = (Completion, String, Option<ToolStats>);

/// Run `requests` to the end: single-turn completions (graded on their text) without tools,
/// multi-turn [`generate_with_tools`] rollouts with them.
pub fn generate_rollouts(
    engine: &mut Engine,
    tok: &TextTokenizer,
    tools: Option<&Tools>,
    requests: Vec<Request>,
) -> Result<Vec<Rollout>> {
    let Some((toolbox, format)) = tools else {
        let with_text = |c: Completion| {
            let text = c.text.clone();
            (c, text, None)
        };
        return Ok(engine
            .generate(requests)?
            .into_iter()
            .map(with_text)
            .collect());
    };
    let out = generate_with_tools(engine, requests, tok, format, toolbox)?;
    Ok(out
        .into_iter()
        .map(|r| (r.completion, r.model_text, Some(r.stats)))
        .collect())
}

/// Run `requests` to the end with tools; results ordered by (request, sample), request
/// indices relative to `requests`.
pub fn generate_with_tools(
    engine: &mut Engine,
    mut requests: Vec<Request>,
    tok: &TextTokenizer,
    format: &ToolFormat,
    toolbox: &ToolBox,
) -> Result<Vec<ToolRollout>> {
    let mut first = None;
    for r in &mut requests {
        format.pause_on(&mut r.params);
    }
    for r in requests {
        let index = engine.add_request(r)?;
        first.get_or_insert(index);
    }
    let Some(first) = first else {
        return Ok(vec![]);
    };
    let (tx, rx) = mpsc::channel::<(Key, ToolOutcome)>();
    let mut stats: HashMap<Key, ToolStats> = HashMap::new();
    let mut done: Vec<Completion> = vec![];
    let mut in_flight = 0usize;
    while engine.has_unfinished() || in_flight > 0 {
        let finished = match engine.has_unfinished() {
            true => engine.step()?,
            false => vec![],
        };
        for c in finished {
            let key = (c.request_index, c.sample_index);
            let st = stats.entry(key).or_default();
            if c.finish_reason != FinishReason::ToolCall {
                done.push(c);
                continue;
            }
            let Some(call) = format.read_call(&turn_text(tok, &c)?) else {
                // A turn that ended with no call: the model's answer, ended by its EOS.
                done.push(engine.finish_paused(key.0, key.1, FinishReason::Eos)?);
                continue;
            };
            st.calls += 1;
            if st.calls > toolbox.max_turns {
                done.push(engine.finish_paused(key.0, key.1, FinishReason::ToolCall)?);
                continue;
            }
            let (tools, tx) = (toolbox.clone(), tx.clone());
            std::thread::spawn(move || {
                let _ = tx.send((key, tools.run(call)));
            });
            in_flight += 1;
        }
        // Wait for a result only when nothing else can run.
        let mut results: Vec<(Key, ToolOutcome)> = rx.try_iter().collect();
        if results.is_empty() && in_flight > 0 && !engine.has_unfinished() {
            results.push(rx.recv().context("a tool thread vanished")?);
        }
        for (key, outcome) in results {
            in_flight -= 1;
            let st = stats.entry(key).or_default();
            st.errors += usize::from(outcome.error);
            st.tool_s += outcome.secs;
            let ids = format.result_ids(tok, &outcome.content, toolbox.max_output_tokens)?;
            let room = engine.paused_room(key.0, key.1).unwrap_or(0);
            if ids.len() >= room {
                done.push(engine.finish_paused(key.0, key.1, FinishReason::Length)?);
            } else {
                engine.resume(key.0, key.1, &ids)?;
                st.turns += 1;
            }
        }
    }
    done.sort_by_key(|c| (c.request_index, c.sample_index));
    done.into_iter()
        .map(|mut c| {
            let mut st = stats
                .remove(&(c.request_index, c.sample_index))
                .unwrap_or_default();
            st.turns += 1;
            c.request_index -= first;
            let model_text = model_text(tok, &c)?;
            Ok(ToolRollout {
                completion: c,
                stats: st,
                model_text,
            })
        })
        .collect()
}

/// The text of the model's current (last) turn: its tokens after the last inserted one.
fn turn_text(tok: &TextTokenizer, c: &Completion) -> Result<String> {
    let start = (0..c.token_ids.len())
        .rev()
        .find(|&k| c.is_inserted(k))
        .map_or(0, |k| k + 1);
    Ok(tok.decode(&c.token_ids[start..], true)?)
}

/// The model's turns, each decoded on its own, joined by newlines.
pub fn model_text(tok: &TextTokenizer, c: &Completion) -> Result<String> {
    let mut turns = vec![];
    let mut span: Vec<u32> = vec![];
    for (k, &t) in c.token_ids.iter().enumerate() {
        if c.is_inserted(k) {
            if !span.is_empty() {
                turns.push(tok.decode(&std::mem::take(&mut span), true)?);
            }
        } else {
            span.push(t);
        }
    }
    if !span.is_empty() {
        turns.push(tok.decode(&span, true)?);
    }
    Ok(turns.join("\n"))
}
