//! A fake Hugging Face Hub on 127.0.0.1 for download tests (`rlvr pull`, `--model owner/name`):
//! a std `TcpListener`, a minimal HTTP/1.1 parser (one request per connection,
//! `Connection: close`) and the two endpoints hf-hub's sync client uses:
//!
//! * `GET /{owner}/{name}/resolve/{revision}/{file}`: small files are answered directly with
//!   `ETag` and `X-Repo-Commit`; `*.safetensors` files behave like LFS files on the real Hub, a
//!   302 to `/cdn/{sha256}` carrying `X-Linked-Etag`, `X-Linked-Size` and `X-Repo-Commit`.
//!   Unknown repos, revisions and files get a 404 with the Hub's `X-Error-Code`.
//! * `GET /cdn/{sha256}`: the bytes of any served file.
//!
//! Both honour `Range: bytes=a-b` / `bytes=a-` with a 206 and `Content-Range`. Every request is
//! recorded. The server stops when dropped, or by itself after `LIFETIME`.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

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
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

struct Config {
    base: String,
    /// When set, resolve requests without `Authorization: Bearer <token>` get a 401.
    token: Option<String>,
    snapshots: Vec<Snapshot>,
    /// sha256 hex → bytes, for the CDN endpoint.
    blobs: HashMap<String, Vec<u8>>,
}

pub fn sha_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

impl DownloadHub {
    pub fn start(token: Option<&str>, snapshots: Vec<Snapshot>) -> DownloadHub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let blobs = snapshots
            .iter()
            .flat_map(|s| s.files.values())
            .map(|b| (sha_hex(b), b.clone()))
            .collect();
        let cfg = Arc::new(Config {
            base: url.clone(),
            token: token.map(str::to_string),
            snapshots,
            blobs,
        });
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (rq, sp) = (requests.clone(), stop.clone());
        let handle = std::thread::spawn(move || {
            let deadline = Instant::now() + LIFETIME;
            while !sp.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (rq, cfg) = (rq.clone(), cfg.clone());
                        std::thread::spawn(move || serve(stream, &rq, &cfg));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(_) => break,
                }
            }
        });
        DownloadHub {
            url,
            requests,
            stop,
            handle: Some(handle),
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

impl Drop for DownloadHub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

struct Response {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

fn error(status: u16, code: &str, msg: &str) -> Response {
    Response {
        status,
        headers: vec![("X-Error-Code", code.into())],
        body: format!("{{\"error\":\"{msg}\"}}").into_bytes(),
    }
}

/// Answer a (possibly ranged) GET of `data`.
fn ranged(data: &[u8], range: Option<&str>, mut headers: Vec<(&'static str, String)>) -> Response {
    let total = data.len();
    let Some(spec) = range.and_then(|r| r.strip_prefix("bytes=")) else {
        return Response {
            status: 200,
            headers,
            body: data.to_vec(),
        };
    };
    let (a, b) = spec.split_once('-').unwrap_or((spec, ""));
    let start: usize = a.trim().parse().unwrap_or(usize::MAX);
    let end: usize = match b.trim() {
        "" => total.saturating_sub(1),
        e => e.parse::<usize>().unwrap_or(0).min(total.saturating_sub(1)),
    };
    if start >= total || start > end {
        headers.push(("Content-Range", format!("bytes */{total}")));
        return Response {
            status: 416,
            headers,
            body: vec![],
        };
    }
    headers.push(("Content-Range", format!("bytes {start}-{end}/{total}")));
    Response {
        status: 206,
        headers,
        body: data[start..=end].to_vec(),
    }
}

fn route(seen: &Seen, cfg: &Config) -> Response {
    if seen.method != "GET" {
        return error(405, "MethodNotAllowed", "only GET");
    }
    let path = seen.path.split('?').next().unwrap_or("");
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segs.as_slice() {
        ["cdn", sha] => match cfg.blobs.get(*sha) {
            Some(data) => ranged(data, seen.range.as_deref(), vec![]),
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
                let mut r = error(404, "EntryNotFound", "Entry not found");
                r.headers.push(("X-Repo-Commit", snap.commit.clone()));
                return r;
            };
            let sha = sha_hex(data);
            if file.ends_with(".safetensors") {
                // An LFS file: the Hub answers with a redirect to its storage.
                Response {
                    status: 302,
                    headers: vec![
                        ("Location", format!("{}/cdn/{sha}", cfg.base)),
                        ("X-Repo-Commit", snap.commit.clone()),
                        ("X-Linked-Etag", format!("\"{sha}\"")),
                        ("X-Linked-Size", data.len().to_string()),
                        ("ETag", "\"pointer-file-etag\"".into()),
                    ],
                    body: vec![],
                }
            } else {
                ranged(
                    data,
                    seen.range.as_deref(),
                    vec![
                        ("X-Repo-Commit", snap.commit.clone()),
                        ("ETag", format!("\"{sha}\"")),
                    ],
                )
            }
        }
        _ => error(404, "NotFound", "no such endpoint"),
    }
}

fn read_request(stream: &TcpStream) -> Result<Seen, String> {
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| e.to_string())?;
    let mut it = line.split_whitespace();
    let (method, path) = match (it.next(), it.next()) {
        (Some(m), Some(t)) => (m.to_string(), t.to_string()),
        _ => return Err(format!("bad request line {line:?}")),
    };
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).map_err(|e| e.to_string())?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').ok_or(format!("bad header {h:?}"))?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    Ok(Seen {
        method,
        path,
        range: headers.remove("range"),
        authorization: headers.remove("authorization"),
    })
}

fn serve(stream: TcpStream, requests: &Mutex<Vec<Seen>>, cfg: &Config) {
    stream.set_nonblocking(false).ok();
    stream.set_read_timeout(Some(Duration::from_secs(20))).ok();
    stream.set_write_timeout(Some(Duration::from_secs(20))).ok();
    let resp = match read_request(&stream) {
        Ok(seen) => {
            let resp = route(&seen, cfg);
            requests.lock().unwrap().push(seen);
            resp
        }
        Err(e) => error(400, "BadRequest", &e),
    };
    let mut out = format!(
        "HTTP/1.1 {} X\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n",
        resp.status,
        resp.body.len()
    );
    for (k, v) in &resp.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut s = &stream;
    let _ = s.write_all(out.as_bytes());
    let _ = s.write_all(&resp.body);
    let _ = s.flush();
}
