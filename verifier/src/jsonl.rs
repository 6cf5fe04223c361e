//! JSON Lines front ends used by `rlvr verify`: a grading filter
//! (stdin -> stdout) and an accuracy report over a data file and completions.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use rayon::prelude::*;
use serde::Serialize;
use serde_json::Value;

use crate::{
    extract_gold, grade, ExtractMethod, GoldFormat, Reason, VerifierConfig, VerifierError,
};

/// One output line of the grading filter.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VerifyOutput {
    pub correct: bool,
    pub extracted: Option<String>,
    pub reason: Reason,
    pub reward: f64,
    pub method: Option<ExtractMethod>,
}

/// A JSON string, or a number written as text (`{"gold": 18}`).
fn text_field(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn parse_json(line: &str, line_no: usize) -> Result<Value, VerifierError> {
    let v: Value =
        serde_json::from_str(line).map_err(|err| VerifierError::Json { line: line_no, err })?;
    if !v.is_object() {
        return Err(VerifierError::BadLine {
            line: line_no,
            message: "expected a JSON object".into(),
        });
    }
    Ok(v)
}

struct Job {
    pred: String,
    gold: String,
    fmt: GoldFormat,
}

fn parse_verify_line(
    line: &str,
    line_no: usize,
    default_fmt: GoldFormat,
) -> Result<Job, VerifierError> {
    let v = parse_json(line, line_no)?;
    let missing = |k: &str| VerifierError::BadLine {
        line: line_no,
        message: format!("missing string field {k:?}"),
    };
    let gold = text_field(&v, "gold").ok_or_else(|| missing("gold"))?;
    let pred = text_field(&v, "pred").ok_or_else(|| missing("pred"))?;
    let fmt = match v.get("gold_format") {
        None | Some(Value::Null) => default_fmt,
        Some(Value::String(s)) => s
            .parse()
            .map_err(|e: VerifierError| VerifierError::BadLine {
                line: line_no,
                message: e.to_string(),
            })?,
        Some(_) => {
            return Err(VerifierError::BadLine {
                line: line_no,
                message: "gold_format must be a string".into(),
            })
        }
    };
    Ok(Job { pred, gold, fmt })
}

fn run_job(job: &Job, cfg: &VerifierConfig) -> VerifyOutput {
    let g = crate::grade_with_format(&job.pred, &job.gold, job.fmt, cfg);
    VerifyOutput {
        correct: g.correct,
        extracted: g.extracted,
        reason: g.reason,
        reward: g.reward,
        method: g.method,
    }
}

/// Grading filter: each input line `{"gold": ..., "pred": ..., "gold_format"?: ...}`
/// gives one output line `{"correct", "extracted", "reason", "reward", "method"}`,
/// in input order. `gold_format` is `gsm8k`, `math`, `raw` or `auto`; lines
/// without it use `default_fmt`. Every input line gets exactly one output line,
/// so output line k answers input line k: a line that cannot be graded (blank,
/// not JSON, not UTF-8, missing a field) gets `{"error": "line N: ..."}` and the
/// lines after it are graded as usual. Output is written and flushed line by
/// line (usable as a co-process). Returns the number of lines graded (error
/// lines not counted); fails only on I/O errors. (For parallel grading of a
/// batch in memory use [`crate::grade_batch`].)
pub fn verify_jsonl<R: BufRead, W: Write>(
    mut input: R,
    mut out: W,
    cfg: &VerifierConfig,
    default_fmt: GoldFormat,
) -> Result<usize, VerifierError> {
    cfg.validate()?;
    let mut graded = 0;
    let mut raw = Vec::with_capacity(256);
    let mut buf = Vec::with_capacity(256);
    let mut line_no = 0;
    loop {
        raw.clear();
        if input.read_until(b'\n', &mut raw)? == 0 {
            break;
        }
        line_no += 1;
        buf.clear();
        match job_from_bytes(&raw, line_no, default_fmt) {
            Ok(job) => {
                serde_json::to_writer(&mut buf, &run_job(&job, cfg))
                    .map_err(std::io::Error::other)?;
                graded += 1;
            }
            Err(err) => {
                let error = serde_json::json!({ "error": err.to_string() });
                serde_json::to_writer(&mut buf, &error).map_err(std::io::Error::other)?;
            }
        }
        buf.push(b'\n');
        out.write_all(&buf)?;
        out.flush()?;
    }
    out.flush()?;
    Ok(graded)
}

/// One raw input line (with its line break) as a grading job.
fn job_from_bytes(
    raw: &[u8],
    line_no: usize,
    default_fmt: GoldFormat,
) -> Result<Job, VerifierError> {
    let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    let line = std::str::from_utf8(raw).map_err(|_| VerifierError::BadLine {
        line: line_no,
        message: "not valid UTF-8".into(),
    })?;
    if line.trim().is_empty() {
        return Err(VerifierError::BadLine {
            line: line_no,
            message: "blank line (expected a JSON object)".into(),
        });
    }
    parse_verify_line(line, line_no, default_fmt)
}

/// Accuracy of a set of completions against a data file.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AccuracyReport {
    /// Completions graded.
    pub n: usize,
    pub correct: usize,
    pub accuracy: f64,
    pub mean_reward: f64,
    /// Distinct data records that received at least one completion.
    pub prompts: usize,
    /// Of those, how many have at least one correct completion.
    pub prompts_with_correct: usize,
    /// Reason histogram (`match_exact`, `mismatch`, ...).
    pub reasons: BTreeMap<String, usize>,
    /// Extraction-method histogram (`boxed`, `hash`, ..., `none`).
    pub methods: BTreeMap<String, usize>,
}

/// The gold answer of one data record: GSM8K (`answer_final`, or `answer`
/// after `####`), MATH (`answer`, else the last `\boxed{}` of `solution`), or
/// a raw `answer` / `gold` field. `fmt = None` or `Some(Auto)` auto-detects.
pub fn gold_from_record(v: &Value, fmt: Option<GoldFormat>) -> Option<String> {
    let f = |k: &str| text_field(v, k);
    match fmt.unwrap_or(GoldFormat::Auto) {
        GoldFormat::Gsm8k => f("answer")
            .and_then(|a| extract_gold(&a, GoldFormat::Gsm8k))
            .or_else(|| f("answer_final").and_then(|a| extract_gold(&a, GoldFormat::Raw))),
        GoldFormat::Math => f("answer")
            .and_then(|a| extract_gold(&a, GoldFormat::Auto))
            .or_else(|| f("solution").and_then(|s| extract_gold(&s, GoldFormat::Math))),
        GoldFormat::Raw => ["answer", "answer_final", "gold"]
            .iter()
            .find_map(|k| f(k).and_then(|a| extract_gold(&a, GoldFormat::Raw))),
        GoldFormat::Auto => {
            if let Some(a) = f("answer_final").and_then(|a| extract_gold(&a, GoldFormat::Raw)) {
                return Some(a);
            }
            ["answer", "gold"]
                .iter()
                .find_map(|k| f(k).and_then(|a| extract_gold(&a, GoldFormat::Auto)))
                .or_else(|| f("solution").and_then(|s| extract_gold(&s, GoldFormat::Math)))
        }
    }
}

fn open(path: &Path) -> Result<BufReader<File>, VerifierError> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|err| VerifierError::File {
            path: path.display().to_string(),
            err,
        })
}

/// [`accuracy_report_from_readers`] over two files.
pub fn accuracy_report(
    data: &Path,
    completions: &Path,
    fmt: Option<GoldFormat>,
    cfg: &VerifierConfig,
) -> Result<AccuracyReport, VerifierError> {
    accuracy_report_from_readers(open(data)?, open(completions)?, fmt, cfg)
}

/// Grade completions (`{"completion": ...}` or `{"text": ...}`, optionally with
/// `"index"` / `"prompt_index"`: the 0-based data record; otherwise the k-th
/// completion belongs to the k-th record) against the data records' gold answers.
pub fn accuracy_report_from_readers<D: BufRead, C: BufRead>(
    data: D,
    completions: C,
    fmt: Option<GoldFormat>,
    cfg: &VerifierConfig,
) -> Result<AccuracyReport, VerifierError> {
    cfg.validate()?;
    let golds = read_golds(data, fmt)?;
    let pairs = read_completions(completions, golds.len())?;
    let grades: Vec<(usize, crate::Grade)> = pairs
        .par_iter()
        .map(|(idx, text)| (*idx, grade(text, &golds[*idx], cfg)))
        .collect();
    Ok(summarize(&grades))
}

/// The gold answer of every (non-blank) data line, in order.
fn read_golds<D: BufRead>(data: D, fmt: Option<GoldFormat>) -> Result<Vec<String>, VerifierError> {
    let mut golds = Vec::new();
    for (k, line) in data.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let v = parse_json(&line, k + 1)?;
        let g = gold_from_record(&v, fmt).ok_or_else(|| VerifierError::BadLine {
            line: k + 1,
            message: "data record has no gold answer (answer / answer_final / solution)".into(),
        })?;
        golds.push(g);
    }
    Ok(golds)
}

/// `(data record, completion text)` of every (non-blank) completion line.
fn read_completions<C: BufRead>(
    completions: C,
    records: usize,
) -> Result<Vec<(usize, String)>, VerifierError> {
    let mut pairs: Vec<(usize, String)> = Vec::new();
    for (k, line) in completions.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let v = parse_json(&line, k + 1)?;
        let text = ["completion", "text", "response", "output"]
            .iter()
            .find_map(|key| text_field(&v, key))
            .ok_or_else(|| VerifierError::BadLine {
                line: k + 1,
                message: "completion record needs a \"completion\" or \"text\" field".into(),
            })?;
        let idx = match ["index", "prompt_index"].iter().find_map(|key| v.get(*key)) {
            Some(x) => x
                .as_u64()
                .map(|u| u as usize)
                .ok_or_else(|| VerifierError::BadLine {
                    line: k + 1,
                    message: "index must be a non-negative integer".into(),
                })?,
            None => pairs.len(),
        };
        if idx >= records {
            return Err(VerifierError::BadLine {
                line: k + 1,
                message: format!(
                    "completion maps to data record {idx}, but the data has {records} records"
                ),
            });
        }
        pairs.push((idx, text));
    }
    Ok(pairs)
}

/// Counts, histograms and per-prompt results of graded completions.
fn summarize(grades: &[(usize, crate::Grade)]) -> AccuracyReport {
    let mut reasons = BTreeMap::new();
    let mut methods = BTreeMap::new();
    let mut per_prompt: BTreeMap<usize, bool> = BTreeMap::new();
    let mut correct = 0;
    let mut reward_sum = 0.0;
    for (idx, g) in grades {
        *reasons.entry(g.reason.as_str().to_string()).or_insert(0) += 1;
        let m = g.method.map_or("none", ExtractMethod::as_str);
        *methods.entry(m.to_string()).or_insert(0) += 1;
        let e = per_prompt.entry(*idx).or_insert(false);
        *e |= g.correct;
        correct += g.correct as usize;
        reward_sum += g.reward;
    }
    let n = grades.len();
    AccuracyReport {
        n,
        correct,
        accuracy: if n == 0 {
            0.0
        } else {
            correct as f64 / n as f64
        },
        mean_reward: if n == 0 { 0.0 } else { reward_sum / n as f64 },
        prompts: per_prompt.len(),
        prompts_with_correct: per_prompt.values().filter(|&&c| c).count(),
        reasons,
        methods,
    }
}
