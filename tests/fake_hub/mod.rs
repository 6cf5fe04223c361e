//! A fake Hugging Face Hub on 127.0.0.1 for `rlvr push` tests: the endpoints the push protocol
//! uses, over the minimal HTTP/1.1 server of tests/support/http.rs (one request per connection,
//! `Connection: close`). It records what arrives and every protocol violation it sees, and stops
//! when dropped, or by itself after `LIFETIME` even if a test forgets it.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::support::http::{sha_hex, Listener, Request, Response, Server, NO_REPLY};

const LIFETIME: Duration = Duration::from_secs(180);
/// Files at least this big go through LFS (the Hub's 10 MiB rule).
pub const LFS_THRESHOLD: u64 = 10 * 1024 * 1024;
/// LFS objects bigger than this get the multipart transfer.
pub const MULTIPART_THRESHOLD: u64 = 12 * 1024 * 1024;
pub const PART_SIZE: u64 = 5 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
}

#[derive(Default)]
pub struct State {
    pub requests: Vec<Seen>,
    /// Bodies of successful repo-create calls.
    pub created: Vec<Value>,
    repos: HashSet<String>,
    branches: HashSet<(String, String)>,
    /// LFS storage: oid → bytes.
    pub lfs: HashMap<String, Vec<u8>>,
    parts: HashMap<(String, u64), Vec<u8>>,
    pub verified: HashSet<String>,
    /// Committed content: (repo, revision) → path → bytes.
    pub trees: HashMap<(String, String), BTreeMap<String, Vec<u8>>>,
    pub commit_summaries: Vec<String>,
    /// Everything the client did that a real Hub (or its storage) would reject.
    pub violations: Vec<String>,
}

pub struct FakeHub {
    pub url: String,
    pub state: Arc<Mutex<State>>,
    server: Server,
}

struct Config {
    base: String,
    token: String,
    /// Answer requests whose path contains `.0` with status `.1` (and an error body that
    /// echoes the Authorization header back, to check the client never prints it).
    fail: Option<(String, u16)>,
    faults: Vec<Fault>,
}

/// How a faulty endpoint misbehaves.
#[derive(Debug, Clone, Copy)]
pub enum Misbehave {
    /// An error status, with `Retry-After` seconds when given.
    Status(u16, Option<u32>),
    /// Read the request, then close the connection without a reply.
    Reset,
    /// Read the request and never answer (the connection is closed after `HANG`).
    Hang,
}

/// The first `times` requests whose path contains `path` misbehave; later ones are served.
#[derive(Debug, Clone)]
pub struct Fault {
    pub path: String,
    pub times: usize,
    pub how: Misbehave,
}

impl Fault {
    pub fn new(path: &str, times: usize, how: Misbehave) -> Fault {
        Fault {
            path: path.to_string(),
            times,
            how,
        }
    }
}

/// How long a hanging endpoint holds a connection before closing it unanswered.
const HANG: Duration = Duration::from_secs(60);

impl FakeHub {
    pub fn start(token: &str, fail: Option<(&str, u16)>) -> FakeHub {
        FakeHub::start_with(token, fail, vec![])
    }

    /// A fake Hub whose endpoints misbehave as `faults` say.
    pub fn start_with(token: &str, fail: Option<(&str, u16)>, faults: Vec<Fault>) -> FakeHub {
        let listener = Listener::bind();
        let url = listener.url.clone();
        let state = Arc::new(Mutex::new(State::default()));
        let cfg = Config {
            base: url.clone(),
            token: token.to_string(),
            fail: fail.map(|(p, c)| (p.to_string(), c)),
            faults,
        };
        let st = state.clone();
        let server = listener.serve(LIFETIME, "application/json", move |req| {
            handle(req, &st, &cfg)
        });
        FakeHub { url, state, server }
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }
}

fn reply(status: u16, body: Value) -> Response {
    Response::new(status, body.to_string())
}

fn handle(req: Result<Request, String>, state: &Mutex<State>, cfg: &Config) -> Response {
    match req {
        Ok(req) => {
            let mut st = state.lock().unwrap();
            st.requests.push(Seen {
                method: req.method.clone(),
                path: req.path.clone(),
                authorization: req.headers.get("authorization").cloned(),
            });
            if let Some(how) = fault(&req, &st, cfg) {
                drop(st);
                return misbehave(how);
            }
            match &cfg.fail {
                Some((pat, code)) if req.path.contains(pat.as_str()) => {
                    let echo = req
                        .headers
                        .get("authorization")
                        .cloned()
                        .unwrap_or_default();
                    reply(
                        *code,
                        json!({"error": format!("fake failure; you sent Authorization: {echo}")}),
                    )
                }
                _ => route(&req, &mut st, cfg),
            }
        }
        Err(e) => {
            state
                .lock()
                .unwrap()
                .violations
                .push(format!("unreadable request: {e}"));
            reply(400, json!({"error": e}))
        }
    }
}

/// The misbehaviour due for `req` (already counted in `st.requests`), if any.
fn fault(req: &Request, st: &State, cfg: &Config) -> Option<Misbehave> {
    let f = cfg
        .faults
        .iter()
        .find(|f| req.path.contains(f.path.as_str()))?;
    let seen = st
        .requests
        .iter()
        .filter(|r| r.path.contains(f.path.as_str()))
        .count();
    (seen <= f.times).then_some(f.how)
}

fn misbehave(how: Misbehave) -> Response {
    match how {
        Misbehave::Status(code, retry_after) => {
            let resp = reply(code, json!({"error": "fake transient failure"}));
            match retry_after {
                Some(s) => resp.header("Retry-After", s.to_string()),
                None => resp,
            }
        }
        Misbehave::Reset => Response::new(NO_REPLY, vec![]),
        Misbehave::Hang => {
            std::thread::sleep(HANG);
            Response::new(NO_REPLY, vec![])
        }
    }
}

fn route(req: &Request, st: &mut State, cfg: &Config) -> Response {
    let auth_ok = req.headers.get("authorization") == Some(&format!("Bearer {}", cfg.token));
    let segs: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    let json_body = || serde_json::from_slice::<Value>(&req.body).unwrap_or(Value::Null);
    let hub_endpoint = !matches!(segs.first(), Some(&"storage") | Some(&"complete"));
    if hub_endpoint && !auth_ok {
        st.violations.push(format!(
            "{} {} without the right Authorization",
            req.method, req.path
        ));
        return reply(401, json!({"error": "Invalid credentials"}));
    }
    if !hub_endpoint && req.headers.contains_key("authorization") {
        st.violations.push(format!(
            "{} {} carried an Authorization header",
            req.method, req.path
        ));
    }
    match (req.method.as_str(), segs.as_slice()) {
        ("POST", ["api", "repos", "create"]) => {
            let b = json_body();
            let (Some(name), Some(org)) = (b["name"].as_str(), b["organization"].as_str()) else {
                st.violations.push(format!("create body {b}"));
                return reply(400, json!({"error": "bad body"}));
            };
            if b["type"] != "model" || !b["private"].is_boolean() {
                st.violations.push(format!("create body {b}"));
            }
            let id = format!("{org}/{name}");
            if !st.repos.insert(id.clone()) {
                return reply(
                    409,
                    json!({"error": "You already created this model repo", "url": format!("{}/{id}", cfg.base)}),
                );
            }
            st.branches.insert((id.clone(), "main".into()));
            st.created.push(b);
            reply(200, json!({"url": format!("{}/{id}", cfg.base)}))
        }
        ("POST", ["api", "models", ns, name, "branch", rev]) => {
            let id = format!("{ns}/{name}");
            if !st.repos.contains(&id) {
                return reply(404, json!({"error": "Repository not found"}));
            }
            if !st.branches.insert((id, rev.to_string())) {
                return reply(409, json!({"error": "Reference already exists"}));
            }
            reply(200, json!({}))
        }
        ("POST", ["api", "models", ns, name, "preupload", rev]) => {
            let id = format!("{ns}/{name}");
            if !st.branches.contains(&(id, rev.to_string())) {
                return reply(404, json!({"error": "Revision not found"}));
            }
            let b = json_body();
            let Some(files) = b["files"].as_array() else {
                return reply(400, json!({"error": "no files"}));
            };
            let mut out = vec![];
            for f in files {
                let size = f["size"].as_u64().unwrap_or(0);
                let sample = BASE64
                    .decode(f["sample"].as_str().unwrap_or(""))
                    .unwrap_or_default();
                if sample.len() as u64 != size.min(512) {
                    st.violations.push(format!(
                        "preupload sample of {} has {} bytes",
                        f["path"],
                        sample.len()
                    ));
                }
                let mode = if size >= LFS_THRESHOLD {
                    "lfs"
                } else {
                    "regular"
                };
                out.push(json!({"path": f["path"], "uploadMode": mode, "shouldIgnore": false}));
            }
            reply(200, json!({"files": out, "commitOid": "0".repeat(40)}))
        }
        ("POST", [ns, repo_git, "info", "lfs", "objects", "batch"])
            if repo_git.ends_with(".git") =>
        {
            let id = format!("{ns}/{}", repo_git.trim_end_matches(".git"));
            if req.headers.get("accept").map(String::as_str) != Some("application/vnd.git-lfs+json")
            {
                st.violations
                    .push("LFS batch without the git-lfs Accept header".into());
            }
            if !st.repos.contains(&id) {
                return reply(404, json!({"message": "Repository not found"}));
            }
            let b = json_body();
            if b["operation"] != "upload" || b["hash_algo"] != "sha256" {
                st.violations.push(format!("LFS batch body {b}"));
            }
            let mut objects = vec![];
            for o in b["objects"].as_array().cloned().unwrap_or_default() {
                let (oid, size) = (
                    o["oid"].as_str().unwrap_or("").to_string(),
                    o["size"].as_u64().unwrap_or(0),
                );
                if st.lfs.contains_key(&oid) {
                    objects.push(json!({"oid": oid, "size": size}));
                    continue;
                }
                let verify =
                    json!({"href": format!("{}/api/lfs-verify/{id}", cfg.base), "header": {}});
                let upload = if size > MULTIPART_THRESHOLD {
                    let mut header = serde_json::Map::new();
                    header.insert("chunk_size".into(), json!(PART_SIZE.to_string()));
                    for n in 1..=size.div_ceil(PART_SIZE) {
                        header.insert(
                            n.to_string(),
                            json!(format!("{}/storage/part/{oid}/{n}?sig=s3cr3t", cfg.base)),
                        );
                    }
                    json!({"href": format!("{}/complete/{oid}?sig=x", cfg.base), "header": header})
                } else {
                    json!({"href": format!("{}/storage/put/{oid}?sig=s3cr3t", cfg.base), "header": {"x-amz-fake": "yes"}})
                };
                objects.push(json!({"oid": oid, "size": size, "authenticated": true,
                                    "actions": {"upload": upload, "verify": verify}}));
            }
            reply(200, json!({"transfer": "basic", "objects": objects}))
        }
        ("PUT", ["storage", "put", oid]) => {
            if req.headers.get("x-amz-fake").map(String::as_str) != Some("yes") {
                st.violations
                    .push("basic PUT without the action's header".into());
            }
            if sha_hex(&req.body) != *oid {
                st.violations
                    .push(format!("basic PUT body does not hash to {oid}"));
                return reply(400, json!({"error": "bad hash"}));
            }
            st.lfs.insert(oid.to_string(), req.body.clone());
            reply(200, json!({}))
        }
        ("PUT", ["storage", "part", oid, n]) => {
            let n: u64 = n.parse().unwrap_or(0);
            st.parts.insert((oid.to_string(), n), req.body.clone());
            Response {
                status: 200,
                headers: vec![("ETag".into(), format!("\"etag-{oid}-{n}\""))],
                body: b"{}".to_vec(),
            }
        }
        ("POST", ["complete", oid]) => {
            let b = json_body();
            let mut data = vec![];
            for (i, p) in b["parts"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                let n = p["partNumber"].as_u64().unwrap_or(0);
                if n != i as u64 + 1 || p["etag"] != format!("\"etag-{oid}-{n}\"") {
                    st.violations.push(format!("completion part {p}"));
                }
                match st.parts.remove(&(oid.to_string(), n)) {
                    Some(part) => data.extend(part),
                    None => st
                        .violations
                        .push(format!("completion names missing part {n}")),
                }
            }
            if b["oid"] != *oid || sha_hex(&data) != *oid {
                st.violations
                    .push(format!("multipart upload of {oid} does not reassemble"));
                return reply(400, json!({"error": "bad parts"}));
            }
            st.lfs.insert(oid.to_string(), data);
            reply(200, json!({}))
        }
        ("POST", ["api", "lfs-verify", _ns, _name]) => {
            let b = json_body();
            let oid = b["oid"].as_str().unwrap_or("").to_string();
            match st.lfs.get(&oid) {
                Some(d) if Some(d.len() as u64) == b["size"].as_u64() => {
                    st.verified.insert(oid);
                    reply(200, json!({}))
                }
                _ => {
                    st.violations.push(format!("verify of unknown object {b}"));
                    reply(404, json!({"error": "object not found"}))
                }
            }
        }
        ("POST", ["api", "models", ns, name, "commit", rev]) => {
            let id = format!("{ns}/{name}");
            if !st.branches.contains(&(id.clone(), rev.to_string())) {
                return reply(404, json!({"error": "Revision not found"}));
            }
            if req.headers.get("content-type").map(String::as_str) != Some("application/x-ndjson") {
                st.violations
                    .push("commit without the NDJSON content type".into());
            }
            let text = String::from_utf8_lossy(&req.body).to_string();
            let mut lines = text.lines().filter(|l| !l.trim().is_empty());
            let header: Value = lines
                .next()
                .and_then(|l| serde_json::from_str(l).ok())
                .unwrap_or(Value::Null);
            if header["key"] != "header" || !header["value"]["summary"].is_string() {
                st.violations.push(format!("commit header {header}"));
                return reply(400, json!({"error": "no header"}));
            }
            let mut tree = st
                .trees
                .get(&(id.clone(), rev.to_string()))
                .cloned()
                .unwrap_or_default();
            for l in lines {
                let v: Value = serde_json::from_str(l).unwrap_or(Value::Null);
                let val = &v["value"];
                let path = val["path"].as_str().unwrap_or("").to_string();
                match v["key"].as_str() {
                    Some("file") => {
                        if val["encoding"] != "base64" {
                            st.violations
                                .push(format!("file line encoding {}", val["encoding"]));
                        }
                        let bytes = BASE64
                            .decode(val["content"].as_str().unwrap_or(""))
                            .unwrap_or_default();
                        tree.insert(path, bytes);
                    }
                    Some("lfsFile") => {
                        let oid = val["oid"].as_str().unwrap_or("");
                        match st.lfs.get(oid) {
                            Some(d)
                                if val["algo"] == "sha256"
                                    && Some(d.len() as u64) == val["size"].as_u64() =>
                            {
                                tree.insert(path, d.clone());
                            }
                            _ => {
                                st.violations.push(format!(
                                    "lfsFile line for an object not uploaded: {val}"
                                ));
                                return reply(400, json!({"error": "LFS object missing"}));
                            }
                        }
                    }
                    _ => st.violations.push(format!("unknown commit line {l}")),
                }
            }
            st.trees.insert((id.clone(), rev.to_string()), tree);
            st.commit_summaries.push(
                header["value"]["summary"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            );
            let oid = "c0ffee".repeat(6) + "abcd";
            reply(
                200,
                json!({"commitUrl": format!("{}/{id}/commit/{oid}", cfg.base), "commitOid": oid}),
            )
        }
        _ => {
            st.violations
                .push(format!("unexpected {} {}", req.method, req.path));
            reply(404, json!({"error": "no such endpoint"}))
        }
    }
}
