#!/usr/bin/env bash
# Create the Python venv used by scripts/bench_transformers.py (reference benchmarks with
# Hugging Face transformers on PyTorch, CPU, float32). Not needed to build or test rlvr.
#
#   scripts/setup-bench-venv.sh            # venv at /opt/bench-venv
#   BENCH_VENV=/tmp/v scripts/setup-bench-venv.sh
#   BENCH_TORCH_INDEX_URL=URL scripts/setup-bench-venv.sh   # optional: a CPU-only torch index
#
# The package index reachable here serves Linux x86_64 torch only as the CUDA build, whose
# CUDA/NVIDIA dependency wheels make the venv about 5.6 GB (install ~70 s on a fast link).
# `pip install --no-deps torch` alone does not work: `import torch` then fails on the missing
# CUDA libraries. Where a CPU-only torch index is reachable, pass it in BENCH_TORCH_INDEX_URL
# (a CPU-only build is a few hundred MB). The benchmarks only ever use the CPU.
set -euo pipefail

VENV="${BENCH_VENV:-/opt/bench-venv}"
PY="${PYTHON:-python3}"

start=$(date +%s)
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip

if [ -n "${BENCH_TORCH_INDEX_URL:-}" ]; then
    "$VENV/bin/python" -m pip install -q --index-url "$BENCH_TORCH_INDEX_URL" torch
else
    "$VENV/bin/python" -m pip install -q torch
fi
# gguf: transformers needs it to read GGUF checkpoints (dequantized to float32 on load).
"$VENV/bin/python" -m pip install -q transformers gguf accelerate numpy

"$VENV/bin/python" - <<'EOF'
import torch, transformers
print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
      f"threads {torch.get_num_threads()}")
EOF
echo "venv: $VENV ($(du -sh "$VENV" | cut -f1)), $(( $(date +%s) - start )) s"
