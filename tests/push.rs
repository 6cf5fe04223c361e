//! `rlvr push` against a fake Hub on 127.0.0.1 (tests/fake_hub): every file must arrive byte
//! for byte, the token must travel only in the Authorization header and never be printed.

mod fake_hub;
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use fake_hub::{FakeHub, Fault, Misbehave};
use sha2::{Digest, Sha256};
use support::run::{run_rlvr, Out};

const TOKEN: &str = "hf_TestTokenDoNotPrint_8c1f2e";

/// `rlvr push` with a clean HF environment (`HOME` pointed at `home`) and a 10 ms retry backoff
/// (unless `env` sets another); asserts it never printed the token.
fn run_push(home: &Path, endpoint: &str, env: &[(&str, &str)], args: &[&str]) -> Out {
    let env = [&[("RLVR_HUB_BACKOFF_MS", "10")], env].concat();
    let out = run_rlvr(home, endpoint, &env, &[&["push"], args].concat());
    assert!(
        !out.stdout.contains(TOKEN) && !out.stderr.contains(TOKEN),
        "token printed:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    out
}

/// Deterministic pseudo-random bytes.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Write `files` under `dir`; return them as the expected repo tree.
fn write_tree(dir: &Path, files: &[(&str, Vec<u8>)]) -> BTreeMap<String, Vec<u8>> {
    for (rel, data) in files {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    files
        .iter()
        .map(|(r, d)| (r.to_string(), d.clone()))
        .collect()
}

fn assert_same_tree(got: &BTreeMap<String, Vec<u8>>, want: &BTreeMap<String, Vec<u8>>) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "file lists differ"
    );
    for (path, data) in want {
        let arrived = &got[path];
        assert_eq!(
            Sha256::digest(arrived),
            Sha256::digest(data),
            "sha256 of {path}"
        );
        assert!(arrived == data, "bytes of {path}");
    }
}

#[test]
fn push_uploads_every_file_byte_for_byte() {
    let hub = FakeHub::start(TOKEN, None);
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = br#"{"architectures":["Qwen2ForCausalLM"],"hidden_size":64}"#.to_vec();
    let tokenizer = format!(
        r#"{{"model":{{"vocab":{{"a":0,"é":1}}}},"pad":"{}"}}"#,
        "x".repeat(3000)
    )
    .into_bytes();
    let want = write_tree(
        dir.path(),
        &[
            ("config.json", config),
            ("tokenizer.json", tokenizer),
            ("model.safetensors", noise(11 * 1024 * 1024 + 7, 1)), // LFS, basic transfer
            ("shards/big.bin", noise(13 * 1024 * 1024 + 3, 2)),    // LFS, multipart (3 parts)
            ("empty.txt", vec![]),
            ("bin/small.bin", noise(4096, 3)),
        ],
    );
    write_tree(
        dir.path(),
        &[(".git/HEAD", b"ref: refs/heads/main\n".to_vec())],
    );

    let d = dir.path().to_str().unwrap();
    let out = run_push(
        home.path(),
        &hub.url,
        &[("HF_TOKEN", TOKEN)],
        &[d, "--repo", "alice/tiny", "--private"],
    );
    assert!(out.ok, "push failed:\n{}", out.stderr);
    let summary: serde_json::Value =
        serde_json::from_str(out.stdout.trim()).expect("one JSON line on stdout");
    assert_eq!(summary["files"], 6);
    assert_eq!(summary["lfs_files"], 2);
    assert!(summary["url"].as_str().unwrap().starts_with(&hub.url));

    {
        let st = hub.state();
        assert!(
            st.violations.is_empty(),
            "protocol violations: {:#?}",
            st.violations
        );
        assert_eq!(st.created.len(), 1);
        let c = &st.created[0];
        assert_eq!(
            (
                c["organization"].as_str(),
                c["name"].as_str(),
                c["private"].as_bool()
            ),
            (Some("alice"), Some("tiny"), Some(true))
        );
        assert_eq!(c["type"], "model");
        let tree = &st.trees[&("alice/tiny".to_string(), "main".to_string())];
        assert_same_tree(tree, &want);
        assert_eq!(st.verified.len(), 2, "both LFS objects verified");
        // The token went to every Hub endpoint and to nothing else.
        let bearer = format!("Bearer {TOKEN}");
        for r in &st.requests {
            let storage = r.path.starts_with("/storage/") || r.path.starts_with("/complete/");
            assert_eq!(
                r.authorization.as_deref() == Some(bearer.as_str()),
                !storage,
                "{r:?}"
            );
        }
        let puts = st.requests.iter().filter(|r| r.method == "PUT").count();
        assert_eq!(puts, 1 + 3, "one basic PUT and three part PUTs");
    }

    // Again, to a new branch of the now existing repo, with one file changed: create answers
    // 409, the branch is made, the LFS objects the Hub already has are not sent again.
    let want_dev = write_tree(
        dir.path(),
        &[("config.json", br#"{"hidden_size":128}"#.to_vec())],
    );
    let mut want_dev_all = want.clone();
    want_dev_all.extend(want_dev);
    let before = hub.state().requests.len();
    let out = run_push(
        home.path(),
        &hub.url,
        &[("HF_TOKEN", TOKEN)],
        &[
            d,
            "--repo",
            "alice/tiny",
            "--revision",
            "dev",
            "-m",
            "second",
        ],
    );
    assert!(out.ok, "second push failed:\n{}", out.stderr);
    assert!(out.stderr.contains("exists"), "{}", out.stderr);
    let st = hub.state();
    assert!(
        st.violations.is_empty(),
        "protocol violations: {:#?}",
        st.violations
    );
    assert_eq!(st.created.len(), 1, "repo created once");
    assert_same_tree(
        &st.trees[&("alice/tiny".to_string(), "dev".to_string())],
        &want_dev_all,
    );
    assert_eq!(
        st.commit_summaries.last().map(String::as_str),
        Some("second")
    );
    assert!(
        st.requests[before..].iter().all(|r| r.method != "PUT"),
        "LFS objects re-sent"
    );
    assert!(st.requests[before..]
        .iter()
        .any(|r| r.path == "/api/models/alice/tiny/branch/dev"));
}

#[test]
fn token_comes_from_the_hf_cache() {
    let hub = FakeHub::start(TOKEN, None);
    let home = tempfile::tempdir().unwrap();
    let hf_home = tempfile::tempdir().unwrap();
    std::fs::write(hf_home.path().join("token"), format!("{TOKEN}\n")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let want = write_tree(
        dir.path(),
        &[
            ("config.json", b"{}".to_vec()),
            ("tokenizer.json", b"{\"v\":1}".to_vec()),
        ],
    );
    let out = run_push(
        home.path(),
        &hub.url,
        &[("HF_HOME", hf_home.path().to_str().unwrap())],
        &[dir.path().to_str().unwrap(), "--repo", "bob/m"],
    );
    assert!(out.ok, "push failed:\n{}", out.stderr);
    let st = hub.state();
    assert!(
        st.violations.is_empty(),
        "protocol violations: {:#?}",
        st.violations
    );
    assert_eq!(st.created[0]["private"], false);
    assert_same_tree(&st.trees[&("bob/m".to_string(), "main".to_string())], &want);

    // And from ~/.cache/huggingface/token when HF_HOME is not set.
    drop(st);
    let cache = home.path().join(".cache/huggingface");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(cache.join("token"), TOKEN).unwrap();
    let out = run_push(
        home.path(),
        &hub.url,
        &[],
        &[dir.path().to_str().unwrap(), "--repo", "bob/m2"],
    );
    assert!(out.ok, "push failed:\n{}", out.stderr);
    assert!(hub.state().violations.is_empty());
}

#[test]
fn missing_token_is_a_clear_error() {
    let hub = FakeHub::start(TOKEN, None);
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), &[("config.json", b"{}".to_vec())]);
    let out = run_push(
        home.path(),
        &hub.url,
        &[],
        &[dir.path().to_str().unwrap(), "--repo", "a/b"],
    );
    assert!(!out.ok);
    assert!(
        out.stderr.contains("no Hugging Face token") && out.stderr.contains("HF_TOKEN"),
        "{}",
        out.stderr
    );
    assert!(
        hub.state().requests.is_empty(),
        "no request without a token"
    );
}

#[test]
fn missing_dir_is_a_clear_error() {
    let hub = FakeHub::start(TOKEN, None);
    let home = tempfile::tempdir().unwrap();
    let gone = home.path().join("no-such-dir");
    let out = run_push(
        home.path(),
        &hub.url,
        &[("HF_TOKEN", TOKEN)],
        &[gone.to_str().unwrap(), "--repo", "a/b"],
    );
    assert!(!out.ok);
    assert!(
        out.stderr.contains("no-such-dir") && out.stderr.contains("does not exist"),
        "{}",
        out.stderr
    );
    assert!(hub.state().requests.is_empty());
}

#[test]
fn bad_repo_id_is_a_clear_error() {
    let home = tempfile::tempdir().unwrap();
    let out = run_push(
        home.path(),
        "http://127.0.0.1:9",
        &[("HF_TOKEN", TOKEN)],
        &[".", "--repo", "no-namespace"],
    );
    assert!(!out.ok);
    assert!(out.stderr.contains("user/name"), "{}", out.stderr);
}

/// A server error names the endpoint and status; the Hub's message (which here echoes the
/// Authorization header) is shown with the token scrubbed.
fn assert_server_error(fail_path: &str, code: u16, want_in_msg: &str) {
    let hub = FakeHub::start(TOKEN, Some((fail_path, code)));
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), &[("config.json", b"{}".to_vec())]);
    let out = run_push(
        home.path(),
        &hub.url,
        &[("HF_TOKEN", TOKEN)],
        &[dir.path().to_str().unwrap(), "--repo", "carol/x"],
    );
    assert!(!out.ok);
    let expect = format!("{}{want_in_msg}", hub.url);
    assert!(
        out.stderr.contains(&expect),
        "no {expect} in:\n{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!("HTTP {code}")),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("<redacted>"),
        "server message not shown:\n{}",
        out.stderr
    );
    // Neither a refused token nor a failed commit is worth sending again.
    let st = hub.state();
    let sent = st.requests.iter().filter(|r| r.path.contains(fail_path));
    assert_eq!(sent.count(), 1, "{fail_path} sent again after HTTP {code}");
}

#[test]
fn unauthorized_create_is_a_clear_error() {
    assert_server_error("/api/repos/create", 401, "/api/repos/create");
}

#[test]
fn server_error_on_commit_is_a_clear_error() {
    assert_server_error("/commit/", 500, "/api/models/carol/x/commit/main");
}

#[test]
fn unreachable_endpoint_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), &[("config.json", b"{}".to_vec())]);
    let url = format!("http://127.0.0.1:{port}");
    let out = run_push(
        home.path(),
        &url,
        &[("HF_TOKEN", TOKEN)],
        &[dir.path().to_str().unwrap(), "--repo", "a/b"],
    );
    assert!(!out.ok);
    assert!(
        out.stderr.contains(&format!("{url}/api/repos/create")),
        "{}",
        out.stderr
    );
}

/// Requests to `path` (a part of it) the fake Hub received.
fn count(hub: &FakeHub, path: &str) -> usize {
    hub.state()
        .requests
        .iter()
        .filter(|r| r.path.contains(path))
        .count()
}

/// A config file and an 11 MiB weights file (an LFS upload) under `dir`.
fn small_model_tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    write_tree(
        dir,
        &[
            ("config.json", b"{}".to_vec()),
            ("model.safetensors", noise(11 * 1024 * 1024 + 5, 4)),
        ],
    )
}

#[test]
fn transient_failures_are_retried_with_backoff() {
    use Misbehave::{Reset, Status};
    let hub = FakeHub::start_with(
        TOKEN,
        None,
        vec![
            Fault::new("/api/repos/create", 1, Reset),
            Fault::new("/preupload/", 2, Status(500, None)),
            Fault::new("/info/lfs/objects/batch", 1, Status(429, Some(1))),
            Fault::new("/storage/put/", 2, Reset),
            Fault::new("/commit/", 1, Status(503, None)),
        ],
    );
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let want = small_model_tree(dir.path());
    let start = Instant::now();
    let out = run_push(
        home.path(),
        &hub.url,
        &[("HF_TOKEN", TOKEN)],
        &[dir.path().to_str().unwrap(), "--repo", "dave/m"],
    );
    assert!(out.ok, "push failed:\n{}", out.stderr);
    // The 429's Retry-After: 1 was honoured (the backoff alone is 10 ms).
    assert!(start.elapsed() >= Duration::from_secs(1));
    for (path, attempts) in [
        ("/api/repos/create", 2),
        ("/preupload/", 3),
        ("/info/lfs/objects/batch", 2),
        ("/storage/put/", 3),
        ("/commit/", 2),
    ] {
        assert_eq!(count(&hub, path), attempts, "{path}");
    }
    let retries = out.stderr.matches("trying again").count();
    assert_eq!(retries, 7, "{}", out.stderr);
    assert!(out.stderr.contains("HTTP 429") && out.stderr.contains("HTTP 500"));
    let st = hub.state();
    assert!(st.violations.is_empty(), "{:#?}", st.violations);
    assert_same_tree(
        &st.trees[&("dave/m".to_string(), "main".to_string())],
        &want,
    );
}

/// A server that reads each request and never answers: the push fails within a bounded time
/// (timeout × attempts) and says which call, which step and why, instead of hanging.
#[test]
fn a_server_that_never_answers_fails_in_bounded_time() {
    for (path, step) in [
        (
            "/api/models/erin/m/preupload/main",
            "asking the Hub how to upload each file",
        ),
        ("/storage/put/", "uploading model.safetensors"),
    ] {
        let hub = FakeHub::start_with(TOKEN, None, vec![Fault::new(path, 99, Misbehave::Hang)]);
        let home = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        small_model_tree(dir.path());
        let start = Instant::now();
        let out = run_push(
            home.path(),
            &hub.url,
            &[
                ("HF_TOKEN", TOKEN),
                ("RLVR_HUB_TIMEOUT_S", "1"),
                ("RLVR_HUB_RETRIES", "1"),
            ],
            &[dir.path().to_str().unwrap(), "--repo", "erin/m"],
        );
        let took = start.elapsed();
        assert!(!out.ok, "{path}: pushed to a server that never answers");
        assert!(took < Duration::from_secs(30), "{path}: took {took:?}");
        let url = format!("{}{path}", hub.url);
        for want in [
            url.as_str(),
            step,
            "no progress for 1 s",
            "gave up after 2 attempts",
        ] {
            assert!(out.stderr.contains(want), "no {want:?} in:\n{}", out.stderr);
        }
        assert_eq!(count(&hub, path), 2, "{path}");
    }
}
