//! The sweep's overlaid plots: one PNG per compared curve, one line per configuration (the mean
//! over seeds at each step) in a band from the lowest to the highest seed.
//!
//! Must not know where the curves come from.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use plotters::prelude::*;

use super::summary::{mean, Curve};
use crate::train::plots::{font_ready, step_chart};

/// One configuration's runs of one curve.
pub struct Series<'a> {
    pub label: &'a str,
    pub runs: Vec<&'a Curve>,
}

/// Per step: (mean, min, max) over the runs that logged that step.
fn band(runs: &[&Curve]) -> Vec<(f64, f64, f64, f64)> {
    let mut by_step: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for run in runs {
        for &(step, value) in run.iter() {
            by_step.entry(step as i64).or_default().push(value);
        }
    }
    by_step
        .into_iter()
        .map(|(step, vs)| {
            let lo = vs.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = vs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (step as f64, mean(&vs), lo, hi)
        })
        .collect()
}

fn y_range(bands: &[Vec<(f64, f64, f64, f64)>]) -> (f64, f64) {
    let (lo, hi) = bands
        .iter()
        .flatten()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p.2), hi.max(p.3))
        });
    match (lo.is_finite(), hi - lo < 1e-9) {
        (false, _) => (0.0, 1.0),
        (true, true) => (lo - 0.5, lo + 0.5),
        (true, false) => (lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo)),
    }
}

/// Draw `series` into `path` with `title`.
pub fn draw(path: &Path, title: &str, series: &[Series<'_>]) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    let text = font_ready();
    let bands: Vec<_> = series.iter().map(|s| band(&s.runs)).collect();
    let x_max = bands.iter().flatten().map(|p| p.0).fold(1.0, f64::max);
    let (y_lo, y_hi) = y_range(&bands);
    let root = BitMapBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = step_chart(&root, title, x_max, y_lo..y_hi)
        .with_context(|| format!("drawing {}", path.display()))?;
    for (i, (s, b)) in series.iter().zip(&bands).enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let mut outline: Vec<(f64, f64)> = b.iter().map(|p| (p.0, p.3)).collect();
        outline.extend(b.iter().rev().map(|p| (p.0, p.2)));
        chart
            .draw_series(std::iter::once(Polygon::new(outline, color.mix(0.15))))
            .map_err(|e| err(&e))?;
        let line = chart
            .draw_series(LineSeries::new(
                b.iter().map(|p| (p.0, p.1)),
                color.stroke_width(2),
            ))
            .map_err(|e| err(&e))?;
        if text {
            line.label(s.label).legend(move |(x, y)| {
                PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2))
            });
        }
    }
    if text {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn band_is_mean_min_max_per_step() {
        let a: Curve = vec![(1.0, 1.0), (2.0, 2.0)];
        let b: Curve = vec![(1.0, 3.0)];
        assert_eq!(
            band(&[&a, &b]),
            vec![(1.0, 2.0, 1.0, 3.0), (2.0, 2.0, 2.0, 2.0)]
        );
    }
}
