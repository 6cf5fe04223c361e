//! The built-in `calculator` tool: exact arithmetic through the verifier's expression code
//! (`rlvr_verifier::calculate`): integers of any length, fractions as `p/q`, decimals only for
//! irrational results.
//!
//! Owns the tool's name, schema and argument handling. Must not know how calls are parsed or
//! rendered.

use std::time::Duration;

use serde_json::{json, Value};

use super::{Tool, ToolSpec};

pub struct Calculator;

impl Tool for Calculator {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "calculator".into(),
            description: "Evaluate an arithmetic expression exactly, e.g. \"123 * 456\" or \
                          \"(17 + 5) / 4\". Supports + - * / ^, parentheses, sqrt and factorial."
                .into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "expression": {
                        "type": "string",
                        "description": "The arithmetic expression to evaluate."
                    }
                },
                "required": ["expression"]
            }),
        }
    }

    fn call(&self, arguments: &Value, _timeout: Duration) -> Result<String, String> {
        let expression = match arguments.get("expression") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err("calculator needs a string argument \"expression\"".into()),
        };
        rlvr_verifier::calculate(&expression).map_err(|e| format!("{e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_products_and_errors() {
        let t = Duration::from_secs(1);
        let c = Calculator;
        assert_eq!(
            c.call(&json!({"expression": "987 * 654"}), t).unwrap(),
            "645498"
        );
        assert_eq!(
            c.call(&json!({"expression": "1/3 + 1/6"}), t).unwrap(),
            "1/2"
        );
        assert!(c.call(&json!({"expr": "1"}), t).is_err());
        assert!(c.call(&json!({"expression": "2 +"}), t).is_err());
    }
}
