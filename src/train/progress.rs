//! Progress of a run: a bar with the latest step's summary on a terminal, else the summary line
//! on stderr (stdout stays machine-readable: `rlvr bench step` prints JSON there). Knows nothing
//! of what the summary says.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A bar of `max_steps` at `done` when stdout is a terminal.
    pub fn new(max_steps: u64, done: u64) -> Self {
        let bar = std::io::stdout().is_terminal().then(|| {
            let bar = ProgressBar::new(max_steps);
            bar.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  ETA {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_position(done);
            bar
        });
        Self { bar }
    }

    /// Step `step` is done; `summary` describes it.
    pub fn step(&self, step: u64, summary: String) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(step);
                bar.set_message(summary);
            }
            None => eprintln!("{summary}"),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}
