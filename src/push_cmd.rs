//! `rlvr push`: upload a local directory to a Hugging Face Hub model repo in one commit.
//!
//! Owns the flags, the order of the steps and what is printed. The protocol, the token and the
//! local files are the Hub client's (`crate::hub`); this must not build requests itself.

use std::path::PathBuf;

use anyhow::{bail, Result};
use serde_json::{json, Value};

use crate::hub::{collect_files, endpoint, human_size, Hub, LocalFile, Token, UploadMode};

#[derive(clap::Args, Debug)]
pub struct PushArgs {
    /// Local directory to upload (e.g. written by `rlvr export`); `.git/` is skipped.
    pub dir: PathBuf,
    /// Target model repo on the Hub, `user/name` or `org/name` (created if it does not exist).
    #[arg(long)]
    pub repo: String,
    /// Create the repo as private (has no effect on a repo that already exists).
    #[arg(long)]
    pub private: bool,
    /// Branch to commit to (created from the default branch when it is not `main`).
    #[arg(long, default_value = "main")]
    pub revision: String,
    /// Commit message.
    #[arg(long, short = 'm')]
    pub message: Option<String>,
}

pub fn push(args: &PushArgs) -> Result<()> {
    validate_repo_id(&args.repo)?;
    if args.revision.is_empty() {
        bail!("--revision must not be empty");
    }
    let files = collect_files(&args.dir)?;
    let token = Token::from_env()?;
    let hub = Hub::new(endpoint(), token)?;
    let total: u64 = files.iter().map(|f| f.size).sum();
    eprintln!(
        "push: {} files ({}) from {} to {}@{} on {}",
        files.len(),
        human_size(total),
        args.dir.display(),
        args.repo,
        args.revision,
        hub.endpoint
    );
    prepare_target(&hub, args)?;
    let commit_files = plan(&hub, args, &files)?;
    let lfs: Vec<&LocalFile> = commit_files
        .iter()
        .filter(|(_, lfs)| *lfs)
        .map(|(file, _)| *file)
        .collect();
    if !lfs.is_empty() {
        hub.upload_lfs(&args.repo, &args.revision, &lfs)?;
    }
    let summary = args
        .message
        .clone()
        .unwrap_or_else(|| "Upload folder with rlvr push".to_string());
    let commit = hub.commit(&args.repo, &args.revision, &summary, &commit_files)?;
    eprintln!(
        "push: committed {} files ({} via LFS) to {}@{}",
        commit_files.len(),
        lfs.len(),
        args.repo,
        args.revision
    );
    let reply = |key: &str| commit.get(key).and_then(Value::as_str).unwrap_or("");
    println!(
        "{}",
        json!({
            "repo": args.repo,
            "revision": args.revision,
            "files": commit_files.len(),
            "lfs_files": lfs.len(),
            "bytes": total,
            "commit": reply("commitOid"),
            "url": reply("commitUrl"),
        })
    );
    Ok(())
}

/// The repo exists, and so does the branch unless it is `main` or a `refs/…` revision.
fn prepare_target(hub: &Hub, args: &PushArgs) -> Result<()> {
    if hub.create_repo(&args.repo, args.private)? {
        let visibility = if args.private { "private" } else { "public" };
        eprintln!("push: created {visibility} repo {}", args.repo);
    } else {
        eprintln!("push: repo {} exists", args.repo);
    }
    if args.revision != "main" && !args.revision.starts_with("refs/") {
        hub.create_branch(&args.repo, &args.revision)?;
    }
    Ok(())
}

/// The files to commit, each with whether it goes through LFS (as the Hub's preupload says).
fn plan<'a>(
    hub: &Hub,
    args: &PushArgs,
    files: &'a [LocalFile],
) -> Result<Vec<(&'a LocalFile, bool)>> {
    let modes = hub.preupload(&args.repo, &args.revision, files)?;
    let mut commit_files = Vec::new();
    for file in files {
        match modes.get(&file.rel) {
            Some(UploadMode::Ignore) => eprintln!("push: the Hub ignores {}, skipped", file.rel),
            Some(UploadMode::Lfs) => commit_files.push((file, true)),
            Some(UploadMode::Regular) => commit_files.push((file, false)),
            None => bail!("the Hub's preupload reply does not mention {}", file.rel),
        }
    }
    if commit_files.is_empty() {
        bail!(
            "nothing to upload: the Hub ignores every file in {}",
            args.dir.display()
        );
    }
    Ok(commit_files)
}

/// `namespace/name`, each made of ASCII letters, digits, `-`, `_`, `.` (Hub naming rules).
fn validate_repo_id(repo: &str) -> Result<()> {
    let ok_part = |s: &str| {
        !s.is_empty()
            && !s.starts_with(['-', '.'])
            && !s.ends_with(['-', '.'])
            && !s.contains("..")
            && !s.contains("--")
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    match repo.split_once('/') {
        Some((namespace, name)) if ok_part(namespace) && ok_part(name) => Ok(()),
        _ => bail!("--repo must look like `user/name` (letters, digits, - _ .), got `{repo}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids() {
        assert!(validate_repo_id("user/name").is_ok());
        assert!(validate_repo_id("org-1/model_v2.5").is_ok());
        for bad in [
            "name",
            "a/b/c",
            "/name",
            "user/",
            "us er/x",
            "user/x?y",
            "user/../x",
        ] {
            assert!(validate_repo_id(bad).is_err(), "{bad}");
        }
    }
}
