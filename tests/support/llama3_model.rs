//! A tiny model that speaks Llama 3's tool format, written as an HF directory: a character-level
//! tokenizer with Llama 3's special tokens and the Llama 3.x-style chat template written for the
//! tests (tests/fixtures/chat_templates/llama3-style-tools.jinja), and one layer rigged into a
//! bigram machine: after `\n` (the end of every assistant header) it writes the calculator call
//! as a bare JSON turn or answers `X`, each half the time, and ends the turn with `<|eot_id|>`.

use std::path::Path;

use rlvr_models::candle_core::{DType, Device, Tensor};
use rlvr_models::{save_hf_dir, Architecture, Model, ModelConfig, TextTokenizer};
use serde_json::json;

pub const LLAMA3_TEMPLATE: &str =
    include_str!("../fixtures/chat_templates/llama3-style-tools.jinja");
pub const LLAMA_CALL: &str = r#"{"name": "calculator", "parameters": {"expression": "6*7"}}"#;
const VOCAB: usize = 128;
const SPECIALS: [&str; 7] = [
    "<|end_of_text|>",
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|python_tag|>",
];
/// Ids: 0..=6 the specials, 7..=101 printable ASCII, 102 `\n`, 103 the call.
const NEWLINE: u32 = 102;
const CALL: u32 = 103;
const EOT: u32 = 4;

fn tokenizer(dir: &Path) -> TextTokenizer {
    let mut vocab = serde_json::Map::new();
    let mut added = vec![];
    for (id, t) in SPECIALS.iter().enumerate() {
        vocab.insert(t.to_string(), json!(id));
        added.push(
            json!({"id": id, "content": t, "single_word": false, "lstrip": false,
                          "rstrip": false, "normalized": false, "special": true}),
        );
    }
    for (i, c) in (32u8..127).enumerate() {
        vocab.insert((c as char).to_string(), json!(i + SPECIALS.len()));
    }
    vocab.insert("\n".into(), json!(NEWLINE));
    vocab.insert(LLAMA_CALL.into(), json!(CALL));
    added.push(
        json!({"id": CALL, "content": LLAMA_CALL, "single_word": false, "lstrip": false,
                      "rstrip": false, "normalized": false, "special": false}),
    );
    let spec = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": null, "pre_tokenizer": null, "post_processor": null,
        "decoder": {"type": "Fuse"},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": false, "vocab": vocab, "merges": []}
    });
    TextTokenizer {
        inner: spec.to_string().parse().expect("tokenizer spec"),
        chat_template: Some(LLAMA3_TEMPLATE.into()),
        bos_token: Some("<|begin_of_text|>".into()),
        eos_token: Some("<|eot_id|>".into()),
        pad_token: None,
        add_bos: false,
        origin: dir.into(),
    }
}

/// Write the model to `dir`.
pub fn llama3_tool_model_dir(dir: &Path) {
    let tok = tokenizer(dir);
    let x = tok.encode("X", false).unwrap()[0];
    let mut cfg = ModelConfig::tiny(Architecture::Llama, VOCAB, VOCAB, 1);
    cfg.tie_word_embeddings = false;
    cfg.max_position_embeddings = 4096;
    let m = Model::random(cfg, 3, DType::F32, &Device::Cpu).unwrap();
    // Head row `to`, column `from`: after `from` comes `to`.
    let mut head = vec![0f32; VOCAB * VOCAB];
    let mut link = |from: u32, to: u32| head[to as usize * VOCAB + from as usize] = 4.0;
    for t in 0..VOCAB as u32 {
        if t != NEWLINE {
            link(t, EOT);
        }
    }
    link(NEWLINE, CALL);
    link(NEWLINE, x);
    let head = Tensor::from_vec(head, (VOCAB, VOCAB), &Device::Cpu).unwrap();
    for (name, v) in m.named_vars() {
        if name.contains("embed_tokens") {
            v.set(&Tensor::eye(VOCAB, DType::F32, &Device::Cpu).unwrap())
                .unwrap();
        } else if name.contains("lm_head") {
            v.set(&head).unwrap();
        } else if name.contains("o_proj") || name.contains("down_proj") {
            v.set(&v.as_tensor().zeros_like().unwrap()).unwrap();
        }
    }
    save_hf_dir(&m, &tok, None, &[EOT], dir, DType::F32).unwrap();
}
