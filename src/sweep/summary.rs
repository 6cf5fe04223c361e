//! What a sweep's runs show: per run, the curves of its logs; per configuration, their mean and
//! spread over seeds, written as `summary.json` and `summary.md`.
//!
//! Reads the runs' `metrics.jsonl` and `eval.jsonl` and nothing else: it must not know how the
//! runs were made.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::Value;

/// The curves a sweep compares: (name, log file, key; a dotted key reads a nested field).
pub const CURVES: [(&str, &str, &str); 5] = [
    ("held-out accuracy", "eval.jsonl", "greedy_accuracy"),
    ("reward", "metrics.jsonl", "reward_mean"),
    ("entropy", "metrics.jsonl", "entropy_mean"),
    ("response length", "metrics.jsonl", "response_length"),
    ("S2T fraction", "metrics.jsonl", "s2t_masked_frac"),
];

/// (step, value) points of one curve of one run.
pub type Curve = Vec<(f64, f64)>;

/// Everything read from one run directory.
#[derive(Debug, Clone, Default)]
pub struct RunLogs {
    /// One curve per entry of [`CURVES`].
    pub curves: Vec<Curve>,
    /// Magma's mean effective step multiplier over the run (None for other optimizers).
    pub eff_mult_mean: Option<f64>,
}

fn dotted<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    key.split('.').try_fold(v, |v, k| v.get(k))
}

fn read_lines(path: &Path) -> Result<Vec<Value>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{} line {}: not JSON", path.display(), i + 1))
        })
        .collect()
}

impl RunLogs {
    pub fn read(run_dir: &Path) -> Result<RunLogs> {
        let metrics = read_lines(&run_dir.join("metrics.jsonl"))?;
        let evals = read_lines(&run_dir.join("eval.jsonl"))?;
        let curves = CURVES
            .iter()
            .map(|(_, file, key)| {
                let lines = if *file == "eval.jsonl" {
                    &evals
                } else {
                    &metrics
                };
                lines
                    .iter()
                    .filter_map(|v| Some((v.get("step")?.as_f64()?, dotted(v, key)?.as_f64()?)))
                    .collect()
            })
            .collect();
        let mults: Vec<f64> = metrics
            .iter()
            .filter_map(|v| dotted(v, "magma.eff_mult_mean")?.as_f64())
            .collect();
        Ok(RunLogs {
            curves,
            eff_mult_mean: (!mults.is_empty()).then(|| mean(&mults)),
        })
    }
}

pub fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len().max(1) as f64
}

/// Sample standard deviation (0 for fewer than two values).
pub fn std_dev(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return 0.0;
    }
    let m = mean(xs);
    (xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (xs.len() - 1) as f64).sqrt()
}

/// Mean, spread and the values over seeds of one number.
#[derive(Debug, Clone, Serialize)]
pub struct Spread {
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub max: f64,
    pub values: Vec<f64>,
}

impl Spread {
    pub fn of(values: Vec<f64>) -> Spread {
        let fold = |f: fn(f64, f64) -> f64, init| values.iter().copied().fold(init, f);
        Spread {
            mean: mean(&values),
            std: std_dev(&values),
            min: fold(f64::min, f64::INFINITY),
            max: fold(f64::max, f64::NEG_INFINITY),
            values,
        }
    }

    fn cell(&self) -> String {
        if self.values.is_empty() {
            return "–".into();
        }
        format!("{:.3} ± {:.3}", self.mean, self.std)
    }
}

/// One configuration's results over its seeds.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigSummary {
    pub label: String,
    pub seeds: usize,
    pub held_out_start: Spread,
    pub held_out_end: Spread,
    /// Mean over the last quarter of the steps of each run.
    pub reward_last: Spread,
    pub entropy_last: Spread,
    pub response_length_last: Spread,
    pub s2t_fraction_mean: Spread,
    pub eff_mult_mean: Option<f64>,
    pub wall_s: Spread,
}

fn last_quarter_mean(c: &Curve) -> Option<f64> {
    if c.is_empty() {
        return None;
    }
    let from = c.len() - c.len().div_ceil(4);
    Some(mean(&c[from..].iter().map(|p| p.1).collect::<Vec<_>>()))
}

impl ConfigSummary {
    pub fn new(label: String, runs: &[RunLogs], walls: &[f64]) -> ConfigSummary {
        let per_run =
            |f: &dyn Fn(&RunLogs) -> Option<f64>| Spread::of(runs.iter().filter_map(f).collect());
        let mults: Vec<f64> = runs.iter().filter_map(|r| r.eff_mult_mean).collect();
        ConfigSummary {
            label,
            seeds: runs.len(),
            held_out_start: per_run(&|r| r.curves[0].first().map(|p| p.1)),
            held_out_end: per_run(&|r| r.curves[0].last().map(|p| p.1)),
            reward_last: per_run(&|r| last_quarter_mean(&r.curves[1])),
            entropy_last: per_run(&|r| last_quarter_mean(&r.curves[2])),
            response_length_last: per_run(&|r| last_quarter_mean(&r.curves[3])),
            s2t_fraction_mean: per_run(&|r| {
                let c = &r.curves[4];
                (!c.is_empty()).then(|| mean(&c.iter().map(|p| p.1).collect::<Vec<_>>()))
            }),
            eff_mult_mean: (!mults.is_empty()).then(|| mean(&mults)),
            wall_s: Spread::of(walls.to_vec()),
        }
    }
}

/// The Markdown table of a sweep (mean ± sample standard deviation over seeds).
pub fn markdown(summaries: &[ConfigSummary]) -> String {
    let mut md = String::from(
        "| configuration | seeds | held-out start | held-out end | reward (last ¼) | entropy (last ¼) | length (last ¼) | S2T fraction | Magma eff. mult. | wall s |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for s in summaries {
        md += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} |\n",
            s.label,
            s.seeds,
            s.held_out_start.cell(),
            s.held_out_end.cell(),
            s.reward_last.cell(),
            s.entropy_last.cell(),
            s.response_length_last.cell(),
            s.s2t_fraction_mean.cell(),
            s.eff_mult_mean.map_or("–".into(), |m| format!("{m:.3}")),
            s.wall_s.mean,
        );
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_the_sample_statistics() {
        let s = Spread::of(vec![1.0, 2.0, 3.0]);
        assert_eq!((s.mean, s.std, s.min, s.max), (2.0, 1.0, 1.0, 3.0));
        assert_eq!(Spread::of(vec![5.0]).std, 0.0);
        assert_eq!(
            last_quarter_mean(&vec![(1.0, 0.0), (2.0, 0.0), (3.0, 2.0), (4.0, 4.0)]),
            Some(4.0)
        );
        assert_eq!(
            last_quarter_mean(&vec![(1.0, 1.0), (2.0, 3.0), (3.0, 5.0)]),
            Some(5.0)
        );
    }
}
