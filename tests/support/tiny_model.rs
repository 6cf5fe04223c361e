//! A tiny Llama with a byte-level tokenizer, written as an HF directory: the model of the
//! end-to-end tests, and of scripts/reliability.sh (through examples/tiny_model.rs).

use std::path::Path;

use rlvr_models::candle_core::{DType, Device, Tensor};
use rlvr_models::tokenizers::models::bpe::BPE;
use rlvr_models::tokenizers::pre_tokenizers::byte_level::ByteLevel;
use rlvr_models::tokenizers::{AddedToken, Tokenizer};
use rlvr_models::{save_hf_dir, Architecture, Model, ModelConfig, TextTokenizer};

const TEMPLATE: &str = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// A tiny Llama with a byte-level tokenizer, saved as an HF directory. Its weights are random
/// except that every output is a digit (a constant residual dimension feeds only the digits'
/// LM-head rows), so single-token answers to digit questions are right one time in ten: rewards
/// vary within groups and gradients flow. Returns its parameter count.
pub fn tiny_model_dir(dir: &Path, chat_template: bool, num_layers: usize) -> usize {
    let mut tokens: Vec<String> = vec![
        "<|endoftext|>".into(),
        "<|im_start|>".into(),
        "<|im_end|>".into(),
    ];
    let mut alphabet: Vec<char> = ByteLevel::alphabet().into_iter().collect();
    alphabet.sort();
    tokens.extend(alphabet.iter().map(|c| c.to_string()));
    let vocab_size = 272;
    while tokens.len() < vocab_size {
        tokens.push(format!("<pad_{}>", tokens.len()));
    }
    let vocab: rlvr_models::tokenizers::models::bpe::Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, vec![])
        .build()
        .unwrap();
    let mut t = Tokenizer::new(bpe);
    t.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    t.with_decoder(Some(
        rlvr_models::tokenizers::decoders::byte_level::ByteLevel::default(),
    ));
    t.add_special_tokens(&[
        AddedToken::from("<|endoftext|>", true),
        AddedToken::from("<|im_start|>", true),
        AddedToken::from("<|im_end|>", true),
    ]);
    let tok = TextTokenizer {
        inner: t,
        chat_template: chat_template.then(|| TEMPLATE.to_string()),
        bos_token: Some("<|im_start|>".into()),
        eos_token: Some("<|im_end|>".into()),
        pad_token: Some("<|endoftext|>".into()),
        add_bos: false,
        origin: dir.into(),
    };
    let cfg = ModelConfig {
        tie_word_embeddings: false,
        ..ModelConfig::tiny(Architecture::Llama, vocab_size, 32, num_layers)
    };
    let m = Model::random(cfg, 5, DType::F32, &Device::Cpu).unwrap();
    let digits: Vec<usize> = (0..10)
        .map(|d| tokens.iter().position(|t| *t == d.to_string()).unwrap())
        .collect();
    for (name, var) in m.named_vars() {
        let mut w: Vec<f32> = var
            .as_detached_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let dims = var.dims().to_vec();
        let cols = *dims.last().unwrap();
        if name == "model.embed_tokens.weight" {
            (0..dims[0]).for_each(|r| w[r * cols] = 1.0);
        } else if name.ends_with("o_proj.weight") || name.ends_with("down_proj.weight") {
            w[..cols].iter_mut().for_each(|x| *x = 0.0);
        } else if name == "model.norm.weight" {
            w.iter_mut()
                .enumerate()
                .for_each(|(i, x)| *x = if i == 0 { 1.0 } else { 0.05 });
        } else if name == "lm_head.weight" {
            (0..dims[0]).for_each(|r| w[r * cols] = if digits.contains(&r) { 3.0 } else { 0.0 });
        }
        var.set(&Tensor::from_vec(w, dims, &Device::Cpu).unwrap())
            .unwrap();
    }
    save_hf_dir(&m, &tok, None, &[2], dir, DType::F32).unwrap();
    m.num_parameters()
}
