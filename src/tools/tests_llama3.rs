//! Tools in Llama 3's own form, end to end, with a Llama 3.x-style chat template written for
//! these tests (tests/fixtures/chat_templates/llama3-style-tools.jinja): the tools go into the
//! first user message, a call is a bare JSON turn ended by `<|eot_id|>` (or
//! `<|eom_id|>`), the result is an `ipython` turn, and a turn that is no call ends the sample.

use std::collections::HashMap;

use rlvr_models::TextTokenizer;
use rlvr_runtime::{Completion, Engine, EngineConfig, FinishReason, Request, SamplingParams};

use super::render::{CallSyntax, ToolFormat};
use super::rollout::generate_with_tools;
use super::testing::*;
use super::ToolsSection;

/// What the template puts after a call's `<|eot_id|>` for the result 42 (a string, which the
/// template writes with `tojson`), through the next assistant header.
const RESULT_42: &str = "<|start_header_id|>ipython<|end_header_id|>\n\n\"42\"<|eot_id|>\
    <|start_header_id|>assistant<|end_header_id|>\n\n";

fn format(tok: &TextTokenizer, max_turns: usize) -> (super::ToolBox, ToolFormat) {
    let section = ToolsSection {
        enabled: vec!["calculator".into()],
        max_turns,
        max_output_tokens: 64,
        ..Default::default()
    };
    let toolbox = section.toolbox().unwrap();
    let format = ToolFormat::new(tok, &toolbox.specs(), true).unwrap();
    (toolbox, format)
}

fn request(tok: &TextTokenizer, format: &ToolFormat, params: SamplingParams, n: usize) -> Request {
    let (eot, eom) = (id(tok, "<|eot_id|>"), id(tok, "<|eom_id|>"));
    Request {
        prompt_ids: format.prompt_ids(tok, "What is 6*7?").unwrap(),
        params: SamplingParams {
            stop_token_ids: vec![EOS, eot, eom],
            ..params
        },
        n,
    }
}

/// The completion's spans: (inserted?, decoded text with special tokens).
fn spans(tok: &TextTokenizer, c: &Completion) -> Vec<(bool, String)> {
    let mut out: Vec<(bool, Vec<u32>)> = vec![];
    for (k, &t) in c.token_ids.iter().enumerate() {
        match out.last_mut() {
            Some((ins, ids)) if *ins == c.is_inserted(k) => ids.push(t),
            _ => out.push((c.is_inserted(k), vec![t])),
        }
    }
    out.into_iter()
        .map(|(ins, ids)| (ins, tok.decode(&ids, false).unwrap()))
        .collect()
}

#[test]
fn the_llama3_template_is_read_as_bare_json_calls() {
    let tok = llama3_tokenizer();
    let (_, format) = format(&tok, 1);
    assert!(format.native());
    let ends = vec![id(&tok, "<|eot_id|>"), id(&tok, "<|eom_id|>")];
    assert_eq!(format.syntax(), &CallSyntax::BareJson { turn_end: ends });
    let prompt = tok
        .decode(&format.prompt_ids(&tok, "Q").unwrap(), false)
        .unwrap();
    let head = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n\
        Environment: ipython\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n\
        You can call the functions described below. To call one, answer with nothing but a JSON \
        object in the format {\"name\": function name, \"parameters\": dictionary of argument \
        name and its value}, and no variables in the values.\n\n{\n";
    assert!(prompt.starts_with(head), "{prompt}");
    assert!(
        prompt.contains("        \"name\": \"calculator\",\n"),
        "{prompt}"
    );
    assert!(
        prompt.ends_with("}\n\nQ<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"),
        "{prompt}"
    );
    let result = tok
        .decode(&format.result_ids(&tok, "42", 8).unwrap(), false)
        .unwrap();
    assert_eq!(result, RESULT_42);
    let quoted = tok
        .decode(&format.result_ids(&tok, "say \"hi\"\n", 64).unwrap(), false)
        .unwrap();
    assert!(
        quoted.contains("\n\n\"say \\\"hi\\\"\\n\"<|eot_id|>"),
        "{quoted}"
    );
}

#[test]
fn other_templates_keep_the_hermes_syntax() {
    // Qwen2.5's way: calls rendered as <tool_call> blocks from `tool_calls`.
    let qwen = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}\
        {% for c in m.tool_calls or [] %}<tool_call>\n{{ c.function | tojson }}\n</tool_call>\
        {% endfor %}<|im_end|>\n{% endfor %}{% if tools %}{% endif %}\
        {% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
    for template in [CHATML, qwen] {
        let tok = tokenizer(Some(template));
        let (_, format) = format(&tok, 1);
        assert_eq!(format.syntax(), &CallSyntax::Hermes, "{template}");
    }
    // Bare JSON calls with no special token after them leave nowhere to pause: an error.
    let plain = "{% for m in messages %}{% if m.tool_calls %}{{ m.tool_calls[0].function | \
        tojson }}\n{% else %}[{{ m.role }}]{{ m.content }}{% endif %}{% endfor %}{% if tools %}\
        {% endif %}";
    let tok = tokenizer(Some(plain));
    let toolbox = ToolsSection {
        enabled: vec!["calculator".into()],
        ..Default::default()
    };
    let specs = toolbox.toolbox().unwrap().specs();
    let err = ToolFormat::new(&tok, &specs, true).unwrap_err();
    assert!(
        format!("{err:#}").contains("not a special token"),
        "{err:#}"
    );
}

/// Each turn the model writes the call or answers "X" (an even draw), and ends the turn with
/// `<|eot_id|>`. A call is run and answered in the ipython turn, and the sample resumes; an
/// answer ends the sample as EOS. Seeded, so both paths are taken.
#[test]
fn llama3_calls_are_answered_and_answers_end_the_sample() {
    let tok = llama3_tokenizer();
    let (eot, call, x) = (id(&tok, "<|eot_id|>"), id(&tok, LLAMA_CALL), id(&tok, "X"));
    let mut next = HashMap::new();
    next.insert(id(&tok, "\n"), vec![call, x]);
    next.insert(call, vec![eot]);
    next.insert(x, vec![eot]);
    let (toolbox, format) = format(&tok, 4);
    let mut engine = Engine::new(
        draw_model(&next),
        Some(tok.clone()),
        EngineConfig::default(),
    )
    .unwrap();
    let params = SamplingParams {
        temperature: 1.0,
        seed: 7,
        ..SamplingParams::greedy(300)
    };
    let requests = vec![request(&tok, &format, params, 8)];
    let out = generate_with_tools(&mut engine, requests, &tok, &format, &toolbox).unwrap();
    assert_eq!(out.len(), 8);
    let (mut answered_after_call, mut answered_at_once) = (0, 0);
    for r in &out {
        let c = &r.completion;
        let spans = spans(&tok, c);
        let calls = spans.iter().filter(|(ins, _)| *ins).count();
        assert_eq!((r.stats.calls, r.stats.errors), (calls, 0), "{spans:?}");
        for (k, (inserted, text)) in spans.iter().enumerate() {
            match inserted {
                true => assert_eq!(text, RESULT_42, "the result in the ipython turn"),
                false if k + 1 < spans.len() => {
                    assert_eq!(text, &format!("{LLAMA_CALL}<|eot_id|>"), "a call turn")
                }
                false => assert_eq!(text, "X<|eot_id|>", "the answer ends the sample"),
            }
        }
        assert_eq!(c.finish_reason, FinishReason::Eos, "{spans:?}");
        assert_eq!(r.stats.turns, calls + 1);
        assert!(r.model_text.ends_with('X') && !r.model_text.contains("ipython"));
        match calls {
            0 => answered_at_once += 1,
            _ => answered_after_call += 1,
        }
    }
    assert!(
        answered_at_once > 0 && answered_after_call > 0,
        "both paths"
    );
    assert_eq!(engine.free_blocks(), engine.num_blocks());
    assert_eq!(engine.num_paused(), 0);
}

/// A call cut short (ended with `<|eom_id|>`, ipython mode) is answered with an error message in
/// the ipython turn, not a panic; the turn limit then ends the sample that keeps calling.
#[test]
fn a_broken_llama3_call_is_an_error_message() {
    let tok = llama3_tokenizer();
    let (eom, bad) = (id(&tok, "<|eom_id|>"), id(&tok, LLAMA_BAD_CALL));
    let mut next = HashMap::new();
    next.insert(id(&tok, "\n"), bad);
    next.insert(bad, eom);
    let (toolbox, format) = format(&tok, 1);
    let mut engine = Engine::new(
        bigram_model(&next),
        Some(tok.clone()),
        EngineConfig::default(),
    )
    .unwrap();
    let requests = vec![request(&tok, &format, SamplingParams::greedy(300), 1)];
    let out = generate_with_tools(&mut engine, requests, &tok, &format, &toolbox).unwrap();
    let r = &out[0];
    assert_eq!(r.completion.finish_reason, FinishReason::ToolCall);
    assert_eq!((r.stats.calls, r.stats.errors, r.stats.turns), (2, 1, 2));
    let spans = spans(&tok, &r.completion);
    assert_eq!(spans[0], (false, format!("{LLAMA_BAD_CALL}<|eom_id|>")));
    assert!(spans[1].0, "{spans:?}");
    assert!(
        spans[1]
            .1
            .starts_with("<|start_header_id|>ipython<|end_header_id|>\n\n\"Error: ")
            && spans[1].1.contains("not valid JSON"),
        "{}",
        spans[1].1
    );
    assert_eq!(engine.free_blocks(), engine.num_blocks());
}
