//! The Hugging Face Hub upload client: a local directory into a model repo in one commit.
//!
//! hf-hub 0.4 (used for downloads) has no upload API, and hf-hub 1.x uploads only through
//! async reqwest + xet, so this speaks the Hub's HTTP protocol directly over `ureq`, the
//! blocking client hf-hub 0.4 already brings in. The flow follows the `huggingface_hub`
//! Python library's `upload_folder`, one file per step:
//!
//! 1. `POST /api/repos/create` (409 = already exists, fine) — repo.rs;
//! 2. for a branch other than `main`, `POST /api/models/{repo}/branch/{rev}` (409 fine) — repo.rs;
//! 3. `POST /api/models/{repo}/preupload/{rev}`: the Hub says which files go through LFS —
//!    preupload.rs;
//! 4. LFS batch `POST /{repo}.git/info/lfs/objects/batch` — lfs_batch.rs, then the `basic` (one
//!    PUT) or `multipart` (PUT per part + completion POST) transfer — lfs_transfer.rs, then
//!    `verify` when asked — lfs_batch.rs;
//! 5. `POST /api/models/{repo}/commit/{rev}` with NDJSON: a header line, `file` lines
//!    (base64 content) for regular files, `lfsFile` lines (sha256 oid + size) for LFS files —
//!    commit.rs.
//!
//! The token (token.rs) goes only into the `Authorization` header of requests to the Hub
//! endpoint, never to the presigned LFS storage URLs, and is never printed: error messages are
//! built here and scrubbed of it.
//!
//! Every call has bounded timeouts and is retried with backoff on 429, 5xx and connection
//! failures (retry.rs: the policy, and the `RLVR_HUB_*` variables that tune it).
//!
//! This module owns requests, replies and their errors; it must not know the `rlvr push`
//! command's flags or output.

// ureq 2's `Error` (272 bytes, a whole `Response` in its `Status` variant) is what every call
// returns and what the retry loop inspects; boxing it at each call buys nothing on this path.
#![allow(clippy::result_large_err)]

mod commit;
mod files;
mod lfs_batch;
mod lfs_transfer;
mod preupload;
mod repo;
mod retry;
mod token;

use std::io::Read;

use anyhow::{anyhow, Context, Result};
use serde_json::Value;

pub use files::{collect_files, human_size, LocalFile};
pub use preupload::UploadMode;
use retry::{Policy, Repeat, Verdict};
pub use token::Token;

/// The public Hub, used when `HF_ENDPOINT` is not set.
const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
/// Files per preupload call and objects per LFS batch call (same chunking as huggingface_hub).
const CHUNK: usize = 256;
/// Longest server reply quoted in an error message.
const MAX_ERROR_BODY: usize = 400;
const LFS_CONTENT_TYPE: &str = "application/vnd.git-lfs+json";

pub struct Hub {
    agent: ureq::Agent,
    policy: Policy,
    pub endpoint: String,
    token: Token,
}

/// A call that failed on its last attempt.
struct Failed {
    err: ureq::Error,
    attempts: u32,
    /// The server asked to wait this long before trying again, which is too long.
    retry_after: Option<std::time::Duration>,
}

/// What to put on a request besides the body.
#[derive(Clone, Copy)]
enum Auth {
    /// `Authorization: Bearer <token>`: requests to the Hub itself.
    Hub,
    /// Nothing of ours: presigned storage URLs and multipart completion (as huggingface_hub).
    None,
}

/// `HF_ENDPOINT`, else the public Hub; without a trailing slash.
pub fn endpoint() -> String {
    match std::env::var("HF_ENDPOINT") {
        Ok(e) if !e.trim().is_empty() => e.trim().trim_end_matches('/').to_string(),
        _ => DEFAULT_ENDPOINT.to_string(),
    }
}

impl Hub {
    /// A client of the Hub at `endpoint`, with the timeouts and retries of the environment.
    pub fn new(endpoint: String, token: Token) -> Result<Hub> {
        let policy = Policy::from_env()?;
        Ok(Hub {
            agent: policy.agent(),
            policy,
            endpoint,
            token,
        })
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
        for (key, value) in headers {
            req = req.set(key, value);
        }
        req
    }

    /// Run `attempt` until it succeeds, fails for good, or the retries are used up, waiting
    /// between attempts as the policy says (retry.rs).
    fn send<T>(
        &self,
        method: &str,
        url: &str,
        repeat: Repeat,
        mut attempt: impl FnMut() -> Result<T, ureq::Error>,
    ) -> Result<T, Failed> {
        let mut attempts = 1;
        loop {
            let err = match attempt() {
                Ok(value) => return Ok(value),
                Err(err) => err,
            };
            let retry_after = match retry::verdict(&err, repeat) {
                Verdict::Retry { retry_after } if attempts <= self.policy.retries => retry_after,
                Verdict::TooLong(wait) => {
                    let retry_after = Some(wait);
                    return Err(Failed {
                        err,
                        attempts,
                        retry_after,
                    });
                }
                _ => {
                    let retry_after = None;
                    return Err(Failed {
                        err,
                        attempts,
                        retry_after,
                    });
                }
            };
            let wait = self.policy.delay(attempts, retry_after);
            eprintln!(
                "push: {method} {} failed ({}); trying again in {:.1} s ({} of {} attempts)",
                show_url(url),
                short_reason(&err),
                wait.as_secs_f64(),
                attempts + 1,
                self.policy.retries + 1
            );
            std::thread::sleep(wait);
            attempts += 1;
        }
    }

    /// A POST of a JSON body in the LFS media type (batch, verify, multipart completion).
    fn post_lfs_json(
        &self,
        url: &str,
        auth: Auth,
        repeat: Repeat,
        body: &Value,
    ) -> Result<ureq::Response> {
        let headers = [
            ("Content-Type", LFS_CONTENT_TYPE),
            ("Accept", LFS_CONTENT_TYPE),
        ];
        let body = body.to_string();
        self.send("POST", url, repeat, || {
            self.request("POST", url, auth, &headers)
                .send_bytes(body.as_bytes())
        })
        .map_err(|f| self.error("POST", url, f))
    }

    /// Turn a failed call into an error naming the method, URL (sans query) and status, with
    /// the Hub's own message when it sent one, and how many attempts were made; the token is
    /// scrubbed out of all of it.
    fn error(&self, method: &str, url: &str, failed: Failed) -> anyhow::Error {
        let timed_out = retry::is_timeout(&failed.err);
        let mut msg = match failed.err {
            ureq::Error::Status(code, resp) => {
                let status_text = resp.status_text().to_string();
                let body = read_error_body(resp);
                let mut msg = format!(
                    "{method} {} failed: HTTP {code} {status_text}",
                    show_url(url)
                );
                if !body.is_empty() {
                    msg.push_str(&format!(": {body}"));
                }
                match code {
                    401 => msg.push_str(
                        " (is the token valid? it comes from HF_TOKEN or the HF cache token file)",
                    ),
                    403 => msg.push_str(" (does the token have write access to this repo?)"),
                    _ => {}
                }
                msg
            }
            ureq::Error::Transport(t) => {
                let detail = t.message().map(|m| format!(": {m}")).unwrap_or_default();
                let cause = std::error::Error::source(&t)
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default();
                format!(
                    "{method} {} failed: {}{detail}{cause}",
                    show_url(url),
                    t.kind()
                )
            }
        };
        if timed_out {
            msg.push_str(&format!(
                "; no progress for {} s (RLVR_HUB_TIMEOUT_S sets the limit)",
                self.policy.timeout.as_secs_f64()
            ));
        }
        if let Some(wait) = failed.retry_after {
            msg.push_str(&format!(
                "; the server asks to wait {:.0} s before trying again",
                wait.as_secs_f64()
            ));
        }
        if failed.attempts > 1 {
            msg.push_str(&format!("; gave up after {} attempts", failed.attempts));
        }
        anyhow!(self.token.scrub(&msg))
    }

    /// A JSON call to the Hub; its reply's JSON.
    fn call_json(
        &self,
        method: &str,
        url: &str,
        repeat: Repeat,
        content_type: &str,
        body: &[u8],
    ) -> Result<Value> {
        let headers = [
            ("Content-Type", content_type),
            ("Accept", "application/json"),
        ];
        let resp = self
            .send(method, url, repeat, || {
                self.request(method, url, Auth::Hub, &headers)
                    .send_bytes(body)
            })
            .map_err(|f| self.error(method, url, f))?;
        read_json(resp, method, url)
    }
}

/// A failure in a few words, for the line that says it will be retried.
fn short_reason(err: &ureq::Error) -> String {
    match err {
        ureq::Error::Status(code, _) => format!("HTTP {code}"),
        ureq::Error::Transport(t) if retry::is_timeout(err) => format!("{}: timed out", t.kind()),
        ureq::Error::Transport(t) => t.kind().to_string(),
    }
}

/// The server's message in an error reply: its JSON `error`/`message`, else the text; without
/// control characters and cut to `MAX_ERROR_BODY` characters.
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

/// A reply's JSON (null when empty).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_and_urls() {
        assert_eq!(encode_segment("main"), "main");
        assert_eq!(encode_segment("refs/pr/1"), "refs%2Fpr%2F1");
        assert_eq!(show_url("http://h/x?sig=1"), "http://h/x");
    }
}
