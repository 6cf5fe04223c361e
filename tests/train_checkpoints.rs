//! Checkpoints on disk, end to end: a damaged newest checkpoint is detected and the one before
//! it used (the resumed run then ends as an uninterrupted one), a checkpoint of an older rlvr
//! without checksums still loads with a warning, and temporaries of failed writes are removed
//! at the next start.

use std::path::{Path, PathBuf};

mod support;

use support::train::{
    checkpoint_names, final_weights, log_lines, run, run_ok, tiny_inputs, train_args,
};

const STEPS: u64 = 5;

struct Setup {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    model: PathBuf,
    data: PathBuf,
    reference: PathBuf,
}

/// The inputs and an uninterrupted reference run.
fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let (model, data) = tiny_inputs(&root);
    let reference = root.join("reference");
    run_ok(&train_args(&model, &data, &reference, STEPS, 0));
    Setup {
        _tmp: tmp,
        root,
        model,
        data,
        reference,
    }
}

impl Setup {
    /// A run stopped after 4 steps (checkpoints at steps 2 and 4) in `name`.
    fn stopped_run(&self, name: &str) -> PathBuf {
        let out = self.root.join(name);
        let mut args = train_args(&self.model, &self.data, &out, STEPS, 0);
        args.extend(["--stop-after".to_string(), "4".to_string()]);
        let end = run(&args);
        assert_eq!(end.status.code(), Some(130), "{}", end.stderr);
        assert_eq!(checkpoint_names(&out), ["step-00000002", "step-00000004"]);
        out
    }

    /// Resume `run` to the end and check it matches the reference; returns stderr.
    fn resume_matches_reference(&self, run: &Path) -> String {
        let stderr = run_ok(&["train".into(), "--resume".into(), run.display().to_string()]);
        assert!(
            final_weights(&self.reference) == final_weights(run),
            "final weights differ from the uninterrupted run's\n{stderr}"
        );
        let losses = |dir: &Path| -> Vec<String> {
            log_lines(dir, "metrics.jsonl")
                .iter()
                .map(|l| l["loss"].to_string())
                .collect()
        };
        assert_eq!(losses(&self.reference), losses(run));
        stderr
    }
}

/// Flip 4 bytes in the middle of a file.
fn damage(file: &Path) {
    let mut bytes = std::fs::read(file).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 4] {
        *b ^= 0x5a;
    }
    std::fs::write(file, bytes).unwrap();
}

#[test]
fn damaged_newest_checkpoint_falls_back_to_the_previous() {
    let s = setup();
    for file in [
        "model.safetensors",
        "optimizer.safetensors",
        "trainer_state.json",
    ] {
        let run = s.stopped_run(&format!("run-{file}"));
        damage(&run.join("checkpoints/step-00000004").join(file));
        let stderr = s.resume_matches_reference(&run);
        let says = |text: &str| assert!(stderr.contains(text), "{file}: no {text:?}\n{stderr}");
        says("step-00000004 is damaged");
        says(file);
        says("damaged-step-00000004");
        says(&format!(
            "from {} (step 2)",
            run.join("checkpoints/step-00000002").display()
        ));
        assert!(run.join("checkpoints/damaged-step-00000004").is_dir());
    }
}

#[test]
fn no_checkpoint_that_verifies_is_an_error_that_changes_nothing() {
    let s = setup();
    let run = s.stopped_run("run");
    for step in ["step-00000002", "step-00000004"] {
        damage(&run.join("checkpoints").join(step).join("model.safetensors"));
    }
    let end = support::train::run(&["train".into(), "--resume".into(), run.display().to_string()]);
    assert!(!end.ok(), "{}", end.stderr);
    assert!(end.stderr.contains("no checkpoint"), "{}", end.stderr);
    assert_eq!(checkpoint_names(&run), ["step-00000002", "step-00000004"]);
}

#[test]
fn checkpoint_without_checksums_loads_with_a_warning() {
    let s = setup();
    let run = s.stopped_run("run");
    for step in ["step-00000002", "step-00000004"] {
        let manifest = run.join("checkpoints").join(step).join("manifest.json");
        if manifest.exists() {
            std::fs::remove_file(manifest).unwrap();
        }
    }
    let stderr = s.resume_matches_reference(&run);
    assert!(
        stderr.contains("step-00000004") && stderr.contains("cannot be verified"),
        "{stderr}"
    );
}

#[test]
fn temporaries_of_failed_writes_are_removed_at_the_next_start() {
    let s = setup();
    let run = s.stopped_run("run");
    let stale_tmp = run.join("checkpoints/.tmp-step-00000006-4242");
    std::fs::create_dir_all(&stale_tmp).unwrap();
    std::fs::write(stale_tmp.join("model.safetensors"), vec![0u8; 4096]).unwrap();
    std::fs::create_dir_all(run.join("final")).unwrap();
    let stale_export = run.join("final/model.safetensors.tmp");
    std::fs::write(&stale_export, vec![0u8; 4096]).unwrap();
    let stderr = s.resume_matches_reference(&run);
    assert!(!stale_tmp.exists(), "{stderr}");
    assert!(!stale_export.exists(), "{stderr}");
    assert!(stderr.contains("removed"), "{stderr}");
    assert_eq!(checkpoint_names(&run), ["step-00000004", "step-00000005"]);
}
