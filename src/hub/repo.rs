//! Protocol steps 1 and 2: the model repo, and the branch to commit to, made to exist.

use anyhow::{Context, Result};
use serde_json::json;

use super::{encode_segment, Auth, Hub};

impl Hub {
    /// Create the model repo; `Ok(false)` when it already exists.
    pub fn create_repo(&self, repo: &str, private: bool) -> Result<bool> {
        let url = format!("{}/api/repos/create", self.endpoint);
        let (namespace, name) = repo
            .split_once('/')
            .with_context(|| format!("repo id {repo:?} is not `namespace/name`"))?;
        let body =
            json!({"name": name, "organization": namespace, "private": private, "type": "model"});
        match self
            .request(
                "POST",
                &url,
                Auth::Hub,
                &[("Content-Type", "application/json")],
            )
            .send_bytes(body.to_string().as_bytes())
        {
            Ok(_) => Ok(true),
            Err(ureq::Error::Status(409, _)) => Ok(false),
            Err(e) => Err(self
                .error("POST", &url, e)
                .context(format!("creating repo {repo}"))),
        }
    }

    /// Create `branch` from the default branch unless it exists.
    pub fn create_branch(&self, repo: &str, branch: &str) -> Result<()> {
        let url = format!(
            "{}/api/models/{repo}/branch/{}",
            self.endpoint,
            encode_segment(branch)
        );
        match self
            .request(
                "POST",
                &url,
                Auth::Hub,
                &[("Content-Type", "application/json")],
            )
            .send_bytes(b"{}")
        {
            Ok(_) => {
                eprintln!("push: created branch {branch}");
                Ok(())
            }
            Err(ureq::Error::Status(409, _)) => Ok(()),
            Err(e) => Err(self
                .error("POST", &url, e)
                .context(format!("creating branch {branch}"))),
        }
    }
}
