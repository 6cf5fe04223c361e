//! External tools: a command that reads one JSON call on stdin
//! (`{"name": …, "arguments": {…}}`) and writes one JSON answer on stdout (`{"content": "…"}`, or
//! `{"error": "…"}`), run once per call with a timeout. A command that fails, hangs, writes
//! something else or cannot start is an error message the model sees; the run goes on.
//!
//! Owns the process protocol and the timeout. Must not know how calls are parsed or rendered.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{Tool, ToolSpec};

/// Most bytes of a tool's stdout (and stderr) read; the rest is dropped.
const MAX_OUTPUT_BYTES: u64 = 1 << 16;

/// `[[tools.external]]` in the run's TOML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalToolSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// JSON schema of the arguments (`{"type": "object", "properties": …}`).
    #[serde(default = "empty_object_schema")]
    pub parameters: Value,
    /// Program and arguments (no shell).
    pub command: Vec<String>,
    /// Per-call timeout in seconds (default: `tools.timeout_s`).
    #[serde(default)]
    pub timeout_s: Option<f64>,
}

fn empty_object_schema() -> Value {
    json!({"type": "object", "properties": {}})
}

pub struct ExternalTool {
    pub spec: ExternalToolSpec,
}

impl Tool for ExternalTool {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.spec.name.clone(),
            description: self.spec.description.clone(),
            parameters: self.spec.parameters.clone(),
        }
    }

    fn timeout(&self) -> Option<Duration> {
        self.spec.timeout_s.map(Duration::from_secs_f64)
    }

    fn call(&self, arguments: &Value, timeout: Duration) -> Result<String, String> {
        let input = json!({"name": self.spec.name, "arguments": arguments}).to_string();
        let stdout = run_command(&self.spec.command, &input, timeout)?;
        let answer: Value = serde_json::from_str(stdout.trim())
            .map_err(|e| format!("tool {} wrote invalid JSON ({e})", self.spec.name))?;
        match (answer.get("content"), answer.get("error")) {
            (_, Some(Value::String(e))) => Err(e.clone()),
            (Some(Value::String(c)), _) => Ok(c.clone()),
            (Some(c), _) => Ok(c.to_string()),
            _ => Err(format!(
                "tool {} answered without \"content\" or \"error\"",
                self.spec.name
            )),
        }
    }
}

/// Run `command` with `input` on stdin; its stdout, or an error (failed start, non-zero exit,
/// timeout: the process is killed).
fn run_command(command: &[String], input: &str, timeout: Duration) -> Result<String, String> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| "the tool has an empty command".to_string())?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A tool that exits without reading its input is not an error here.
        let _ = stdin.write_all(input.as_bytes());
    }
    let stdout = child.stdout.take().map(reader_thread);
    let stderr = child.stderr.take().map(reader_thread);
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the tool timed out after {:.1} s",
                    timeout.as_secs_f64()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => return Err(format!("waiting for {program}: {e}")),
        }
    };
    let take = |h: Option<std::thread::JoinHandle<String>>| {
        h.and_then(|h| h.join().ok()).unwrap_or_default()
    };
    let (out, err) = (take(stdout), take(stderr));
    if !status.success() {
        let err: String = err.trim().chars().take(300).collect();
        return Err(format!("the tool failed ({status}): {err}"));
    }
    Ok(out)
}

/// Read a pipe to its end (at most `MAX_OUTPUT_BYTES`) on its own thread, so that a chatty tool
/// never blocks on a full pipe.
fn reader_thread(pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = vec![];
        let mut limited = pipe.take(MAX_OUTPUT_BYTES);
        let _ = limited.read_to_end(&mut bytes);
        // Drain the rest so the writer is not blocked.
        let _ = std::io::copy(&mut limited.into_inner(), &mut std::io::sink());
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(script: &str, timeout_s: Option<f64>) -> ExternalTool {
        ExternalTool {
            spec: ExternalToolSpec {
                name: "t".into(),
                description: String::new(),
                parameters: empty_object_schema(),
                command: vec!["sh".into(), "-c".into(), script.into()],
                timeout_s,
            },
        }
    }

    #[test]
    fn speaks_json_on_stdin_and_stdout() {
        let echo = tool(
            r#"read line; printf '{"content": "%s"}' "$(echo "$line" | wc -c)""#,
            None,
        );
        let got = echo.call(&json!({"q": 1}), Duration::from_secs(5)).unwrap();
        let want = json!({"name": "t", "arguments": {"q": 1}})
            .to_string()
            .len()
            + 1;
        assert_eq!(got.trim(), want.to_string());
        let err = tool(r#"echo '{"error": "no such city"}'"#, None);
        assert_eq!(
            err.call(&json!({}), Duration::from_secs(5)).unwrap_err(),
            "no such city"
        );
    }

    #[test]
    fn failures_are_messages() {
        let t = Duration::from_secs(5);
        assert!(tool("echo not json", None)
            .call(&json!({}), t)
            .unwrap_err()
            .contains("invalid JSON"));
        assert!(tool("echo oops >&2; exit 3", None)
            .call(&json!({}), t)
            .unwrap_err()
            .contains("oops"));
        let missing = ExternalTool {
            spec: ExternalToolSpec {
                command: vec!["/nonexistent/tool".into()],
                ..tool("", None).spec
            },
        };
        assert!(missing
            .call(&json!({}), t)
            .unwrap_err()
            .contains("cannot start"));
    }

    #[test]
    fn a_hanging_tool_times_out() {
        let started = Instant::now();
        let hang = tool("sleep 30", Some(0.3));
        let err = hang.call(&json!({}), hang.timeout().unwrap()).unwrap_err();
        assert!(err.contains("timed out"), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "killed, not waited for"
        );
    }
}
