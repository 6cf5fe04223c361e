//! `rlvr sweep`: a grid of training configurations, several seeds each, run one after another
//! (resumable), summarised as one table (`summary.json`, `summary.md`) and overlaid plots
//! (`plots/*.png`: held-out accuracy, reward, entropy, response length, S2T fraction; mean and
//! spread over seeds). With `--match-lr`, every AdamW configuration that has a Magma
//! counterpart is also run at lr × Magma's measured mean effective multiplier, so that "Magma vs
//! AdamW" is not "small steps vs big steps".
//!
//! Owns the sweep's directory layout. Each run is an ordinary `rlvr train` process; the sweep
//! must not know how training works, only its run directories' logs.

mod cells;
mod grid;
mod plot;
mod summary;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;

use cells::{Cell, Runner, SweepState};
use grid::{expand, Axis, Setting};
use summary::{ConfigSummary, RunLogs, CURVES};

#[derive(Args, Debug)]
pub struct SweepArgs {
    /// An axis of the grid: `key=value1,value2` (any `rlvr train --set` key). Repeatable; the
    /// configurations are the cartesian product.
    #[arg(long = "grid", value_name = "KEY=V1,V2", required = true)]
    pub grids: Vec<String>,
    /// Seeds per configuration (0, 1, …).
    #[arg(long, default_value_t = 1)]
    pub seeds: u64,
    /// The sweep's directory: runs/, sweep.json, summary.*, plots/.
    #[arg(long)]
    pub out: PathBuf,
    /// Config overrides for every run, as for `rlvr train --set`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Also run each AdamW configuration at lr × Magma's mean effective multiplier.
    #[arg(long)]
    pub match_lr: bool,
}

pub fn sweep(args: &SweepArgs) -> Result<()> {
    let axes: Vec<Axis> = args
        .grids
        .iter()
        .map(|g| Axis::parse(g))
        .collect::<Result<_>>()?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let runner = Runner {
        exe: std::env::current_exe().context("locating the rlvr binary")?,
        common_sets: args.sets.clone(),
        out: args.out.clone(),
    };
    let mut state = SweepState::load(&args.out)?;
    let mut settings = expand(&axes);
    let mut walls = run_all(&runner, &mut state, &settings, args)?;
    if args.match_lr {
        let matched = matched_settings(&settings, args)?;
        walls.extend(run_all(&runner, &mut state, &matched, args)?);
        settings.extend(matched);
    }
    let logs: Vec<Vec<RunLogs>> = settings
        .iter()
        .map(|s| seed_logs(s, args))
        .collect::<Result<_>>()?;
    let summaries: Vec<ConfigSummary> = settings
        .iter()
        .zip(&walls)
        .zip(&logs)
        .map(|((s, w), runs)| ConfigSummary::new(s.label(), runs, w))
        .collect();
    write_outputs(&args.out, &summaries, &settings, &logs, args)
}

/// Run every seed of every setting, seed by seed (all settings at seed 0 first, so that a sweep
/// stopped early has every setting at the same number of seeds); the wall times per setting.
fn run_all(
    runner: &Runner,
    state: &mut SweepState,
    settings: &[Setting],
    args: &SweepArgs,
) -> Result<Vec<Vec<f64>>> {
    let mut walls = vec![Vec::new(); settings.len()];
    for seed in 0..args.seeds {
        for (setting, wall) in settings.iter().zip(&mut walls) {
            wall.push(runner.run(state, &Cell::new(&args.out, setting, seed))?);
        }
    }
    Ok(walls)
}

fn seed_logs(setting: &Setting, args: &SweepArgs) -> Result<Vec<RunLogs>> {
    (0..args.seeds)
        .map(|seed| RunLogs::read(&Cell::new(&args.out, setting, seed).dir))
        .collect()
}

/// The lr a finished run trained with (its config.toml's `lr`).
fn run_lr(run_dir: &Path) -> Result<f64> {
    let path = run_dir.join("config.toml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    table
        .get("lr")
        .and_then(|v| v.as_float())
        .with_context(|| format!("{}: no numeric `lr`", path.display()))
}

/// For each `optimizer=adamw` setting whose `optimizer=magma` twin ran: the same setting at
/// lr × the twin's mean effective multiplier (over seeds and steps).
fn matched_settings(settings: &[Setting], args: &SweepArgs) -> Result<Vec<Setting>> {
    let mut matched = Vec::new();
    for s in settings
        .iter()
        .filter(|s| s.get("optimizer") == Some("adamw"))
    {
        let twin = s.with("optimizer", "magma".into());
        if !settings.contains(&twin) {
            continue;
        }
        let mults: Vec<f64> = seed_logs(&twin, args)?
            .iter()
            .filter_map(|r| r.eff_mult_mean)
            .collect();
        if mults.is_empty() {
            eprintln!(
                "sweep: {} logged no Magma multiplier; no matched arm",
                twin.label()
            );
            continue;
        }
        let lr = run_lr(&Cell::new(&args.out, s, 0).dir)?;
        let scaled = lr * summary::mean(&mults);
        matched.push(s.with("lr", format!("{scaled:.3e}")));
    }
    Ok(matched)
}

fn write_outputs(
    out: &Path,
    summaries: &[ConfigSummary],
    settings: &[Setting],
    logs: &[Vec<RunLogs>],
    args: &SweepArgs,
) -> Result<()> {
    let json = serde_json::json!({ "grid": args.grids, "seeds": args.seeds, "set": args.sets,
        "match_lr": args.match_lr, "configurations": summaries });
    let path = out.join("summary.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&json)?)
        .with_context(|| format!("writing {}", path.display()))?;
    let table = summary::markdown(summaries);
    let path = out.join("summary.md");
    std::fs::write(&path, &table).with_context(|| format!("writing {}", path.display()))?;
    println!("{table}");
    let plots = out.join("plots");
    std::fs::create_dir_all(&plots).with_context(|| format!("creating {}", plots.display()))?;
    let labels: Vec<String> = settings.iter().map(Setting::label).collect();
    for (i, (title, _, key)) in CURVES.iter().enumerate() {
        let series: Vec<plot::Series> = labels
            .iter()
            .zip(logs)
            .map(|(label, runs)| plot::Series {
                label,
                runs: runs.iter().map(|r| &r.curves[i]).collect(),
            })
            .collect();
        plot::draw(&plots.join(format!("{key}.png")), title, &series)?;
    }
    eprintln!("sweep: summary in {}", out.display());
    Ok(())
}
