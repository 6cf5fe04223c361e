#!/usr/bin/env bash
# Prepare what scripts/gpu-check.sh needs on a GPU machine that has no Rust, no internet and takes
# at most 64 MiB per call, or unpack it there.
#
#   scripts/gpu-stage.sh          (here) build nothing; stage the cuda binary, the goldens, the
#                                 default GGUF and the TRL wheels into gpu-stage-1/ and gpu-stage/
#   scripts/gpu-stage.sh --unpack (there) rebuild gpu-stage/ from the two carried halves
#
# The SmolLM2 GGUF (94 MiB; 86 MiB as xz) does not fit one call with the binary, so it travels in
# two:
#   call 1: carry ["gpu-stage-1"]  command: bash scripts/gpu-stage.sh --keep
#   call 2: carry ["gpu-stage"]    command: bash scripts/gpu-stage.sh --unpack &&
#                                           CHECK_OUT=$OUT bash scripts/gpu-check.sh
# Call 2 must come while the machine is still warm (it keeps its files for 30 s after a call).
#
# Inputs here: RLVR_CUDA_BIN (default target-cuda/release/rlvr, from
#   `source scripts/cuda-env.sh && CARGO_TARGET_DIR=target-cuda cargo build --release --features cuda`,
#   or `--features flash-attn`: 24 MiB as xz instead of 9, and it still fits; its flash prefill
#   can be turned off at run time with RLVR_FLASH_ATTN=0, so one binary serves both),
#   RLVR_GGUF (default ~/.cache/rlvr/models/SmolLM2-135M-Instruct.Q4_1.gguf, what
#   `rlvr pull` fetches), RLVR_GOLDEN (default tests/fixtures/golden/smollm2_135m_instruct_q4_1.json).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
GGUF_NAME=SmolLM2-135M-Instruct.Q4_1.gguf
KEEP=/root/rlvr-stage # outside the repo: survives between calls on a warm machine

case "${1:-}" in
--keep)
    mkdir -p "$KEEP"
    cp gpu-stage-1/* "$KEEP"/
    ls -la "$KEEP"
    exit 0
    ;;
--unpack)
    cat "$KEEP"/gguf.xz.part-* gpu-stage/gguf.xz.part-* | xz -d >"gpu-stage/$GGUF_NAME"
    (cd gpu-stage && sha256sum -c gguf.sha256)
    xz -d -f gpu-stage/rlvr.xz
    chmod +x gpu-stage/rlvr
    if ls gpu-stage/whl/*.whl >/dev/null 2>&1; then
        if "${PYTHON:-python3}" -m pip install -q --no-index --no-deps --no-compile \
            --no-cache-dir --upgrade --target /tmp/site gpu-stage/whl/*.whl; then
            echo "export PYTHONPATH=/tmp/site" >gpu-stage/env.sh
        else
            echo "gpu-stage: the TRL wheels did not install; the TRL step will fail" >&2
        fi
    fi
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    exit 0
    ;;
esac

BIN="${RLVR_CUDA_BIN:-$ROOT/target-cuda/release/rlvr}"
GGUF="${RLVR_GGUF:-$HOME/.cache/rlvr/models/$GGUF_NAME}"
GOLDEN="${RLVR_GOLDEN:-$ROOT/tests/fixtures/golden/smollm2_135m_instruct_q4_1.json}"
for f in "$BIN" "$GGUF" "$GOLDEN"; do
    [ -e "$f" ] || { echo "gpu-stage: missing $f" >&2; exit 1; }
done
rm -rf gpu-stage gpu-stage-1
mkdir -p gpu-stage/whl gpu-stage-1
strip -o gpu-stage/rlvr "$BIN"
xz -T2 -6 -f gpu-stage/rlvr
cp "$GOLDEN" gpu-stage/golden.json
(cd "$(dirname "$GGUF")" && sha256sum "$GGUF_NAME") >gpu-stage/gguf.sha256
# The first call carries as much as it can (64 MiB less the ~6 MiB tree), the second the rest.
xz -T2 -6 -c "$GGUF" | split -b 56M -d - gpu-stage/gguf.xz.part-
mv gpu-stage/gguf.xz.part-00 gpu-stage-1/
# TRL and what the GPU image lacks of its needs (it has torch, transformers, accelerate,
# pyarrow, pandas, xxhash).
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
    -d gpu-stage/whl trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
du -sh gpu-stage gpu-stage-1
for d in gpu-stage gpu-stage-1; do
    mib=$(( $(du -sb "$d" | cut -f1) >> 20 ))
    [ "$mib" -le 57 ] || echo "gpu-stage: $d is $mib MiB: with the ~6 MiB tree it may not fit 64 MiB" >&2
done
