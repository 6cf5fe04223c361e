//! Test fixtures: a character-level tokenizer with whole tool calls as single added tokens (and a
//! variant with Llama 3's special tokens and a Llama 3.x-style chat template written for the
//! tests), and a tiny model rigged into a bigram machine (the next token is a fixed function of
//! the current one, or an even draw between a few), so that engine, tools and rendering can be
//! driven end to end.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use rlvr_models::{Architecture, Model, ModelConfig, TextTokenizer};
use serde_json::json;

pub const CALC_CALL: &str =
    r#"<tool_call>{"name": "calculator", "arguments": {"expression": "6*7"}}</tool_call>"#;
pub const HANG_CALL: &str = r#"<tool_call>{"name": "hang", "arguments": {}}</tool_call>"#;
pub const BAD_CALL: &str = r#"<tool_call>{"name": "calculator", "arguments": {</tool_call>"#;
pub const EOS: u32 = 0;
pub const VOCAB: usize = 128;

/// A chat template in the Llama 3.x tool-call format, written for these tests (not Meta's; see
/// tests/fixtures/chat_templates/README.md).
pub const LLAMA3_TEMPLATE: &str =
    include_str!("../../tests/fixtures/chat_templates/llama3-style-tools.jinja");
/// A call as Llama 3.1 writes one (the bare JSON form the template asks for), and one cut short.
pub const LLAMA_CALL: &str = r#"{"name": "calculator", "parameters": {"expression": "6*7"}}"#;
pub const LLAMA_BAD_CALL: &str = r#"{"name": "calculator", "parameters": {"#;
/// Llama 3's special tokens that the template uses, with their ids here.
const LLAMA_SPECIALS: [(&str, u32); 6] = [
    ("<|begin_of_text|>", 102),
    ("<|start_header_id|>", 103),
    ("<|end_header_id|>", 104),
    ("<|eot_id|>", 105),
    ("<|eom_id|>", 106),
    ("<|python_tag|>", 107),
];

/// ChatML as SmolLM2 writes it: role and content only, no tools.
pub const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' \
    + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}\
    {{ '<|im_start|>assistant\\n' }}{% endif %}";

/// Ids: 0 `<eos>`, 1..=95 printable ASCII, 96 `\n`, then `<|im_start|>`, `<|im_end|>` and the
/// three calls as added tokens.
pub fn tokenizer(template: Option<&str>) -> TextTokenizer {
    build(template, &[], None, "<eos>")
}

/// [`tokenizer`] plus Llama 3's special tokens (ids 102..=107, `<|eot_id|>` the EOS) and the
/// two Llama calls (108, 109), with [`LLAMA3_TEMPLATE`].
pub fn llama3_tokenizer() -> TextTokenizer {
    let mut added: Vec<(&str, u32, bool)> = LLAMA_SPECIALS
        .iter()
        .map(|&(t, id)| (t, id, true))
        .collect();
    added.extend([(LLAMA_CALL, 108, false), (LLAMA_BAD_CALL, 109, false)]);
    build(
        Some(LLAMA3_TEMPLATE),
        &added,
        Some("<|begin_of_text|>"),
        "<|eot_id|>",
    )
}

fn build(
    template: Option<&str>,
    extra: &[(&str, u32, bool)],
    bos: Option<&str>,
    eos: &str,
) -> TextTokenizer {
    let mut vocab = serde_json::Map::new();
    vocab.insert("<eos>".into(), json!(0));
    for (i, c) in (32u8..127).enumerate() {
        vocab.insert((c as char).to_string(), json!(i + 1));
    }
    vocab.insert("\n".into(), json!(96));
    let base = [
        ("<eos>", 0, true),
        ("<|im_start|>", 97, true),
        ("<|im_end|>", 98, true),
        (CALC_CALL, 99, false),
        (HANG_CALL, 100, false),
        (BAD_CALL, 101, false),
    ];
    let added: Vec<_> = base
        .iter()
        .chain(extra)
        .map(|&(content, id, special)| {
            vocab.insert(content.into(), json!(id));
            json!({"id": id, "content": content, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": special})
        })
        .collect();
    let spec = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": null, "pre_tokenizer": null, "post_processor": null,
        "decoder": {"type": "Fuse"},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": false, "vocab": vocab, "merges": []}
    });
    let inner = spec.to_string().parse().expect("tokenizer spec");
    TextTokenizer {
        inner,
        chat_template: template.map(str::to_string),
        bos_token: bos.map(str::to_string),
        eos_token: Some(eos.into()),
        pad_token: None,
        add_bos: false,
        origin: PathBuf::from("test"),
    }
}

/// Id of a single-token string.
pub fn id(tok: &TextTokenizer, s: &str) -> u32 {
    let ids = tok.encode(s, false).unwrap();
    assert_eq!(ids.len(), 1, "{s:?} is one token");
    ids[0]
}

/// A one-layer model whose layers add nothing (zero output projections) and whose head maps
/// token t to `next[t]` (greedy), else to `<eos>`.
pub fn bigram_model(next: &HashMap<u32, u32>) -> Arc<Model> {
    let next = next.iter().map(|(&t, &to)| (t, vec![to])).collect();
    draw_model(&next)
}

/// [`bigram_model`] where token t is followed by any of `next[t]` with equal probability (the
/// others have none to speak of: the logits are ~45 apart), else by `<eos>`.
pub fn draw_model(next: &HashMap<u32, Vec<u32>>) -> Arc<Model> {
    let mut cfg = ModelConfig::tiny(Architecture::Llama, VOCAB, VOCAB, 1);
    cfg.tie_word_embeddings = false;
    cfg.max_position_embeddings = 4096;
    let m = Model::random(cfg, 3, DType::F32, &Device::Cpu).unwrap();
    let eye = Tensor::eye(VOCAB, DType::F32, &Device::Cpu).unwrap();
    let mut head = vec![0f32; VOCAB * VOCAB];
    for t in 0..VOCAB as u32 {
        let eos = vec![EOS];
        for &to in next.get(&t).unwrap_or(&eos) {
            head[to as usize * VOCAB + t as usize] = 4.0;
        }
    }
    let head = Tensor::from_vec(head, (VOCAB, VOCAB), &Device::Cpu).unwrap();
    for (name, v) in m.named_vars() {
        if name.contains("embed_tokens") {
            v.set(&eye).unwrap();
        } else if name.contains("lm_head") {
            v.set(&head).unwrap();
        } else if name.contains("o_proj") || name.contains("down_proj") {
            v.set(&v.as_tensor().zeros_like().unwrap()).unwrap();
        }
    }
    Arc::new(m)
}
