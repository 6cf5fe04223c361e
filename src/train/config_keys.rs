//! What users type as config, and errors that point at it: each layer of keys (a TOML file, a
//! flag, a `--set`) with where it came from; unknown keys refused with the closest known key
//! suggested (over the full dotted key set, only when close); numbers that are not finite
//! refused by key; and a value of the wrong type reported with its key, its source and the
//! expected form.
//!
//! Owns the user's keys and their messages. It must not know what a key means: the defaults
//! (as JSON) say which keys exist, and deserialising `RunConfig` says which values fit.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use super::RunConfig;

/// Config keys from one place.
#[derive(Debug, Clone)]
pub struct Override {
    /// Where they came from: `config run.toml`, `--lr`, `--set lr=abc`.
    pub source: String,
    /// Nested keys (`{"trainer": {"lr": 1}}`).
    pub value: Value,
}

/// Names other RL libraries use for rlvr's keys.
const ALIASES: [(&str, &str); 5] = [
    ("learning_rate", "lr"),
    ("num_generations", "group_size"),
    ("max_completion_length", "max_new_tokens"),
    ("num_train_epochs", "epochs"),
    ("steps", "max_steps"),
];

impl Override {
    /// A flag's value for top-level `key`, e.g. `--max-new-tokens`.
    pub fn flag(key: &str, value: toml::Value) -> Result<Self> {
        let source = format!("--{}", key.replace(['_', '.'], "-"));
        let value = toml_to_json(value, key, &source)?;
        Ok(Self {
            value: nest(key, value),
            source,
        })
    }

    /// `--set key.path=value`: the value as a TOML literal, else as a string.
    pub fn set(kv: &str) -> Result<Self> {
        let (key, raw) = kv
            .split_once('=')
            .with_context(|| format!("--set {kv:?}: expected key=value"))?;
        let key = key.trim();
        let parsed = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
            Ok(mut t) => t
                .remove("v")
                .unwrap_or_else(|| toml::Value::String(raw.into())),
            Err(_) => toml::Value::String(raw.into()),
        };
        let source = format!("--set {kv}");
        let value = toml_to_json(parsed, key, &source)?;
        Ok(Self {
            value: nest(key, value),
            source,
        })
    }

    /// The keys of a TOML file.
    pub fn file(table: toml::Table, source: String) -> Result<Self> {
        let value = toml_to_json(toml::Value::Table(table), "", &source)?;
        Ok(Self { source, value })
    }
}

/// `a.b.c` = value as `{"a": {"b": {"c": value}}}`.
fn nest(key: &str, value: Value) -> Value {
    key.split('.').rev().fold(value, |inner, part| {
        let mut object = serde_json::Map::new();
        object.insert(part.to_string(), inner);
        Value::Object(object)
    })
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// A TOML value as JSON, refusing NaN and infinities (JSON has none: they would become null).
fn toml_to_json(value: toml::Value, path: &str, source: &str) -> Result<Value> {
    Ok(match value {
        toml::Value::Float(x) if !x.is_finite() => bail!(
            "{} is not allowed for `{path}` ({source}): expected a finite number",
            x.to_string().to_lowercase()
        ),
        toml::Value::Table(table) => Value::Object(
            table
                .into_iter()
                .map(|(k, v)| Ok((k.clone(), toml_to_json(v, &join(path, &k), source)?)))
                .collect::<Result<_>>()?,
        ),
        toml::Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|v| toml_to_json(v, path, source))
                .collect::<Result<_>>()?,
        ),
        other => serde_json::to_value(other)?,
    })
}

/// Every key of `known`, dotted, sections included.
fn all_keys(known: &Value, path: &str, out: &mut Vec<String>) {
    if let Some(map) = known.as_object() {
        for (key, value) in map {
            let full = join(path, key);
            all_keys(value, &full, out);
            out.push(full);
        }
    }
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(ca != *cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Names within a third of the longer one's length of each other (one edit for short names).
fn close(a: &str, b: &str) -> Option<usize> {
    let d = levenshtein(a, b);
    let allowed = (a.chars().count().max(b.chars().count()) / 3).max(1);
    (d <= allowed).then_some(d)
}

/// The known key the unknown dotted key `full` most likely meant: an alias of its last part,
/// else the known keys whose last part is closest to it (ties: same section, then the closest
/// full key); None when nothing is close.
pub fn suggestion(full: &str, known: &Value) -> Option<String> {
    let (section, leaf) = full.rsplit_once('.').unwrap_or(("", full));
    if let Some((_, target)) = ALIASES
        .iter()
        .find(|(alias, _)| close(leaf, alias).is_some())
    {
        return Some(target.to_string());
    }
    let mut keys = vec![];
    all_keys(known, "", &mut keys);
    keys.into_iter()
        .filter_map(|key| {
            let (key_section, key_leaf) = key.rsplit_once('.').unwrap_or(("", &key));
            let d = close(leaf, key_leaf)?;
            let other_section = usize::from(key_section != section);
            Some(((d, other_section, levenshtein(full, &key)), key))
        })
        .min()
        .map(|(_, key)| key)
}

/// Refuse keys of `user` that `known` (the defaults) does not have.
pub fn check_keys(user: &Value, known: &Value, source: &str) -> Result<()> {
    check_level(user, known, "", known, source)
}

fn check_level(user: &Value, known: &Value, path: &str, root: &Value, source: &str) -> Result<()> {
    let (Some(user_keys), Some(known_keys)) = (user.as_object(), known.as_object()) else {
        return Ok(());
    };
    for (key, value) in user_keys {
        let full = join(path, key);
        match known_keys.get(key) {
            Some(known_value) => check_level(value, known_value, &full, root, source)?,
            None => match suggestion(&full, root) {
                Some(s) => bail!("unknown config key `{full}` ({source}); did you mean `{s}`?"),
                None => bail!("unknown config key `{full}` ({source})"),
            },
        }
    }
    Ok(())
}

/// The keys `layer` sets, dotted, with their values: what it replaces in the defaults.
fn leaves(value: &Value, known: &Value, path: &str, out: &mut Vec<(String, Value)>) {
    match (value.as_object(), known.as_object()) {
        (Some(map), Some(known_map)) => {
            for (key, v) in map {
                let known = known_map.get(key).unwrap_or(&Value::Null);
                leaves(v, known, &join(path, key), out);
            }
        }
        _ => out.push((path.to_string(), value.clone())),
    }
}

/// When the merged config does not deserialise (`err`), the first key of `layers` whose value
/// does not fit on its own, named with its source and the expected form.
pub fn type_error(known: &Value, layers: &[Override], err: serde_json::Error) -> anyhow::Error {
    for layer in layers {
        let mut set = vec![];
        leaves(&layer.value, known, "", &mut set);
        for (key, value) in set {
            let mut alone = known.clone();
            super::config::merge(&mut alone, nest(&key, value));
            if let Err(e) = serde_json::from_value::<RunConfig>(alone) {
                return anyhow!(
                    "invalid value for `{key}` ({}): {}",
                    layer.source,
                    expected_forms(&e.to_string())
                );
            }
        }
    }
    anyhow!("invalid config value: {}", expected_forms(&err.to_string()))
}

/// serde's Rust type names as what to write.
fn expected_forms(msg: &str) -> String {
    [
        ("expected f64", "expected a number"),
        ("expected f32", "expected a number"),
        ("expected u64", "expected a whole number ≥ 0"),
        ("expected usize", "expected a whole number ≥ 0"),
        ("expected u32", "expected a whole number ≥ 0"),
        ("expected i64", "expected a whole number"),
        ("expected a boolean", "expected true or false"),
    ]
    .iter()
    .fold(msg.to_string(), |m, (from, to)| m.replace(from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Value {
        serde_json::to_value(RunConfig::default()).unwrap()
    }

    #[test]
    fn suggestions_are_close_or_absent() {
        let k = known();
        let s = |key: &str| suggestion(key, &k);
        assert_eq!(s("grup_size").as_deref(), Some("group_size"));
        assert_eq!(s("lerning_rate").as_deref(), Some("lr"));
        assert_eq!(s("learning_rate").as_deref(), Some("lr"));
        assert_eq!(s("trainer.lr").as_deref(), Some("lr"));
        assert_eq!(
            s("trainer.num_minibatchez").as_deref(),
            Some("trainer.num_minibatches")
        );
        assert_eq!(s("engine.kv_cache").as_deref(), Some("engine.kv_cache_mb"));
        assert_eq!(s("trainr").as_deref(), Some("trainer"));
        assert_eq!(s("zzzzqqq"), None);
        assert_eq!(s("pizza"), None);
    }

    #[test]
    fn non_finite_numbers_are_refused_by_key() {
        let e = Override::set("lr=nan").unwrap_err().to_string();
        assert!(e.contains("nan is not allowed for `lr`"), "{e}");
        assert!(e.contains("--set lr=nan"), "{e}");
        let e = Override::set("trainer.optimizer.max_grad_norm=inf")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`trainer.optimizer.max_grad_norm`"), "{e}");
        let table: toml::Table = toml::from_str("[trainer]\ntemperature = -inf\n").unwrap();
        let e = Override::file(table, "config run.toml".into())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`trainer.temperature`") && e.contains("config run.toml"),
            "{e}"
        );
        assert!(Override::flag("lr", toml::Value::Float(f64::NAN)).is_err());
    }

    #[test]
    fn set_parses_literals_and_falls_back_to_strings() {
        let o = Override::set("trainer.num_minibatches=2").unwrap();
        assert_eq!(
            o.value,
            serde_json::json!({"trainer": {"num_minibatches": 2}})
        );
        let o = Override::set("data=my file.jsonl").unwrap();
        assert_eq!(o.value, serde_json::json!({"data": "my file.jsonl"}));
        assert!(Override::set("lr").is_err());
    }
}
