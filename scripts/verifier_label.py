#!/usr/bin/env python3
"""Label the verifier's comparison set with math-verify's verdicts.

Run in a throwaway virtual environment that has math-verify 0.9.0 (this
script is committed; math-verify is not):

    python3 -m venv "$TMPDIR/mv-venv"        # any throwaway directory
    "$TMPDIR/mv-venv/bin/pip" install math-verify==0.9.0
    python3 scripts/verifier_pairs.py > "$TMPDIR/pairs.unlabelled.jsonl"
    "$TMPDIR/mv-venv/bin/python" scripts/verifier_label.py \
        "$TMPDIR/pairs.unlabelled.jsonl" > tests/fixtures/verifier/pairs.jsonl

Settings (math-verify's defaults throughout):
- gold and prediction are both parsed with `math_verify.parse(text)`, i.e.
  extraction_config=[LatexExtractionConfig(), ExprExtractionConfig()],
  fallback_mode="first_match", extraction_mode="any_match",
  parsing_timeout=5;
- the verdict is `math_verify.verify(gold_parsed, pred_parsed)`, i.e.
  float_rounding=6, numeric_precision=15, strict=True, timeout_seconds=5.
A pair whose parsing or verification raises counts as `false`.

Adds "math_verify": true/false to every line; everything else is copied.
With --explain FILE, also writes what math-verify extracted from each side.
"""

import argparse
import importlib.metadata
import json
import logging
import sys

from math_verify import parse, verify

logging.disable(logging.CRITICAL)


def label(gold, pred):
    try:
        g = parse(gold)
        p = parse(pred)
        return bool(verify(g, p)), [str(x) for x in g], [str(x) for x in p]
    except Exception as e:  # noqa: BLE001 - any failure is a "no"
        return False, [f"error: {e}"], []


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pairs")
    ap.add_argument("--explain")
    args = ap.parse_args()
    version = importlib.metadata.version("math-verify")
    if version != "0.9.0":
        sys.exit(f"expected math-verify 0.9.0, found {version}")
    explain = open(args.explain, "w", encoding="utf-8") if args.explain else None
    n = agree = 0
    with open(args.pairs, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            verdict, g, p = label(row["gold"], row["pred"])
            row["math_verify"] = verdict
            n += 1
            agree += verdict == row["expected"]
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
            if explain:
                explain.write(json.dumps({"id": row["id"], "gold": g, "pred": p}, ensure_ascii=False) + "\n")
    print(f"math-verify {version}: {agree}/{n} pairs agree with the expected verdict", file=sys.stderr)


if __name__ == "__main__":
    main()
