//! Protocol steps 1 and 2: the model repo, and the branch to commit to, made to exist.

use anyhow::{Context, Result};
use serde_json::json;

use super::{encode_segment, Auth, Failed, Hub, Repeat};

impl Hub {
    /// Create the model repo; `Ok(false)` when it already exists.
    pub fn create_repo(&self, repo: &str, private: bool) -> Result<bool> {
        let url = format!("{}/api/repos/create", self.endpoint);
        let (namespace, name) = repo
            .split_once('/')
            .with_context(|| format!("repo id {repo:?} is not `namespace/name`"))?;
        let body =
            json!({"name": name, "organization": namespace, "private": private, "type": "model"});
        self.create(&url, body.to_string().as_bytes())
            .with_context(|| format!("creating repo {repo}"))
    }

    /// Create `branch` from the default branch unless it exists.
    pub fn create_branch(&self, repo: &str, branch: &str) -> Result<()> {
        let url = format!(
            "{}/api/models/{repo}/branch/{}",
            self.endpoint,
            encode_segment(branch)
        );
        if self
            .create(&url, b"{}")
            .with_context(|| format!("creating branch {branch}"))?
        {
            eprintln!("push: created branch {branch}");
        }
        Ok(())
    }

    /// POST a creation request: `Ok(true)` when created, `Ok(false)` on 409 (it exists; also
    /// what a retry of a creation whose reply was lost gets).
    fn create(&self, url: &str, body: &[u8]) -> Result<bool> {
        let headers = [("Content-Type", "application/json")];
        let sent = self.send("POST", url, Repeat::Safe, || {
            self.request("POST", url, Auth::Hub, &headers)
                .send_bytes(body)
        });
        match sent {
            Ok(_) => Ok(true),
            Err(Failed {
                err: ureq::Error::Status(409, _),
                ..
            }) => Ok(false),
            Err(failed) => Err(self.error("POST", url, failed)),
        }
    }
}
