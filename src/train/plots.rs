//! PNG plots of the run's metrics (reward, accuracy, entropy, spurious-token fraction), redrawn
//! after every step. Axis labels need a TrueType font: the first of a few common system fonts is
//! used; without one the plots are drawn without text.
//!
//! It reads the run's JSONL logs and nothing else: it must not know how they were made.

use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use serde_json::Value;

const FONT_PATHS: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// Register a font once; false when none is available.
pub(crate) fn font_ready() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| {
        for p in FONT_PATHS {
            if let Ok(bytes) = std::fs::read(p) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

/// The plotted metrics: (key in metrics.jsonl, title, file name).
pub const PLOTS: [(&str, &str, &str); 4] = [
    ("reward_mean", "mean reward", "reward.png"),
    (
        "accuracy",
        "accuracy (blue: training samples, red: held-out greedy)",
        "accuracy.png",
    ),
    ("entropy_mean", "entropy of response tokens", "entropy.png"),
    (
        "s2t_masked_frac",
        "spurious tokens silenced (S2T fraction)",
        "s2t_masked_frac.png",
    ),
];

/// Redraw every plot from `metrics.jsonl` (and held-out accuracy from `eval.jsonl`).
pub fn draw_all(run_dir: &Path) -> Result<()> {
    let lines: Vec<Value> = std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let evals: Vec<(f64, f64)> = std::fs::read_to_string(run_dir.join("eval.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| {
            Some((
                v.get("step")?.as_f64()?,
                v.get("greedy_accuracy")?.as_f64()?,
            ))
        })
        .collect();
    let dir = run_dir.join("plots");
    std::fs::create_dir_all(&dir)?;
    for (key, title, file) in PLOTS {
        let pts: Vec<(f64, f64)> = lines
            .iter()
            .filter_map(|v| Some((v.get("step")?.as_f64()?, v.get(key)?.as_f64()?)))
            .collect();
        let extra = if key == "accuracy" {
            evals.as_slice()
        } else {
            &[]
        };
        draw(&dir.join(file), title, &pts, extra)?;
    }
    Ok(())
}

/// The chart both the run's and the sweep's plots draw on: steps on x from 0 to `x_max`, `y`
/// on y, the title and axis labels where a font is available (none at all without one).
pub(crate) fn step_chart<'a, 'b>(
    root: &'a DrawingArea<BitMapBackend<'b>, Shift>,
    title: &str,
    x_max: f64,
    y: Range<f64>,
) -> Result<ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>> {
    let text = font_ready();
    let mut builder = ChartBuilder::on(root);
    builder.margin(15);
    if text {
        builder
            .caption(title, ("sans-serif", 22))
            .x_label_area_size(35)
            .y_label_area_size(60);
    }
    let mut chart = builder
        .build_cartesian_2d(0f64..x_max, y)
        .map_err(|e| anyhow!("{e}"))?;
    let mut mesh = chart.configure_mesh();
    if text {
        mesh.x_desc("step");
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw().map_err(|e| anyhow!("{e}"))?;
    Ok(chart)
}

fn draw(path: &Path, title: &str, pts: &[(f64, f64)], held_out: &[(f64, f64)]) -> Result<()> {
    let root = BitMapBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let all = pts.iter().chain(held_out);
    let x_max = all.clone().map(|p| p.0).fold(1.0, f64::max);
    let (mut y_min, mut y_max) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
        (lo.min(p.1), hi.max(p.1))
    });
    if !y_min.is_finite() {
        (y_min, y_max) = (0.0, 1.0);
    }
    if y_max - y_min < 1e-9 {
        y_max = y_min + 1.0;
    }
    let pad = 0.05 * (y_max - y_min);
    let mut chart = step_chart(&root, title, x_max, (y_min - pad)..(y_max + pad))?;
    chart
        .draw_series(LineSeries::new(pts.iter().copied(), BLUE.stroke_width(2)))
        .map_err(|e| anyhow!("{e}"))?;
    if !held_out.is_empty() {
        chart
            .draw_series(LineSeries::new(
                held_out.iter().copied(),
                RED.stroke_width(2),
            ))
            .map_err(|e| anyhow!("{e}"))?;
        chart
            .draw_series(held_out.iter().map(|&p| Circle::new(p, 4, RED.filled())))
            .map_err(|e| anyhow!("{e}"))?;
    }
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
