//! Protocol step 4: the LFS batch call. For each distinct content the Hub answers with an
//! `upload` action (when it lacks the object) and maybe a `verify` action to call after it.

use std::collections::{BTreeMap, HashSet};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use super::{human_size, Auth, Hub, LocalFile, Repeat, CHUNK};

impl Hub {
    /// Upload the LFS files' contents (those the Hub does not already have), then verify.
    pub fn upload_lfs(&self, repo: &str, rev: &str, files: &[&LocalFile]) -> Result<()> {
        let url = format!("{}/{repo}.git/info/lfs/objects/batch", self.endpoint);
        // One upload per distinct content.
        let mut seen = HashSet::new();
        let unique: Vec<&LocalFile> = files
            .iter()
            .copied()
            .filter(|f| seen.insert(f.sha256.clone()))
            .collect();
        for chunk in unique.chunks(CHUNK) {
            let objects = self.lfs_batch(&url, rev, chunk)?;
            for file in chunk {
                let object = objects.get(file.sha256.as_str()).ok_or_else(|| {
                    anyhow!("POST {url}: LFS batch reply does not mention {}", file.rel)
                })?;
                self.lfs_object(file, object)?;
            }
        }
        Ok(())
    }

    /// The batch call at `url` for `files`: the reply's objects by oid.
    fn lfs_batch(
        &self,
        url: &str,
        rev: &str,
        files: &[&LocalFile],
    ) -> Result<BTreeMap<String, Value>> {
        let objects: Vec<Value> = files
            .iter()
            .map(|f| json!({"oid": f.sha256, "size": f.size}))
            .collect();
        let body = json!({
            "operation": "upload",
            "transfers": ["basic", "multipart"],
            "objects": objects,
            "hash_algo": "sha256",
            "ref": {"name": rev},
        });
        let resp = self
            .post_lfs_json(url, Auth::Hub, Repeat::Safe, &body)
            .context("LFS batch request")?;
        let mut reply = super::read_json(resp, "POST", url)?;
        let listed = match reply.get_mut("objects").map(Value::take) {
            Some(Value::Array(listed)) => listed,
            _ => bail!("POST {url}: LFS batch reply has no `objects` list"),
        };
        Ok(listed
            .into_iter()
            .filter_map(|object| Some((object.get("oid")?.as_str()?.to_string(), object)))
            .collect())
    }

    /// One file's entry of the batch reply: its error, or its upload and verify actions.
    fn lfs_object(&self, file: &LocalFile, object: &Value) -> Result<()> {
        if let Some(err) = object.get("error") {
            bail!(
                "LFS batch refused {}: {}",
                file.rel,
                self.token.scrub(&err.to_string())
            );
        }
        let actions = object.get("actions");
        match actions.and_then(|a| a.get("upload")) {
            Some(upload) => {
                eprintln!(
                    "push: uploading {} ({}) via LFS",
                    file.rel,
                    human_size(file.size)
                );
                self.lfs_transfer(file, upload)
                    .with_context(|| format!("uploading {}", file.rel))?;
            }
            None => eprintln!("push: {} already on the Hub", file.rel),
        }
        if let Some(verify) = actions.and_then(|a| a.get("verify")) {
            let href = action_href(verify)?;
            let body = json!({"oid": file.sha256, "size": file.size});
            self.post_lfs_json(href, Auth::Hub, Repeat::Safe, &body)
                .with_context(|| format!("verifying the upload of {}", file.rel))?;
        }
        Ok(())
    }
}

/// Where an LFS action goes.
pub(super) fn action_href(action: &Value) -> Result<&str> {
    action
        .get("href")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("LFS batch reply has an action without `href`"))
}
