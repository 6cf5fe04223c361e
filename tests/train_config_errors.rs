//! Config and input errors name what is wrong: the key and where it was set (a TOML file or
//! `--set`) with the expected form, the allowed range instead of a silent clamp, the damaged
//! file of a checkpoint, and the tensor of a model file with bad offsets.

use std::path::Path;

mod support;

use support::train::{run, run_err, tiny_inputs, train_args};

fn train_with(model: &Path, data: &Path, out: &Path, extra: &[&str]) -> String {
    let mut args = train_args(model, data, out, 2, 0);
    args.extend(extra.iter().map(|s| s.to_string()));
    run_err(&args)
}

fn says(e: &str, parts: &[&str]) {
    for part in parts {
        assert!(e.contains(part), "no {part:?} in:\n{e}");
    }
}

#[test]
fn config_values_and_keys_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = tiny_inputs(tmp.path());
    let out = tmp.path().join("run");
    let t = |extra: &[&str]| train_with(&model, &data, &out, extra);

    // A wrong type, from --set and from a TOML file.
    says(
        &t(&["--set", "lr=abc"]),
        &["`lr`", "--set lr=abc", "expected a number"],
    );
    let toml = tmp.path().join("run.toml");
    std::fs::write(&toml, "[trainer]\nmicro_batch_size = \"two\"\n").unwrap();
    says(
        &t(&["--config", toml.to_str().unwrap()]),
        &[
            "`trainer.micro_batch_size`",
            "run.toml",
            "expected a whole number",
        ],
    );
    // Not-a-number.
    says(&t(&["--set", "lr=nan"]), &["nan is not allowed for `lr`"]);
    std::fs::write(&toml, "lr = nan\n").unwrap();
    says(
        &t(&["--config", toml.to_str().unwrap()]),
        &["nan is not allowed for `lr`", "run.toml"],
    );
    // Unknown keys: close suggestions only.
    says(
        &t(&["--set", "lerning_rate=0.1"]),
        &["`lerning_rate`", "did you mean `lr`"],
    );
    says(
        &t(&["--set", "trainer.lr=0.1"]),
        &["`trainer.lr`", "did you mean `lr`"],
    );
    let e = t(&["--set", "zzzzqqq=1"]);
    says(&e, &["unknown config key `zzzzqqq`"]);
    assert!(!e.contains("did you mean"), "{e}");
    // Out of range: an error with the range, not a clamp.
    says(
        &t(&["--set", "task.digits=40"]),
        &["task.digits", "between 1 and 9", "40"],
    );
    assert!(!out.exists());
}

#[test]
fn a_corrupt_trainer_state_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = tiny_inputs(tmp.path());
    let out = tmp.path().join("run");
    let mut args = train_args(&model, &data, &out, 4, 0);
    args.extend(["--stop-after", "2"].map(String::from));
    assert_eq!(run(&args).status.code(), Some(130));
    // A checkpoint without a manifest (as older versions wrote them), so that the file itself
    // is read and found wanting.
    let ck = out.join("checkpoints/step-00000002");
    let _ = std::fs::remove_file(ck.join("manifest.json"));
    std::fs::write(ck.join("trainer_state.json"), "{\"format\": 1, \"train_st").unwrap();
    let f = run(&["train".into(), "--resume".into(), out.display().to_string()]);
    assert!(!f.ok(), "{}", f.stderr);
    says(
        &f.stderr,
        &[
            "step-00000002/trainer_state.json",
            "not a valid trainer state",
        ],
    );
}

#[test]
fn a_model_tensor_with_bad_offsets_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = tiny_inputs(tmp.path());
    // Shift one tensor's end offset: its byte span no longer matches its shape.
    let file = model.join("model.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let name = "model.layers.0.mlp.up_proj.weight";
    let offsets = &mut header[name]["data_offsets"];
    let end = offsets[1].as_u64().unwrap();
    offsets[1] = (end - 4).into();
    let mut text = serde_json::to_vec(&header).unwrap();
    text.resize(n.max(text.len()), b' ');
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend(&text);
    out.extend(&bytes[8 + n..]);
    std::fs::write(&file, out).unwrap();
    let e = train_with(&model, &data, &tmp.path().join("run"), &[]);
    says(&e, &["model.safetensors", name]);
}
