#!/usr/bin/env python3
"""Did a verifier change move the rewards of real completions?

Samples completions of the default model on the built-in task ("What is A + B?
Put the final answer in \\boxed{}." with 1-digit and 2-digit A, B), grades each
with the verifier at an old revision and with the working tree, and prints the
verdicts that changed, with their completions.

Usage (from the repository root; needs target/release/rlvr for sampling):
    python3 scripts/verifier_reward_drift.py --old HEAD
    python3 scripts/verifier_reward_drift.py --old 68cd6c1 --prompts 48 --samples 8
    python3 scripts/verifier_reward_drift.py --old HEAD --completions gen.jsonl --golds prompts.jsonl

Both graders are `cargo build -p rlvr-verifier --release --example verify`
builds (seconds; the old one in a git worktree under $TMPDIR with its target in
target-vold/, copying examples/verify.rs there when that revision lacks it).
Every cargo command takes /tmp/rlvr-cargo.lock (machines shared by several
builders). Generated files go to --out (default: a fresh $TMPDIR directory).
Standard library only.
"""

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = "/tmp/rlvr-cargo.lock"


def run(cmd, **kw):
    """Run a command; its output goes to stderr unless redirected (stdout is the report)."""
    print("+ " + " ".join(str(c) for c in cmd), file=sys.stderr)
    kw.setdefault("stdout", sys.stderr)
    return subprocess.run(cmd, check=True, **kw)


def cargo(args, cwd, target_dir=None):
    env = dict(os.environ)
    if target_dir:
        env["CARGO_TARGET_DIR"] = str(target_dir)
    run(["flock", LOCK, "cargo", *args], cwd=cwd, env=env)


def write_prompts(path, n, seed):
    """n prompts of the built-in task, half with 1-digit and half with 2-digit operands."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for k in range(n):
            lo, hi = (0, 9) if k < n // 2 else (10, 99)
            a, b = rng.randint(lo, hi), rng.randint(lo, hi)
            prompt = f"What is {a} + {b}? Put the final answer in \\boxed{{}}."
            f.write(json.dumps({"prompt": prompt, "gold": str(a + b)}) + "\n")


def build_grader(rev, out):
    """The `verify` example at `rev` (None: the working tree); returns its path."""
    example = ROOT / "verifier" / "examples" / "verify.rs"
    if rev is None:
        cargo(["build", "-p", "rlvr-verifier", "--release", "--example", "verify"], ROOT)
        return ROOT / "target" / "release" / "examples" / "verify"
    tree = out / "old-tree"
    if tree.exists():
        run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT)
    run(["git", "worktree", "add", "--detach", str(tree), rev], cwd=ROOT)
    try:
        manifest = tree / "verifier" / "Cargo.toml"
        if not (tree / "verifier" / "examples" / "verify.rs").exists():
            shutil.copy(example, tree / "verifier" / "examples" / "verify.rs")
            with open(manifest, "a", encoding="utf-8") as f:
                f.write('\n[[example]]\nname = "verify"\npath = "examples/verify.rs"\n')
        target = ROOT / "target-vold"
        cargo(["build", "-p", "rlvr-verifier", "--release", "--example", "verify"], tree, target)
        grader = out / "verify-old"
        shutil.copy(target / "release" / "examples" / "verify", grader)
        return grader
    finally:
        run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT)


def grade(grader, lines):
    text = "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines)
    res = subprocess.run([str(grader)], input=text, capture_output=True, text=True, check=True)
    return [json.loads(l) for l in res.stdout.splitlines()]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", default="HEAD", help="revision graded as 'old' (default HEAD)")
    ap.add_argument("--prompts", type=int, default=48)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--completions", help="reuse `rlvr generate --json` output instead of sampling")
    ap.add_argument("--golds", help="the prompts file (with `gold`) the completions were sampled from")
    ap.add_argument("--out", help="directory for generated files (default: a new one in $TMPDIR)")
    args = ap.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="verifier-drift-"))
    out.mkdir(parents=True, exist_ok=True)

    if args.completions:
        if not args.golds:
            sys.exit("--completions needs --golds")
        prompts, completions = Path(args.golds), Path(args.completions)
    else:
        prompts, completions = out / "prompts.jsonl", out / "completions.jsonl"
        write_prompts(prompts, args.prompts, args.seed)
        rlvr = ROOT / "target" / "release" / "rlvr"
        if not rlvr.exists():
            sys.exit("target/release/rlvr is missing: flock /tmp/rlvr-cargo.lock cargo build --release")
        with open(completions, "w", encoding="utf-8") as f:
            run([str(rlvr), "generate", "--prompts", str(prompts), "-n", str(args.samples), "--json",
                 "--temperature", "1", "--max-new-tokens", str(args.max_new_tokens),
                 "--seed", str(args.seed)], stdout=f)

    golds = [json.loads(l)["gold"] for l in open(prompts, encoding="utf-8") if l.strip()]
    rows = [json.loads(l) for l in open(completions, encoding="utf-8") if l.strip()]
    lines = [{"gold": golds[r["prompt_index"]], "pred": r["text"]} for r in rows]
    old = grade(build_grader(args.old, out), lines)
    new = grade(build_grader(None, out), lines)

    changed = []
    for k, (line, o, n) in enumerate(zip(lines, old, new)):
        if (o.get("correct"), o.get("reward"), o.get("reason")) != (n.get("correct"), n.get("reward"), n.get("reason")):
            changed.append({"k": k, "gold": line["gold"], "old": o, "new": n, "completion": line["pred"]})
    summary = {
        "completions": len(lines),
        "old": args.old,
        "old_correct": sum(bool(o.get("correct")) for o in old),
        "new_correct": sum(bool(n.get("correct")) for n in new),
        "old_mean_reward": sum(o.get("reward", 0.0) for o in old) / max(1, len(old)),
        "new_mean_reward": sum(n.get("reward", 0.0) for n in new) / max(1, len(new)),
        "changed": len(changed),
        "files": str(out),
    }
    print(json.dumps(summary))
    for c in changed:
        print(json.dumps(c, ensure_ascii=False))


if __name__ == "__main__":
    main()
