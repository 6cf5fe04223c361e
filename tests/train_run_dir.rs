//! The run directory is safe: `--force` removes only what rlvr wrote, and only once the new run's
//! config, model and data have been checked; a start that fails validation writes nothing.

use std::path::Path;

mod support;

use support::train::{log_lines, run_err, run_ok, tiny_inputs, train_args};

fn with(mut args: Vec<String>, extra: &[&str]) -> Vec<String> {
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Replace the value after `flag`.
fn set_arg(mut args: Vec<String>, flag: &str, value: &str) -> Vec<String> {
    let i = args.iter().position(|a| a == flag).unwrap();
    args[i + 1] = value.to_string();
    args
}

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![];
    for entry in walk(dir) {
        let rel = entry.strip_prefix(dir).unwrap().display().to_string();
        out.push((rel, std::fs::read(&entry).unwrap()));
    }
    out.sort();
    out
}

/// `dir` holds the same files with the same bytes as `before`.
fn assert_same(dir: &Path, before: &[(String, Vec<u8>)], what: &str) {
    let now = snapshot(dir);
    let names = |s: &[(String, Vec<u8>)]| s.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&now), names(before), "{what}: files differ");
    for ((name, a), (_, b)) in now.iter().zip(before) {
        assert!(a == b, "{what}: {name} changed");
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = vec![];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files.extend(walk(&p));
        } else {
            files.push(p);
        }
    }
    files
}

#[test]
fn force_never_removes_a_directory_rlvr_did_not_make() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = tiny_inputs(tmp.path());
    let project = tmp.path().join("project");
    std::fs::create_dir_all(project.join("src")).unwrap();
    std::fs::write(project.join("config.toml"), "[project]\nname = \"mine\"\n").unwrap();
    std::fs::write(project.join("src/main.rs"), "fn main() {}\n").unwrap();
    std::fs::write(project.join("notes.md"), "# notes\n").unwrap();
    let before = snapshot(&project);

    // A run that would fail on its data, and a valid one: both refuse the directory, whose
    // config.toml is not rlvr's, and leave it as it was.
    let bad = tmp.path().join("bad.jsonl");
    std::fs::write(&bad, "{not json\n").unwrap();
    let args = with(train_args(&model, &data, &project, 2, 0), &["--force"]);
    for args in [set_arg(args.clone(), "--data", bad.to_str().unwrap()), args] {
        let e = run_err(&args);
        assert!(e.contains("not an rlvr run directory"), "{e}");
        assert_same(&project, &before, "--force on a foreign directory");
    }
}

#[test]
fn force_replaces_only_the_old_run_and_only_after_checks() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = tiny_inputs(tmp.path());
    let run = tmp.path().join("run");
    run_ok(&train_args(&model, &data, &run, 2, 0));
    std::fs::write(run.join("notes.md"), "my notes on this run\n").unwrap();
    let before = snapshot(&run);

    // Without --force: refused, untouched.
    let again = train_args(&model, &data, &run, 3, 0);
    let e = run_err(&again);
    assert!(
        e.contains("already holds a run") && e.contains("--force"),
        "{e}"
    );
    // --force with bad data, a bad lr, or a bad model: the old run is kept whole.
    let bad = tmp.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"question\": \"1+1?\"}\n").unwrap();
    let forced = with(again.clone(), &["--force"]);
    run_err(&set_arg(forced.clone(), "--data", bad.to_str().unwrap()));
    run_err(&with(forced.clone(), &["--lr=-1"]));
    let no_model = tmp.path().join("no-model");
    run_err(&set_arg(
        forced.clone(),
        "--model",
        no_model.to_str().unwrap(),
    ));
    assert_same(&run, &before, "a failed --force run over an old run");

    // A valid --force run replaces what rlvr wrote and keeps the rest.
    run_ok(&forced);
    assert_eq!(log_lines(&run, "metrics.jsonl").len(), 3);
    assert_eq!(
        std::fs::read_to_string(run.join("notes.md")).unwrap(),
        "my notes on this run\n"
    );
}

#[test]
fn failed_starts_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = tiny_inputs(tmp.path());
    let out = tmp.path().join("run");
    let good = train_args(&model, &data, &out, 2, 0);
    let bad_data = tmp.path().join("bad.jsonl");
    std::fs::write(&bad_data, "{\"question\": \"1+1?\"}\n").unwrap();
    let bad_model = tmp.path().join("bad-model");
    std::fs::create_dir_all(&bad_model).unwrap();
    std::fs::write(bad_model.join("config.json"), "{\"model_type\": \"llama\"").unwrap();
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("lr=-1", with(good.clone(), &["--lr=-1"])),
        ("top_p=2", with(good.clone(), &["--set", "top_p=2"])),
        (
            "bad data",
            set_arg(good.clone(), "--data", bad_data.to_str().unwrap()),
        ),
        (
            "bad model",
            set_arg(good.clone(), "--model", bad_model.to_str().unwrap()),
        ),
    ];
    for (what, args) in cases {
        let e = run_err(&args);
        assert!(
            !out.exists(),
            "{what}: a failed start left {}\n{e}",
            out.display()
        );
        assert!(
            !e.contains("eval @ step"),
            "{what}: evaluated before failing\n{e}"
        );
    }
    // The same command, fixed, then just works.
    run_ok(&good);

    // A resume that fails validation leaves the run's config as it was.
    let config = std::fs::read(out.join("config.toml")).unwrap();
    let resume = ["train", "--resume", out.to_str().unwrap()].map(String::from);
    run_err(&with(resume.to_vec(), &["--lr=-1"]));
    run_err(&with(resume.to_vec(), &["--set", "top_p=2"]));
    assert_eq!(std::fs::read(out.join("config.toml")).unwrap(), config);
}
