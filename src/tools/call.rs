//! A tool call as the model writes it: the Hermes / Qwen2.5 block
//! `<tool_call>{"name": …, "arguments": {…}}</tool_call>` (Llama 3.1's `"parameters"` is read as
//! `"arguments"`, and `"arguments"` given as a JSON string is decoded). A call that cannot be read
//! is an error message for the model, never a panic.
//!
//! Owns the call syntax. Must not know which tools exist or how they run.

use serde_json::Value;

/// The tags around a call; the closing one is what pauses generation.
pub const CALL_OPEN: &str = "<tool_call>";
pub const CALL_CLOSE: &str = "</tool_call>";

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
}
