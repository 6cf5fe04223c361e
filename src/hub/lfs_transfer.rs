//! Protocol step 4, the transfer: one LFS upload action, `basic` (one PUT of the file) or
//! `multipart` (a PUT per part to the numbered URLs of its header, then a completion POST).
//! Storage URLs are presigned: these requests carry no token. Each attempt (retry.rs) reads
//! the file afresh; a write of the body that makes no progress within the timeout fails it.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};

use super::lfs_batch::action_href;
use super::{show_url, Auth, Hub, LocalFile, Repeat};

impl Hub {
    /// One LFS upload action: multipart when its header has a `chunk_size`, else basic.
    pub(super) fn lfs_transfer(&self, file: &LocalFile, action: &Value) -> Result<()> {
        let href = action_href(action)?;
        let header = action.get("header").and_then(Value::as_object);
        let chunk_size = header.and_then(|h| h.get("chunk_size")).map(|v| match v {
            Value::String(s) => s.parse::<u64>().ok(),
            Value::Number(n) => n.as_u64(),
            _ => None,
        });
        match (header, chunk_size) {
            (_, None) => self.basic_upload(file, href, header),
            (Some(header), Some(Some(chunk))) if chunk > 0 => {
                self.multipart_upload(file, href, header, chunk)
            }
            _ => bail!("LFS batch reply has a malformed chunk_size"),
        }
    }

    /// Basic transfer: the action's headers (if any) and the raw bytes.
    fn basic_upload(
        &self,
        file: &LocalFile,
        href: &str,
        header: Option<&Map<String, Value>>,
    ) -> Result<()> {
        let size = file.size.to_string();
        let mut headers: Vec<(&str, &str)> = header
            .into_iter()
            .flatten()
            .filter_map(|(key, value)| Some((key.as_str(), value.as_str()?)))
            .collect();
        headers.push(("Content-Length", &size));
        // Opened once up front so that a missing file is reported as such, not retried.
        File::open(&file.abs).with_context(|| format!("opening {}", file.abs.display()))?;
        self.send("PUT", href, Repeat::Safe, || {
            let body = File::open(&file.abs)?;
            self.request("PUT", href, Auth::None, &headers).send(body)
        })
        .map_err(|f| self.error("PUT", href, f))?;
        Ok(())
    }

    /// Multipart transfer: part `i` (from 1) of `chunk` bytes to the header's URL `"i"`, then
    /// the parts' ETags POSTed to `href`.
    fn multipart_upload(
        &self,
        file: &LocalFile,
        href: &str,
        header: &Map<String, Value>,
        chunk: u64,
    ) -> Result<()> {
        let part_urls = part_urls(header, file.size, chunk)?;
        let mut done = Vec::with_capacity(part_urls.len());
        for (i, (number, part_url)) in part_urls.iter().enumerate() {
            let start = i as u64 * chunk;
            let len = chunk.min(file.size - start);
            let etag = self
                .upload_part(file, part_url, start, len)
                .with_context(|| format!("part {number} of {}", part_urls.len()))?;
            if etag.is_empty() {
                bail!("PUT {}: no ETag for part {number}", show_url(part_url));
            }
            done.push(json!({"partNumber": number, "etag": etag}));
        }
        let body = json!({"oid": file.sha256, "parts": done});
        self.post_lfs_json(href, Auth::None, Repeat::Unsent, &body)
            .context("completing the multipart upload")?;
        Ok(())
    }

    /// PUT `len` bytes of the file from `start`: the part's ETag (empty when none came back).
    fn upload_part(&self, file: &LocalFile, url: &str, start: u64, len: u64) -> Result<String> {
        File::open(&file.abs).with_context(|| format!("opening {}", file.abs.display()))?;
        let length = len.to_string();
        let headers = [("Content-Length", length.as_str())];
        let resp = self
            .send("PUT", url, Repeat::Safe, || {
                let mut body = File::open(&file.abs)?;
                body.seek(SeekFrom::Start(start))?;
                self.request("PUT", url, Auth::None, &headers)
                    .send(body.take(len))
            })
            .map_err(|f| self.error("PUT", url, f))?;
        Ok(resp.header("etag").unwrap_or_default().to_string())
    }
}

/// The numbered part URLs of a multipart header, in order; exactly one per `chunk` bytes.
fn part_urls(header: &Map<String, Value>, size: u64, chunk: u64) -> Result<Vec<(u64, &str)>> {
    let mut parts: Vec<(u64, &str)> = header
        .iter()
        .filter_map(|(key, value)| Some((key.parse::<u64>().ok()?, value.as_str()?)))
        .collect();
    parts.sort();
    let expected = size.div_ceil(chunk);
    if parts.len() as u64 != expected
        || parts
            .iter()
            .enumerate()
            .any(|(i, (number, _))| *number != i as u64 + 1)
    {
        bail!(
            "LFS multipart reply offers {} part URLs for {} parts of {} bytes",
            parts.len(),
            expected,
            chunk
        );
    }
    Ok(parts)
}
