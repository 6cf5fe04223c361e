//! The `tojson` filter of chat templates as transformers defines it (Python's
//! `json.dumps(x, ensure_ascii=False, indent=indent)`): `", "` and `": "` between items without
//! an indent, `","` and `": "` with one, and no HTML escaping. minijinja's own `tojson` writes
//! compact JSON and escapes `<`, `>`, `&` and `'`, so a tool list or a call rendered by a
//! template (Qwen2.5's `tool | tojson`, Llama 3.1's `tojson(indent=4)`) would differ from what
//! the model was trained on. Keys come out in the order the value holds them (JSON objects from
//! serde_json are sorted; Python keeps insertion order).
//!
//! Owns that filter only; knows nothing of templates or messages.

use std::io;

use minijinja::value::{Kwargs, Value};
use minijinja::{Error, ErrorKind};
use serde::Serialize;
use serde_json::ser::{Formatter, PrettyFormatter, Serializer};

/// Python's default separators without an indent: `", "` and `": "`.
struct PythonCompact;

impl Formatter for PythonCompact {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }
}

/// `value | tojson`, `tojson(indent=4)` or `tojson(4)`; transformers' other arguments
/// (`ensure_ascii`, `sort_keys`, `separators`) are accepted and left at their defaults.
pub fn tojson(value: &Value, indent: Option<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let indent = match indent {
        Some(v) => Some(v),
        None => kwargs.get::<Option<Value>>("indent")?,
    };
    for ignored in ["ensure_ascii", "sort_keys", "separators"] {
        let _: Option<Value> = kwargs.get(ignored)?;
    }
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => Some(usize::try_from(v)?),
    };
    let mut out = Vec::new();
    let written = match indent {
        Some(n) => {
            let spaces = " ".repeat(n);
            let mut s = Serializer::with_formatter(
                &mut out,
                PrettyFormatter::with_indent(spaces.as_bytes()),
            );
            value.serialize(&mut s)
        }
        None => value.serialize(&mut Serializer::with_formatter(&mut out, PythonCompact)),
    };
    written.map_err(|e| {
        Error::new(ErrorKind::InvalidOperation, "cannot serialize to JSON").with_source(e)
    })?;
    let text = String::from_utf8(out)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, "JSON is not UTF-8").with_source(e))?;
    Ok(Value::from_safe_string(text))
}

#[cfg(test)]
mod tests {
    use crate::tokenizer::render_chat_template_with_tools;
    use serde_json::json;

    fn render(template: &str, tools: serde_json::Value) -> String {
        let messages: [serde_json::Value; 0] = [];
        render_chat_template_with_tools(template, &messages, Some(&tools), false, "", "").unwrap()
    }

    /// The strings are what transformers renders (Python's json.dumps).
    #[test]
    fn writes_json_as_transformers_does() {
        let tools = json!([{"a": [1, 2.5, "x<y & 'z'"], "b": {}, "c": [], "d": null, "é": true}]);
        assert_eq!(
            render("{{ tools[0] | tojson }}", tools.clone()),
            r#"{"a": [1, 2.5, "x<y & 'z'"], "b": {}, "c": [], "d": null, "é": true}"#
        );
        assert_eq!(
            render("{{ tools[0].a | tojson(indent=2) }}", tools.clone()),
            "[\n  1,\n  2.5,\n  \"x<y & 'z'\"\n]"
        );
        assert_eq!(
            render("{{ tools | tojson(4) }}", json!([{}])),
            "[\n    {}\n]"
        );
        assert_eq!(render("{{ 'a\"\\n' | tojson }}", json!([])), r#""a\"\n""#);
        assert_eq!(
            render("{{ tools | tojson(ensure_ascii=False) }}", json!([1])),
            "[1]"
        );
        let err = render_chat_template_with_tools::<serde_json::Value>(
            "{{ tools | tojson(colour=1) }}",
            &[],
            Some(&json!([])),
            false,
            "",
            "",
        );
        assert!(err.is_err(), "an unknown argument is an error");
    }
}
