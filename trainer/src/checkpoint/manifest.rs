//! A checkpoint's manifest: the size and SHA-256 of each of its files, recorded as they are
//! written, and the check of the files on disk against it.
//!
//! Owns `manifest.json` and hashing. Must not know what the files hold.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{io_err, Result, TrainerError};

pub const MANIFEST_FILE: &str = "manifest.json";
const FORMAT: u32 = 1;

/// A file's size and SHA-256 (lowercase hex).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileDigest {
    pub bytes: u64,
    pub sha256: String,
}

impl FileDigest {
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self {
            bytes: bytes.len() as u64,
            sha256: format!("{:x}", Sha256::digest(bytes)),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub files: BTreeMap<String, FileDigest>,
}

/// What checking a checkpoint found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// Every file matches its manifest entry.
    Checksums,
    /// No manifest (written before rlvr recorded checksums): nothing could be checked.
    NoManifest,
}

fn damaged(path: &Path, msg: impl Into<String>) -> TrainerError {
    TrainerError::CheckpointDamaged {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

impl Manifest {
    pub fn new(files: BTreeMap<String, FileDigest>) -> Self {
        Self {
            format: FORMAT,
            files,
        }
    }

    /// Write `manifest.json` into `dir` (fsynced).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(MANIFEST_FILE);
        let mut f = fs::File::create(&path).map_err(io_err(&path))?;
        f.write_all(&serde_json::to_vec_pretty(self)?)
            .and_then(|()| f.sync_all())
            .map_err(io_err(&path))
    }

    /// The manifest of `dir`, or None when it has none.
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| damaged(&path, format!("not a valid manifest: {e}")))?;
        if manifest.format != FORMAT {
            return Err(damaged(
                &path,
                format!("unknown manifest format {}", manifest.format),
            ));
        }
        Ok(Some(manifest))
    }
}

/// Check the `files` of checkpoint `dir` against its manifest: each must be listed, present,
/// of the recorded size and SHA-256.
pub fn verify(dir: &Path, files: &[&str]) -> Result<Verified> {
    let Some(manifest) = Manifest::read(dir)? else {
        return Ok(Verified::NoManifest);
    };
    for name in files {
        let path = dir.join(name);
        let expected = manifest
            .files
            .get(*name)
            .ok_or_else(|| damaged(&path, "not listed in the manifest"))?;
        let actual = digest_file(&path)?;
        if actual.bytes != expected.bytes {
            return Err(damaged(
                &path,
                format!(
                    "{} bytes, the manifest says {}",
                    actual.bytes, expected.bytes
                ),
            ));
        }
        if actual.sha256 != expected.sha256 {
            return Err(damaged(
                &path,
                format!(
                    "SHA-256 {} differs from the manifest's {}: the file was changed after it was written",
                    actual.sha256, expected.sha256
                ),
            ));
        }
    }
    Ok(Verified::Checksums)
}

/// Size and SHA-256 of a file, read in 1 MiB pieces.
pub fn digest_file(path: &Path) -> Result<FileDigest> {
    let mut f = fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => damaged(path, "missing"),
        _ => io_err(path)(e),
    })?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok(FileDigest {
        bytes,
        sha256: format!("{:x}", hasher.finalize()),
    })
}

/// A writer that hashes and counts what goes through it.
pub struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// The digest of everything written, and the inner writer.
    pub fn finish(self) -> (FileDigest, W) {
        let digest = FileDigest {
            bytes: self.bytes,
            sha256: format!("{:x}", self.hasher.finalize()),
        };
        (digest, self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_writer_matches_the_file_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut w = HashingWriter::new(fs::File::create(&path).unwrap());
        w.write_all(b"hello ").unwrap();
        w.write_all(b"world").unwrap();
        let (digest, _) = w.finish();
        assert_eq!(digest, digest_file(&path).unwrap());
        assert_eq!(digest, FileDigest::of_bytes(b"hello world"));
        assert_eq!(
            digest.sha256,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
    }

    #[test]
    fn verify_names_the_changed_the_missing_and_the_unlisted_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(verify(d, &["a"]).unwrap(), Verified::NoManifest);
        fs::write(d.join("a"), b"aaaa").unwrap();
        fs::write(d.join("b"), b"bbbb").unwrap();
        let files = ["a", "b"]
            .map(|n| (n.to_string(), digest_file(&d.join(n)).unwrap()))
            .into_iter()
            .collect();
        Manifest::new(files).write(d).unwrap();
        assert_eq!(verify(d, &["a", "b"]).unwrap(), Verified::Checksums);
        let err = |files: &[&str]| verify(d, files).unwrap_err().to_string();
        assert!(err(&["c"]).contains("not listed"), "{}", err(&["c"]));
        fs::write(d.join("b"), b"bbbB").unwrap();
        let e = err(&["a", "b"]);
        assert!(e.contains("/b") && e.contains("SHA-256"), "{e}");
        fs::write(d.join("b"), b"bb").unwrap();
        assert!(err(&["b"]).contains("2 bytes"), "{}", err(&["b"]));
        fs::remove_file(d.join("b")).unwrap();
        assert!(err(&["b"]).contains("missing"), "{}", err(&["b"]));
        fs::write(d.join(MANIFEST_FILE), b"{").unwrap();
        assert!(err(&["a"]).contains("manifest.json"), "{}", err(&["a"]));
    }
}
