//! Tool rollouts end to end on the engine: a rigged tiny model writes calls, the calculator, a
//! hanging external tool and a malformed call are answered, the samples resume and finish.

use std::collections::HashMap;

use rlvr_runtime::{Engine, EngineConfig, FinishReason, Request, SamplingParams};

use super::render::ToolFormat;
use super::rollout::generate_with_tools;
use super::testing::*;
use super::{ExternalToolSpec, ToolsSection};

fn section(max_turns: usize) -> ToolsSection {
    ToolsSection {
        enabled: vec!["calculator".into(), "hang".into()],
        max_turns,
        max_output_tokens: 200,
        timeout_s: 5.0,
        external: vec![ExternalToolSpec {
            name: "hang".into(),
            description: "never answers".into(),
            parameters: serde_json::json!({"type": "object", "properties": {}}),
            command: vec!["sleep".into(), "30".into()],
            timeout_s: Some(0.3),
        }],
    }
}

fn request(tok: &rlvr_models::TextTokenizer, format: &ToolFormat, q: &str) -> Request {
    Request {
        prompt_ids: format.prompt_ids(tok, q).unwrap(),
        params: SamplingParams {
            stop_token_ids: vec![EOS],
            ..SamplingParams::greedy(200)
        },
        n: 2,
    }
}

#[test]
fn calls_are_answered_and_samples_resume() {
    let tok = tokenizer(Some(CHATML));
    let (x, nl) = (id(&tok, "X"), id(&tok, "\n"));
    // "A" → calculator, "B" → the hanging tool, "C" → malformed JSON; after a result: "X", EOS.
    let mut next = HashMap::new();
    next.insert(id(&tok, "A"), id(&tok, CALC_CALL));
    next.insert(id(&tok, "B"), id(&tok, HANG_CALL));
    next.insert(id(&tok, "C"), id(&tok, BAD_CALL));
    next.insert(nl, x);
    let model = bigram_model(&next);
    let toolbox = section(4).toolbox().unwrap();
    let format = ToolFormat::new(&tok, &toolbox.specs(), false).unwrap();
    let mut engine = Engine::new(model, Some(tok.clone()), EngineConfig::default()).unwrap();
    let requests = ["A", "B", "C"].map(|q| request(&tok, &format, q)).to_vec();
    let started = std::time::Instant::now();
    let out = generate_with_tools(&mut engine, requests, &tok, &format, &toolbox).unwrap();
    assert!(
        started.elapsed().as_secs() < 10,
        "the hanging tool was cut off"
    );
    assert_eq!(out.len(), 6);
    let inserted_text = |r: &super::rollout::ToolRollout| {
        let c = &r.completion;
        let ids: Vec<u32> = (0..c.token_ids.len())
            .filter(|&k| c.is_inserted(k))
            .map(|k| c.token_ids[k])
            .collect();
        tok.decode(&ids, false).unwrap()
    };
    for (i, r) in out.iter().enumerate() {
        let c = &r.completion;
        assert_eq!(c.request_index, i / 2);
        assert_eq!(
            c.finish_reason,
            FinishReason::Eos,
            "the run goes on after every call"
        );
        assert_eq!((r.stats.calls, r.stats.turns), (1, 2));
        assert_eq!(*c.token_ids.last().unwrap(), EOS);
        assert!(r.model_text.ends_with("\nX"), "{:?}", r.model_text);
        assert!(
            !r.model_text.contains("tool_response"),
            "results are not the model's"
        );
        let expected = [
            "\n<tool_response>\n42\n</tool_response>\n",
            "timed out",
            "not valid JSON",
        ];
        assert!(
            inserted_text(r).contains(expected[i / 2]),
            "{}",
            inserted_text(r)
        );
        assert_eq!(r.stats.errors, usize::from(i >= 2));
    }
    assert_eq!(engine.free_blocks(), engine.num_blocks());
}

#[test]
fn the_turn_limit_ends_a_sample_that_keeps_calling() {
    let tok = tokenizer(None);
    let mut next = HashMap::new();
    next.insert(id(&tok, "A"), id(&tok, CALC_CALL));
    next.insert(id(&tok, "\n"), id(&tok, CALC_CALL));
    let toolbox = section(2).toolbox().unwrap();
    let format = ToolFormat::new(&tok, &toolbox.specs(), false).unwrap();
    let mut engine = Engine::new(
        bigram_model(&next),
        Some(tok.clone()),
        EngineConfig::default(),
    )
    .unwrap();
    let out = generate_with_tools(
        &mut engine,
        vec![request(&tok, &format, "A")],
        &tok,
        &format,
        &toolbox,
    )
    .unwrap();
    for r in &out {
        assert_eq!(r.completion.finish_reason, FinishReason::ToolCall);
        assert_eq!((r.stats.calls, r.stats.turns, r.stats.errors), (3, 3, 0));
    }
}

#[test]
fn tools_render_in_the_template_or_in_hermes_form() {
    // SmolLM2-style ChatML knows no tools: Hermes system message and a `tool` turn.
    let tok = tokenizer(Some(CHATML));
    let toolbox = section(1).toolbox().unwrap();
    let format = ToolFormat::new(&tok, &toolbox.specs(), true).unwrap();
    assert!(!format.native());
    let prompt = tok
        .decode(&format.prompt_ids(&tok, "Q").unwrap(), false)
        .unwrap();
    assert!(
        prompt.starts_with("<|im_start|>system\n# Tools\n"),
        "{prompt}"
    );
    assert!(prompt.contains("\"name\":\"calculator\"") && prompt.contains("<tool_call>"));
    assert!(prompt.ends_with("<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n"));
    let result = tok
        .decode(&format.result_ids(&tok, "42", 8).unwrap(), false)
        .unwrap();
    assert_eq!(
        result,
        "<|im_end|>\n<|im_start|>tool\n<tool_response>\n42\n</tool_response><|im_end|>\n\
         <|im_start|>assistant\n"
    );
    let long = tok
        .decode(&format.result_ids(&tok, &"9".repeat(20), 8).unwrap(), false)
        .unwrap();
    assert!(long.contains("99999999 ...[cut at 8 tokens]"), "{long}");
    // A template with its own tools and `tool` role renders them itself.
    let native = "{% if tools %}[tools:{{ tools|length }}:{{ tools[0].function.name }}]{% endif %}\
        {% for m in messages %}{% if m.role == 'tool' %}<r>{{ m.content }}</r>{% else %}\
        [{{ m.role }}]{{ m.content }}{% endif %}{% endfor %}{% if add_generation_prompt %}\
        [assistant]{% endif %}";
    let tok = tokenizer(Some(native));
    let format = ToolFormat::new(&tok, &toolbox.specs(), true).unwrap();
    assert!(format.native());
    let prompt = tok
        .decode(&format.prompt_ids(&tok, "Q").unwrap(), false)
        .unwrap();
    assert_eq!(prompt, "[tools:2:calculator][user]Q[assistant]");
    let result = tok
        .decode(&format.result_ids(&tok, "42", 8).unwrap(), false)
        .unwrap();
    assert_eq!(result, "<r>42</r>[assistant]");
}
