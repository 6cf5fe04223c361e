//! A tool call as the model writes it, in the two syntaxes chat templates define:
//!
//! - Hermes / Qwen2.5: the block `<tool_call>{"name": …, "arguments": {…}}</tool_call>`
//!   ([`parse_last_call`]).
//! - Llama 3.1 / 3.2 / 3.3 (custom tools): the whole assistant turn is a bare JSON object
//!   `{"name": …, "parameters": {…}}`, maybe after `<|python_tag|>` ([`parse_bare_call`]); a turn
//!   that is not one is the model's answer.
//!
//! `"parameters"` is read as `"arguments"`, and arguments given as a JSON string are decoded. A
//! call that cannot be read is an error message for the model, never a panic.
//!
//! Owns the call syntax. Must not know which tools exist or how they run.

use serde_json::Value;

/// The tags around a call; the closing one is what pauses generation.
pub const CALL_OPEN: &str = "<tool_call>";
pub const CALL_CLOSE: &str = "</tool_call>";
/// Llama 3's prefix of a tool call (built-in tools; models write it before custom calls too).
pub const PYTHON_TAG: &str = "<|python_tag|>";

#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub name: String,
    pub arguments: Value,
}

/// The last complete call in `turn` (the model's text since its last turn began). The error is
/// the message the model reads instead of a tool result.
pub fn parse_last_call(turn: &str) -> Result<ToolCall, String> {
    let end = turn
        .rfind(CALL_CLOSE)
        .ok_or_else(|| format!("Error: no {CALL_CLOSE} closing a tool call"))?;
    let open = turn[..end]
        .rfind(CALL_OPEN)
        .ok_or_else(|| format!("Error: {CALL_CLOSE} without an opening {CALL_OPEN}"))?;
    parse_call_body(&turn[open + CALL_OPEN.len()..end])
}

/// The JSON between the tags.
pub fn parse_call_body(body: &str) -> Result<ToolCall, String> {
    let usage = r#"write <tool_call>{"name": "<tool>", "arguments": {…}}</tool_call>"#;
    let value: Value = serde_json::from_str(body.trim())
        .map_err(|e| format!("Error: the tool call is not valid JSON ({e}); {usage}"))?;
    call_from_value(value, usage)
}

/// A Llama 3 turn (the model's text before its `<|eot_id|>` / `<|eom_id|>`): `None` when it is
/// no call (the model answered), else the call or the message for a call that cannot be read.
/// It is a call when it starts with `{` (after whitespace and `<|python_tag|>`) and the object
/// has a `"name"` key; text after the object is ignored. Text that starts with `{`, names
/// `"name"` but is no valid JSON is a call gone wrong: an error message.
pub fn parse_bare_call(turn: &str) -> Option<Result<ToolCall, String>> {
    let text = turn.trim_start();
    let text = text.strip_prefix(PYTHON_TAG).unwrap_or(text).trim_start();
    if !text.starts_with('{') || !text.contains("\"name\"") {
        return None;
    }
    let usage = r#"answer with only {"name": "<tool>", "parameters": {…}}"#;
    let first = serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .next()?;
    match first {
        Err(e) => Some(Err(format!(
            "Error: the tool call is not valid JSON ({e}); {usage}"
        ))),
        Ok(value) if value.get("name").is_none() => None,
        Ok(value) => Some(call_from_value(value, usage)),
    }
}

/// The call in a parsed JSON object; `usage` says how to write one.
fn call_from_value(value: Value, usage: &str) -> Result<ToolCall, String> {
    let Value::Object(mut call) = value else {
        return Err(format!(
            "Error: the tool call is not a JSON object; {usage}"
        ));
    };
    let name = match call.remove("name") {
        Some(Value::String(name)) => name,
        _ => {
            return Err(format!(
                "Error: the tool call has no \"name\" string; {usage}"
            ))
        }
    };
    let arguments = match call
        .remove("arguments")
        .or_else(|| call.remove("parameters"))
    {
        None => Value::Object(Default::default()),
        Some(Value::String(s)) => serde_json::from_str(&s)
            .map_err(|e| format!("Error: \"arguments\" of {name} is not valid JSON ({e})"))?,
        Some(v) => v,
    };
    if !arguments.is_object() {
        return Err(format!(
            "Error: \"arguments\" of {name} is not a JSON object"
        ));
    }
    Ok(ToolCall { name, arguments })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_last_call() {
        let text = "Let me compute.\n<tool_call>\n{\"name\": \"calculator\", \"arguments\": \
                    {\"expression\": \"123*456\"}}\n</tool_call>";
        let call = parse_last_call(text).unwrap();
        assert_eq!(call.name, "calculator");
        assert_eq!(call.arguments["expression"], "123*456");
        let two = format!("<tool_call>{{\"name\": \"a\"}}</tool_call> then {text}");
        assert_eq!(parse_last_call(&two).unwrap().name, "calculator");
        let llama = r#"<tool_call>{"name": "f", "parameters": "{\"x\": 1}"}</tool_call>"#;
        assert_eq!(parse_last_call(llama).unwrap().arguments["x"], 1);
    }

    #[test]
    fn malformed_calls_are_messages_not_panics() {
        for bad in [
            "<tool_call>{\"name\": \"calculator\", \"arguments\": {\"expression\": </tool_call>",
            "<tool_call>not json</tool_call>",
            "<tool_call>[1, 2]</tool_call>",
            "<tool_call>{\"arguments\": {}}</tool_call>",
            "<tool_call>{\"name\": \"f\", \"arguments\": 3}</tool_call>",
            "<tool_call>{\"name\": \"f\", \"arguments\": \"{oops\"}</tool_call>",
            "</tool_call>",
            "no call at all",
            "<tool_call>\u{0}\u{ffff}</tool_call>",
        ] {
            let msg = parse_last_call(bad).unwrap_err();
            assert!(msg.starts_with("Error: "), "{bad:?} → {msg}");
        }
    }

    /// Turns as Llama 3.1 / 3.2 Instruct write them with custom tools (the template's
    /// `{"name": …, "parameters": …}`; `<|python_tag|>` and `"arguments"` variants seen in the
    /// wild), with `<|eot_id|>` / `<|eom_id|>` already cut off.
    #[test]
    fn reads_llama3_bare_json_calls() {
        for turn in [
            r#"{"name": "calculator", "parameters": {"expression": "123*456"}}"#,
            "\n  {\"name\": \"calculator\", \"parameters\": {\"expression\": \"123*456\"}}\n",
            r#"<|python_tag|>{"name": "calculator", "parameters": {"expression": "123*456"}}"#,
            r#"{"type": "function", "name": "calculator", "parameters": {"expression": "123*456"}}"#,
            r#"{"name": "calculator", "arguments": "{\"expression\": \"123*456\"}"}"#,
            r#"{"name": "calculator", "parameters": {"expression": "123*456"}}; more text"#,
        ] {
            let call = parse_bare_call(turn).expect("a call").unwrap();
            assert_eq!(call.name, "calculator", "{turn}");
            assert_eq!(call.arguments["expression"], "123*456", "{turn}");
        }
        let none = parse_bare_call(r#"{"name": "get_time"}"#).unwrap().unwrap();
        assert_eq!(none.arguments, serde_json::json!({}));
    }

    #[test]
    fn llama3_answers_are_not_calls_and_broken_calls_are_messages() {
        for answer in [
            "The answer is 56088.",
            "",
            "   ",
            "I will use {\"name\": \"calculator\"} next time.",
            r#"{"answer": 56088}"#,
            r#"{"result": {"name": "x"}}"#,
            "{ not json at all",
        ] {
            assert_eq!(parse_bare_call(answer), None, "{answer:?}");
        }
        for bad in [
            r#"{"name": "calculator", "parameters": {"expression": "#,
            r#"{"name": "calculator", "parameters": {"expression": "1+1"}"#,
            r#"{"name": 7, "parameters": {}}"#,
            r#"{"name": "calculator", "parameters": [1]}"#,
            r#"{"name": "calculator", "parameters": "{oops"}"#,
            "<|python_tag|>{\"name\": \u{0}",
        ] {
            let msg = parse_bare_call(bad)
                .expect("a call gone wrong")
                .unwrap_err();
            assert!(msg.starts_with("Error: "), "{bad:?} → {msg}");
            assert!(msg.contains("Error"), "{msg}");
        }
    }
}
