//! Why a safetensors header is invalid, in words that name the tensor: the safetensors crate
//! says "invalid shape, data type, or offset for tensor" without saying which.
//!
//! Owns only this diagnosis of the header; reading tensors stays in weights.rs.

use serde_json::Value;

/// Bytes per element of a safetensors dtype name.
fn dtype_bytes(dtype: &str) -> Option<usize> {
    Some(match dtype {
        "F64" | "I64" | "U64" => 8,
        "F32" | "I32" | "U32" => 4,
        "F16" | "BF16" | "I16" | "U16" => 2,
        "F8_E4M3" | "F8_E5M2" | "F8_E8M0" | "I8" | "U8" | "BOOL" => 1,
        _ => return None,
    })
}

struct Entry {
    name: String,
    start: usize,
    end: usize,
    shape: Vec<usize>,
    dtype: String,
}

fn entry(name: &str, info: &Value) -> Option<Entry> {
    let offsets = info.get("data_offsets")?.as_array()?;
    let offset = |i: usize| offsets.get(i)?.as_u64().map(|x| x as usize);
    let shape = info.get("shape")?.as_array()?;
    Some(Entry {
        name: name.to_string(),
        start: offset(0)?,
        end: offset(1)?,
        shape: shape
            .iter()
            .map(|d| d.as_u64().map(|d| d as usize))
            .collect::<Option<_>>()?,
        dtype: info.get("dtype")?.as_str()?.to_string(),
    })
}

/// The first problem of the file's header, naming the tensor (in data order); None when the
/// header cannot be read this far or shows no problem.
pub fn describe(bytes: &[u8]) -> Option<String> {
    let n = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?) as usize;
    let header: serde_json::Map<String, Value> =
        serde_json::from_slice(bytes.get(8..8usize.checked_add(n)?)?).ok()?;
    let data_len = bytes.len() - 8 - n;
    let mut entries = vec![];
    for (name, info) in header.iter().filter(|(k, _)| *k != "__metadata__") {
        match entry(name, info) {
            Some(e) => entries.push(e),
            None => return Some(format!("tensor `{name}`: its header entry is malformed")),
        }
    }
    entries.sort_by_key(|e| (e.start, e.end));
    let mut expected = 0;
    for e in &entries {
        if let Some(problem) = problem(e, expected, data_len) {
            return Some(format!("tensor `{}`: {problem}", e.name));
        }
        expected = e.end;
    }
    (expected != data_len).then(|| {
        format!("the tensors' data ends at byte {expected}, but the file holds {data_len} bytes of data")
    })
}

/// What is wrong with one tensor's entry, given where the previous one ended.
fn problem(e: &Entry, expected_start: usize, data_len: usize) -> Option<String> {
    let (start, end) = (e.start, e.end);
    if start != expected_start {
        return Some(format!(
            "data_offsets [{start}, {end}] start at byte {start}, but the data before it ends at {expected_start}"
        ));
    }
    if end < start {
        return Some(format!(
            "data_offsets [{start}, {end}] end before they start"
        ));
    }
    let Some(size) = dtype_bytes(&e.dtype) else {
        return Some(format!("unknown dtype {:?}", e.dtype));
    };
    let needed = e
        .shape
        .iter()
        .try_fold(size, |acc, &d| acc.checked_mul(d))?;
    if end - start != needed {
        return Some(format!(
            "data_offsets [{start}, {end}] hold {} bytes, but shape {:?} of {} needs {needed}",
            end - start,
            e.shape,
            e.dtype
        ));
    }
    (end > data_len).then(|| {
        format!(
            "data_offsets end at byte {end}, past the {data_len} bytes of data (a truncated file?)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file of two F32 tensors `a` [2] and `b` [3] with the given offsets and data length.
    fn file(a: [usize; 2], b: [usize; 2], data: usize) -> Vec<u8> {
        let header = serde_json::json!({
            "__metadata__": {"format": "pt"},
            "a": {"dtype": "F32", "shape": [2], "data_offsets": a},
            "b": {"dtype": "F32", "shape": [3], "data_offsets": b},
        });
        let text = serde_json::to_vec(&header).unwrap();
        let mut out = (text.len() as u64).to_le_bytes().to_vec();
        out.extend(text);
        out.extend(vec![0u8; data]);
        out
    }

    #[test]
    fn names_the_tensor_whose_offsets_are_wrong() {
        assert_eq!(describe(&file([0, 8], [8, 20], 20)), None);
        let d = |a, b, n| describe(&file(a, b, n)).unwrap();
        let e = d([0, 4], [4, 16], 16);
        assert!(e.contains("tensor `a`") && e.contains("needs 8"), "{e}");
        let e = d([0, 8], [12, 24], 24);
        assert!(e.contains("tensor `b`") && e.contains("ends at 8"), "{e}");
        let e = d([0, 8], [8, 20], 16);
        assert!(e.contains("tensor `b`") && e.contains("truncated"), "{e}");
        let e = d([0, 8], [8, 20], 24);
        assert!(e.contains("holds 24 bytes"), "{e}");
        assert_eq!(describe(b"\x01\x00"), None);
    }
}
