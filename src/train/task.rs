//! Where prompts come from: the built-in arithmetic task, bundled GSM8K, or a JSONL or Parquet
//! file; with deterministic, seeded batches (batch n is a function of the seed and n alone, so a
//! resumed run sees the same prompts), and how a problem becomes a prompt.
//!
//! It must not know about generation, grading or training: it hands out problems and gold
//! answers, and leaves out those whose prompts are too long for the limits it is given.

use std::io::BufRead;
use std::path::Path;

use anyhow::{bail, Context, Result};
use rlvr_verifier::{extract_gold, GoldFormat};
use serde_json::Value;

use super::config::{RunConfig, TaskConfig};
use crate::prompt_fit::{fit, preview, OnLongPrompt, Prompt, PromptLimit};
use crate::tools::render::{encode_prompt, ToolFormat};

#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub id: u64,
    pub question: String,
    /// The gold answer, already extracted from its dataset field.
    pub gold: String,
}

const GSM8K_TRAIN: &str = include_str!("../../data/gsm8k_train.jsonl");
const GSM8K_TEST: &str = include_str!("../../data/gsm8k_test.jsonl");

fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The synthetic arithmetic generator: problem `index` of stream `seed`.
pub fn arithmetic_problem(task: &TaskConfig, seed: u64, index: u64) -> Problem {
    let mut state = mix(seed, index);
    let mut next = |n: u64| {
        state = mix(state, 0x5151);
        state % n.max(1)
    };
    let hi = 10u64.pow(task.digits.clamp(1, 9));
    let lo = if task.digits <= 1 { 0 } else { hi / 10 };
    let ops: Vec<&str> = task.operations.iter().map(String::as_str).collect();
    let mut value = (lo + next(hi - lo)) as i64;
    let mut text = value.to_string();
    for _ in 1..task.terms.max(2) {
        let x = (lo + next(hi - lo)) as i64;
        let op = ops
            .get(next(ops.len() as u64) as usize)
            .copied()
            .unwrap_or("+");
        match op {
            "-" => value -= x,
            "*" => value *= x,
            _ => value += x,
        }
        text = format!("{text} {op} {x}");
    }
    Problem {
        id: index,
        question: format!("What is {text}? Put the final answer in \\boxed{{}}."),
        gold: value.to_string(),
    }
}

/// Field names and gold format of a JSONL preset.
struct Fields {
    question: String,
    answer: String,
    format: GoldFormat,
}

fn fields_for(cfg: &RunConfig, first: &Value) -> Fields {
    let has = |k: &str| first.get(k).is_some();
    let preset = match cfg.data_format.as_str() {
        "gsm8k" => "gsm8k",
        "math" => "math",
        _ if has("problem") => "math",
        _ => "gsm8k",
    };
    let (q, a, f) = match preset {
        "math" if has("answer") => ("problem", "answer", GoldFormat::Raw),
        "math" => ("problem", "solution", GoldFormat::Math),
        _ if has("answer_final") => ("question", "answer_final", GoldFormat::Raw),
        _ => ("question", "answer", GoldFormat::Gsm8k),
    };
    Fields {
        question: cfg.question_field.clone().unwrap_or_else(|| q.into()),
        answer: cfg.answer_field.clone().unwrap_or_else(|| a.into()),
        format: if cfg.answer_field.is_some() {
            GoldFormat::Auto
        } else {
            f
        },
    }
}

/// Problems from records (line/row number, JSON object); `origin` names the source in errors.
fn parse_records(
    records: impl Iterator<Item = Result<(usize, Value)>>,
    origin: &str,
    unit: &str,
    cfg: &RunConfig,
) -> Result<Vec<Problem>> {
    let mut out = vec![];
    let mut fields: Option<Fields> = None;
    for record in records {
        let (number, value) = record?;
        let fields = fields.get_or_insert_with(|| fields_for(cfg, &value));
        let place = format!("{origin}:{unit}{number}");
        let get = |key: &str| -> Result<String> {
            match value.get(key) {
                Some(Value::String(s)) => Ok(s.clone()),
                Some(Value::Number(n)) => Ok(n.to_string()),
                Some(_) => bail!("{place}: field `{key}` is not a string"),
                None => bail!("{place}: missing field `{key}`"),
            }
        };
        let question = get(&fields.question)?;
        let raw = get(&fields.answer)?;
        let gold = extract_gold(&raw, fields.format).with_context(|| {
            format!("{place}: no gold answer found in field `{}`", fields.answer)
        })?;
        out.push(Problem {
            id: out.len() as u64,
            question,
            gold,
        });
    }
    if out.is_empty() {
        bail!("{origin}: the dataset is empty");
    }
    Ok(out)
}

/// Parse JSONL problems; errors name the file and line.
pub fn parse_jsonl(text: impl BufRead, origin: &str, cfg: &RunConfig) -> Result<Vec<Problem>> {
    let records = text.lines().enumerate().filter_map(|(i, line)| {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                return Some(Err(
                    anyhow::Error::new(e).context(format!("{origin}:{}: reading", i + 1))
                ))
            }
        };
        if line.trim().is_empty() {
            return None;
        }
        Some(
            serde_json::from_str::<Value>(&line)
                .with_context(|| format!("{origin}:{}: not valid JSON", i + 1))
                .map(|v| (i + 1, v)),
        )
    });
    parse_records(records, origin, "", cfg)
}

/// Parse a Parquet file (Hugging Face datasets' format) row by row; errors name the row.
pub fn parse_parquet(path: &Path, cfg: &RunConfig) -> Result<Vec<Problem>> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let origin = path.display().to_string();
    let f = std::fs::File::open(path).with_context(|| format!("opening dataset {origin}"))?;
    let reader = SerializedFileReader::new(f)
        .with_context(|| format!("{origin}: not a readable Parquet file"))?;
    let rows = reader
        .get_row_iter(None)
        .with_context(|| format!("{origin}: reading rows"))?;
    let records = rows.enumerate().map(|(i, r)| {
        r.with_context(|| format!("{origin}:row {}: unreadable", i + 1))
            .map(|row| (i + 1, row.to_json_value()))
    });
    parse_records(records, &origin, "row ", cfg)
}

fn load_source(spec: &str, cfg: &RunConfig, test_split: bool) -> Result<Vec<Problem>> {
    match spec {
        "gsm8k" => {
            let (text, name) = if test_split {
                (GSM8K_TEST, "bundled gsm8k_test.jsonl")
            } else {
                (GSM8K_TRAIN, "bundled gsm8k_train.jsonl")
            };
            parse_jsonl(text.as_bytes(), name, cfg)
        }
        path if path.ends_with(".parquet") => parse_parquet(Path::new(path), cfg),
        path => {
            let p = Path::new(path);
            let f = std::fs::File::open(p)
                .with_context(|| format!("opening dataset {}", p.display()))?;
            parse_jsonl(std::io::BufReader::new(f), &p.display().to_string(), cfg)
        }
    }
}

/// Training prompts and the held-out evaluation set.
pub enum Dataset {
    Arithmetic {
        task: TaskConfig,
        seed: u64,
    },
    List {
        train: Vec<Problem>,
        eval: Vec<Problem>,
    },
}

/// Problems per evaluation stream index offset: keeps held-out arithmetic problems disjoint.
const EVAL_STREAM: u64 = 0xE7A1_0000_0000;

/// Tag of the extra rounds' prompt streams (dynamic sampling): apart from the main stream.
const EXTRA_STREAM: u64 = 0xD5A3_5A3F_0000_0001;

impl Dataset {
    pub fn load(cfg: &RunConfig) -> Result<Self> {
        if cfg.data == "arithmetic" {
            return Ok(Dataset::Arithmetic {
                task: cfg.task.clone(),
                seed: cfg.seed,
            });
        }
        let mut train = load_source(&cfg.data, cfg, false)?;
        let eval = match (&cfg.eval_data, cfg.data.as_str()) {
            (Some(e), _) => load_source(e, cfg, true)?,
            (None, "gsm8k") => load_source("gsm8k", cfg, true)?,
            (None, _) => {
                if train.len() < 2 * cfg.eval_size.max(1) {
                    bail!(
                        "{}: {} problems is too few to hold out eval_size = {} (set eval_data)",
                        cfg.data,
                        train.len(),
                        cfg.eval_size
                    );
                }
                train.split_off(train.len() - cfg.eval_size)
            }
        };
        Ok(Dataset::List { train, eval })
    }

    /// The `n` problems of training batch `batch`, or None when the epochs are used up.
    pub fn batch(&self, batch: u64, n: usize, cfg: &RunConfig) -> Option<Vec<Problem>> {
        match self {
            Dataset::Arithmetic { task, seed } => Some(
                (0..n as u64)
                    .map(|i| arithmetic_problem(task, *seed, batch * n as u64 + i))
                    .collect(),
            ),
            Dataset::List { train, .. } => {
                let len = train.len() as u64;
                let mut out = Vec::with_capacity(n);
                for i in 0..n as u64 {
                    let p = batch * n as u64 + i;
                    let epoch = p / len;
                    if epoch >= cfg.epochs {
                        return None;
                    }
                    let idx = if cfg.shuffle {
                        permuted(p % len, len, mix(cfg.seed, epoch))
                    } else {
                        p % len
                    };
                    out.push(train[idx as usize].clone());
                }
                Some(out)
            }
        }
    }

    /// The `n` problems of extra round `round` (from 1) of training batch `batch`, for dynamic
    /// sampling: a seeded draw of its own per (batch, round), so a resumed run draws the same
    /// ones; it is always shuffled and does not count against `epochs`.
    pub fn extra_batch(&self, batch: u64, round: u32, n: usize, cfg: &RunConfig) -> Vec<Problem> {
        let stream = mix(mix(cfg.seed, EXTRA_STREAM), round as u64);
        let positions = (0..n as u64).map(|i| batch * n as u64 + i);
        match self {
            Dataset::Arithmetic { task, .. } => positions
                .map(|p| arithmetic_problem(task, stream, p))
                .collect(),
            Dataset::List { train, .. } => {
                let len = train.len() as u64;
                if len == 0 {
                    return vec![];
                }
                positions
                    .map(|p| {
                        let idx = permuted(p % len, len, mix(stream, p / len));
                        train[idx as usize].clone()
                    })
                    .collect()
            }
        }
    }

    pub fn eval_set(&self, size: usize) -> Vec<Problem> {
        match self {
            Dataset::Arithmetic { task, seed } => (0..size as u64)
                .map(|i| arithmetic_problem(task, *seed, EVAL_STREAM + i))
                .collect(),
            Dataset::List { eval, .. } => eval.iter().take(size).cloned().collect(),
        }
    }
}

/// Built-in training problems whose prompts are checked up front: they all have one form, so
/// the first ones stand for the rest.
const ARITHMETIC_CHECKED: u64 = 1024;

impl Dataset {
    /// Check the prompts against their limits before anything runs (`on_long_prompt`): the
    /// training prompts (when `train` is given: all of a dataset's, the first of the built-in
    /// task's) and the held-out prompts that will be evaluated. Skipped problems leave the
    /// dataset; the built-in task's are never skipped (they are all alike: the limit is wrong).
    pub fn fit_prompts(
        &mut self,
        tok: &rlvr_models::TextTokenizer,
        cfg: &RunConfig,
        train: Option<&PromptLimit>,
        eval: &PromptLimit,
    ) -> Result<()> {
        let origin = |spec: &str| match spec {
            "gsm8k" | "arithmetic" => format!("the {spec} data"),
            path => path.to_string(),
        };
        let eval_origin = origin(cfg.eval_data.as_deref().unwrap_or(&cfg.data));
        match self {
            Dataset::Arithmetic { task, seed } => {
                let n = (cfg.max_steps * cfg.prompts_per_step as u64).min(ARITHMETIC_CHECKED);
                let (origin, policy) = ("the arithmetic task", OnLongPrompt::Error);
                if let Some(limit) = train {
                    let problems = (0..n).map(|i| arithmetic_problem(task, *seed, i));
                    let what = "training prompts";
                    fit(&labelled(tok, cfg, problems)?, origin, what, limit, policy)?;
                }
                let problems = (0..cfg.eval_size as u64).map(|i| Problem {
                    id: i,
                    ..arithmetic_problem(task, *seed, EVAL_STREAM + i)
                });
                let what = "held-out prompts";
                fit(&labelled(tok, cfg, problems)?, origin, what, eval, policy)?;
            }
            Dataset::List {
                train: items,
                eval: held_out,
            } => {
                if let Some(limit) = train {
                    let what = "training prompts";
                    keep_fitting(items, tok, cfg, &origin(&cfg.data), what, limit)?;
                }
                // Only the first eval_size are evaluated; with `skip`, later ones stand in.
                if cfg.on_long_prompt == OnLongPrompt::Error {
                    held_out.truncate(cfg.eval_size);
                }
                keep_fitting(held_out, tok, cfg, &eval_origin, "held-out prompts", eval)?;
            }
        }
        Ok(())
    }
}

/// Keep the problems of `items` whose prompts fit under `limit` (or fail, as configured).
fn keep_fitting(
    items: &mut Vec<Problem>,
    tok: &rlvr_models::TextTokenizer,
    cfg: &RunConfig,
    origin: &str,
    what: &str,
    limit: &PromptLimit,
) -> Result<()> {
    let prompts = labelled(tok, cfg, items.iter().cloned())?;
    let keep = fit(&prompts, origin, what, limit, cfg.on_long_prompt)?;
    let mut keep = keep.into_iter();
    items.retain(|_| keep.next().unwrap_or(false));
    Ok(())
}

/// Each problem's prompt length, labelled by its item index and the start of its question.
fn labelled(
    tok: &rlvr_models::TextTokenizer,
    cfg: &RunConfig,
    problems: impl Iterator<Item = Problem>,
) -> Result<Vec<Prompt>> {
    // With tools the prompt also carries the tool instructions: measure what is generated from.
    let tools = cfg.tools.for_model(tok, cfg.chat)?;
    let format = tools.as_ref().map(|(_, format)| format);
    problems
        .map(|p| {
            let ids = encode_problem(tok, cfg, &p, format)?;
            Ok(Prompt {
                label: format!("item {} ({:?})", p.id, preview(&p.question, 30)),
                tokens: ids.len(),
            })
        })
        .collect()
}

/// Position `i` of a seeded permutation of `0..n` (a Fisher–Yates shuffle computed on demand).
fn permuted(i: u64, n: u64, seed: u64) -> u64 {
    // n is small (datasets): materialise the permutation once per call site cheaply enough by
    // caching in a thread-local keyed on (n, seed).
    thread_local! {
        static CACHE: std::cell::RefCell<Option<(u64, u64, Vec<u64>)>> = const { std::cell::RefCell::new(None) };
    }
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        let fresh = !matches!(&*c, Some((cn, cs, _)) if *cn == n && *cs == seed);
        if fresh {
            let mut perm: Vec<u64> = (0..n).collect();
            let mut s = seed;
            for k in (1..n as usize).rev() {
                s = mix(s, k as u64);
                perm.swap(k, (s % (k as u64 + 1)) as usize);
            }
            *c = Some((n, seed, perm));
        }
        c.as_ref().map(|(_, _, p)| p[i as usize]).unwrap_or(i)
    })
}

/// A problem's prompt as token ids (template, then chat rendering unless `chat = false`),
/// with the tool instructions when the run offers tools.
pub fn encode_problem(
    tok: &rlvr_models::TextTokenizer,
    cfg: &RunConfig,
    p: &Problem,
    tools: Option<&ToolFormat>,
) -> Result<Vec<u32>> {
    encode_prompt(tok, &render_question(cfg, p), cfg.chat, tools)
}

/// The prompt text for a problem.
pub fn render_question(cfg: &RunConfig, p: &Problem) -> String {
    let template = if !cfg.prompt_template.is_empty() {
        cfg.prompt_template.as_str()
    } else if cfg.data == "arithmetic" {
        "{question}"
    } else {
        super::config::DATASET_TEMPLATE
    };
    template.replace("{question}", &p.question)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Extra rounds draw the same problems every time (a resumed run redraws them), apart from
    /// the main stream and from each other, for the built-in task and for a dataset.
    #[test]
    fn extra_rounds_are_a_seeded_stream_of_their_own() {
        let cfg = RunConfig::default();
        let arithmetic = Dataset::load(&cfg).unwrap();
        let train: Vec<Problem> = (0..50)
            .map(|i| arithmetic_problem(&cfg.task, 9, i))
            .collect();
        let list = Dataset::List {
            train,
            eval: vec![],
        };
        for data in [arithmetic, list] {
            let main = data.batch(3, 4, &cfg).unwrap();
            let one = data.extra_batch(3, 1, 4, &cfg);
            assert_eq!(one, data.extra_batch(3, 1, 4, &cfg));
            assert_eq!(one.len(), 4);
            assert_ne!(one, main);
            assert_ne!(one, data.extra_batch(3, 2, 4, &cfg));
            assert_ne!(one, data.extra_batch(4, 1, 4, &cfg));
        }
    }

    /// Files written by pyarrow in every codec (scripts/make_parquet_fixtures.py) read as the
    /// same problems as the bundled JSONL rows they were made from.
    #[test]
    fn parquet_reads_every_codec_a_real_writer_produces() {
        let cfg = RunConfig::default();
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parquet");
        let want: Vec<Problem> = parse_jsonl(GSM8K_TRAIN.as_bytes(), "bundled", &cfg)
            .unwrap()
            .into_iter()
            .take(8)
            .collect();
        let codecs = [
            ("zstd", "ZSTD"),
            ("gzip", "GZIP"),
            ("lz4", "LZ4_RAW"),
            ("brotli", "BROTLI"),
            ("snappy", "SNAPPY"),
            ("none", "UNCOMPRESSED"),
        ];
        for (codec, in_file) in codecs {
            let path = fixtures.join(format!("gsm8k_{codec}.parquet"));
            // The fixture really is compressed that way.
            let file = std::fs::File::open(&path).unwrap();
            let reader = parquet::file::reader::SerializedFileReader::new(file).unwrap();
            use parquet::file::reader::FileReader;
            let written = reader.metadata().row_group(0).column(0).compression();
            assert!(
                format!("{written:?}").starts_with(in_file),
                "{codec}: {written:?}"
            );
            let got = parse_parquet(&path, &cfg).unwrap_or_else(|e| panic!("{codec}: {e:#}"));
            assert_eq!(got, want, "{codec}");
        }
    }
}
