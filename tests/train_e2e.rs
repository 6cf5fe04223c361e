//! End-to-end runs of the `rlvr` binary on a tiny random model: interrupted + resumed runs equal
//! uninterrupted ones (k = 0 and k = 1), and each kind of bad input gets a clear error.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

mod support;

fn tiny_model_dir(dir: &Path, chat_template: bool) {
    support::tiny_model_dir(dir, chat_template, 2);
}

fn rlvr() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rlvr"));
    c.env("HF_HUB_OFFLINE", "1");
    c
}

/// Questions whose answers are single digits.
fn digit_data(path: &Path) {
    let lines: Vec<String> = (0..24)
        .map(|i| {
            format!(
                "{{\"question\": \"Say the digit {d}.\", \"answer\": \"#### {d}\"}}",
                d = (i * 7) % 10
            )
        })
        .collect();
    std::fs::write(path, lines.join("\n")).unwrap();
}

fn base_args(model: &Path, out: &Path, k: u64) -> Vec<String> {
    let data = model.with_file_name("digits.jsonl");
    digit_data(&data);
    [
        "train",
        "--model",
        model.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--max-steps",
        "5",
        "--data",
        data.to_str().unwrap(),
        "--set",
        "boxed_bonus=0",
        "--set",
        "chat=false",
        "--prompts-per-step",
        "2",
        "--group-size",
        "8",
        "--max-new-tokens",
        "1",
        "--lr",
        "1e-2",
        "--set",
        "eval_size=4",
        "--set",
        "checkpoint_every=2",
        "--set",
        "verifier_workers=2",
        "--set",
        "trainer.num_minibatches=2",
        "--set",
        "export_dtype=f32",
        "--max-staleness",
        &k.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn run_ok(args: &[String]) {
    let out = rlvr().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "rlvr {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const COMPARED: [&str; 10] = [
    "step",
    "reward_mean",
    "reward_std",
    "loss",
    "clip_frac",
    "grad_norm_pre_clip",
    "policy_version",
    "response_length",
    "entropy_mean",
    "staleness_max",
];

fn metrics(dir: &Path) -> Vec<Vec<Value>> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            COMPARED.iter().map(|k| v[*k].clone()).collect()
        })
        .collect()
}

fn resume_equals_uninterrupted(k: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    tiny_model_dir(&model, true);
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    run_ok(&base_args(&model, &a, k));

    let mut interrupted = base_args(&model, &b, k);
    interrupted.extend(["--stop-after".to_string(), "3".to_string()]);
    let out = rlvr().args(&interrupted).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--resume"),
        "the message says how to resume: {stderr}"
    );
    assert_eq!(metrics(&b).len(), 3);
    run_ok(&[
        "train".into(),
        "--resume".into(),
        b.to_str().unwrap().into(),
    ]);

    let (ma, mb) = (metrics(&a), metrics(&b));
    assert_eq!(ma.len(), 5);
    // The runs learn something: rewards vary and gradients flow (else equality would be vacuous).
    assert!(
        ma.iter().any(|m| m[2].as_f64().unwrap() > 0.0),
        "reward_std always 0: {ma:?}"
    );
    assert!(
        ma.iter().all(|m| m[5].as_f64().unwrap() > 0.0),
        "zero gradient: {ma:?}"
    );
    assert_eq!(ma, mb, "k = {k}: metrics of the resumed run differ");
    let wa = std::fs::read(a.join("final/model.safetensors")).unwrap();
    let wb = std::fs::read(b.join("final/model.safetensors")).unwrap();
    assert!(wa == wb, "k = {k}: final weights differ");
    for f in [
        "config.toml",
        "eval.jsonl",
        "final/config.json",
        "final/tokenizer.json",
    ] {
        assert!(a.join(f).exists(), "{f} missing");
    }
    // Evaluations: before, at the end.
    assert!(
        std::fs::read_to_string(a.join("eval.jsonl"))
            .unwrap()
            .lines()
            .count()
            >= 2
    );
}

#[test]
fn resume_equals_uninterrupted_on_policy() {
    resume_equals_uninterrupted(0);
}

#[test]
fn resume_equals_uninterrupted_staleness_1() {
    resume_equals_uninterrupted(1);
}

fn run_err(args: &[&str]) -> String {
    let out = rlvr().args(args).output().unwrap();
    assert!(!out.status.success(), "rlvr {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_inputs_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    tiny_model_dir(&model, true);
    let m = model.to_str().unwrap();
    let out = |name: &str| tmp.path().join(name).to_str().unwrap().to_string();

    // A JSONL line that is not JSON: file and line named.
    let data = tmp.path().join("data.jsonl");
    let train_on_data = |run: &str| {
        run_err(&[
            "train",
            "--model",
            m,
            "--data",
            data.to_str().unwrap(),
            "--out",
            &out(run),
        ])
    };
    std::fs::write(
        &data,
        "{\"question\": \"1+1?\", \"answer\": \"#### 2\"}\n{not json\n",
    )
    .unwrap();
    let e = train_on_data("r1");
    assert!(
        e.contains("data.jsonl:2") && e.contains("not valid JSON"),
        "{e}"
    );

    // Missing fields.
    std::fs::write(&data, "{\"question\": \"1+1?\"}\n").unwrap();
    let e = train_on_data("r2");
    assert!(
        e.contains("data.jsonl:1") && e.contains("missing field `answer`"),
        "{e}"
    );

    // Empty dataset.
    std::fs::write(&data, "\n").unwrap();
    let e = train_on_data("r3");
    assert!(e.contains("empty"), "{e}");

    // A model without a chat template.
    let plain = tmp.path().join("plain");
    tiny_model_dir(&plain, false);
    let e = run_err(&[
        "train",
        "--model",
        plain.to_str().unwrap(),
        "--out",
        &out("r4"),
    ]);
    assert!(
        e.contains("no chat template") && e.contains("chat = false"),
        "{e}"
    );

    // A config key that does not exist: the closest is suggested.
    let e = run_err(&[
        "train",
        "--model",
        m,
        "--set",
        "grup_size=4",
        "--out",
        &out("r5"),
    ]);
    assert!(
        e.contains("unknown config key `grup_size`") && e.contains("group_size"),
        "{e}"
    );
    let cfg = tmp.path().join("run.toml");
    std::fs::write(&cfg, "[trainer]\nnum_minibatchez = 2\n").unwrap();
    let e = run_err(&[
        "train",
        "--model",
        m,
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        &out("r6"),
    ]);
    assert!(
        e.contains("trainer.num_minibatchez") && e.contains("trainer.num_minibatches"),
        "{e}"
    );

    // A RUN_DIR that already holds a run (marked as rlvr's): refused unless --resume or --force.
    let dir = tmp.path().join("taken");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.toml"), "model = \"other\"\n").unwrap();
    std::fs::write(dir.join(".rlvr-run"), "").unwrap();
    let e = run_err(&["train", "--model", m, "--out", dir.to_str().unwrap()]);
    assert!(
        e.contains("already holds a run") && e.contains("--force"),
        "{e}"
    );
}

/// Write `question`/`answer` string columns as a snappy-compressed Parquet file.
fn write_parquet(path: &Path, rows: &[(String, String)]) {
    use parquet::basic::Compression;
    use parquet::data_type::{ByteArray, ByteArrayType};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;
    use std::sync::Arc;
    let schema = Arc::new(
        parse_message_type("message schema { REQUIRED BYTE_ARRAY question (UTF8); REQUIRED BYTE_ARRAY answer (UTF8); }").unwrap(),
    );
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build(),
    );
    let file = std::fs::File::create(path).unwrap();
    let mut writer = SerializedFileWriter::new(file, schema, props).unwrap();
    let mut group = writer.next_row_group().unwrap();
    for col in 0..2 {
        let values: Vec<ByteArray> = rows
            .iter()
            .map(|r| ByteArray::from(if col == 0 { r.0.as_str() } else { r.1.as_str() }))
            .collect();
        let mut w = group.next_column().unwrap().unwrap();
        w.typed::<ByteArrayType>()
            .write_batch(&values, None, None)
            .unwrap();
        w.close().unwrap();
    }
    group.close().unwrap();
    writer.close().unwrap();
}

#[test]
fn parquet_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    tiny_model_dir(&model, true);
    let rows: Vec<(String, String)> = (0..12)
        .map(|i| {
            (
                format!("Say the digit {}.", i % 10),
                format!("#### {}", i % 10),
            )
        })
        .collect();
    let data = tmp.path().join("train.parquet");
    write_parquet(&data, &rows);
    let out = tmp.path().join("run");
    run_ok(
        &[
            "train",
            "--model",
            model.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--max-steps",
            "2",
            "--prompts-per-step",
            "2",
            "--group-size",
            "4",
            "--max-new-tokens",
            "1",
            "--set",
            "eval_size=4",
            "--set",
            "chat=false",
        ]
        .map(String::from),
    );
    assert_eq!(metrics(&out).len(), 2);
    // A row without the answer column: the file and row are named.
    let bad = tmp.path().join("bad.parquet");
    let rows: Vec<(String, String)> = vec![
        ("Say 1.".into(), "#### 1".into()),
        ("Say 2.".into(), "no answer here".into()),
    ];
    write_parquet(&bad, &rows);
    let e = run_err(&[
        "train",
        "--model",
        model.to_str().unwrap(),
        "--data",
        bad.to_str().unwrap(),
        "--out",
        tmp.path().join("r2").to_str().unwrap(),
        "--set",
        "eval_size=1",
    ]);
    assert!(
        e.contains("bad.parquet:row 2") && e.contains("no gold answer"),
        "{e}"
    );
}
