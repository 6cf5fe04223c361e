//! Ctrl-C during a run: the first asks the step loop to stop after the current step (it then
//! writes a checkpoint), a second one exits at once. Knows nothing of what stopping involves.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The flag the first Ctrl-C sets.
pub fn stop_flag() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    // Installing fails only when a handler is already set; that one then stays.
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\nrlvr: interrupted: finishing the current step, then writing a checkpoint…");
    });
    stop
}

/// Tests only (`--hold-at`): at `point`, say so and wait (a minute at most) for a Ctrl-C.
pub fn hold(hold_at: Option<&str>, point: &str, stop: &AtomicBool) {
    if hold_at != Some(point) {
        return;
    }
    eprintln!("rlvr: holding at {point} until interrupted (--hold-at)");
    let t0 = Instant::now();
    while !stop.load(Ordering::SeqCst) && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(10));
    }
}
