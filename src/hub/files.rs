//! The local side of an upload: the directory's files, each walked, sized, sampled (for the
//! preupload call) and hashed (the LFS oid) once. It must not know the Hub's protocol.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

/// Bytes of each file the preupload call gets to sniff (same as huggingface_hub).
const SAMPLE_SIZE: usize = 512;

pub struct LocalFile {
    /// Path in the repo, `/`-separated.
    pub rel: String,
    pub abs: PathBuf,
    pub size: u64,
    pub sample: Vec<u8>,
    pub sha256: String,
}

/// The regular files under `dir`, sorted by repo path.
pub fn collect_files(dir: &Path) -> Result<Vec<LocalFile>> {
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

/// Size, first `SAMPLE_SIZE` bytes and hex SHA-256 of a file, in one read.
fn hash_file(path: &Path) -> Result<(u64, Vec<u8>, String)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut sample = Vec::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buf)?;
        if read == 0 {
            break;
        }
        if sample.len() < SAMPLE_SIZE {
            let take = (SAMPLE_SIZE - sample.len()).min(read);
            sample.extend_from_slice(&buf[..take]);
        }
        hasher.update(&buf[..read]);
        size += read as u64;
    }
    Ok((size, sample, hex(&hasher.finalize())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A size for people: B, KiB, MiB or GiB.
pub fn human_size(bytes: u64) -> String {
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
