//! Which call syntax a chat template defines, found by rendering a probe conversation (a user
//! turn, an assistant turn holding one call in transformers' `tool_calls` form, and its result)
//! and reading what comes out, never by the model's name:
//!
//! - a `<tool_call>` block (Qwen2.5 / Qwen3 / Hermes templates), or a template that ignores
//!   `tool_calls`: [`CallSyntax::Hermes`];
//! - the call as a bare JSON object `{"name": …, "parameters": …}` ending the assistant turn
//!   with a special token (Llama 3.1 / 3.2 / 3.3: `<|eot_id|>`; `<|eom_id|>` in ipython mode):
//!   [`CallSyntax::BareJson`], with the tokens that end the turn and the text the template puts
//!   around a result after them.
//!
//! Owns the probe and its reading. Must not know how tools run or how the engine resumes.

use anyhow::{bail, Context, Result};
use rlvr_models::TextTokenizer;
use serde_json::{json, Value};

use super::call;

/// Stands for a tool result in rendered probes.
pub(crate) const RESULT_MARK: &str = "\u{E000}";
const PROBE_TOOL: &str = "rlvr_probe_tool";
/// Llama 3's end of a message that expects a tool result (ipython mode).
const END_OF_MESSAGE: &str = "<|eom_id|>";

/// How the model writes a tool call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallSyntax {
    /// `<tool_call>{"name": …, "arguments": …}</tool_call>`; a sample pauses at `</tool_call>`.
    Hermes,
    /// The whole assistant turn is `{"name": …, "parameters": …}` (Llama 3.1+ custom tools); a
    /// sample pauses at every end of its turn (`turn_end`), and a turn that is no call ends it.
    BareJson { turn_end: Vec<u32> },
}

/// A bare-JSON template's turn ends and the text around a result after them.
#[derive(Debug, Clone, PartialEq)]
pub struct BareJson {
    pub turn_end: Vec<u32>,
    pub before: String,
    pub after: String,
    /// The template writes the result as a JSON string (`content | tojson`).
    pub quoted: bool,
}

/// The bare-JSON form of a template that writes calls so, else `None` (Hermes). An error when
/// the template writes bare JSON calls but ends them with no special token (nowhere to pause).
pub fn probe_bare_json(tok: &TextTokenizer, schemas: &Value) -> Result<Option<BareJson>> {
    let messages = [
        json!({"role": "user", "content": "q"}),
        json!({"role": "assistant", "content": "", "tool_calls": [{"type": "function",
               "function": {"name": PROBE_TOOL, "arguments": {"x": 1}}}]}),
        json!({"role": "tool", "name": PROBE_TOOL, "content": RESULT_MARK}),
    ];
    // A template that refuses the probe (e.g. no `tool` role) has no calls of its own.
    let Ok(text) = tok.apply_chat_template_with_tools(&messages, Some(schemas), true) else {
        return Ok(None);
    };
    if text.contains(call::CALL_OPEN) {
        return Ok(None);
    }
    let Some(tail) = after_bare_call(&text) else {
        return Ok(None);
    };
    let ids = tok.encode(tail, false)?;
    let end = match ids.first() {
        Some(&end) if tok.decode(&[end], true)?.is_empty() => end,
        _ => bail!(
            "the chat template writes a tool call as bare JSON but ends it with {:?}, not a \
             special token: there is nowhere to pause for the result",
            tail.chars().take(20).collect::<String>()
        ),
    };
    let end_text = tok.decode(&[end], false)?;
    let rest = tail.strip_prefix(end_text.as_str()).with_context(|| {
        format!("the chat template's turn end {end_text:?} does not round-trip")
    })?;
    let mut turn_end = vec![end];
    if let Some(eom) = end_of_message(tok, end)? {
        turn_end.push(eom);
    }
    let quoted_mark = Value::String(RESULT_MARK.into()).to_string();
    let (mark, quoted) = match rest.contains(&quoted_mark) {
        true => (quoted_mark.as_str(), true),
        false => (RESULT_MARK, false),
    };
    let Some((before, after)) = rest.split_once(mark) else {
        bail!("the chat template drops tool results; cannot render them");
    };
    Ok(Some(BareJson {
        turn_end,
        before: before.into(),
        after: after.into(),
        quoted,
    }))
}

/// The text after the probe's call when the template wrote it as a bare JSON object (the
/// object around the call's name, whatever the order of its keys).
fn after_bare_call(text: &str) -> Option<&str> {
    let at = text.find(PROBE_TOOL)?;
    let opens = text[..at].match_indices('{').map(|(i, _)| i).rev();
    opens.take(8).find_map(|open| {
        let mut values = serde_json::Deserializer::from_str(&text[open..]).into_iter::<Value>();
        let value = values.next()?.ok()?;
        let named = value.get("name").and_then(Value::as_str) == Some(PROBE_TOOL);
        let args = value.get("parameters").or_else(|| value.get("arguments"));
        (named && args == Some(&json!({"x": 1}))).then(|| &text[open + values.byte_offset()..])
    })
}

/// Llama 3's `<|eom_id|>` when the template ends ipython-mode calls with it and it is one
/// special token other than the usual turn end.
fn end_of_message(tok: &TextTokenizer, turn_end: u32) -> Result<Option<u32>> {
    let uses = tok
        .chat_template
        .as_deref()
        .is_some_and(|t| t.contains(END_OF_MESSAGE));
    if !uses {
        return Ok(None);
    }
    let ids = tok.encode(END_OF_MESSAGE, false)?;
    Ok(match ids[..] {
        [id] if id != turn_end && tok.decode(&[id], true)?.is_empty() => Some(id),
        _ => None,
    })
}
