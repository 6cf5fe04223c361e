//! A fake Hugging Face Hub on 127.0.0.1 for download tests (`rlvr pull`, `--model owner/name`):
//! the two endpoints hf-hub's sync client uses:
//!
//! * `GET /{owner}/{name}/resolve/{revision}/{file}`: small files are answered directly with
//!   `ETag` and `X-Repo-Commit`; `*.safetensors` files behave like LFS files on the real Hub, a
//!   302 to `/cdn/{sha256}` carrying `X-Linked-Etag`, `X-Linked-Size` and `X-Repo-Commit`.
//!   Unknown repos, revisions and files get a 404 with the Hub's `X-Error-Code`.
//! * `GET /cdn/{sha256}`: the bytes of any served file.
//!
//! Both honour `Range: bytes=a-b` / `bytes=a-` with a 206 and `Content-Range`. Every request is
//! recorded. The HTTP/1.1 layer is tests/support/http.rs (one request per connection,
//! `Connection: close`). The server stops when dropped, or by itself after `LIFETIME`.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use crate::support::http::sha_hex;
use crate::support::http::{Listener, Request, Response, Server};

const LIFETIME: Duration = Duration::from_secs(300);

/// The files of one repo at one revision.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub repo: String,
    pub revision: String,
    /// The 40-hex commit id the Hub reports in `X-Repo-Commit`.
    pub commit: String,
    pub files: BTreeMap<String, Vec<u8>>,
}

#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// The request target as sent (percent-encoding kept).
    pub path: String,
    pub range: Option<String>,
    pub authorization: Option<String>,
}

pub struct DownloadHub {
    pub url: String,
    requests: Arc<Mutex<Vec<Seen>>>,
    server: Server,
}

struct Config {
    base: String,
    /// When set, resolve requests without `Authorization: Bearer <token>` get a 401.
    token: Option<String>,
    snapshots: Vec<Snapshot>,
    /// sha256 hex → bytes, for the CDN endpoint.
    blobs: HashMap<String, Vec<u8>>,
}

impl DownloadHub {
    pub fn start(token: Option<&str>, snapshots: Vec<Snapshot>) -> DownloadHub {
        let listener = Listener::bind();
        let url = listener.url.clone();
        let blobs = snapshots
            .iter()
            .flat_map(|s| s.files.values())
            .map(|b| (sha_hex(b), b.clone()))
            .collect();
        let cfg = Config {
            base: url.clone(),
            token: token.map(str::to_string),
            snapshots,
            blobs,
        };
        let requests = Arc::new(Mutex::new(Vec::new()));
        let rq = requests.clone();
        let server = listener.serve(LIFETIME, "application/octet-stream", move |req| {
            handle(req, &rq, &cfg)
        });
        DownloadHub {
            url,
            requests,
            server,
        }
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.requests.lock().unwrap().clone()
    }

    /// Forget the requests seen so far.
    pub fn clear(&self) {
        self.requests.lock().unwrap().clear();
    }
}

fn handle(req: Result<Request, String>, requests: &Mutex<Vec<Seen>>, cfg: &Config) -> Response {
    match req {
        Ok(mut req) => {
            let seen = Seen {
                method: req.method,
                path: req.target,
                range: req.headers.remove("range"),
                authorization: req.headers.remove("authorization"),
            };
            let resp = route(&seen, cfg);
            requests.lock().unwrap().push(seen);
            resp
        }
        Err(e) => error(400, "BadRequest", &e),
    }
}

fn error(status: u16, code: &str, msg: &str) -> Response {
    Response::new(status, format!("{{\"error\":\"{msg}\"}}")).header("X-Error-Code", code)
}

/// Answer a (possibly ranged) GET of `data`.
fn ranged(data: &[u8], range: Option<&str>, mut resp: Response) -> Response {
    let total = data.len();
    let Some(spec) = range.and_then(|r| r.strip_prefix("bytes=")) else {
        resp.body = data.to_vec();
        return resp;
    };
    let (a, b) = spec.split_once('-').unwrap_or((spec, ""));
    let start: usize = a.trim().parse().unwrap_or(usize::MAX);
    let end: usize = match b.trim() {
        "" => total.saturating_sub(1),
        e => e.parse::<usize>().unwrap_or(0).min(total.saturating_sub(1)),
    };
    if start >= total || start > end {
        resp.status = 416;
        return resp.header("Content-Range", format!("bytes */{total}"));
    }
    resp.status = 206;
    resp.body = data[start..=end].to_vec();
    resp.header("Content-Range", format!("bytes {start}-{end}/{total}"))
}

fn route(seen: &Seen, cfg: &Config) -> Response {
    if seen.method != "GET" {
        return error(405, "MethodNotAllowed", "only GET");
    }
    let path = seen.path.split('?').next().unwrap_or("");
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segs.as_slice() {
        ["cdn", sha] => match cfg.blobs.get(*sha) {
            Some(data) => ranged(data, seen.range.as_deref(), Response::new(200, vec![])),
            None => error(404, "NotFound", "no such object"),
        },
        [owner, name, "resolve", rev, file @ ..] if !file.is_empty() => {
            if let Some(token) = &cfg.token {
                if seen.authorization.as_deref() != Some(&format!("Bearer {token}")) {
                    return error(
                        401,
                        "RepoNotFound",
                        "Invalid credentials in Authorization header",
                    );
                }
            }
            let repo = format!("{owner}/{name}");
            let rev = rev.replace("%2F", "/");
            let file = file.join("/");
            if !cfg.snapshots.iter().any(|s| s.repo == repo) {
                return error(404, "RepoNotFound", "Repository not found");
            }
            let Some(snap) = cfg
                .snapshots
                .iter()
                .find(|s| s.repo == repo && s.revision == rev)
            else {
                return error(404, "RevisionNotFound", "Invalid rev id");
            };
            let Some(data) = snap.files.get(&file) else {
                return error(404, "EntryNotFound", "Entry not found")
                    .header("X-Repo-Commit", snap.commit.clone());
            };
            let sha = sha_hex(data);
            if file.ends_with(".safetensors") {
                // An LFS file: the Hub answers with a redirect to its storage.
                Response::new(302, vec![])
                    .header("Location", format!("{}/cdn/{sha}", cfg.base))
                    .header("X-Repo-Commit", snap.commit.clone())
                    .header("X-Linked-Etag", format!("\"{sha}\""))
                    .header("X-Linked-Size", data.len().to_string())
                    .header("ETag", "\"pointer-file-etag\"")
            } else {
                ranged(
                    data,
                    seen.range.as_deref(),
                    Response::new(200, vec![])
                        .header("X-Repo-Commit", snap.commit.clone())
                        .header("ETag", format!("\"{sha}\"")),
                )
            }
        }
        _ => error(404, "NotFound", "no such endpoint"),
    }
}
