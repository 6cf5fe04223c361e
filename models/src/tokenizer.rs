//! Tokenizer and chat template: from `tokenizer.json` + `tokenizer_config.json` (+
//! `chat_template.jinja`), or built from GGUF metadata (gpt2-style byte-level BPE).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokenizers::Tokenizer;

use crate::error::{ModelError, Result};
use crate::gguf::{GgufFile, GgufValue};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: "user".into(),
            content: content.into(),
        }
    }

    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: "system".into(),
            content: content.into(),
        }
    }
}

/// A tokenizer with the special tokens and chat template that go with it.
#[derive(Clone)]
pub struct TextTokenizer {
    pub inner: Tokenizer,
    pub chat_template: Option<String>,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub pad_token: Option<String>,
    /// Prepend BOS to raw (non-chat) text (GGUF `tokenizer.ggml.add_bos_token`, or a
    /// post-processor in `tokenizer.json`).
    pub add_bos: bool,
    /// Where it was loaded from, for messages.
    pub origin: PathBuf,
}

fn token_content(v: Option<&Value>) -> Option<String> {
    match v {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Object(o)) => o.get("content").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

fn read_text(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ModelError::Io {
            path: path.into(),
            source,
        }),
    }
}

impl TextTokenizer {
    /// Load `tokenizer.json` (required), `tokenizer_config.json` and `chat_template.jinja`
    /// (optional) from an HF model directory.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let tok_path = dir.join("tokenizer.json");
        if !tok_path.exists() {
            return Err(ModelError::MissingFile { path: tok_path });
        }
        let inner = Tokenizer::from_file(&tok_path).map_err(|e| ModelError::Tokenizer {
            path: tok_path.clone(),
            msg: e.to_string(),
        })?;
        let cfg_path = dir.join("tokenizer_config.json");
        let cfg: Value = match read_text(&cfg_path)? {
            Some(t) => serde_json::from_str(&t).map_err(|e| ModelError::Tokenizer {
                path: cfg_path.clone(),
                msg: format!("not JSON: {e}"),
            })?,
            None => Value::Null,
        };
        let mut chat_template = match cfg.get("chat_template") {
            Some(Value::String(s)) => Some(s.clone()),
            // A list of named templates: take "default".
            Some(Value::Array(a)) => a
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .or_else(|| a.first())
                .and_then(|t| t.get("template"))
                .and_then(Value::as_str)
                .map(str::to_string),
            _ => None,
        };
        if let Some(t) = read_text(&dir.join("chat_template.jinja"))? {
            chat_template = Some(t);
        }
        // A BOS-adding post-processor shows up as a BOS id on an empty encoding.
        let add_bos = inner
            .encode("", true)
            .map(|e| !e.get_ids().is_empty())
            .unwrap_or(false);
        Ok(Self {
            inner,
            chat_template,
            bos_token: token_content(cfg.get("bos_token")),
            eos_token: token_content(cfg.get("eos_token")),
            pad_token: token_content(cfg.get("pad_token")),
            add_bos,
            origin: tok_path,
        })
    }

    /// Build the tokenizer described by GGUF `tokenizer.ggml.*` metadata (gpt2 BPE).
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let (inner, tokens) = crate::gguf_tokenizer::build(file)?;
        let id_token = |key: &str| {
            file.get(key)
                .and_then(GgufValue::as_u64)
                .and_then(|i| tokens.get(i as usize).cloned())
        };
        Ok(Self {
            inner,
            chat_template: file
                .get("tokenizer.chat_template")
                .and_then(GgufValue::as_str)
                .map(str::to_string),
            bos_token: id_token("tokenizer.ggml.bos_token_id"),
            eos_token: id_token("tokenizer.ggml.eos_token_id"),
            pad_token: id_token("tokenizer.ggml.padding_token_id"),
            add_bos: file
                .get("tokenizer.ggml.add_bos_token")
                .and_then(GgufValue::as_bool)
                .unwrap_or(false),
            origin: file.path.clone(),
        })
    }

    fn err(&self, msg: String) -> ModelError {
        ModelError::Tokenizer {
            path: self.origin.clone(),
            msg,
        }
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos_token.as_deref().and_then(|t| self.token_id(t))
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos_token.as_deref().and_then(|t| self.token_id(t))
    }

    pub fn pad_id(&self) -> Option<u32> {
        self.pad_token
            .as_deref()
            .and_then(|t| self.token_id(t))
            .or(self.eos_id())
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Encode text with special-token matching. `add_special` adds BOS where the tokenizer
    /// does for raw text (as transformers' `add_special_tokens=True`).
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, add_special)
            .map_err(|e| self.err(format!("encode: {e}")))?;
        let mut ids = enc.get_ids().to_vec();
        // GGUF-built tokenizers have no post-processor; add BOS by hand where asked for.
        if add_special && self.add_bos {
            if let Some(bos) = self.bos_id() {
                if ids.first() != Some(&bos) {
                    ids.insert(0, bos);
                }
            }
        }
        Ok(ids)
    }

    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| self.err(format!("decode: {e}")))
    }

    /// Render messages with the chat template as transformers' `apply_chat_template` does
    /// (jinja2 with `trim_blocks` and `lstrip_blocks`).
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String> {
        self.apply_chat_template_with_tools(messages, None, add_generation_prompt)
    }

    /// [`TextTokenizer::apply_chat_template`] with transformers' `tools=[…]` (JSON schemas)
    /// passed to the template as `tools`; a template that does not use them ignores them.
    /// Messages are [`ChatMessage`]s or any serializable messages (e.g. JSON objects with
    /// `tool_calls`).
    pub fn apply_chat_template_with_tools<M: Serialize>(
        &self,
        messages: &[M],
        tools: Option<&Value>,
        add_generation_prompt: bool,
    ) -> Result<String> {
        let template = self.chat_template.as_deref().ok_or_else(|| {
            ModelError::ChatTemplate(format!(
                "{} has no chat template: pass --no-chat to use raw prompts, or add chat_template.jinja",
                self.origin.display()
            ))
        })?;
        render_chat_template_with_tools(
            template,
            messages,
            tools,
            add_generation_prompt,
            self.bos_token.as_deref().unwrap_or(""),
            self.eos_token.as_deref().unwrap_or(""),
        )
    }

    /// Whether the chat template renders a `tools` list itself (Qwen2.5, Llama 3.1, Hermes):
    /// it mentions the `tools` variable. SmolLM2's renders only role and content.
    pub fn template_knows_tools(&self) -> bool {
        self.chat_template
            .as_deref()
            .is_some_and(|t| t.contains("tools"))
    }

    /// A user prompt as token ids: chat-rendered (with the generation prompt) when `chat`, else
    /// raw text with the tokenizer's special tokens (BOS where it adds one).
    pub fn encode_prompt(&self, text: &str, chat: bool) -> Result<Vec<u32>> {
        if chat {
            self.encode_chat(&[ChatMessage::user(text)], true)
        } else {
            self.encode(text, true)
        }
    }

    /// Chat-render and tokenize (no extra special tokens: the template already has them).
    pub fn encode_chat(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<Vec<u32>> {
        let text = self.apply_chat_template(messages, add_generation_prompt)?;
        self.encode(&text, false)
    }

    /// Write `tokenizer.json` and `tokenizer_config.json` (+ `chat_template.jinja`) to `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let tok_path = dir.join("tokenizer.json");
        self.inner
            .save(&tok_path, false)
            .map_err(|e| self.err(format!("saving {}: {e}", tok_path.display())))?;
        let mut cfg = serde_json::Map::new();
        cfg.insert("tokenizer_class".into(), "PreTrainedTokenizerFast".into());
        cfg.insert("clean_up_tokenization_spaces".into(), false.into());
        cfg.insert("model_max_length".into(), 8192.into());
        cfg.insert("add_bos_token".into(), self.add_bos.into());
        for (k, v) in [
            ("bos_token", &self.bos_token),
            ("eos_token", &self.eos_token),
            ("pad_token", &self.pad_token),
        ] {
            if let Some(v) = v {
                cfg.insert(k.into(), v.clone().into());
            }
        }
        if let Some(t) = &self.chat_template {
            cfg.insert("chat_template".into(), t.clone().into());
            write_file(&dir.join("chat_template.jinja"), t.as_bytes())?;
        }
        let text = serde_json::to_string_pretty(&Value::Object(cfg))
            .map_err(|e| self.err(e.to_string()))?;
        write_file(&dir.join("tokenizer_config.json"), text.as_bytes())
    }
}

pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|source| ModelError::Io {
        path: path.into(),
        source,
    })
}

/// Render a chat template with jinja2 semantics as transformers configures them.
pub fn render_chat_template(
    template: &str,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    bos_token: &str,
    eos_token: &str,
) -> Result<String> {
    render_chat_template_with_tools(
        template,
        messages,
        None,
        add_generation_prompt,
        bos_token,
        eos_token,
    )
}

/// [`render_chat_template`] with `tools` (a list of JSON schemas, or none: `None` in jinja).
pub fn render_chat_template_with_tools<M: Serialize>(
    template: &str,
    messages: &[M],
    tools: Option<&Value>,
    add_generation_prompt: bool,
    bos_token: &str,
    eos_token: &str,
) -> Result<String> {
    let mut env = minijinja::Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |msg: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                msg,
            ))
        },
    );
    env.add_filter("tojson", crate::template_json::tojson);
    env.add_function("strftime_now", |fmt: String| -> String {
        // Templates use it for "today's date" lines; a fixed clock keeps rendering reproducible
        // only if the caller wants that, so use the real date.
        format_today(&fmt)
    });
    env.add_template("chat", template)
        .map_err(|e| ModelError::ChatTemplate(format!("parse: {e}")))?;
    let tmpl = env
        .get_template("chat")
        .map_err(|e| ModelError::ChatTemplate(e.to_string()))?;
    tmpl.render(minijinja::context! {
        messages => messages,
        tools => tools.map(minijinja::Value::from_serialize),
        add_generation_prompt => add_generation_prompt,
        bos_token => bos_token,
        eos_token => eos_token,
    })
    .map_err(|e| ModelError::ChatTemplate(format!("render: {e}")))
}

fn format_today(fmt: &str) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    fmt.replace("%Y", &format!("{y:04}"))
        .replace("%m", &format!("{m:02}"))
        .replace("%d", &format!("{d:02}"))
        .replace("%B", MONTHS[(m as usize).saturating_sub(1).min(11)])
        .replace("%b", &MONTHS[(m as usize).saturating_sub(1).min(11)][..3])
}

// Howard Hinnant's days → civil date.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}
