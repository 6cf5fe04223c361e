//! Writing a checkpoint's tensors as a safetensors file, hashed as it is written, so the
//! manifest records what was meant to be on disk and a read-back check compares against that.
//!
//! Owns the byte layout of the file (header, then the tensors in name order). Must not know
//! what the tensors are; reading goes through candle's safetensors loader.

use std::collections::HashMap;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::Path;

use candle_core::{DType, Tensor};
use serde_json::{json, Map, Value};

use super::manifest::{FileDigest, HashingWriter};
use crate::error::{io_err, Result, TrainerError};

/// The safetensors name of a dtype.
fn dtype_name(dtype: DType) -> Option<&'static str> {
    Some(match dtype {
        DType::F32 => "F32",
        DType::F16 => "F16",
        DType::BF16 => "BF16",
        DType::F64 => "F64",
        DType::U8 => "U8",
        DType::U32 => "U32",
        DType::I64 => "I64",
        _ => return None,
    })
}

/// The bytes `tensors` take in a file (data only).
pub fn data_bytes(tensors: &HashMap<String, Tensor>) -> u64 {
    tensors
        .values()
        .map(|t| (t.elem_count() * t.dtype().size_in_bytes()) as u64)
        .sum()
}

/// The header: name → dtype, shape and data offsets, in name order, padded to 8 bytes.
fn header(names: &[&String], tensors: &HashMap<String, Tensor>, path: &Path) -> Result<Vec<u8>> {
    let mut map = Map::new();
    let mut offset = 0usize;
    for name in names {
        let t = &tensors[*name];
        let dtype = dtype_name(t.dtype()).ok_or_else(|| TrainerError::Checkpoint {
            path: path.to_path_buf(),
            msg: format!("tensor {name}: cannot store dtype {:?}", t.dtype()),
        })?;
        let end = offset + t.elem_count() * t.dtype().size_in_bytes();
        map.insert(
            (*name).clone(),
            json!({ "dtype": dtype, "shape": t.dims(), "data_offsets": [offset, end] }),
        );
        offset = end;
    }
    let mut bytes = serde_json::to_vec(&Value::Object(map))?;
    while bytes.len() % 8 != 0 {
        bytes.push(b' ');
    }
    Ok(bytes)
}

/// Write `tensors` to `path` as safetensors, fsynced; returns the size and SHA-256 of the
/// bytes written. A failure leaves a partial file for the caller to remove.
pub fn write_tensors(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<FileDigest> {
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let header = header(&names, tensors, path)?;
    let file = fs::File::create(path).map_err(io_err(path))?;
    let mut out = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
    out.write_all(&(header.len() as u64).to_le_bytes())
        .and_then(|()| out.write_all(&header))
        .map_err(io_err(path))?;
    for name in names {
        tensors[name].write_bytes(&mut out).map_err(|e| match e {
            candle_core::Error::Io(cause) => TrainerError::Io {
                path: path.to_path_buf(),
                cause,
            },
            other => TrainerError::Checkpoint {
                path: path.to_path_buf(),
                msg: format!("tensor {name}: {other}"),
            },
        })?;
    }
    let (digest, buffered) = out.finish();
    let file = buffered
        .into_inner()
        .map_err(|e| io_err(path)(e.into_error()))?;
    file.sync_all().map_err(io_err(path))?;
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn candle_reads_what_is_written_bit_for_bit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        let dev = Device::Cpu;
        let mut tensors = HashMap::new();
        let a = Tensor::new(&[[1.5f32, -0.0, f32::MIN_POSITIVE], [3.0, 4.0, 5.0]], &dev).unwrap();
        tensors.insert("b.weight".to_string(), a.clone());
        tensors.insert("a.bf16".to_string(), a.to_dtype(DType::BF16).unwrap());
        tensors.insert("c.u32".to_string(), Tensor::new(&[7u32, 9], &dev).unwrap());
        let digest = write_tensors(&tensors, &path).unwrap();
        assert_eq!(digest, super::super::manifest::digest_file(&path).unwrap());
        let back = candle_core::safetensors::load(&path, &dev).unwrap();
        assert_eq!(back.len(), 3);
        for (name, t) in &tensors {
            let u = &back[name];
            assert_eq!((u.dims(), u.dtype()), (t.dims(), t.dtype()), "{name}");
            let bytes = |t: &Tensor| {
                let mut v = vec![];
                t.write_bytes(&mut v).unwrap();
                v
            };
            assert_eq!(bytes(u), bytes(t), "{name}");
        }
        // No tensors at all is a valid file too.
        let empty = dir.path().join("e.safetensors");
        write_tensors(&HashMap::new(), &empty).unwrap();
        assert!(candle_core::safetensors::load(&empty, &dev)
            .unwrap()
            .is_empty());
    }
}
