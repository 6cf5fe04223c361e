#!/usr/bin/env python3
"""PEFT compatibility of rlvr's LoRA adapters, both ways, against real peft + transformers.

Not needed by CI: run it in a throwaway venv with torch, transformers and peft installed.

  python scripts/peft_check.py --rlvr target/release/rlvr --base BASE_HF_DIR \
      [--adapter ADAPTER_DIR_EXPORTED_BY_RLVR]

1. rlvr -> PEFT: the adapter directory `rlvr train --lora-rank ...` exported (`--adapter`) is
   loaded with `peft.PeftModel.from_pretrained(base, dir)`; its logits are compared with
   `rlvr score --adapter dir --logits` on the same token rows.
2. PEFT -> rlvr: a PEFT adapter with random A and B (`init_lora_weights=False`, every linear
   layer, rsLoRA) is saved by PEFT, applied by `rlvr score --adapter`, and compared the same way.

Each comparison is reported as max |Δ logit| in float32 against PEFT in float32, and against
PEFT in float64 (the exact value, so each side's own f32 rounding shows), next to the floor of
the base model alone (rlvr vs transformers without any adapter). Prints one JSON object.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM

ROWS = [
    [1, 504, 2217, 30, 1302, 10, 8453, 28, 2],
    [1, 9690, 198, 20, 1248, 4044, 17, 33, 17, 2366, 198, 2],
    [1, 339, 1136, 19, 4],
]


def rlvr_logits(rlvr, base, adapter, workdir):
    """`rlvr score --logits` of ROWS: a list of [len, vocab] float64 tensors."""
    inp = os.path.join(workdir, "rows.jsonl")
    with open(inp, "w") as f:
        for r in ROWS:
            f.write(json.dumps({"input_ids": r}) + "\n")
    cmd = [rlvr, "score", "--model", base, "--input", inp, "--logits", "--device", "cpu"]
    if adapter:
        cmd += ["--adapter", adapter]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [torch.tensor(json.loads(l)["logits"], dtype=torch.float64) for l in out.splitlines()]


def torch_logits(model, dtype):
    model = model.to(dtype)
    out = []
    with torch.no_grad():
        for r in ROWS:
            ids = torch.tensor([r])
            out.append(model(input_ids=ids).logits[0].to(torch.float64))
    return out


def max_diff(a, b):
    return max((x - y).abs().max().item() for x, y in zip(a, b))


def compare(rlvr_out, model):
    f32 = torch_logits(model, torch.float32)
    f64 = torch_logits(model, torch.float64)
    return {
        "rlvr_vs_torch_f32": max_diff(rlvr_out, f32),
        "rlvr_vs_torch_f64": max_diff(rlvr_out, f64),
        "torch_f32_vs_torch_f64": max_diff(f32, f64),
        "max_abs_logit": max(x.abs().max().item() for x in f64),
    }


def base_model(path):
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rlvr", required=True)
    ap.add_argument("--base", required=True, help="the base model's HF directory")
    ap.add_argument("--adapter", help="an adapter directory exported by rlvr")
    args = ap.parse_args()
    torch.manual_seed(0)
    report = {"torch": torch.__version__}
    import peft
    import transformers

    report["peft"] = peft.__version__
    report["transformers"] = transformers.__version__
    with tempfile.TemporaryDirectory() as work:
        base = rlvr_logits(args.rlvr, args.base, None, work)
        report["base_alone"] = compare(base, base_model(args.base))
        if args.adapter:
            model = PeftModel.from_pretrained(base_model(args.base), args.adapter).eval()
            ours = rlvr_logits(args.rlvr, args.base, args.adapter, work)
            report["rlvr_adapter_in_peft"] = compare(ours, model)
            # How far the adapter moves the logits: the comparison is not of two base models.
            report["rlvr_adapter_in_peft"]["adapter_effect"] = max_diff(ours, base)
        cfg = LoraConfig(r=8, lora_alpha=16, use_rslora=True, init_lora_weights=False,
                         target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                         "up_proj", "down_proj"], task_type="CAUSAL_LM")
        model = get_peft_model(base_model(args.base), cfg).eval()
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "lora_" in n:
                    p.mul_(0.05)
        peft_dir = os.path.join(work, "peft_adapter")
        model.save_pretrained(peft_dir)
        ours = rlvr_logits(args.rlvr, args.base, peft_dir, work)
        report["peft_adapter_in_rlvr"] = compare(ours, model)
        report["peft_adapter_in_rlvr"]["adapter_effect"] = max_diff(ours, base)
    print(json.dumps(report, indent=1))
    worst = max(v["rlvr_vs_torch_f32"] for k, v in report.items()
                if isinstance(v, dict) and k != "base_alone")
    return 0 if worst <= 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
