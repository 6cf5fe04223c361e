//! Protocol step 5: the commit, NDJSON of a header line and one line per file (its content in
//! base64, or for an LFS file its pointer: sha256 oid and size).

use anyhow::{Context, Result};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{json, Value};

use super::{encode_segment, Hub, LocalFile, Repeat};

impl Hub {
    /// Commit `files` (each with whether it went through LFS); the Hub's reply.
    pub fn commit(
        &self,
        repo: &str,
        rev: &str,
        summary: &str,
        files: &[(&LocalFile, bool)],
    ) -> Result<Value> {
        let url = format!(
            "{}/api/models/{repo}/commit/{}",
            self.endpoint,
            encode_segment(rev)
        );
        let mut body = Vec::new();
        let mut push_line = |line: Value| {
            body.extend_from_slice(line.to_string().as_bytes());
            body.push(b'\n');
        };
        push_line(json!({"key": "header", "value": {"summary": summary, "description": ""}}));
        for (file, lfs) in files {
            if *lfs {
                push_line(json!({"key": "lfsFile", "value": {
                    "path": file.rel, "algo": "sha256", "oid": file.sha256, "size": file.size,
                }}));
            } else {
                let bytes = std::fs::read(&file.abs)
                    .with_context(|| format!("reading {}", file.abs.display()))?;
                push_line(json!({"key": "file", "value": {
                    "content": BASE64.encode(&bytes), "path": file.rel, "encoding": "base64",
                }}));
            }
        }
        // A commit that reached the Hub may have been applied: sent again only when it cannot
        // have been (retry.rs).
        self.call_json("POST", &url, Repeat::Unsent, "application/x-ndjson", &body)
            .with_context(|| format!("committing to {repo}@{rev}"))
    }
}
