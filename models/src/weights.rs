//! HF safetensors: load (single file or sharded) and save with HF tensor names.

mod header_check;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

use crate::error::{ModelError, Result};

/// The safetensors files of an HF directory: `model.safetensors`, or the shards listed in
/// `model.safetensors.index.json`.
pub fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if !index.exists() {
        return Err(ModelError::MissingFile { path: single });
    }
    let text = std::fs::read_to_string(&index).map_err(|e| ModelError::io(&index, e))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| ModelError::Safetensors {
        path: index.clone(),
        msg: format!("index is not JSON: {e}"),
    })?;
    let map = v
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| ModelError::Safetensors {
            path: index.clone(),
            msg: "index has no `weight_map` object".into(),
        })?;
    let mut files: Vec<String> = map
        .values()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    files.sort();
    files.dedup();
    Ok(files.into_iter().map(|f| dir.join(f)).collect())
}

/// Read every tensor of one safetensors file onto the CPU (f32/f16/bf16 kept as stored).
///
/// The file is mapped, not read into memory: each tensor is copied out of the map once and its
/// pages are released right after, so loading peaks near the size of the tensors (plus one
/// tensor's pages) rather than twice the file.
pub fn load_safetensors_file(path: &Path) -> Result<HashMap<String, Tensor>> {
    let file = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
    // SAFETY: the map is read-only and lives only inside this function. As with every mmap
    // loader (candle's, safetensors'), another process truncating the file meanwhile would fault.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| ModelError::io(path, e))?;
    let st = SafeTensors::deserialize(&map).map_err(|e| ModelError::Safetensors {
        path: path.into(),
        msg: with_diagnosis(e.to_string(), &map),
    })?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        let dtype = match view.dtype() {
            Dtype::F32 => DType::F32,
            Dtype::F16 => DType::F16,
            Dtype::BF16 => DType::BF16,
            other => {
                return Err(ModelError::UnsupportedDType {
                    path: path.into(),
                    name,
                    dtype: format!("{other:?}"),
                })
            }
        };
        let t = Tensor::from_raw_buffer(view.data(), dtype, view.shape(), &Device::Cpu).map_err(
            |e| ModelError::Safetensors {
                path: path.into(),
                msg: format!("tensor {name}: {e}"),
            },
        )?;
        release_pages(&map, view.data());
        out.insert(name, t);
    }
    Ok(out)
}

/// A safetensors error, followed by which tensor is at fault when the header shows it.
fn with_diagnosis(msg: String, bytes: &[u8]) -> String {
    match header_check::describe(bytes) {
        Some(why) => format!("{msg}: {why}"),
        None => msg,
    }
}

/// Why the safetensors file at `path` does not load, naming the tensor, when its header shows
/// it (for errors of other readers, such as candle's).
pub fn describe_invalid_file(path: &Path) -> Option<String> {
    header_check::describe(&std::fs::read(path).ok()?)
}

/// Drop the resident pages behind `bytes` (a slice of `map`) once they have been copied out.
/// Only an optimisation: a failure leaves the pages to the kernel's normal reclaim.
fn release_pages(map: &memmap2::Mmap, bytes: &[u8]) {
    let offset = bytes.as_ptr() as usize - map.as_ptr() as usize;
    // SAFETY: the map is private and read-only, so MADV_DONTNEED only drops clean pages; a later
    // read (another tensor sharing a boundary page) faults them in again from the file.
    let _ = unsafe {
        map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, bytes.len())
    };
}

/// Load all tensors of an HF directory (all shards). Errors name the shard.
pub fn load_dir_tensors(dir: &Path) -> Result<(HashMap<String, Tensor>, PathBuf)> {
    let files = safetensors_files(dir)?;
    let mut all = HashMap::new();
    for f in &files {
        all.extend(load_safetensors_file(f)?);
    }
    let origin = if files.len() == 1 {
        files[0].clone()
    } else {
        dir.join("model.safetensors.index.json")
    };
    Ok((all, origin))
}

/// Write tensors (converted to `dtype`) to one safetensors file, atomically.
pub fn save_safetensors(
    tensors: &BTreeMap<String, Tensor>,
    dtype: DType,
    path: &Path,
) -> Result<()> {
    let mut data: Vec<(String, Vec<u8>, Vec<usize>)> = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let t = t
            .to_device(&Device::Cpu)
            .and_then(|t| t.to_dtype(dtype))
            .and_then(|t| t.contiguous())
            .map_err(|source| ModelError::Candle {
                context: format!("saving tensor {name}"),
                source,
            })?;
        let bytes = tensor_bytes(&t).map_err(|source| ModelError::Candle {
            context: format!("saving tensor {name}"),
            source,
        })?;
        data.push((name.clone(), bytes, t.dims().to_vec()));
    }
    let st_dtype = match dtype {
        DType::F32 => Dtype::F32,
        DType::F16 => Dtype::F16,
        DType::BF16 => Dtype::BF16,
        other => {
            return Err(ModelError::UnsupportedDType {
                path: path.into(),
                name: "*".into(),
                dtype: format!("{other:?}"),
            })
        }
    };
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = data
        .iter()
        .map(|(n, b, s)| {
            safetensors::tensor::TensorView::new(st_dtype, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| ModelError::Safetensors {
                    path: path.into(),
                    msg: format!("tensor {n}: {e}"),
                })
        })
        .collect::<Result<_>>()?;
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    let tmp = temporary_path(path);
    let written = safetensors::serialize_to_file(views, Some(meta), &tmp)
        .map_err(|e| match e {
            safetensors::SafeTensorError::IoError(io) => ModelError::Write {
                path: tmp.clone(),
                msg: io.to_string(),
            },
            other => ModelError::Safetensors {
                path: tmp.clone(),
                msg: other.to_string(),
            },
        })
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| ModelError::io(path, e)));
    if written.is_err() {
        // A full disk or a failed rename: leave no partial file behind.
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Where [`save_safetensors`] writes `path` before renaming it into place: `<name>.tmp`. One
/// left over (a process killed mid-write) is safe to remove.
pub fn temporary_path(path: &Path) -> PathBuf {
    path.with_extension("safetensors.tmp")
}

fn tensor_bytes(t: &Tensor) -> candle_core::Result<Vec<u8>> {
    Ok(match t.dtype() {
        DType::F32 => t
            .flatten_all()?
            .to_vec1::<f32>()?
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        DType::F16 => t
            .flatten_all()?
            .to_vec1::<half::f16>()?
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        DType::BF16 => t
            .flatten_all()?
            .to_vec1::<half::bf16>()?
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        other => candle_core::bail!("cannot serialise dtype {other:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_tensor() -> BTreeMap<String, Tensor> {
        let t = Tensor::new(&[[1f32, 2.0], [3.0, 4.0]], &Device::Cpu).unwrap();
        BTreeMap::from([("w".to_string(), t)])
    }

    /// A real "No space left on device": the temporary file is a link to /dev/full.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_write_on_a_full_disk_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let tmp = temporary_path(&path);
        std::os::unix::fs::symlink("/dev/full", &tmp).unwrap();
        let e = save_safetensors(&one_tensor(), DType::F32, &path).unwrap_err();
        assert!(e.to_string().contains("No space left"), "{e}");
        assert!(
            std::fs::symlink_metadata(&tmp).is_err(),
            "{tmp:?} left behind"
        );
        assert!(!path.exists());
        // And a normal write still works there.
        save_safetensors(&one_tensor(), DType::F32, &path).unwrap();
        assert_eq!(load_safetensors_file(&path).unwrap().len(), 1);
    }
}
