//! The Hub token: where it comes from (HF_TOKEN, else the HF tools' token file) and how it is
//! kept out of output. It must not know which requests carry it.

use std::fmt;
use std::path::PathBuf;

use anyhow::{bail, Result};

/// The Hub token. Its `Debug` never shows the value.
pub struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// `HF_TOKEN` (or the legacy `HUGGING_FACE_HUB_TOKEN`), else the token file the HF tools
    /// write on login: `$HF_TOKEN_PATH`, else `$HF_HOME/token`, else
    /// `$XDG_CACHE_HOME/huggingface/token`, else `~/.cache/huggingface/token`.
    pub fn from_env() -> Result<Token> {
        for var in ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"] {
            if let Ok(value) = std::env::var(var) {
                let value = value.trim();
                if !value.is_empty() {
                    return Token::checked(value, var);
                }
            }
        }
        let Some(path) = token_path() else {
            bail!(
                "no Hugging Face token: set HF_TOKEN to a token with write access \
                 (no HF_HOME or HOME to find the cached token in)"
            );
        };
        match std::fs::read_to_string(&path) {
            Ok(text) if !text.trim().is_empty() => {
                Token::checked(text.trim(), &format!("token file {}", path.display()))
            }
            Ok(_) => bail!(
                "no Hugging Face token: HF_TOKEN is not set and the token file {} is empty",
                path.display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "no Hugging Face token: set HF_TOKEN to a token with write access, \
                 or log in so that {} exists",
                path.display()
            ),
            Err(e) => bail!(
                "no Hugging Face token: HF_TOKEN is not set and reading {} failed: {e}",
                path.display()
            ),
        }
    }

    fn checked(value: &str, from: &str) -> Result<Token> {
        // A header value must be visible ASCII; refuse anything else rather than send it
        // mangled (and without quoting the value).
        if !value.bytes().all(|b| b.is_ascii_graphic()) {
            bail!("the Hugging Face token from {from} contains whitespace or non-ASCII characters");
        }
        Ok(Token(value.to_string()))
    }

    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.0)
    }

    /// `s` with every occurrence of the token replaced.
    pub fn scrub(&self, s: &str) -> String {
        if self.0.is_empty() {
            s.to_string()
        } else {
            s.replace(&self.0, "<redacted>")
        }
    }
}

fn token_path() -> Option<PathBuf> {
    let var = |key: &str| {
        std::env::var_os(key)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(path) = var("HF_TOKEN_PATH") {
        return Some(path);
    }
    let home = var("HF_HOME")
        .or_else(|| var("XDG_CACHE_HOME").map(|c| c.join("huggingface")))
        .or_else(|| var("HOME").map(|h| h.join(".cache").join("huggingface")))?;
    Some(home.join("token"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_redacted() {
        let t = Token("hf_secret".into());
        assert_eq!(format!("{t:?}"), "Token(<redacted>)");
        assert_eq!(t.scrub("Bearer hf_secret!"), "Bearer <redacted>!");
    }
}
