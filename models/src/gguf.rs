//! GGUF reading: metadata, config, tensors (dequantised through candle's GGML kernels).
//!
//! The header is parsed here rather than with `candle_core::quantized::gguf_file::Content` so that
//! an unsupported quantisation type is reported with the tensor that uses it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::{Path, PathBuf};

use candle_core::quantized::{gguf_file::TensorInfo, GgmlDType};
use candle_core::{DType, Device, Tensor};

use crate::config::{Architecture, Llama3RopeScaling, ModelConfig};
use crate::error::{ModelError, Result};

#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Vec<GgufValue>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl GgufValue {
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::U8(x) => Some(x as u64),
            GgufValue::U16(x) => Some(x as u64),
            GgufValue::U32(x) => Some(x as u64),
            GgufValue::U64(x) => Some(x),
            GgufValue::I8(x) if x >= 0 => Some(x as u64),
            GgufValue::I16(x) if x >= 0 => Some(x as u64),
            GgufValue::I32(x) if x >= 0 => Some(x as u64),
            GgufValue::I64(x) if x >= 0 => Some(x as u64),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            GgufValue::F32(x) => Some(x as f64),
            GgufValue::F64(x) => Some(x),
            _ => self.as_u64().map(|x| x as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            GgufValue::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            GgufValue::Array(a) => Some(a),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct GgufTensorInfo {
    pub dims: Vec<usize>,
    pub dtype: GgmlDType,
    pub offset: u64,
}

/// An opened GGUF file: metadata and tensor directory; tensors are read on demand.
#[derive(Debug)]
pub struct GgufFile {
    pub path: PathBuf,
    pub metadata: HashMap<String, GgufValue>,
    pub tensors: HashMap<String, GgufTensorInfo>,
    /// Tensor names in file order.
    pub tensor_order: Vec<String>,
    data_offset: u64,
    file_len: u64,
}

fn ggml_type_name(t: u32) -> &'static str {
    match t {
        4 => "Q4_2 (removed)",
        5 => "Q4_3 (removed)",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        _ => "unknown",
    }
}

fn ggml_dtype(t: u32) -> Option<GgmlDType> {
    Some(match t {
        0 => GgmlDType::F32,
        1 => GgmlDType::F16,
        2 => GgmlDType::Q4_0,
        3 => GgmlDType::Q4_1,
        6 => GgmlDType::Q5_0,
        7 => GgmlDType::Q5_1,
        8 => GgmlDType::Q8_0,
        9 => GgmlDType::Q8_1,
        10 => GgmlDType::Q2K,
        11 => GgmlDType::Q3K,
        12 => GgmlDType::Q4K,
        13 => GgmlDType::Q5K,
        14 => GgmlDType::Q6K,
        15 => GgmlDType::Q8K,
        30 => GgmlDType::BF16,
        _ => return None,
    })
}

struct Reader<R> {
    r: R,
    path: PathBuf,
    file_len: u64,
}

impl<R: Read + Seek> Reader<R> {
    fn err(&self, msg: impl Into<String>) -> ModelError {
        ModelError::Gguf {
            path: self.path.clone(),
            msg: msg.into(),
        }
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut b = [0u8; N];
        self.r
            .read_exact(&mut b)
            .map_err(|e| self.err(format!("truncated header: {e}")))?;
        Ok(b)
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }

    fn len(&mut self, what: &str) -> Result<usize> {
        let n = self.u64()?;
        // Nothing in a header can be longer than the file itself.
        if n > self.file_len {
            return Err(self.err(format!("{what} length {n} exceeds the file size")));
        }
        Ok(n as usize)
    }

    fn string(&mut self) -> Result<String> {
        let n = self.len("string")?;
        let mut v = vec![0u8; n];
        self.r
            .read_exact(&mut v)
            .map_err(|e| self.err(format!("truncated string: {e}")))?;
        while v.last() == Some(&0) {
            v.pop();
        }
        Ok(String::from_utf8_lossy(&v).into_owned())
    }

    fn value(&mut self, ty: u32, depth: usize) -> Result<GgufValue> {
        Ok(match ty {
            0 => GgufValue::U8(self.bytes::<1>()?[0]),
            1 => GgufValue::I8(self.bytes::<1>()?[0] as i8),
            2 => GgufValue::U16(u16::from_le_bytes(self.bytes()?)),
            3 => GgufValue::I16(i16::from_le_bytes(self.bytes()?)),
            4 => GgufValue::U32(self.u32()?),
            5 => GgufValue::I32(i32::from_le_bytes(self.bytes()?)),
            6 => GgufValue::F32(f32::from_le_bytes(self.bytes()?)),
            7 => GgufValue::Bool(self.bytes::<1>()?[0] != 0),
            8 => GgufValue::String(self.string()?),
            9 => {
                if depth > 4 {
                    return Err(self.err("arrays nested too deeply"));
                }
                let elem_ty = self.u32()?;
                let n = self.len("array")?;
                let mut a = Vec::with_capacity(n.min(1 << 20));
                for _ in 0..n {
                    a.push(self.value(elem_ty, depth + 1)?);
                }
                GgufValue::Array(a)
            }
            10 => GgufValue::U64(self.u64()?),
            11 => GgufValue::I64(i64::from_le_bytes(self.bytes()?)),
            12 => GgufValue::F64(f64::from_le_bytes(self.bytes()?)),
            other => return Err(self.err(format!("unknown metadata value type {other}"))),
        })
    }
}

impl<R: Read + Seek> Reader<R> {
    /// One tensor-info record: name, dimensions (outermost first), type, data offset.
    fn tensor_info(&mut self) -> Result<(String, GgufTensorInfo)> {
        let name = self.string()?;
        let n_dims = self.u32()? as usize;
        if n_dims > 4 {
            return Err(self.err(format!("tensor {name}: {n_dims} dimensions")));
        }
        let mut dims = Vec::with_capacity(n_dims);
        for _ in 0..n_dims {
            dims.push(self.len("dimension")?);
        }
        // GGUF stores dims innermost first; candle/PyTorch order is the reverse.
        dims.reverse();
        let raw_type = self.u32()?;
        let offset = self.u64()?;
        let dtype = ggml_dtype(raw_type).ok_or_else(|| ModelError::UnsupportedQuant {
            path: self.path.clone(),
            name: name.clone(),
            ggml_type: raw_type,
            type_name: ggml_type_name(raw_type),
        })?;
        let info = GgufTensorInfo {
            dims,
            dtype,
            offset,
        };
        Ok((name, info))
    }
}

impl GgufFile {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| ModelError::io(path, e))?;
        let file_len = file
            .metadata()
            .map_err(|source| ModelError::Io {
                path: path.into(),
                source,
            })?
            .len();
        let mut rd = Reader {
            r: BufReader::new(file),
            path: path.into(),
            file_len,
        };
        let magic = rd.bytes::<4>()?;
        if &magic != b"GGUF" {
            return Err(rd.err("not a GGUF file (bad magic)"));
        }
        let version = rd.u32()?;
        if !(2..=3).contains(&version) {
            return Err(rd.err(format!(
                "unsupported GGUF version {version} (supported: 2, 3)"
            )));
        }
        let n_tensors = rd.len("tensor count")?;
        let n_kv = rd.len("metadata count")?;
        let mut metadata = HashMap::new();
        for _ in 0..n_kv {
            let key = rd.string()?;
            let ty = rd.u32()?;
            let value = rd.value(ty, 0)?;
            metadata.insert(key, value);
        }
        let mut tensors = HashMap::new();
        let mut tensor_order = Vec::with_capacity(n_tensors);
        for _ in 0..n_tensors {
            let (name, info) = rd.tensor_info()?;
            tensor_order.push(name.clone());
            tensors.insert(name, info);
        }
        let pos = rd.r.stream_position().map_err(|e| rd.err(e.to_string()))?;
        let alignment = metadata
            .get("general.alignment")
            .and_then(GgufValue::as_u64)
            .filter(|a| *a > 0)
            .unwrap_or(32);
        let data_offset = pos.div_ceil(alignment) * alignment;
        Ok(GgufFile {
            path: path.into(),
            metadata,
            tensors,
            tensor_order,
            data_offset,
            file_len,
        })
    }

    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    fn err(&self, msg: impl Into<String>) -> ModelError {
        ModelError::Gguf {
            path: self.path.clone(),
            msg: msg.into(),
        }
    }

    pub fn architecture(&self) -> Result<&str> {
        self.get("general.architecture")
            .and_then(GgufValue::as_str)
            .ok_or_else(|| self.err("missing general.architecture"))
    }

    /// Build the model config from `{arch}.*` metadata.
    pub fn config(&self) -> Result<ModelConfig> {
        let arch_name = self.architecture()?.to_string();
        let arch =
            Architecture::parse(&arch_name).ok_or_else(|| ModelError::UnknownArchitecture {
                path: self.path.clone(),
                model_type: arch_name.clone(),
            })?;
        let key = |k: &str| format!("{arch_name}.{k}");
        let need = |k: &str| {
            self.get(&key(k))
                .and_then(GgufValue::as_u64)
                .map(|x| x as usize)
                .ok_or_else(|| self.err(format!("missing metadata {}", key(k))))
        };
        let hidden_size = need("embedding_length")?;
        let num_heads = need("attention.head_count")?;
        let num_kv_heads = need("attention.head_count_kv").unwrap_or(num_heads);
        if num_heads == 0 || num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
            return Err(self.err(format!(
                "head_count {num_heads} is not a multiple of head_count_kv {num_kv_heads}"
            )));
        }
        let head_dim = need("attention.key_length")
            .or_else(|_| need("rope.dimension_count"))
            .unwrap_or(hidden_size / num_heads);
        let vocab_size = match need("vocab_size") {
            Ok(v) => v,
            Err(_) => self
                .get("tokenizer.ggml.tokens")
                .and_then(GgufValue::as_array)
                .map(|a| a.len())
                .or_else(|| self.tensors.get("token_embd.weight").map(|t| t.dims[0]))
                .ok_or_else(|| self.err("cannot determine vocab size"))?,
        };
        let rope_scaling = match self
            .get(&key("rope.scaling.type"))
            .and_then(GgufValue::as_str)
        {
            Some("llama3") => Some(Llama3RopeScaling {
                factor: self
                    .get(&key("rope.scaling.factor"))
                    .and_then(GgufValue::as_f64)
                    .unwrap_or(8.0),
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: need("rope.scaling.original_context_length")
                    .unwrap_or(8192),
            }),
            _ => None,
        };
        let tok_id = |k: &str| self.get(k).and_then(GgufValue::as_u64).map(|x| x as u32);
        let has_bias = self.tensors.contains_key("blk.0.attn_q.bias");
        Ok(ModelConfig {
            arch,
            vocab_size,
            hidden_size,
            intermediate_size: need("feed_forward_length")?,
            num_layers: need("block_count")?,
            num_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: self
                .get(&key("attention.layer_norm_rms_epsilon"))
                .and_then(GgufValue::as_f64)
                .unwrap_or(1e-6),
            rope_theta: self
                .get(&key("rope.freq_base"))
                .and_then(GgufValue::as_f64)
                .unwrap_or(10000.0),
            rope_scaling,
            max_position_embeddings: need("context_length").unwrap_or(4096),
            tie_word_embeddings: !self.tensors.contains_key("output.weight"),
            qkv_bias: has_bias,
            o_bias: self.tensors.contains_key("blk.0.attn_output.bias"),
            qk_norm: self.tensors.contains_key("blk.0.attn_q_norm.weight"),
            bos_token_id: tok_id("tokenizer.ggml.bos_token_id"),
            eos_token_ids: tok_id("tokenizer.ggml.eos_token_id").into_iter().collect(),
        })
    }

    /// Read one tensor, dequantised to f32 on the CPU.
    pub fn tensor_f32(&self, name: &str) -> Result<Tensor> {
        let info = self
            .tensors
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor {
                path: self.path.clone(),
                name: name.into(),
            })?;
        let elems: usize = info.dims.iter().product();
        let bs = info.dtype.block_size();
        if !elems.is_multiple_of(bs) {
            return Err(self.err(format!(
                "tensor {name}: {elems} elements not a multiple of block size {bs}"
            )));
        }
        let bytes = (elems / bs * info.dtype.type_size()) as u64;
        let start = self.data_offset + info.offset;
        if start
            .checked_add(bytes)
            .is_none_or(|end| end > self.file_len)
        {
            return Err(self.err(format!(
                "tensor {name}: data at {start}..{} lies beyond the end of the file ({} bytes): truncated?",
                start.saturating_add(bytes),
                self.file_len
            )));
        }
        let ti = TensorInfo {
            ggml_dtype: info.dtype,
            shape: candle_core::Shape::from(info.dims.clone()),
            offset: info.offset,
        };
        let mut f = BufReader::new(File::open(&self.path).map_err(|source| ModelError::Io {
            path: self.path.clone(),
            source,
        })?);
        let q = ti
            .read(&mut f, self.data_offset, &Device::Cpu)
            .map_err(|e| self.err(format!("tensor {name}: {e}")))?;
        q.dequantize(&Device::Cpu)
            .and_then(|t| t.to_dtype(DType::F32))
            .map_err(|e| self.err(format!("tensor {name}: dequantise: {e}")))
    }
}

/// llama.cpp's converter permutes the rows of q/k projections for the `llama` architecture
/// (interleaved RoPE pairs); undo it so the HF rotate-half RoPE applies.
pub fn unpermute_qk(w: &Tensor, n_heads: usize) -> candle_core::Result<Tensor> {
    let dims = w.dims().to_vec();
    let rows = dims[0];
    let rest: Vec<usize> = dims[1..].to_vec();
    let half = rows / n_heads / 2;
    let mut shape = vec![n_heads, half, 2];
    shape.extend(&rest);
    w.reshape(shape)?
        .transpose(1, 2)?
        .contiguous()?
        .reshape(dims)
}

/// Map a GGUF tensor name to its HF name.
pub fn hf_name(gguf_name: &str) -> Option<String> {
    let fixed = match gguf_name {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.into());
    }
    let rest = gguf_name.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (part, kind) = rest.rsplit_once('.')?;
    let hf = match part {
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "attn_q_norm" => "self_attn.q_norm",
        "attn_k_norm" => "self_attn.k_norm",
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}.{kind}"))
}

/// Load every tensor of a GGUF model as f32 with HF names and HF row layout.
pub fn load_tensors(file: &GgufFile, cfg: &ModelConfig) -> Result<HashMap<String, Tensor>> {
    let permuted = cfg.arch == Architecture::Llama;
    let mut out = HashMap::new();
    for name in &file.tensor_order {
        let Some(hf) = hf_name(name) else {
            // rope_freqs and similar derived tables are recomputed from the config.
            continue;
        };
        let mut t = file.tensor_f32(name)?;
        if permuted {
            let heads = if name.ends_with("attn_q.weight") || name.ends_with("attn_q.bias") {
                Some(cfg.num_heads)
            } else if name.ends_with("attn_k.weight") || name.ends_with("attn_k.bias") {
                Some(cfg.num_kv_heads)
            } else {
                None
            };
            if let Some(h) = heads {
                t = unpermute_qk(&t, h).map_err(|e| file.err(format!("tensor {name}: {e}")))?;
            }
        }
        out.insert(hf, t);
    }
    Ok(out)
}
