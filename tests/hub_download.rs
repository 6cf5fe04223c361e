//! Hub downloads (`rlvr pull owner/name`, `--model owner/name`) against a fake Hub on 127.0.0.1
//! (tests/fake_hub_download): files land in the HF cache layout under `HF_HOME`, the token
//! travels in the Authorization header and is never printed, sharded checkpoints and revisions
//! resolve, offline mode reads the cache only, and failures name the repo and file.

mod fake_hub_download;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fake_hub_download::{sha_hex, DownloadHub, Snapshot};
use rlvr_models::candle_core::{Device, Tensor};
use serde_json::{json, Value};

mod support;
use support::run::{run_rlvr, Out};
use support::tiny_model_dir;

const TOKEN: &str = "hf_DownloadTokenDoNotPrint_5d2a91";
const COMMIT_MAIN: &str = "1111111111111111111111111111111111111111";
const COMMIT_V1: &str = "2222222222222222222222222222222222222222";
const COMMIT_PR: &str = "3333333333333333333333333333333333333333";

/// Every file of a saved model directory, by name.
fn read_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.file_name().unwrap().to_str().unwrap().to_string(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

/// A tiny model's files: (files, parameter count).
fn tiny_files(chat_template: bool, num_layers: usize) -> (BTreeMap<String, Vec<u8>>, usize) {
    let dir = tempfile::tempdir().unwrap();
    let n = tiny_model_dir(dir.path(), chat_template, num_layers);
    (read_files(dir.path()), n)
}

/// Replace `model.safetensors` by two shards and a `model.safetensors.index.json`.
fn shard(files: &mut BTreeMap<String, Vec<u8>>) {
    let tmp = tempfile::tempdir().unwrap();
    let single = tmp.path().join("model.safetensors");
    std::fs::write(&single, files.remove("model.safetensors").unwrap()).unwrap();
    let tensors = rlvr_models::candle_core::safetensors::load(&single, &Device::Cpu).unwrap();
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let (a, b) = names.split_at(names.len() / 2);
    let mut weight_map = serde_json::Map::new();
    for (i, part) in [a, b].into_iter().enumerate() {
        let shard_name = format!("model-{:05}-of-00002.safetensors", i + 1);
        let map: std::collections::HashMap<String, Tensor> = part
            .iter()
            .map(|n| ((*n).clone(), tensors[*n].clone()))
            .collect();
        let p = tmp.path().join(&shard_name);
        rlvr_models::candle_core::safetensors::save(&map, &p).unwrap();
        files.insert(shard_name.clone(), std::fs::read(&p).unwrap());
        for n in part {
            weight_map.insert((*n).clone(), json!(shard_name));
        }
    }
    let index = json!({"metadata": {"total_size": 0}, "weight_map": weight_map});
    files.insert(
        "model.safetensors.index.json".into(),
        serde_json::to_vec_pretty(&index).unwrap(),
    );
}

fn snapshot(
    repo: &str,
    revision: &str,
    commit: &str,
    files: &BTreeMap<String, Vec<u8>>,
) -> Snapshot {
    Snapshot {
        repo: repo.into(),
        revision: revision.into(),
        commit: commit.into(),
        files: files.clone(),
    }
}

/// Run the built binary with a clean HF environment (`HOME` and `HF_HOME` = `hf_home`), bounded in
/// time; assert it neither panicked nor printed a token.
fn run(hf_home: &Path, endpoint: &str, env: &[(&str, &str)], args: &[&str]) -> Out {
    let hf_home_str = hf_home.to_str().expect("UTF-8 temp dir");
    let vars: Vec<(&str, &str)> = [("HF_HOME", hf_home_str)]
        .into_iter()
        .chain(env.iter().copied())
        .collect();
    let out = run_rlvr(hf_home, endpoint, &vars, args);
    let mut secrets = vec![TOKEN.to_string()];
    secrets.extend(
        env.iter()
            .filter(|(k, _)| *k == "HF_TOKEN")
            .map(|(_, v)| v.to_string()),
    );
    if let Ok(t) = std::fs::read_to_string(hf_home.join("token")) {
        secrets.push(t.trim().to_string());
    }
    for s in secrets {
        assert!(
            !out.stdout.contains(&s) && !out.stderr.contains(&s),
            "token printed:\n{}\n{}",
            out.stdout,
            out.stderr
        );
    }
    out
}

/// `$HF_HOME/hub/models--{owner}--{name}`.
fn cache_repo(hf_home: &Path, repo: &str) -> PathBuf {
    hf_home
        .join("hub")
        .join(format!("models--{}", repo.replace('/', "--")))
}

/// The HF cache layout: `refs/<rev>` holds the commit, every served file is in
/// `snapshots/<commit>/` as a relative symlink to `blobs/<etag>` with the served bytes.
fn assert_cached(
    hf_home: &Path,
    repo: &str,
    revision: &str,
    commit: &str,
    files: &BTreeMap<String, Vec<u8>>,
) -> PathBuf {
    let root = cache_repo(hf_home, repo);
    let rev = std::fs::read_to_string(root.join("refs").join(revision))
        .unwrap_or_else(|e| panic!("refs/{revision} in {}: {e}", root.display()));
    assert_eq!(rev.trim(), commit, "refs/{revision}");
    let snap = root.join("snapshots").join(commit);
    for (name, data) in files {
        let p = snap.join(name);
        let link = std::fs::read_link(&p)
            .unwrap_or_else(|e| panic!("{} is not a symlink: {e}", p.display()));
        assert!(link.is_relative(), "{} → {}", p.display(), link.display());
        assert_eq!(
            std::fs::canonicalize(&p).unwrap(),
            std::fs::canonicalize(root.join("blobs").join(sha_hex(data))).unwrap(),
            "{name} points at its blob"
        );
        assert!(
            std::fs::read(&p).unwrap() == *data,
            "bytes of cached {name}"
        );
    }
    snap
}

fn resolve_paths(hub: &DownloadHub) -> Vec<String> {
    hub.requests()
        .into_iter()
        .filter(|r| r.path.contains("/resolve/"))
        .map(|r| r.path)
        .collect()
}

/// Pull with a token, check the JSON, the cache and the headers; a second pull is served from
/// the cache; then, with the server stopped, offline mode loads from the cache (pull, score,
/// generate) and fails clearly on an empty cache.
#[test]
fn pull_downloads_into_hf_cache_then_works_offline() {
    let (files, params) = tiny_files(true, 2);
    let hub = DownloadHub::start(
        Some(TOKEN),
        vec![snapshot("user/tiny", "main", COMMIT_MAIN, &files)],
    );
    let home = tempfile::tempdir().unwrap();
    let hf_home = home.path();

    let out = run(
        hf_home,
        &hub.url,
        &[("HF_TOKEN", TOKEN)],
        &["pull", "user/tiny"],
    );
    let v = out.json();
    assert_eq!(v["parameters"], json!(params), "{v}");
    assert_eq!(v["architecture"], "llama", "{v}");
    assert_eq!(v["layers"], 2, "{v}");
    assert_eq!(v["chat_template"], true, "{v}");
    let snap = assert_cached(hf_home, "user/tiny", "main", COMMIT_MAIN, &files);
    assert_eq!(Path::new(v["path"].as_str().unwrap()), snap, "{v}");
    assert!(
        out.stderr.contains("user/tiny") && out.stderr.contains("Hub"),
        "{}",
        out.stderr
    );

    let reqs = hub.requests();
    assert!(!reqs.is_empty());
    for r in &reqs {
        assert_eq!(
            r.authorization.as_deref(),
            Some(format!("Bearer {TOKEN}").as_str()),
            "{} {}",
            r.method,
            r.path
        );
    }
    // Each file: a metadata request (`Range: bytes=0-0`), then the download.
    for name in files.keys() {
        let path = format!("/user/tiny/resolve/main/{name}");
        let ranges: Vec<_> = reqs
            .iter()
            .filter(|r| r.path == path)
            .map(|r| r.range.clone().unwrap_or_default())
            .collect();
        assert_eq!(ranges, ["bytes=0-0", "bytes=0-"], "{path}");
    }
    let cdn = format!("/cdn/{}", sha_hex(&files["model.safetensors"]));
    assert!(
        reqs.iter().any(|r| r.path == cdn),
        "the LFS redirect was not followed: {reqs:?}"
    );

    // Cached files are not fetched again.
    hub.clear();
    let again = run(
        hf_home,
        &hub.url,
        &[("HF_TOKEN", TOKEN)],
        &["pull", "user/tiny"],
    )
    .json();
    assert_eq!(again["parameters"], json!(params));
    let paths = resolve_paths(&hub);
    for name in files.keys() {
        assert!(
            !paths.iter().any(|p| p.ends_with(&format!("/{name}"))),
            "{name} fetched again: {paths:?}"
        );
    }

    // Offline, with the server gone.
    let dead = hub.url.clone();
    drop(hub);
    assert!(std::net::TcpStream::connect(dead.trim_start_matches("http://")).is_err());
    let offline = [("HF_HUB_OFFLINE", "1")];
    let v = run(hf_home, &dead, &offline, &["pull", "user/tiny"]).json();
    assert_eq!(v["parameters"], json!(params), "{v}");
    assert_eq!(Path::new(v["path"].as_str().unwrap()), snap, "{v}");

    let input = home.path().join("score.jsonl");
    std::fs::write(&input, "{\"prompt\": \"2+2=\", \"completion\": \"4\"}\n").unwrap();
    let out = run(
        hf_home,
        &dead,
        &offline,
        &[
            "score",
            "--model",
            "user/tiny",
            "--device",
            "cpu",
            "--input",
            input.to_str().unwrap(),
        ],
    );
    assert!(out.ok, "score:\n{}", out.stderr);
    let s: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    let n = s["input_ids"].as_array().unwrap().len();
    let lp = s["logprobs"].as_array().unwrap();
    assert_eq!(lp.len(), n - 1);
    assert!(
        lp.iter().all(|x| x.as_f64().is_some_and(|x| x <= 0.0)),
        "{s}"
    );

    let out = run(
        hf_home,
        &dead,
        &offline,
        &[
            "generate",
            "--model",
            "user/tiny",
            "--device",
            "cpu",
            "--prompt",
            "What is 2+2?",
            "--max-new-tokens",
            "3",
            "--seed",
            "1",
            "--kv-cache-mb",
            "8",
            "--json",
        ],
    );
    assert!(out.ok, "generate:\n{}", out.stderr);
    let g: Value = serde_json::from_str(out.stdout.lines().next().unwrap()).unwrap();
    let toks = g["token_ids"].as_array().unwrap();
    assert!(!toks.is_empty() && toks.len() <= 3, "{g}");

    // Offline with nothing cached: a clear error naming the cache.
    let empty = tempfile::tempdir().unwrap();
    let out = run(empty.path(), &dead, &offline, &["pull", "user/tiny"]);
    assert!(!out.ok);
    let cache = empty.path().join("hub");
    assert!(
        out.stderr.contains("user/tiny")
            && out.stderr.contains("offline")
            && out.stderr.contains(cache.to_str().unwrap()),
        "{}",
        out.stderr
    );
}

/// A sharded checkpoint (index + 2 shards, no model.safetensors): every shard arrives and the
/// model loads, online and then offline. The token comes from `$HF_HOME/token` here.
#[test]
fn sharded_model_downloads_every_shard() {
    let (single, params) = tiny_files(false, 2);
    let mut files = single.clone();
    shard(&mut files);
    assert!(!files.contains_key("model.safetensors"));
    let hub = DownloadHub::start(
        Some(TOKEN),
        vec![snapshot("user/sharded", "main", COMMIT_MAIN, &files)],
    );
    let home = tempfile::tempdir().unwrap();
    let hf_home = home.path();
    std::fs::write(hf_home.join("token"), format!("{TOKEN}\n")).unwrap();

    let v = run(hf_home, &hub.url, &[], &["pull", "user/sharded"]).json();
    assert_eq!(v["parameters"], json!(params), "{v}");
    assert_eq!(v["chat_template"], false, "{v}");
    let snap = assert_cached(hf_home, "user/sharded", "main", COMMIT_MAIN, &files);
    assert_eq!(Path::new(v["path"].as_str().unwrap()), snap);
    assert!(!snap.join("model.safetensors").exists());

    let reqs = hub.requests();
    assert!(reqs
        .iter()
        .all(|r| r.authorization.as_deref() == Some(format!("Bearer {TOKEN}").as_str())));
    let paths = resolve_paths(&hub);
    for f in [
        "model.safetensors",
        "model.safetensors.index.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ] {
        let p = format!("/user/sharded/resolve/main/{f}");
        assert!(paths.contains(&p), "{p} not requested: {paths:?}");
    }

    hub.clear();
    let v = run(
        hf_home,
        &hub.url,
        &[("HF_HUB_OFFLINE", "1")],
        &["pull", "user/sharded"],
    )
    .json();
    assert_eq!(v["parameters"], json!(params), "{v}");
    assert!(hub.requests().is_empty(), "offline mode made requests");
}

/// `--revision` fetches the files at that revision (a tag, and a ref with a slash), caches them
/// under `refs/<revision>`, and offline mode finds each revision again.
#[test]
fn revision_selects_files_at_that_revision() {
    let (main_files, main_params) = tiny_files(true, 2);
    let (v1_files, v1_params) = tiny_files(false, 1);
    let (pr_files, pr_params) = tiny_files(false, 3);
    assert_ne!(main_params, v1_params);
    let hub = DownloadHub::start(
        None,
        vec![
            snapshot("user/rev", "main", COMMIT_MAIN, &main_files),
            snapshot("user/rev", "v1", COMMIT_V1, &v1_files),
            snapshot("user/rev", "refs/pr/1", COMMIT_PR, &pr_files),
        ],
    );
    let home = tempfile::tempdir().unwrap();
    let hf_home = home.path();

    let v = run(
        hf_home,
        &hub.url,
        &[],
        &["pull", "user/rev", "--revision", "v1"],
    )
    .json();
    assert_eq!(v["parameters"], json!(v1_params), "{v}");
    assert_eq!(v["layers"], 1, "{v}");
    assert_eq!(v["chat_template"], false, "{v}");
    let paths = resolve_paths(&hub);
    assert!(!paths.is_empty());
    assert!(
        paths.iter().all(|p| p.starts_with("/user/rev/resolve/v1/")),
        "{paths:?}"
    );
    let snap = assert_cached(hf_home, "user/rev", "v1", COMMIT_V1, &v1_files);
    assert_eq!(Path::new(v["path"].as_str().unwrap()), snap);
    assert!(!cache_repo(hf_home, "user/rev").join("refs/main").exists());

    hub.clear();
    let v = run(hf_home, &hub.url, &[], &["pull", "user/rev"]).json();
    assert_eq!(v["parameters"], json!(main_params), "{v}");
    assert_eq!(v["chat_template"], true, "{v}");
    assert!(resolve_paths(&hub)
        .iter()
        .all(|p| p.starts_with("/user/rev/resolve/main/")));
    assert_cached(hf_home, "user/rev", "main", COMMIT_MAIN, &main_files);

    hub.clear();
    let v = run(
        hf_home,
        &hub.url,
        &[],
        &["pull", "user/rev", "--revision", "refs/pr/1"],
    )
    .json();
    assert_eq!(v["parameters"], json!(pr_params), "{v}");
    assert!(resolve_paths(&hub)
        .iter()
        .all(|p| p.starts_with("/user/rev/resolve/refs%2Fpr%2F1/")));
    assert_cached(hf_home, "user/rev", "refs/pr/1", COMMIT_PR, &pr_files);

    // Offline, each revision comes back from its own snapshot, without a request.
    hub.clear();
    let offline = [("HF_HUB_OFFLINE", "1")];
    for (rev, params) in [
        ("v1", v1_params),
        ("main", main_params),
        ("refs/pr/1", pr_params),
    ] {
        let v = run(
            hf_home,
            &hub.url,
            &offline,
            &["pull", "user/rev", "--revision", rev],
        )
        .json();
        assert_eq!(v["parameters"], json!(params), "{rev}: {v}");
    }
    assert!(hub.requests().is_empty(), "offline mode made requests");
    let out = run(
        hf_home,
        &hub.url,
        &offline,
        &["pull", "user/rev", "--revision", "v2"],
    );
    assert!(!out.ok && out.stderr.contains("offline"), "{}", out.stderr);
}

/// Failures are errors naming the repo and the file, never panics or printed tokens.
#[test]
fn hub_errors_name_repo_and_file() {
    let (files, _) = tiny_files(false, 1);
    let mut no_weights = files.clone();
    no_weights.remove("model.safetensors");
    let hub = DownloadHub::start(
        Some(TOKEN),
        vec![
            snapshot("user/tiny", "main", COMMIT_MAIN, &files),
            snapshot("user/noweights", "main", COMMIT_MAIN, &no_weights),
        ],
    );
    let home = tempfile::tempdir().unwrap();
    let hf_home = home.path();
    let auth = [("HF_TOKEN", TOKEN)];

    // A repo the Hub does not have.
    let out = run(hf_home, &hub.url, &auth, &["pull", "user/missing"]);
    assert!(!out.ok);
    assert!(
        out.stderr.contains("user/missing")
            && out.stderr.contains("config.json")
            && out.stderr.contains("404"),
        "{}",
        out.stderr
    );

    // A revision it does not have, through `--model` of another command.
    let input = home.path().join("in.jsonl");
    std::fs::write(&input, "{\"input_ids\": [1, 2, 3]}\n").unwrap();
    let out = run(
        hf_home,
        &hub.url,
        &auth,
        &[
            "score",
            "--model",
            "user/tiny",
            "--revision",
            "nope",
            "--input",
            input.to_str().unwrap(),
        ],
    );
    assert!(!out.ok);
    assert!(
        out.stderr.contains("user/tiny") && out.stderr.contains("config.json"),
        "{}",
        out.stderr
    );

    // A repo without weights: both weight layouts are named.
    let out = run(hf_home, &hub.url, &auth, &["pull", "user/noweights"]);
    assert!(!out.ok);
    assert!(
        out.stderr.contains("user/noweights")
            && out.stderr.contains("model.safetensors")
            && out.stderr.contains("model.safetensors.index.json"),
        "{}",
        out.stderr
    );

    // A wrong token: the Hub's 401 is reported; neither token is printed (checked by `run`).
    let out = run(
        hf_home,
        &hub.url,
        &[("HF_TOKEN", "hf_WrongTokenAlsoSecret_77")],
        &["pull", "user/tiny"],
    );
    assert!(!out.ok);
    assert!(
        out.stderr.contains("user/tiny") && out.stderr.contains("401"),
        "{}",
        out.stderr
    );
    assert!(!cache_repo(hf_home, "user/tiny").join("refs/main").exists());
}
