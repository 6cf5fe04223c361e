//! Tools for multi-turn rollouts: the model writes a call, the environment runs it and answers,
//! the model continues (issue 21).
//!
//! - [`call`]: the call syntaxes: Hermes / Qwen2.5 `<tool_call>{…}</tool_call>`, Llama 3's
//!   bare JSON turn; [`syntax`]: which one a chat template defines.
//! - [`calculator`]: the built-in exact calculator; [`external`]: commands speaking JSON.
//! - [`render`]: tools and tool results in the model's chat format (the template's own `tools`
//!   and `tool` role where it has them, else the Hermes/Qwen2.5 form).
//! - [`rollout`]: driving the engine over turns (pause at a call, run it, resume).
//!
//! This module owns the `[tools]` settings, the tool set and the limits (turns, output tokens,
//! timeouts). It must not know about training or rewards.

pub mod calculator;
pub mod call;
pub mod cli;
pub mod external;
#[cfg(test)]
mod learn_tests;
pub mod render;
pub mod rollout;
pub mod syntax;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_llama3;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rlvr_models::TextTokenizer;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub use external::ExternalToolSpec;
use render::ToolFormat;

/// A run's tools and how they are written for its model.
pub type Tools = (ToolBox, ToolFormat);

/// A tool's name, description and JSON-schema parameters (transformers' `tools=[…]` entry).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub parameters: Value,
}

impl ToolSpec {
    /// The OpenAI-style function entry templates receive.
    pub fn to_json(&self) -> Value {
        json!({"type": "function", "function": {
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
        }})
    }
}

pub trait Tool: Send + Sync {
    fn spec(&self) -> ToolSpec;
    /// Its own timeout, overriding `tools.timeout_s`.
    fn timeout(&self) -> Option<Duration> {
        None
    }
    /// The result text, or an error message for the model.
    fn call(&self, arguments: &Value, timeout: Duration) -> Result<String, String>;
}

/// `[tools]` in the run's TOML (`--tools a,b` sets `enabled`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ToolsSection {
    /// Tools offered to the model: `calculator` and names of `external` tools. Empty = none.
    pub enabled: Vec<String>,
    /// Most tool calls per sample; a call beyond it ends the sample (finish reason `tool_call`).
    pub max_turns: usize,
    /// Most tokens of one tool result; longer results are cut (and say so).
    pub max_output_tokens: usize,
    /// Per-call timeout in seconds (external tools may set their own).
    pub timeout_s: f64,
    pub external: Vec<ExternalToolSpec>,
}

impl Default for ToolsSection {
    fn default() -> Self {
        Self {
            enabled: vec![],
            max_turns: 4,
            max_output_tokens: 128,
            timeout_s: 10.0,
            external: vec![],
        }
    }
}

impl ToolsSection {
    pub fn enabled(&self) -> bool {
        !self.enabled.is_empty()
    }

    pub fn validate(&self) -> Result<()> {
        if self.enabled() && self.max_turns == 0 {
            bail!("tools.max_turns must be ≥ 1");
        }
        if self.enabled() && self.max_output_tokens == 0 {
            bail!("tools.max_output_tokens must be ≥ 1");
        }
        let timeouts = self.external.iter().filter_map(|e| e.timeout_s);
        for t in std::iter::once(self.timeout_s).chain(timeouts) {
            if !(t > 0.0 && t.is_finite()) {
                bail!("tools: a timeout must be a positive number of seconds, got {t}");
            }
        }
        self.toolbox().map(|_| ())
    }

    /// The enabled tools and how they are written for this tokenizer's chat template; None
    /// when no tool is enabled.
    pub fn for_model(&self, tok: &TextTokenizer, chat: bool) -> Result<Option<Tools>> {
        if !self.enabled() {
            return Ok(None);
        }
        let toolbox = self.toolbox()?;
        let format = ToolFormat::new(tok, &toolbox.specs(), chat)
            .context("rendering the tools for this model's chat template")?;
        Ok(Some((toolbox, format)))
    }

    /// The enabled tools; an unknown name is an error that lists the known ones.
    pub fn toolbox(&self) -> Result<ToolBox> {
        let mut tools: Vec<Arc<dyn Tool>> = vec![];
        for name in &self.enabled {
            if name == "calculator" {
                tools.push(Arc::new(calculator::Calculator));
            } else if let Some(spec) = self.external.iter().find(|e| &e.name == name) {
                if spec.command.is_empty() {
                    bail!("tools.external {name}: empty command");
                }
                tools.push(Arc::new(external::ExternalTool { spec: spec.clone() }));
            } else {
                let mut known = vec!["calculator".to_string()];
                known.extend(self.external.iter().map(|e| e.name.clone()));
                bail!("unknown tool {name:?} (known: {})", known.join(", "));
            }
        }
        Ok(ToolBox {
            tools,
            max_turns: self.max_turns,
            max_output_tokens: self.max_output_tokens,
            timeout: Duration::from_secs_f64(self.timeout_s),
        })
    }
}

/// `--tools a,b` as names (None when the flag is absent).
pub fn split_names(flag: Option<&str>) -> Option<Vec<String>> {
    flag.map(|s| {
        s.split(',')
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect()
    })
}

/// The tools of a run and its limits.
#[derive(Clone)]
pub struct ToolBox {
    pub tools: Vec<Arc<dyn Tool>>,
    pub max_turns: usize,
    pub max_output_tokens: usize,
    pub timeout: Duration,
}

/// One call's result as the model will read it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutcome {
    pub content: String,
    pub error: bool,
    pub secs: f64,
}

impl ToolBox {
    pub fn specs(&self) -> Vec<ToolSpec> {
        self.tools.iter().map(|t| t.spec()).collect()
    }

    /// Run a call as read from the model's turn. Every failure (unreadable call, unknown tool,
    /// tool error, timeout) is an error message, never a panic.
    pub fn run(&self, call: Result<call::ToolCall, String>) -> ToolOutcome {
        let started = Instant::now();
        let result = call.and_then(|c| self.run_call(&c));
        let secs = started.elapsed().as_secs_f64();
        match result {
            Ok(content) => ToolOutcome {
                content,
                error: false,
                secs,
            },
            Err(msg) => ToolOutcome {
                content: match msg.starts_with("Error:") {
                    true => msg,
                    false => format!("Error: {msg}"),
                },
                error: true,
                secs,
            },
        }
    }

    fn run_call(&self, c: &call::ToolCall) -> Result<String, String> {
        let Some(tool) = self.tools.iter().find(|t| t.spec().name == c.name) else {
            let names: Vec<String> = self.specs().into_iter().map(|s| s.name).collect();
            return Err(format!(
                "unknown tool {:?}; available: {}",
                c.name,
                names.join(", ")
            ));
        };
        let timeout = tool.timeout().unwrap_or(self.timeout);
        tool.call(&c.arguments, timeout)
    }
}
