//! `rlvr push`: upload a local directory to a Hugging Face Hub model repo in one commit.
//!
//! hf-hub 0.4 (used for downloads) has no upload API, and hf-hub 1.x uploads only through
//! async reqwest + xet, so this speaks the Hub's HTTP protocol directly over `ureq`, the
//! blocking client hf-hub 0.4 already brings in. The flow follows the `huggingface_hub`
//! Python library's `upload_folder`:
//!
//! 1. `POST /api/repos/create` (409 = already exists, fine);
//! 2. for a branch other than `main`, `POST /api/models/{repo}/branch/{rev}` (409 fine);
//! 3. `POST /api/models/{repo}/preupload/{rev}`: the Hub says which files go through LFS;
//! 4. LFS batch `POST /{repo}.git/info/lfs/objects/batch`, then the `basic` (one PUT) or
//!    `multipart` (PUT per part + completion POST) transfer, then `verify` when asked;
//! 5. `POST /api/models/{repo}/commit/{rev}` with NDJSON: a header line, `file` lines
//!    (base64 content) for regular files, `lfsFile` lines (sha256 oid + size) for LFS files.
//!
//! The token (HF_TOKEN, else the HF cache token file) goes only into the `Authorization`
//! header of requests to the Hub endpoint, never to the presigned LFS storage URLs, and is
//! never printed: error messages are built here and scrubbed of it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The public Hub, used when `HF_ENDPOINT` is not set.
const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
/// Bytes of each file the preupload call gets to sniff (same as huggingface_hub).
const SAMPLE_SIZE: usize = 512;
/// Files per preupload call and objects per LFS batch call (same chunking as huggingface_hub).
const CHUNK: usize = 256;
/// Longest server reply quoted in an error message.
const MAX_ERROR_BODY: usize = 400;
const LFS_CONTENT_TYPE: &str = "application/vnd.git-lfs+json";

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

pub fn push(a: &PushArgs) -> Result<()> {
    validate_repo_id(&a.repo)?;
    if a.revision.is_empty() {
        bail!("--revision must not be empty");
    }
    let files = collect_files(&a.dir)?;
    let token = Token::from_env()?;
    let hub = Hub::new(endpoint(), token);

    let total: u64 = files.iter().map(|f| f.size).sum();
    eprintln!(
        "push: {} files ({}) from {} to {}@{} on {}",
        files.len(),
        human(total),
        a.dir.display(),
        a.repo,
        a.revision,
        hub.endpoint
    );

    if hub.create_repo(&a.repo, a.private)? {
        let vis = if a.private { "private" } else { "public" };
        eprintln!("push: created {vis} repo {}", a.repo);
    } else {
        eprintln!("push: repo {} exists", a.repo);
    }
    if a.revision != "main" && !a.revision.starts_with("refs/") {
        hub.create_branch(&a.repo, &a.revision)?;
    }

    let modes = hub.preupload(&a.repo, &a.revision, &files)?;
    let mut commit_files = Vec::new();
    for f in &files {
        match modes.get(&f.rel) {
            Some(Mode::Ignore) => eprintln!("push: the Hub ignores {}, skipped", f.rel),
            Some(Mode::Lfs) => commit_files.push((f, true)),
            Some(Mode::Regular) => commit_files.push((f, false)),
            None => bail!("the Hub's preupload reply does not mention {}", f.rel),
        }
    }
    if commit_files.is_empty() {
        bail!(
            "nothing to upload: the Hub ignores every file in {}",
            a.dir.display()
        );
    }
    let lfs: Vec<&LocalFile> = commit_files
        .iter()
        .filter(|(_, l)| *l)
        .map(|(f, _)| *f)
        .collect();
    if !lfs.is_empty() {
        hub.upload_lfs(&a.repo, &a.revision, &lfs)?;
    }

    let summary = a
        .message
        .clone()
        .unwrap_or_else(|| "Upload folder with rlvr push".to_string());
    let commit = hub.commit(&a.repo, &a.revision, &summary, &commit_files)?;
    let url = commit
        .get("commitUrl")
        .and_then(Value::as_str)
        .unwrap_or("");
    let oid = commit
        .get("commitOid")
        .and_then(Value::as_str)
        .unwrap_or("");
    eprintln!(
        "push: committed {} files ({} via LFS) to {}@{}",
        commit_files.len(),
        lfs.len(),
        a.repo,
        a.revision
    );
    println!(
        "{}",
        json!({
            "repo": a.repo,
            "revision": a.revision,
            "files": commit_files.len(),
            "lfs_files": lfs.len(),
            "bytes": total,
            "commit": oid,
            "url": url,
        })
    );
    Ok(())
}

fn endpoint() -> String {
    match std::env::var("HF_ENDPOINT") {
        Ok(e) if !e.trim().is_empty() => e.trim().trim_end_matches('/').to_string(),
        _ => DEFAULT_ENDPOINT.to_string(),
    }
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
        Some((ns, name)) if ok_part(ns) && ok_part(name) => Ok(()),
        _ => bail!("--repo must look like `user/name` (letters, digits, - _ .), got `{repo}`"),
    }
}

// ---------------------------------------------------------------------------------------------
// Token

/// The Hub token. Its `Debug`/`Display` never show the value.
struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// `HF_TOKEN` (or the legacy `HUGGING_FACE_HUB_TOKEN`), else the token file the HF tools
    /// write on login: `$HF_TOKEN_PATH`, else `$HF_HOME/token`, else
    /// `$XDG_CACHE_HOME/huggingface/token`, else `~/.cache/huggingface/token`.
    fn from_env() -> Result<Token> {
        for var in ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"] {
            if let Ok(t) = std::env::var(var) {
                let t = t.trim();
                if !t.is_empty() {
                    return Token::checked(t, var);
                }
            }
        }
        let path = token_path();
        match &path {
            Some(p) => match std::fs::read_to_string(p) {
                Ok(s) if !s.trim().is_empty() => {
                    Token::checked(s.trim(), &format!("token file {}", p.display()))
                }
                Ok(_) => bail!(
                    "no Hugging Face token: HF_TOKEN is not set and the token file {} is empty",
                    p.display()
                ),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                    "no Hugging Face token: set HF_TOKEN to a token with write access, \
                     or log in so that {} exists",
                    p.display()
                ),
                Err(e) => bail!(
                    "no Hugging Face token: HF_TOKEN is not set and reading {} failed: {e}",
                    p.display()
                ),
            },
            None => bail!(
                "no Hugging Face token: set HF_TOKEN to a token with write access \
                 (no HF_HOME or HOME to find the cached token in)"
            ),
        }
    }

    fn checked(t: &str, from: &str) -> Result<Token> {
        // A header value must be visible ASCII; refuse anything else rather than send it
        // mangled (and without quoting the value).
        if !t.bytes().all(|b| b.is_ascii_graphic()) {
            bail!("the Hugging Face token from {from} contains whitespace or non-ASCII characters");
        }
        Ok(Token(t.to_string()))
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.0)
    }

    /// `s` with every occurrence of the token replaced.
    fn scrub(&self, s: &str) -> String {
        if self.0.is_empty() {
            s.to_string()
        } else {
            s.replace(&self.0, "<redacted>")
        }
    }
}

fn token_path() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(p) = var("HF_TOKEN_PATH") {
        return Some(p);
    }
    let home = var("HF_HOME")
        .or_else(|| var("XDG_CACHE_HOME").map(|c| c.join("huggingface")))
        .or_else(|| var("HOME").map(|h| h.join(".cache").join("huggingface")))?;
    Some(home.join("token"))
}

// ---------------------------------------------------------------------------------------------
// Local files

struct LocalFile {
    /// Path in the repo, `/`-separated.
    rel: String,
    abs: PathBuf,
    size: u64,
    sample: Vec<u8>,
    sha256: String,
}

fn collect_files(dir: &Path) -> Result<Vec<LocalFile>> {
    let meta = std::fs::metadata(dir).with_context(|| {
        format!(
            "push: directory {} does not exist or cannot be read",
            dir.display()
        )
    })?;
    if !meta.is_dir() {
        bail!("push: {} is not a directory", dir.display());
    }
    let mut rels = Vec::new();
    walk(dir, "", &mut rels)?;
    rels.sort();
    if rels.is_empty() {
        bail!("push: {} has no files to upload", dir.display());
    }
    rels.into_iter()
        .map(|rel| {
            let abs = dir.join(&rel);
            let (size, sample, sha256) =
                hash_file(&abs).with_context(|| format!("reading {}", abs.display()))?;
            Ok(LocalFile {
                rel,
                abs,
                size,
                sample,
                sha256,
            })
        })
        .collect()
}

/// Relative paths of the regular files under `dir/prefix`, skipping `.git` and the
/// `.cache/huggingface` folder (as `huggingface_hub.upload_folder` does). Symlinks are followed.
fn walk(root: &Path, prefix: &str, out: &mut Vec<String>) -> Result<()> {
    let dir = root.join(prefix);
    let entries = std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            bail!(
                "push: file name {:?} in {} is not UTF-8",
                entry.file_name(),
                dir.display()
            );
        };
        let rel = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}/{name}")
        };
        if name == ".git" || rel == ".cache/huggingface" {
            continue;
        }
        let meta = std::fs::metadata(entry.path())
            .with_context(|| format!("reading {}", entry.path().display()))?;
        if meta.is_dir() {
            walk(root, &rel, out)?;
        } else if meta.is_file() {
            out.push(rel);
        }
    }
    Ok(())
}

fn hash_file(path: &Path) -> Result<(u64, Vec<u8>, String)> {
    let mut f = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut sample = Vec::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if sample.len() < SAMPLE_SIZE {
            let take = (SAMPLE_SIZE - sample.len()).min(n);
            sample.extend_from_slice(&buf[..take]);
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, sample, hex(&hasher.finalize())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", b / (1024.0 * 1024.0 * 1024.0))
    } else if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else if b >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

/// Percent-encode one URL path segment (everything but RFC 3986 unreserved characters).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A URL fit for an error message: no query string (presigned URLs carry signatures there).
fn show_url(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

// ---------------------------------------------------------------------------------------------
// Hub client

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Regular,
    Lfs,
    Ignore,
}

struct Hub {
    agent: ureq::Agent,
    endpoint: String,
    token: Token,
}

/// What to put on a request besides the body.
enum Auth {
    /// `Authorization: Bearer <token>`: requests to the Hub itself.
    Hub,
    /// Nothing of ours: presigned storage URLs and multipart completion (as huggingface_hub).
    None,
}

impl Hub {
    fn new(endpoint: String, token: Token) -> Hub {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(30))
            .timeout_read(Duration::from_secs(600))
            .timeout_write(Duration::from_secs(600))
            .user_agent(concat!("rlvr/", env!("CARGO_PKG_VERSION")))
            .build();
        Hub {
            agent,
            endpoint,
            token,
        }
    }

    fn request(
        &self,
        method: &str,
        url: &str,
        auth: Auth,
        headers: &[(&str, &str)],
    ) -> ureq::Request {
        let mut req = self.agent.request(method, url);
        if let Auth::Hub = auth {
            req = req.set("Authorization", &self.token.bearer());
        }
        for (k, v) in headers {
            req = req.set(k, v);
        }
        req
    }

    /// Turn a failed call into an error naming the method, URL (sans query) and status, with
    /// the Hub's own message when it sent one; the token is scrubbed out of all of it.
    fn error(&self, method: &str, url: &str, err: ureq::Error) -> anyhow::Error {
        let msg = match err {
            ureq::Error::Status(code, resp) => {
                let status_text = resp.status_text().to_string();
                let body = read_error_body(resp);
                let mut m = format!(
                    "{method} {} failed: HTTP {code} {status_text}",
                    show_url(url)
                );
                if !body.is_empty() {
                    m.push_str(&format!(": {body}"));
                }
                match code {
                    401 => m.push_str(
                        " (is the token valid? it comes from HF_TOKEN or the HF cache token file)",
                    ),
                    403 => m.push_str(" (does the token have write access to this repo?)"),
                    _ => {}
                }
                m
            }
            ureq::Error::Transport(t) => {
                let detail = t.message().map(|m| format!(": {m}")).unwrap_or_default();
                format!("{method} {} failed: {}{detail}", show_url(url), t.kind())
            }
        };
        anyhow!(self.token.scrub(&msg))
    }

    fn call_json(
        &self,
        method: &str,
        url: &str,
        auth: Auth,
        ct: &str,
        body: &[u8],
    ) -> Result<Value> {
        let resp = self
            .request(
                method,
                url,
                auth,
                &[("Content-Type", ct), ("Accept", "application/json")],
            )
            .send_bytes(body)
            .map_err(|e| self.error(method, url, e))?;
        read_json(resp, method, url)
    }

    /// Create the model repo; `Ok(false)` when it already exists.
    fn create_repo(&self, repo: &str, private: bool) -> Result<bool> {
        let url = format!("{}/api/repos/create", self.endpoint);
        let (ns, name) = repo.split_once('/').expect("validated repo id");
        let body = json!({"name": name, "organization": ns, "private": private, "type": "model"});
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
    fn create_branch(&self, repo: &str, branch: &str) -> Result<()> {
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

    /// Ask the Hub which files go through LFS (and which it ignores).
    fn preupload(
        &self,
        repo: &str,
        rev: &str,
        files: &[LocalFile],
    ) -> Result<HashMap<String, Mode>> {
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
                .call_json("POST", &url, Auth::Hub, "application/json", body.as_bytes())
                .context("asking the Hub how to upload each file")?;
            let listed = reply
                .get("files")
                .and_then(Value::as_array)
                .ok_or_else(|| anyhow!("POST {url}: reply has no `files` list"))?;
            for entry in listed {
                let path = entry
                    .get("path")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let mode = if entry.get("shouldIgnore").and_then(Value::as_bool) == Some(true) {
                    Mode::Ignore
                } else {
                    match entry.get("uploadMode").and_then(Value::as_str) {
                        Some("lfs") => Mode::Lfs,
                        Some("regular") => Mode::Regular,
                        other => bail!("POST {url}: unknown uploadMode {other:?} for {path}"),
                    }
                };
                modes.insert(path.to_string(), mode);
            }
        }
        // Empty files are always committed inline (as huggingface_hub does).
        for f in files.iter().filter(|f| f.size == 0) {
            if modes.get(&f.rel) == Some(&Mode::Lfs) {
                modes.insert(f.rel.clone(), Mode::Regular);
            }
        }
        Ok(modes)
    }

    /// Upload the LFS files' contents (those the Hub does not already have), then verify.
    fn upload_lfs(&self, repo: &str, rev: &str, files: &[&LocalFile]) -> Result<()> {
        let url = format!("{}/{repo}.git/info/lfs/objects/batch", self.endpoint);
        // One upload per distinct content.
        let mut seen = HashSet::new();
        let unique: Vec<&LocalFile> = files
            .iter()
            .copied()
            .filter(|f| seen.insert(f.sha256.clone()))
            .collect();
        for chunk in unique.chunks(CHUNK) {
            let objects: Vec<Value> = chunk
                .iter()
                .map(|f| json!({"oid": f.sha256, "size": f.size}))
                .collect();
            let body = json!({
                "operation": "upload",
                "transfers": ["basic", "multipart"],
                "objects": objects,
                "hash_algo": "sha256",
                "ref": {"name": rev},
            })
            .to_string();
            let resp = self
                .request(
                    "POST",
                    &url,
                    Auth::Hub,
                    &[
                        ("Content-Type", LFS_CONTENT_TYPE),
                        ("Accept", LFS_CONTENT_TYPE),
                    ],
                )
                .send_bytes(body.as_bytes())
                .map_err(|e| self.error("POST", &url, e))
                .context("LFS batch request")?;
            let reply = read_json(resp, "POST", &url)?;
            let listed = reply
                .get("objects")
                .and_then(Value::as_array)
                .ok_or_else(|| anyhow!("POST {url}: LFS batch reply has no `objects` list"))?;
            let by_oid: BTreeMap<&str, &Value> = listed
                .iter()
                .filter_map(|o| Some((o.get("oid")?.as_str()?, o)))
                .collect();
            for f in chunk {
                let obj = by_oid.get(f.sha256.as_str()).ok_or_else(|| {
                    anyhow!("POST {url}: LFS batch reply does not mention {}", f.rel)
                })?;
                if let Some(err) = obj.get("error") {
                    bail!(
                        "LFS batch refused {}: {}",
                        f.rel,
                        self.token.scrub(&err.to_string())
                    );
                }
                let actions = obj.get("actions");
                match actions.and_then(|a| a.get("upload")) {
                    Some(upload) => {
                        eprintln!("push: uploading {} ({}) via LFS", f.rel, human(f.size));
                        self.lfs_transfer(f, upload)
                            .with_context(|| format!("uploading {}", f.rel))?;
                    }
                    None => eprintln!("push: {} already on the Hub", f.rel),
                }
                if let Some(verify) = actions.and_then(|a| a.get("verify")) {
                    let href = action_href(verify)?;
                    let body = json!({"oid": f.sha256, "size": f.size}).to_string();
                    self.request(
                        "POST",
                        href,
                        Auth::Hub,
                        &[
                            ("Content-Type", LFS_CONTENT_TYPE),
                            ("Accept", LFS_CONTENT_TYPE),
                        ],
                    )
                    .send_bytes(body.as_bytes())
                    .map_err(|e| self.error("POST", href, e))
                    .with_context(|| format!("verifying the upload of {}", f.rel))?;
                }
            }
        }
        Ok(())
    }

    /// One LFS upload action: `basic` (one PUT) or `multipart` (`chunk_size` and numbered part
    /// URLs in its `header`, completion POSTed to its `href`).
    fn lfs_transfer(&self, f: &LocalFile, action: &Value) -> Result<()> {
        let href = action_href(action)?;
        let header = action.get("header").and_then(Value::as_object);
        let chunk_size = header.and_then(|h| h.get("chunk_size")).map(|v| match v {
            Value::String(s) => s.parse::<u64>().ok(),
            Value::Number(n) => n.as_u64(),
            _ => None,
        });
        match chunk_size {
            None => {
                // Basic transfer: the action's headers (if any) and the raw bytes.
                let extra: Vec<(String, String)> = header
                    .map(|h| {
                        h.iter()
                            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                            .collect()
                    })
                    .unwrap_or_default();
                let mut req = self.request("PUT", href, Auth::None, &[]);
                for (k, v) in &extra {
                    req = req.set(k, v);
                }
                req = req.set("Content-Length", &f.size.to_string());
                let file =
                    File::open(&f.abs).with_context(|| format!("opening {}", f.abs.display()))?;
                req.send(file).map_err(|e| self.error("PUT", href, e))?;
                Ok(())
            }
            Some(None) | Some(Some(0)) => bail!("LFS batch reply has a malformed chunk_size"),
            Some(Some(chunk)) => {
                let h = header.expect("chunk_size came from the header");
                let mut parts: Vec<(u64, &str)> = h
                    .iter()
                    .filter_map(|(k, v)| Some((k.parse::<u64>().ok()?, v.as_str()?)))
                    .collect();
                parts.sort();
                let expected = f.size.div_ceil(chunk);
                if parts.len() as u64 != expected
                    || parts.iter().enumerate().any(|(i, p)| p.0 != i as u64 + 1)
                {
                    bail!(
                        "LFS multipart reply offers {} part URLs for {} parts of {} bytes",
                        parts.len(),
                        expected,
                        chunk
                    );
                }
                let mut done = Vec::with_capacity(parts.len());
                for (i, (num, part_url)) in parts.iter().enumerate() {
                    let start = i as u64 * chunk;
                    let len = chunk.min(f.size - start);
                    let mut file = File::open(&f.abs)
                        .with_context(|| format!("opening {}", f.abs.display()))?;
                    file.seek(SeekFrom::Start(start))?;
                    let resp = self
                        .request(
                            "PUT",
                            part_url,
                            Auth::None,
                            &[("Content-Length", &len.to_string())],
                        )
                        .send(file.take(len))
                        .map_err(|e| self.error("PUT", part_url, e))
                        .with_context(|| format!("part {num} of {}", parts.len()))?;
                    let etag = resp.header("etag").unwrap_or_default().to_string();
                    if etag.is_empty() {
                        bail!("PUT {}: no ETag for part {num}", show_url(part_url));
                    }
                    done.push(json!({"partNumber": num, "etag": etag}));
                }
                let body = json!({"oid": f.sha256, "parts": done}).to_string();
                self.request(
                    "POST",
                    href,
                    Auth::None,
                    &[
                        ("Content-Type", LFS_CONTENT_TYPE),
                        ("Accept", LFS_CONTENT_TYPE),
                    ],
                )
                .send_bytes(body.as_bytes())
                .map_err(|e| self.error("POST", href, e))
                .context("completing the multipart upload")?;
                Ok(())
            }
        }
    }

    /// The commit: NDJSON header + one line per file.
    fn commit(
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
        let mut line = |v: Value| {
            serde_json::to_writer(&mut body, &v).expect("serializing JSON to memory");
            body.push(b'\n');
        };
        line(json!({"key": "header", "value": {"summary": summary, "description": ""}}));
        for (f, lfs) in files {
            if *lfs {
                line(json!({"key": "lfsFile", "value": {
                    "path": f.rel, "algo": "sha256", "oid": f.sha256, "size": f.size,
                }}));
            } else {
                let bytes = std::fs::read(&f.abs)
                    .with_context(|| format!("reading {}", f.abs.display()))?;
                line(json!({"key": "file", "value": {
                    "content": BASE64.encode(&bytes), "path": f.rel, "encoding": "base64",
                }}));
            }
        }
        self.call_json("POST", &url, Auth::Hub, "application/x-ndjson", &body)
            .with_context(|| format!("committing to {repo}@{rev}"))
    }
}

fn action_href(action: &Value) -> Result<&str> {
    action
        .get("href")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("LFS batch reply has an action without `href`"))
}

fn read_error_body(resp: ureq::Response) -> String {
    let mut raw = Vec::new();
    let _ = resp.into_reader().take(64 * 1024).read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    let text = match serde_json::from_str::<Value>(&text) {
        Ok(v) => match v.get("error").or_else(|| v.get("message")) {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => text.trim().to_string(),
        },
        Err(_) => text.trim().to_string(),
    };
    let mut out: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_ERROR_BODY)
        .collect();
    if text.chars().count() > MAX_ERROR_BODY {
        out.push('…');
    }
    out
}

fn read_json(resp: ureq::Response, method: &str, url: &str) -> Result<Value> {
    let mut raw = Vec::new();
    resp.into_reader()
        .take(64 << 20)
        .read_to_end(&mut raw)
        .with_context(|| format!("{method} {}: reading the reply", show_url(url)))?;
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&raw)
        .with_context(|| format!("{method} {}: the reply is not JSON", show_url(url)))
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

    #[test]
    fn segments_and_urls() {
        assert_eq!(encode_segment("main"), "main");
        assert_eq!(encode_segment("refs/pr/1"), "refs%2Fpr%2F1");
        assert_eq!(show_url("http://h/x?sig=1"), "http://h/x");
    }

    #[test]
    fn token_is_redacted() {
        let t = Token("hf_secret".into());
        assert_eq!(format!("{t:?}"), "Token(<redacted>)");
        assert_eq!(t.scrub("Bearer hf_secret!"), "Bearer <redacted>!");
    }
}
