//! Small `rlvr train` runs for the end-to-end tests: a tiny model and digit questions, the
//! arguments of a run over them, a run with its stderr read line by line (to interrupt it at a
//! known place), and what a run directory holds.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

/// The built binary, offline.
pub fn rlvr() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rlvr"));
    c.env("HF_HUB_OFFLINE", "1");
    c
}

/// A tiny model (`model/`) and 24 single-digit questions (`digits.jsonl`) under `dir`.
pub fn tiny_inputs(dir: &Path) -> (PathBuf, PathBuf) {
    let model = dir.join("model");
    super::tiny_model_dir(&model, true, 2);
    let data = dir.join("digits.jsonl");
    let lines: Vec<String> = (0..24)
        .map(|i| {
            format!(
                "{{\"question\": \"Say the digit {d}.\", \"answer\": \"#### {d}\"}}",
                d = (i * 7) % 10
            )
        })
        .collect();
    std::fs::write(&data, lines.join("\n")).unwrap();
    (model, data)
}

/// A run of `steps` steps into `out` at staleness `k`: 2 prompts × 8 samples of one token,
/// checkpoints every 2 steps, evaluation before and after.
pub fn train_args(model: &Path, data: &Path, out: &Path, steps: u64, k: u64) -> Vec<String> {
    let mut args: Vec<String> = [
        "train",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec();
    let steps = steps.to_string();
    let k = k.to_string();
    args.extend(
        [
            "--max-steps",
            &steps,
            "--max-staleness",
            &k,
            "--prompts-per-step",
            "2",
            "--group-size",
            "8",
            "--max-new-tokens",
            "1",
            "--lr",
            "1e-2",
            "--set",
            "boxed_bonus=0",
            "--set",
            "chat=false",
            "--set",
            "eval_size=4",
            "--set",
            "checkpoint_every=2",
            "--set",
            "trainer.num_minibatches=2",
        ]
        .map(String::from),
    );
    args
}

pub struct Finished {
    pub status: ExitStatus,
    pub stderr: String,
}

impl Finished {
    pub fn ok(&self) -> bool {
        self.status.success()
    }
}

/// Run to the end (at most two minutes); asserts it did not panic.
pub fn run(args: &[String]) -> Finished {
    Running::start(args).wait()
}

/// Run and assert success.
pub fn run_ok(args: &[String]) -> String {
    let f = run(args);
    assert!(f.ok(), "rlvr {args:?} failed:\n{}", f.stderr);
    f.stderr
}

/// Run and assert failure; returns stderr.
pub fn run_err(args: &[String]) -> String {
    let f = run(args);
    assert!(!f.ok(), "rlvr {args:?} should fail:\n{}", f.stderr);
    f.stderr
}

/// A running `rlvr` whose stderr lines arrive as they are written.
pub struct Running {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    pub fn start(args: &[String]) -> Self {
        let mut child = rlvr()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn rlvr");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self {
            child,
            lines,
            seen: vec![],
        }
    }

    /// Read stderr until a line contains `needle` (at most a minute).
    pub fn wait_for_line(&mut self, needle: &str) {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(60) {
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.seen.push(line);
                    if found {
                        return;
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(_) => break,
            }
        }
        panic!("no stderr line with {needle:?}:\n{}", self.seen.join("\n"));
    }

    /// Send SIGINT, as Ctrl-C in a terminal does.
    pub fn interrupt(&self) {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("kill -INT");
        assert!(status.success());
    }

    /// Wait for the exit (at most two minutes) and the rest of stderr.
    pub fn wait(mut self) -> Finished {
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if t0.elapsed() > Duration::from_secs(120) {
                let _ = self.child.kill();
                panic!("rlvr did not finish:\n{}", self.seen.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.seen.extend(self.lines.iter());
        let stderr = self.seen.join("\n");
        assert!(!stderr.contains("panicked"), "panic:\n{stderr}");
        Finished { status, stderr }
    }
}

/// The exported weights of a finished run.
pub fn final_weights(run_dir: &Path) -> Vec<u8> {
    std::fs::read(run_dir.join("final/model.safetensors")).unwrap()
}

/// The lines of a JSONL log of a run (empty when it does not exist).
pub fn log_lines(run_dir: &Path, name: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run_dir.join(name))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The checkpoint directory names of a run, sorted.
pub fn checkpoint_names(run_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(run_dir.join("checkpoints"))
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
