//! The `--tools` / `--tools-config` flags of `rlvr generate` (training takes `[tools]` from its
//! run config and `--tools` there).
//!
//! Owns reading those flags into a [`ToolsSection`]. Must not know how tools run.

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::ToolsSection;

#[derive(clap::Args, Debug, Clone)]
pub struct ToolArgs {
    /// Offer these tools, comma-separated: `calculator` and names of `[[tools.external]]`
    /// commands in --tools-config. Rollouts become multi-turn.
    #[arg(long)]
    pub tools: Option<String>,
    /// A TOML file with a `[tools]` table (external tools, max_turns, max_output_tokens,
    /// timeout_s), as in a run config.
    #[arg(long)]
    pub tools_config: Option<PathBuf>,
}

impl ToolArgs {
    /// The tools section the flags describe; `enabled()` is false without `--tools` or an
    /// `enabled` list in the file.
    pub fn section(&self) -> Result<ToolsSection> {
        let mut section = match &self.tools_config {
            None => ToolsSection::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let mut table: toml::Table =
                    toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
                let tools = table
                    .remove("tools")
                    .unwrap_or(toml::Value::Table(Default::default()));
                tools
                    .try_into()
                    .with_context(|| format!("{}: the [tools] table", path.display()))?
            }
        };
        if let Some(names) = super::split_names(self.tools.as_deref()) {
            section.enabled = names;
        }
        section.validate()?;
        Ok(section)
    }
}
