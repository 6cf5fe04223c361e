//! Protocol step 3: the preupload call, where the Hub says how each file travels (inline in
//! the commit, through LFS, or not at all).

use std::collections::HashMap;

use anyhow::{anyhow, bail, Context, Result};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{json, Value};

use super::{encode_segment, Hub, LocalFile, Repeat, CHUNK};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadMode {
    /// Base64 in the commit.
    Regular,
    /// Content through LFS, pointer in the commit.
    Lfs,
    /// The Hub ignores the file (e.g. by its .gitignore).
    Ignore,
}

impl Hub {
    /// Ask the Hub which files go through LFS (and which it ignores), by repo path.
    pub fn preupload(
        &self,
        repo: &str,
        rev: &str,
        files: &[LocalFile],
    ) -> Result<HashMap<String, UploadMode>> {
        let url = format!(
            "{}/api/models/{repo}/preupload/{}",
            self.endpoint,
            encode_segment(rev)
        );
        let mut modes = HashMap::new();
        for chunk in files.chunks(CHUNK) {
            let list: Vec<Value> = chunk
                .iter()
                .map(|f| json!({"path": f.rel, "size": f.size, "sample": BASE64.encode(&f.sample)}))
                .collect();
            let body = json!({"files": list}).to_string();
            let reply = self
                .call_json(
                    "POST",
                    &url,
                    Repeat::Safe,
                    "application/json",
                    body.as_bytes(),
                )
                .context("asking the Hub how to upload each file")?;
            let listed = reply
                .get("files")
                .and_then(Value::as_array)
                .ok_or_else(|| anyhow!("POST {url}: reply has no `files` list"))?;
            for entry in listed {
                let (path, mode) = upload_mode(entry).with_context(|| format!("POST {url}"))?;
                modes.insert(path.to_string(), mode);
            }
        }
        // Empty files are always committed inline (as huggingface_hub does).
        for file in files.iter().filter(|f| f.size == 0) {
            if modes.get(&file.rel) == Some(&UploadMode::Lfs) {
                modes.insert(file.rel.clone(), UploadMode::Regular);
            }
        }
        Ok(modes)
    }
}

/// One entry of the preupload reply: the file's path and mode.
fn upload_mode(entry: &Value) -> Result<(&str, UploadMode)> {
    let path = entry
        .get("path")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if entry.get("shouldIgnore").and_then(Value::as_bool) == Some(true) {
        return Ok((path, UploadMode::Ignore));
    }
    match entry.get("uploadMode").and_then(Value::as_str) {
        Some("lfs") => Ok((path, UploadMode::Lfs)),
        Some("regular") => Ok((path, UploadMode::Regular)),
        other => bail!("unknown uploadMode {other:?} for {path}"),
    }
}
