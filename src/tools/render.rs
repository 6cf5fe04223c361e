//! Tools and tool results in the model's chat format.
//!
//! Where the chat template renders tools itself (it uses the `tools` variable: Qwen2.5, Hermes,
//! Llama 3.1), the tool list is passed to it as transformers' `apply_chat_template(tools=…)` does
//! and results are `tool` messages it renders. Where it does not (the default SmolLM2-135M's
//! template renders only role and content), the tool list goes into a system message in the
//! Hermes/Qwen2.5 wording and each result is a `tool` message whose content is the Hermes
//! `<tool_response>…</tool_response>` block. Without chat (`--no-chat`) the same texts are raw.
//!
//! The call syntax ([`CallSyntax`]) is the one the template writes: a probe conversation with
//! one call is rendered and read (see [`syntax`](super::syntax)).
//!
//! A result is inserted as the tokens the template puts between the model's tool call and the
//! model's next turn: the end of the assistant turn (unless the model wrote it: Llama 3's
//! `<|eot_id|>`), the tool turn, and the generation prompt. They are found once by rendering a
//! conversation with placeholders.
//!
//! Owns the prompt and tool-result texts. Must not know how tools run or how the engine resumes.

use anyhow::{bail, Context, Result};
use rlvr_models::{ChatMessage, TextTokenizer};
use rlvr_runtime::SamplingParams;
use serde_json::Value;

use super::call::{self, ToolCall};
pub use super::syntax::CallSyntax;
use super::syntax::{self, RESULT_MARK};
use super::ToolSpec;

const ASSISTANT_MARK: &str = "\u{E001}";

/// The prompt of `question`: with the tools offered when there are any, else as a plain prompt
/// (chat-rendered unless `chat = false`).
pub fn encode_prompt(
    tok: &TextTokenizer,
    question: &str,
    chat: bool,
    tools: Option<&ToolFormat>,
) -> Result<Vec<u32>> {
    match tools {
        Some(format) => format.prompt_ids(tok, question),
        None => Ok(tok.encode_prompt(question, chat)?),
    }
}

/// How prompts and tool results are written for one tokenizer and tool set.
#[derive(Debug, Clone)]
pub struct ToolFormat {
    /// Chat-rendered (else raw text).
    chat: bool,
    /// The template renders `tools` itself.
    native: bool,
    schemas: Value,
    /// The Hermes system text (templates without tools, and raw prompts).
    system: String,
    /// How the model writes a call, and where its turn pauses.
    syntax: CallSyntax,
    /// Text before and after a result, between the model's call and its next turn.
    before: String,
    after: String,
    /// The template writes results as JSON strings (Llama 3.1's `content | tojson`).
    quoted: bool,
}

/// The Hermes / Qwen2.5 tool instructions.
pub fn hermes_system(specs: &[ToolSpec]) -> String {
    let lines: Vec<String> = specs.iter().map(|s| s.to_json().to_string()).collect();
    format!(
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n\
         You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{}\n\
         </tools>\n\nFor each function call, return a json object with function name and \
         arguments within {} XML tags:\n{}\n{{\"name\": <function-name>, \"arguments\": \
         <args-json-object>}}\n{}",
        lines.join("\n"),
        "<tool_call></tool_call>",
        call::CALL_OPEN,
        call::CALL_CLOSE
    )
}

fn hermes_response(content: &str) -> String {
    format!("<tool_response>\n{content}\n</tool_response>")
}

impl ToolFormat {
    pub fn new(tok: &TextTokenizer, specs: &[ToolSpec], chat: bool) -> Result<Self> {
        let native = chat && tok.template_knows_tools();
        let schemas = Value::Array(specs.iter().map(ToolSpec::to_json).collect());
        let system = hermes_system(specs);
        let format = |syntax, (before, after), quoted| Self {
            chat,
            native,
            schemas: schemas.clone(),
            system: system.clone(),
            syntax,
            before,
            after,
            quoted,
        };
        if native {
            if let Some(bare) = syntax::probe_bare_json(tok, &schemas)? {
                let syntax = CallSyntax::BareJson {
                    turn_end: bare.turn_end,
                };
                return Ok(format(syntax, (bare.before, bare.after), bare.quoted));
            }
        }
        let split = if !chat {
            split_at_mark(&format!("\n{}\n", hermes_response(RESULT_MARK)))?
        } else {
            split_at_mark(&result_turn(tok, native, &schemas)?)?
        };
        Ok(format(CallSyntax::Hermes, split, false))
    }

    /// How the model writes a call (and where its turns pause).
    pub fn syntax(&self) -> &CallSyntax {
        &self.syntax
    }

    /// Make `params` pause where a call may have been written: at `</tool_call>` (Hermes), or at
    /// every end of an assistant turn (bare JSON: the turn is read when it ends).
    pub fn pause_on(&self, params: &mut SamplingParams) {
        match &self.syntax {
            CallSyntax::Hermes => params.pause_strings.push(call::CALL_CLOSE.to_string()),
            CallSyntax::BareJson { turn_end } => params
                .pause_token_seqs
                .extend(turn_end.iter().map(|&t| vec![t])),
        }
    }

    /// The call in a paused turn (the model's text since its turn began): `None` when the turn
    /// is no call (bare JSON: the model answered), else the call or the error message for it.
    pub fn read_call(&self, turn: &str) -> Option<Result<ToolCall, String>> {
        match &self.syntax {
            CallSyntax::Hermes => Some(call::parse_last_call(turn)),
            CallSyntax::BareJson { .. } => call::parse_bare_call(turn),
        }
    }

    /// Whether the template renders tools itself (else the Hermes system message is used).
    pub fn native(&self) -> bool {
        self.native
    }

    /// The prompt of `question` with the tools offered.
    pub fn prompt_ids(&self, tok: &TextTokenizer, question: &str) -> Result<Vec<u32>> {
        if !self.chat {
            return Ok(tok.encode(&format!("{}\n\n{question}", self.system), true)?);
        }
        let text = if self.native {
            let messages = [ChatMessage::user(question)];
            tok.apply_chat_template_with_tools(&messages, Some(&self.schemas), true)?
        } else {
            let messages = [
                ChatMessage::system(&self.system),
                ChatMessage::user(question),
            ];
            tok.apply_chat_template(&messages, true)?
        };
        Ok(tok.encode(&text, false)?)
    }

    /// The tokens inserted after the model's call for tool result `content`, cut to
    /// `max_tokens` tokens of content (the cut says so).
    pub fn result_ids(
        &self,
        tok: &TextTokenizer,
        content: &str,
        max_tokens: usize,
    ) -> Result<Vec<u32>> {
        let ids = tok.encode(content, false)?;
        let content = if ids.len() > max_tokens {
            format!(
                "{} ...[cut at {max_tokens} tokens]",
                tok.decode(&ids[..max_tokens], false)?
            )
        } else {
            content.to_string()
        };
        let content = match self.quoted {
            true => Value::String(content).to_string(),
            false => content,
        };
        let text = format!("{}{content}{}", self.before, self.after);
        Ok(tok.encode(&text, false)?)
    }
}

/// The text a template puts after an assistant message holding a call, for one tool result
/// (`RESULT_MARK`), through the generation prompt.
fn result_turn(tok: &TextTokenizer, native: bool, schemas: &Value) -> Result<String> {
    let assistant = ChatMessage {
        role: "assistant".into(),
        content: ASSISTANT_MARK.into(),
    };
    let content = match native {
        true => RESULT_MARK.to_string(),
        false => hermes_response(RESULT_MARK),
    };
    let tools = native.then_some(schemas);
    let render = |role: &str| {
        let tool = ChatMessage {
            role: role.into(),
            content: content.clone(),
        };
        let messages = [ChatMessage::user("q"), assistant.clone(), tool];
        tok.apply_chat_template_with_tools(&messages, tools, true)
    };
    // A template that refuses a `tool` role gets the result as a user turn.
    let text = render("tool")
        .or_else(|_| render("user"))
        .context("rendering a tool result with the chat template")?;
    match text.split_once(ASSISTANT_MARK) {
        Some((_, tail)) => Ok(tail.to_string()),
        None => bail!("the chat template drops assistant content; cannot place tool results"),
    }
}

fn split_at_mark(text: &str) -> Result<(String, String)> {
    match text.split_once(RESULT_MARK) {
        Some((a, b)) => Ok((a.to_string(), b.to_string())),
        None => bail!("the chat template drops tool results; cannot render them"),
    }
}
