//! Running the built `rlvr` against a (fake) Hub: a scrubbed environment, piped output, a time
//! limit.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long one `rlvr` run may take before the test fails.
pub const RUN_LIMIT: Duration = Duration::from_secs(120);

/// Variables that would let the run see a real token, cache, offline switch or proxy.
const SCRUBBED: [&str; 13] = [
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_TOKEN_PATH",
    "HF_HOME",
    "HF_HUB_OFFLINE",
    "RLVR_CACHE",
    "XDG_CACHE_HOME",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

pub struct Out {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Stdout as the one JSON object a successful run prints.
    pub fn json(&self) -> Value {
        assert!(self.ok, "rlvr failed:\n{}\n{}", self.stdout, self.stderr);
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}):\n{}", self.stdout))
    }
}

/// Run the built binary with `args`, `HOME` = `home`, `HF_ENDPOINT` = `endpoint` and the HF,
/// cache and proxy variables of [`SCRUBBED`] removed, then `env` set; bounded by [`RUN_LIMIT`].
/// Asserts that it did not panic; what it printed is the caller's to check (tokens included).
pub fn run_rlvr(home: &Path, endpoint: &str, env: &[(&str, &str)], args: &[&str]) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rlvr"));
    cmd.args(args);
    for k in SCRUBBED {
        cmd.env_remove(k);
    }
    cmd.env("HOME", home).env("HF_ENDPOINT", endpoint);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rlvr");
    let pipe = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = pipe(Box::new(child.stdout.take().unwrap()));
    let err = pipe(Box::new(child.stderr.take().unwrap()));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rlvr {args:?} did not finish in {RUN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = Out {
        ok: status.success(),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    };
    assert!(!out.stderr.contains("panicked"), "panic:\n{}", out.stderr);
    out
}
