//! Ctrl-C during a run: the first asks the run to stop at the next safe point (the step loop
//! finishes the current step; the end of the run stops before its evaluation or export), which
//! then writes a checkpoint, prints the resume command and exits 130; a second one exits at once.
//! Also the test-only stops: `--stop-after N` and `--hold-at POINT`.
//!
//! Knows nothing of what stopping involves: it answers "stop now?" and parks at hold points.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Interrupt {
    flag: Arc<AtomicBool>,
    stop_after: Option<u64>,
    hold_at: Option<String>,
}

impl Interrupt {
    /// Catch Ctrl-C from now on.
    pub fn install(stop_after: Option<u64>, hold_at: Option<String>) -> Self {
        let flag = Arc::new(AtomicBool::new(false));
        let handler_flag = flag.clone();
        // Installing fails only when a handler is already set; that one then stays.
        let _ = ctrlc::set_handler(move || {
            if handler_flag.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("\nrlvr: interrupted: stopping at the end of the current step, then writing a checkpoint…");
        });
        Self {
            flag,
            stop_after,
            hold_at,
        }
    }

    /// The flag Ctrl-C sets, for threads that must stop with the run.
    pub fn flag(&self) -> &Arc<AtomicBool> {
        &self.flag
    }

    /// Ctrl-C was pressed.
    pub fn requested(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Stop before training step `done + 1`: Ctrl-C, or `--stop-after` reached.
    pub fn stop_before(&self, done: u64) -> bool {
        self.requested() || self.stop_after.is_some_and(|after| done >= after)
    }

    /// Tests only (`--hold-at`): at `point`, say so and wait (a minute at most) for a Ctrl-C.
    pub fn hold(&self, point: &str) {
        if self.hold_at.as_deref() != Some(point) {
            return;
        }
        eprintln!("rlvr: holding at {point} until interrupted (--hold-at)");
        let t0 = Instant::now();
        while !self.requested() && t0.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
