//! Tiny random models of every architecture: save → load round trips, sharding, tied weights,
//! GGUF quantisations and Q/K permutation, and the error for each kind of bad input.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use rlvr_models::candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use rlvr_models::candle_core::{DType, Device, Tensor};
use rlvr_models::gguf::{unpermute_qk, GgufFile};
use rlvr_models::testing::max_abs_diff;
use rlvr_models::tokenizers::models::bpe::BPE;
use rlvr_models::tokenizers::pre_tokenizers::byte_level::ByteLevel;
use rlvr_models::tokenizers::{AddedToken, Tokenizer};
use rlvr_models::{
    load_source, save_hf_dir, Architecture, Batch, Forward, Model, ModelConfig, ModelError,
    ModelSource, TextTokenizer,
};

const CHARS: &str = "abcdefghijklmnopqrstuvwxyz0123456789 .,!?+=-";

fn tiny_config(arch: Architecture, tied: bool) -> ModelConfig {
    ModelConfig {
        intermediate_size: 96,
        tie_word_embeddings: tied,
        ..ModelConfig::tiny(arch, 64, 64, 2)
    }
}

/// Byte-level tokens for CHARS plus specials, padded to 64 entries.
fn vocab_tokens() -> Vec<String> {
    let mut v: Vec<String> = vec!["<unk>".into(), "<|im_start|>".into(), "<|im_end|>".into()];
    for c in CHARS.chars() {
        v.push(if c == ' ' {
            "Ġ".to_string()
        } else {
            c.to_string()
        });
    }
    while v.len() < 64 {
        v.push(format!("<extra_{}>", v.len()));
    }
    v
}

fn tiny_tokenizer() -> TextTokenizer {
    let vocab: rlvr_models::tokenizers::models::bpe::Vocab = vocab_tokens()
        .into_iter()
        .enumerate()
        .map(|(i, t)| (t, i as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, vec![])
        .unk_token("<unk>".into())
        .build()
        .unwrap();
    let mut t = Tokenizer::new(bpe);
    t.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    t.with_decoder(Some(
        rlvr_models::tokenizers::decoders::byte_level::ByteLevel::default(),
    ));
    t.add_special_tokens(&[
        AddedToken::from("<|im_start|>", true),
        AddedToken::from("<|im_end|>", true),
    ]);
    TextTokenizer {
        inner: t,
        chat_template: Some(
            "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}".into(),
        ),
        bos_token: Some("<|im_start|>".into()),
        eos_token: Some("<|im_end|>".into()),
        pad_token: None,
        add_bos: false,
        origin: "tiny".into(),
    }
}

fn rows() -> Vec<Vec<u32>> {
    vec![
        vec![1, 5, 9, 13, 17, 21, 25, 29, 33, 37, 41],
        vec![1, 6, 7, 8],
    ]
}

fn logits(m: &Model) -> Tensor {
    m.forward(Batch::padded(&rows(), 0), Forward::TRAIN)
        .unwrap()
}

fn save(m: &Model, dir: &Path) {
    save_hf_dir(m, &tiny_tokenizer(), None, &[2], dir, DType::F32).unwrap();
}

#[test]
fn round_trip_every_architecture() {
    for (arch, tied) in [
        (Architecture::Llama, true),
        (Architecture::Llama, false),
        (Architecture::Qwen2, true),
        (Architecture::Qwen3, false),
    ] {
        let cfg = tiny_config(arch, tied);
        let m = Model::random(cfg.clone(), 7, DType::F32, &Device::Cpu).unwrap();
        assert_eq!(m.num_parameters(), cfg.num_parameters(), "{arch:?}");
        let names: Vec<&str> = m.named_vars().map(|(n, _)| n).collect();
        assert_eq!(
            names.contains(&"lm_head.weight"),
            !tied,
            "{arch:?} tied={tied}"
        );
        assert_eq!(
            names.contains(&"model.layers.0.self_attn.q_proj.bias"),
            arch == Architecture::Qwen2
        );
        assert_eq!(
            names.contains(&"model.layers.1.self_attn.k_norm.weight"),
            arch == Architecture::Qwen3
        );
        let l = logits(&m);
        assert_eq!(l.dims(), &[2, 11, 64]);
        let dir = tempfile::tempdir().unwrap();
        save(&m, dir.path());
        for f in [
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json",
            "generation_config.json",
        ] {
            assert!(dir.path().join(f).is_file(), "{f} missing");
        }
        let back = load_source(
            &ModelSource::Dir(dir.path().into()),
            DType::F32,
            &Device::Cpu,
        )
        .unwrap();
        assert_eq!(back.model.config, cfg, "{arch:?}: config round trip");
        assert_eq!(
            max_abs_diff(&l, &logits(&back.model)),
            0.0,
            "{arch:?}: logits after round trip"
        );
        // The tokenizer and chat template survive too.
        let ids = back
            .tokenizer
            .encode_chat(&[rlvr_models::ChatMessage::user("hi 42")], true)
            .unwrap();
        assert_eq!(
            ids,
            tiny_tokenizer()
                .encode_chat(&[rlvr_models::ChatMessage::user("hi 42")], true)
                .unwrap()
        );
    }
}

#[test]
fn tied_embeddings_share_one_var() {
    let m = Model::random(
        tiny_config(Architecture::Llama, true),
        3,
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    // Changing the embedding changes the LM head's logits: they are the same tensor.
    let before = logits(&m);
    let (_, emb) = m
        .named_vars()
        .find(|(n, _)| *n == "model.embed_tokens.weight")
        .unwrap();
    emb.set(&(emb.as_tensor() * 2.0).unwrap()).unwrap();
    assert!(max_abs_diff(&before, &logits(&m)) > 1e-3);
}

#[test]
fn bf16_export_loads_back_close() {
    let m = Model::random(
        tiny_config(Architecture::Qwen2, false),
        5,
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    save_hf_dir(&m, &tiny_tokenizer(), None, &[2], dir.path(), DType::BF16).unwrap();
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["torch_dtype"], "bfloat16");
    let back = load_source(
        &ModelSource::Dir(dir.path().into()),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let d = max_abs_diff(&logits(&m), &logits(&back.model));
    assert!(d < 2e-2, "bf16 round trip diff {d}");
}

#[test]
fn f16_safetensors_load() {
    let m = Model::random(
        tiny_config(Architecture::Llama, true),
        23,
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    save(&m, dir.path());
    rlvr_models::weights::save_safetensors(
        &m.state_dict(),
        DType::F16,
        &dir.path().join("model.safetensors"),
    )
    .unwrap();
    let back = load_source(
        &ModelSource::Dir(dir.path().into()),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    for (name, t) in m.state_dict() {
        let d = max_abs_diff(&t, &back.model.state_dict()[&name]);
        assert!(d < 1e-3, "{name}: f16 round trip differs by {d}");
    }
}

#[test]
fn sharded_loading() {
    let m = Model::random(
        tiny_config(Architecture::Llama, false),
        11,
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    save(&m, dir.path());
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let sd = m.state_dict();
    let mut shards: [BTreeMap<String, Tensor>; 2] = Default::default();
    let mut map = serde_json::Map::new();
    for (i, (name, t)) in sd.into_iter().enumerate() {
        let s = i % 2;
        map.insert(
            name.clone(),
            format!("model-0000{}-of-00002.safetensors", s + 1).into(),
        );
        shards[s].insert(name, t);
    }
    for (s, shard) in shards.iter().enumerate() {
        rlvr_models::weights::save_safetensors(
            shard,
            DType::F32,
            &dir.path()
                .join(format!("model-0000{}-of-00002.safetensors", s + 1)),
        )
        .unwrap();
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": map });
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    let back = load_source(
        &ModelSource::Dir(dir.path().into()),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(max_abs_diff(&logits(&m), &logits(&back.model)), 0.0);
}

/// Permute q/k rows the way llama.cpp's converter does (HF → GGUF).
fn permute_qk(w: &Tensor, n_heads: usize) -> Tensor {
    let dims = w.dims().to_vec();
    let half = dims[0] / n_heads / 2;
    let mut shape = vec![n_heads, 2, half];
    shape.extend(&dims[1..]);
    w.reshape(shape)
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .contiguous()
        .unwrap()
        .reshape(dims)
        .unwrap()
}

fn gguf_name(hf: &str) -> String {
    let fixed = [
        ("model.embed_tokens.weight", "token_embd.weight"),
        ("model.norm.weight", "output_norm.weight"),
        ("lm_head.weight", "output.weight"),
    ];
    if let Some((_, g)) = fixed.iter().find(|(h, _)| *h == hf) {
        return g.to_string();
    }
    let rest = hf.strip_prefix("model.layers.").unwrap();
    let (layer, rest) = rest.split_once('.').unwrap();
    let (part, kind) = rest.rsplit_once('.').unwrap();
    let g = match part {
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "self_attn.q_norm" => "attn_q_norm",
        "self_attn.k_norm" => "attn_k_norm",
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "ffn_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        other => panic!("{other}"),
    };
    format!("blk.{layer}.{g}.{kind}")
}

/// Write a GGUF for `m`: matrices in `quant`, vectors in F32, q/k permuted for llama.
fn write_gguf(m: &Model, quant: GgmlDType, path: &Path) -> HashMap<String, Tensor> {
    let cfg = &m.config;
    let arch = cfg.arch.model_type();
    let u32v = |x: usize| gguf_file::Value::U32(x as u32);
    let tokens = vocab_tokens();
    let mut meta: Vec<(String, gguf_file::Value)> = vec![
        (
            "general.architecture".into(),
            gguf_file::Value::String(arch.into()),
        ),
        (format!("{arch}.block_count"), u32v(cfg.num_layers)),
        (
            format!("{arch}.context_length"),
            u32v(cfg.max_position_embeddings),
        ),
        (format!("{arch}.embedding_length"), u32v(cfg.hidden_size)),
        (
            format!("{arch}.feed_forward_length"),
            u32v(cfg.intermediate_size),
        ),
        (format!("{arch}.attention.head_count"), u32v(cfg.num_heads)),
        (
            format!("{arch}.attention.head_count_kv"),
            u32v(cfg.num_kv_heads),
        ),
        (format!("{arch}.attention.key_length"), u32v(cfg.head_dim)),
        (
            format!("{arch}.rope.freq_base"),
            gguf_file::Value::F32(cfg.rope_theta as f32),
        ),
        (
            format!("{arch}.attention.layer_norm_rms_epsilon"),
            gguf_file::Value::F32(cfg.rms_norm_eps as f32),
        ),
        (
            "tokenizer.ggml.model".into(),
            gguf_file::Value::String("gpt2".into()),
        ),
        (
            "tokenizer.ggml.pre".into(),
            gguf_file::Value::String("smollm".into()),
        ),
        (
            "tokenizer.ggml.tokens".into(),
            gguf_file::Value::Array(
                tokens
                    .iter()
                    .map(|t| gguf_file::Value::String(t.clone()))
                    .collect(),
            ),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            gguf_file::Value::Array(
                (0..tokens.len())
                    .map(|i| gguf_file::Value::I32(if (1..=2).contains(&i) { 3 } else { 1 }))
                    .collect(),
            ),
        ),
        (
            "tokenizer.ggml.merges".into(),
            gguf_file::Value::Array(vec![]),
        ),
        ("tokenizer.ggml.bos_token_id".into(), u32v(1)),
        ("tokenizer.ggml.eos_token_id".into(), u32v(2)),
        (
            "tokenizer.chat_template".into(),
            gguf_file::Value::String(
                "{% for m in messages %}{{ m['content'] }}{% endfor %}".into(),
            ),
        ),
    ];
    meta.push(("general.alignment".into(), u32v(32)));
    let mut qtensors = vec![];
    let mut expected = HashMap::new();
    for (name, var) in m.named_vars() {
        let mut t = var.as_detached_tensor();
        let is_q = name.ends_with("q_proj.weight");
        let is_k = name.ends_with("k_proj.weight");
        let dtype = if t.rank() == 1 { GgmlDType::F32 } else { quant };
        let q = QTensor::quantize(&t, dtype).unwrap();
        // What the loader must give back: the dequantised values in HF layout.
        expected.insert(name.to_string(), q.dequantize(&Device::Cpu).unwrap());
        if cfg.arch == Architecture::Llama && (is_q || is_k) {
            t = permute_qk(
                &t,
                if is_q {
                    cfg.num_heads
                } else {
                    cfg.num_kv_heads
                },
            );
        }
        qtensors.push((gguf_name(name), QTensor::quantize(&t, dtype).unwrap()));
    }
    let mut f = std::fs::File::create(path).unwrap();
    let meta_refs: Vec<(&str, &gguf_file::Value)> =
        meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = qtensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut f, &meta_refs, &t_refs).unwrap();
    expected
}

#[test]
fn gguf_quant_types_and_qk_unpermute() {
    for arch in [Architecture::Llama, Architecture::Qwen3] {
        let m = Model::random(tiny_config(arch, true), 13, DType::F32, &Device::Cpu).unwrap();
        for quant in [
            GgmlDType::F32,
            GgmlDType::F16,
            GgmlDType::Q8_0,
            GgmlDType::Q4_0,
            GgmlDType::Q4_1,
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("tiny.gguf");
            let expected = write_gguf(&m, quant, &path);
            let loaded =
                load_source(&ModelSource::Gguf(path.clone()), DType::F32, &Device::Cpu).unwrap();
            assert_eq!(loaded.model.config.arch, arch);
            assert!(loaded.model.config.tie_word_embeddings);
            for (name, t) in loaded.model.state_dict() {
                let d = max_abs_diff(&t, &expected[&name]);
                // Row permutation is exact; anything else would be far off.
                assert!(d < 1e-6, "{arch:?} {quant:?} {name}: {d}");
            }
            // Quantisation error stays small relative to the weights (std 0.02).
            let tol = match quant {
                GgmlDType::F32 => 0.0,
                GgmlDType::F16 => 1e-4,
                GgmlDType::Q8_0 => 1e-3,
                _ => 1e-2,
            };
            for (name, t) in m.state_dict() {
                let d = max_abs_diff(&t, &loaded.model.state_dict()[&name]);
                assert!(
                    d <= tol,
                    "{arch:?} {quant:?} {name}: dequantised differs by {d}"
                );
            }
            let text = loaded
                .tokenizer
                .apply_chat_template(&[rlvr_models::ChatMessage::user("abc")], true)
                .unwrap();
            assert_eq!(text, "abc");
            assert_eq!(
                loaded.tokenizer.encode("ab 1", false).unwrap(),
                vec![3, 4, 39, 30]
            );
        }
    }
}

#[test]
fn unpermute_inverts_permute() {
    let w = Tensor::arange(0f32, 8.0 * 3.0, &Device::Cpu)
        .unwrap()
        .reshape((8, 3))
        .unwrap();
    let back = unpermute_qk(&permute_qk(&w, 2), 2).unwrap();
    assert_eq!(max_abs_diff(&w, &back), 0.0);
}

fn saved_tiny() -> (tempfile::TempDir, Model) {
    let m = Model::random(
        tiny_config(Architecture::Llama, true),
        17,
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    save(&m, dir.path());
    (dir, m)
}

fn load_err(dir: &Path) -> ModelError {
    match load_source(&ModelSource::Dir(dir.into()), DType::F32, &Device::Cpu) {
        Ok(_) => panic!("expected an error loading {}", dir.display()),
        Err(e) => e,
    }
}

#[test]
fn error_missing_file() {
    let (dir, _) = saved_tiny();
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let e = load_err(dir.path());
    assert!(matches!(e, ModelError::MissingFile { .. }), "{e:?}");
    assert!(e.to_string().contains("model.safetensors"), "{e}");
    let (dir, _) = saved_tiny();
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    assert!(load_err(dir.path()).to_string().contains("tokenizer.json"));
    let missing = dir.path().join("nope.gguf");
    let e = load_source(&ModelSource::Gguf(missing), DType::F32, &Device::Cpu)
        .err()
        .unwrap();
    assert!(e.to_string().contains("nope.gguf"), "{e}");
}

#[test]
fn error_truncated_safetensors() {
    let (dir, _) = saved_tiny();
    let p = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_err(dir.path());
    assert!(matches!(e, ModelError::Safetensors { .. }), "{e:?}");
    assert!(e.to_string().contains("model.safetensors"), "{e}");
    // A file cut inside its header, too.
    std::fs::write(&p, &bytes[..5]).unwrap();
    assert!(load_err(dir.path())
        .to_string()
        .contains("model.safetensors"));
}

#[test]
fn error_missing_tensor_and_wrong_shape() {
    let (dir, m) = saved_tiny();
    let mut sd = m.state_dict();
    sd.remove("model.layers.1.mlp.up_proj.weight");
    rlvr_models::weights::save_safetensors(&sd, DType::F32, &dir.path().join("model.safetensors"))
        .unwrap();
    let e = load_err(dir.path());
    assert!(matches!(e, ModelError::MissingTensor { .. }), "{e:?}");
    assert!(
        e.to_string().contains("model.layers.1.mlp.up_proj.weight"),
        "{e}"
    );

    let mut sd = m.state_dict();
    sd.insert(
        "model.norm.weight".into(),
        Tensor::zeros(63, DType::F32, &Device::Cpu).unwrap(),
    );
    rlvr_models::weights::save_safetensors(&sd, DType::F32, &dir.path().join("model.safetensors"))
        .unwrap();
    let e = load_err(dir.path());
    assert!(matches!(e, ModelError::WrongShape { .. }), "{e:?}");
    assert!(
        e.to_string().contains("model.norm.weight") && e.to_string().contains("[63]"),
        "{e}"
    );
}

#[test]
fn error_config() {
    let (dir, _) = saved_tiny();
    let p = dir.path().join("config.json");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, text.replace("\"llama\"", "\"mamba\"")).unwrap();
    let e = load_err(dir.path());
    assert!(matches!(e, ModelError::UnknownArchitecture { .. }), "{e:?}");
    assert!(
        e.to_string().contains("mamba") && e.to_string().contains("config.json"),
        "{e}"
    );

    std::fs::write(&p, "{ \"model_type\": \"llama\", ").unwrap();
    let e = load_err(dir.path());
    assert!(matches!(e, ModelError::Config { .. }), "{e:?}");
    assert!(e.to_string().contains("config.json"), "{e}");

    std::fs::write(&p, text.replace("\"hidden_size\"", "\"hidden_sz\"")).unwrap();
    let e = load_err(dir.path());
    assert!(e.to_string().contains("hidden_size"), "{e}");
}

#[test]
fn error_gguf_unsupported_quant_and_truncation() {
    let m = Model::random(
        tiny_config(Architecture::Llama, true),
        19,
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    write_gguf(&m, GgmlDType::Q8_0, &path);
    let bytes = std::fs::read(&path).unwrap();

    // Rewrite the type field of one tensor to IQ2_XXS (16): name, n_dims, dims, then the type.
    let name = b"blk.1.ffn_up.weight";
    let at = bytes.windows(name.len()).position(|w| w == name).unwrap() + name.len();
    let mut patched = bytes.clone();
    let n_dims = u32::from_le_bytes(patched[at..at + 4].try_into().unwrap()) as usize;
    let ty_at = at + 4 + 8 * n_dims;
    patched[ty_at..ty_at + 4].copy_from_slice(&16u32.to_le_bytes());
    let bad = dir.path().join("iq2.gguf");
    std::fs::write(&bad, &patched).unwrap();
    let e = GgufFile::open(&bad).err().unwrap();
    assert!(matches!(e, ModelError::UnsupportedQuant { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("blk.1.ffn_up.weight") && msg.contains("IQ2_XXS") && msg.contains("iq2.gguf"),
        "{msg}"
    );

    // Truncated data: the tensor lying past the end is named.
    let cut = dir.path().join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let e = load_source(&ModelSource::Gguf(cut), DType::F32, &Device::Cpu)
        .err()
        .unwrap();
    assert!(
        e.to_string().contains("cut.gguf") && e.to_string().contains("truncated"),
        "{e}"
    );

    // Not a GGUF at all.
    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"definitely not gguf").unwrap();
    let e = GgufFile::open(&junk).err().unwrap();
    assert!(e.to_string().contains("junk.gguf"), "{e}");
}
