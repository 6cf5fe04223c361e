//! The grid of a sweep: `--grid key=v1,v2` axes expanded into configurations (their cartesian
//! product, in the order the axes were given), each run once per seed.
//!
//! Owns the naming of configurations and cells. Must not know how a run is started or read.

use anyhow::{bail, Context, Result};

/// One `--grid` axis: a config key and the values it takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    pub key: String,
    pub values: Vec<String>,
}

impl Axis {
    /// Parse `key=v1,v2,...` (values as `--set` takes them).
    pub fn parse(spec: &str) -> Result<Axis> {
        let (key, values) = spec
            .split_once('=')
            .with_context(|| format!("--grid {spec:?}: expected key=value1,value2,..."))?;
        let key = key.trim();
        let values: Vec<String> = values
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        if key.is_empty() || values.is_empty() {
            bail!("--grid {spec:?}: expected key=value1,value2,...");
        }
        Ok(Axis {
            key: key.to_string(),
            values,
        })
    }
}

/// One configuration of the grid: the `key=value` settings it adds to the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    pub pairs: Vec<(String, String)>,
}

impl Setting {
    /// `key=value` strings for `rlvr train --set`.
    pub fn overrides(&self) -> Vec<String> {
        self.pairs.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    /// A readable label: `algo=grpo optimizer=adamw`.
    pub fn label(&self) -> String {
        self.overrides().join(" ")
    }

    /// A directory name made of the label's safe characters: `algo-grpo_optimizer-adamw`.
    pub fn dir_name(&self) -> String {
        let name: Vec<String> = self
            .pairs
            .iter()
            .map(|(k, v)| format!("{}-{}", safe(k), safe(v)))
            .collect();
        if name.is_empty() {
            "base".into()
        } else {
            name.join("_")
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The same setting with `key` set to `value` (replaced or appended).
    pub fn with(&self, key: &str, value: String) -> Setting {
        let mut pairs = self.pairs.clone();
        match pairs.iter_mut().find(|(k, _)| k == key) {
            Some(pair) => pair.1 = value,
            None => pairs.push((key.to_string(), value)),
        }
        Setting { pairs }
    }
}

fn safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The cartesian product of the axes (one empty setting without axes).
pub fn expand(axes: &[Axis]) -> Vec<Setting> {
    let mut settings = vec![Setting { pairs: Vec::new() }];
    for axis in axes {
        settings = settings
            .iter()
            .flat_map(|s| {
                axis.values.iter().map(move |v| {
                    let mut pairs = s.pairs.clone();
                    pairs.push((axis.key.clone(), v.clone()));
                    Setting { pairs }
                })
            })
            .collect();
    }
    settings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_expand_in_order_and_name_their_cells() {
        let axes = [
            Axis::parse("algo=grpo,stapo").unwrap(),
            Axis::parse("optimizer=adamw, magma").unwrap(),
        ];
        let labels: Vec<String> = expand(&axes).iter().map(Setting::label).collect();
        assert_eq!(
            labels,
            [
                "algo=grpo optimizer=adamw",
                "algo=grpo optimizer=magma",
                "algo=stapo optimizer=adamw",
                "algo=stapo optimizer=magma"
            ]
        );
        let s = &expand(&axes)[1];
        assert_eq!(s.dir_name(), "algo-grpo_optimizer-magma");
        assert_eq!(
            s.with("lr", "1e-4".into()).label(),
            "algo=grpo optimizer=magma lr=1e-4"
        );
        assert!(Axis::parse("algo").is_err() && Axis::parse("algo=").is_err());
    }
}
