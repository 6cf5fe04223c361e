//! The byte-level BPE tokenizer that GGUF `tokenizer.ggml.*` metadata describes (gpt2-style:
//! vocabulary, merges, token types, pre-tokenizer name), built as a `tokenizers::Tokenizer`.
//!
//! Owns only the translation of GGUF metadata into tokenizer parts; the special-token names and
//! the chat template are read by `tokenizer.rs`, which must not know how BPE is assembled.

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use crate::error::{ModelError, Result};
use crate::gguf::{GgufFile, GgufValue};

// Llama-3 / Qwen2 pre-tokenizer split patterns (from their tokenizer.json files).
const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GGUF token type of a control token (matched before BPE as a special added token).
const TOKEN_TYPE_CONTROL: i64 = 3;
/// GGUF token type of a user-defined token (matched before BPE as a plain added token).
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

fn error(file: &GgufFile, msg: String) -> ModelError {
    ModelError::Tokenizer {
        path: file.path.clone(),
        msg,
    }
}

/// The tokenizer and its token strings (indexed by id), for resolving special-token ids.
pub(crate) fn build(file: &GgufFile) -> Result<(Tokenizer, Vec<String>)> {
    let model = file
        .get("tokenizer.ggml.model")
        .and_then(GgufValue::as_str)
        .ok_or_else(|| error(file, "no tokenizer.ggml.model in the GGUF metadata".into()))?;
    if model != "gpt2" {
        return Err(error(file, format!(
            "tokenizer model {model:?} is not supported from GGUF (only gpt2-style BPE); use an HF directory with tokenizer.json"
        )));
    }
    let tokens = strings(file, "tokenizer.ggml.tokens")?;
    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges(file)?)
        .build()
        .map_err(|e| error(file, format!("building BPE: {e}")))?;
    let mut inner = Tokenizer::new(bpe);
    inner.with_pre_tokenizer(Some(pre_tokenizer(file)?));
    inner.with_decoder(Some(ByteLevelDecoder::default()));
    add_typed_tokens(&mut inner, &tokens, &token_types(file, tokens.len()));
    Ok((inner, tokens))
}

/// A string-array metadata entry.
fn strings(file: &GgufFile, key: &str) -> Result<Vec<String>> {
    file.get(key)
        .and_then(GgufValue::as_array)
        .ok_or_else(|| error(file, format!("missing {key}")))?
        .iter()
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| error(file, format!("{key}: non-string entry")))
        })
        .collect()
}

/// `tokenizer.ggml.merges`: "a b" pairs.
fn merges(file: &GgufFile) -> Result<Vec<(String, String)>> {
    strings(file, "tokenizer.ggml.merges")?
        .into_iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| {
                    error(
                        file,
                        format!("merge {m:?} is not two space-separated tokens"),
                    )
                })
        })
        .collect()
}

/// `tokenizer.ggml.token_type` per token (1 = normal where absent).
fn token_types(file: &GgufFile, n_tokens: usize) -> Vec<i64> {
    match file
        .get("tokenizer.ggml.token_type")
        .and_then(GgufValue::as_array)
    {
        Some(a) => a
            .iter()
            .map(|v| match *v {
                GgufValue::I32(x) => x as i64,
                _ => v.as_u64().map(|x| x as i64).unwrap_or(1),
            })
            .collect(),
        None => vec![1; n_tokens],
    }
}

/// The pre-tokenizer named by `tokenizer.ggml.pre` (byte-level alone where unknown).
fn pre_tokenizer(file: &GgufFile) -> Result<PreTokenizerWrapper> {
    let split = |pattern: &str| -> Result<PreTokenizerWrapper> {
        Ok(PreTokenizerWrapper::Split(
            Split::new(
                SplitPattern::Regex(pattern.into()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| error(file, format!("split regex: {e}")))?,
        ))
    };
    let byte_level =
        |trim_offsets| PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, trim_offsets));
    let pre = file
        .get("tokenizer.ggml.pre")
        .and_then(GgufValue::as_str)
        .unwrap_or("default");
    Ok(match pre {
        "smollm" => PreTokenizerWrapper::Sequence(Sequence::new(vec![
            PreTokenizerWrapper::Digits(Digits::new(true)),
            byte_level(true),
        ])),
        "llama-bpe" | "llama3" | "smaug-bpe" => PreTokenizerWrapper::Sequence(Sequence::new(vec![
            split(LLAMA3_PATTERN)?,
            byte_level(false),
        ])),
        "qwen2" => PreTokenizerWrapper::Sequence(Sequence::new(vec![
            split(QWEN2_PATTERN)?,
            byte_level(false),
        ])),
        _ => byte_level(true),
    })
}

/// Control and user-defined tokens are matched before BPE, as HF added tokens.
fn add_typed_tokens(inner: &mut Tokenizer, tokens: &[String], types: &[i64]) {
    let of_type = |wanted: i64, special: bool| -> Vec<AddedToken> {
        tokens
            .iter()
            .zip(types)
            .filter(|(_, &t)| t == wanted)
            .map(|(s, _)| AddedToken::from(s.clone(), special))
            .collect()
    };
    inner.add_special_tokens(&of_type(TOKEN_TYPE_CONTROL, true));
    inner.add_tokens(&of_type(TOKEN_TYPE_USER_DEFINED, false));
}
