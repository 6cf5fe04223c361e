#!/usr/bin/env bash
# The device check of rlvr on one GPU, with its Python peers in the same run. Prints one JSON
# line per measurement and writes them, plus a summary object, under $CHECK_OUT:
#   gpu-check.jsonl   every line (rlvr and peers; failures as {"step":..,"error":..})
#   gpu-check.json    {"lines": [...], "host": ..., "wall_s": ...}
#   gpu-check.log     stderr of every step
#
# Steps (each under its own timeout; a failure is recorded and the script goes on):
#   1. rlvr device-check: CUDA vs CPU logits on the golden prompts (f32, bf16), paged decode vs
#      full forward on the GPU.
#   2. rollout throughput, random weights, G=8, 128 new tokens, EOS ignored, prompts 8/32/64:
#      `rlvr bench rollout` and transformers `generate` (scripts/bench_transformers_gpu.py), for
#      SmolLM2-135M and Qwen2-0.5B shapes.
#   3. `rlvr bench train`: SmolLM2-135M (the GGUF), Qwen2-0.5B and Qwen2.5-1.5B shapes with
#      micro-batches; tokens/s, optimizer step time and peak memory.
#   4. five RL steps of the default run (`rlvr bench step`) with the step split, and TRL's
#      GRPOTrainer on the same model and batch (scripts/trl_grpo_peer.py).
#
# Inputs (environment):
#   RLVR_BIN     the rlvr binary built with --features cuda (default gpu-stage/rlvr)
#   RLVR_MODEL   the default model's GGUF (default gpu-stage/SmolLM2-135M-Instruct.Q4_1.gguf)
#   RLVR_GOLDEN  transformers' goldens (default gpu-stage/golden.json)
#   DEVICE       cuda (default) or cpu; QUICK=1 shrinks every size (a CPU dry run: DEVICE=cpu
#                QUICK=1, half precision checked as f16 since the CPU has no bf16 matmul)
#   CHECK_OUT    output directory (default $OUT when set, else /tmp/gpu-check)
#   PYTHON       python with torch + transformers (+ trl/datasets for the TRL peer)
#   SKIP_PEERS=1 skip the Python peers (CI's dry run of the rlvr steps, without torch)
# scripts/gpu-stage.sh prepares gpu-stage/ and says how to carry it to the GPU machine.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# PYTHONPATH of the carried TRL wheels (scripts/gpu-stage.sh --unpack).
[ -f "$ROOT/gpu-stage/env.sh" ] && . "$ROOT/gpu-stage/env.sh"
BIN="${RLVR_BIN:-$ROOT/gpu-stage/rlvr}"
MODEL="${RLVR_MODEL:-$ROOT/gpu-stage/SmolLM2-135M-Instruct.Q4_1.gguf}"
GOLDEN="${RLVR_GOLDEN:-$ROOT/gpu-stage/golden.json}"
DEVICE="${DEVICE:-cuda}"
QUICK="${QUICK:-0}"
PY="${PYTHON:-python3}"
DIR="${CHECK_OUT:-${OUT:-/tmp/gpu-check}}"
mkdir -p "$DIR"
LINES="$DIR/gpu-check.jsonl" LOG="$DIR/gpu-check.log"
: >"$LINES"; : >"$LOG"
WORK="$(mktemp -d /tmp/rlvr-gpu-check.XXXXXX)"
T0=$(date +%s)

if [ "$DEVICE" != cpu ]; then
    # The binary links libcudart/libcublas/libcurand .so.13: take them from PyTorch's wheels.
    site="$("$PY" -c 'import site; print(site.getsitepackages()[0])' 2>/dev/null)"
    libs="$(ls -d "$site"/nvidia/*/lib 2>/dev/null | paste -sd:)"
    export LD_LIBRARY_PATH="${libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    HALF=bf16
else
    HALF=f16
fi
for f in "$BIN" "$MODEL" "$GOLDEN"; do
    [ -e "$f" ] || { echo "gpu-check: missing $f (see scripts/gpu-stage.sh)" >&2; exit 2; }
done

# run NAME TIMEOUT CMD...: keep the JSON lines of stdout; stderr goes to the log. A step never
# runs past DEADLINE_S seconds from the start (default 540, inside a 600 s device call): the
# steps are ordered by importance, and whatever is done is already in $LINES.
DEADLINE_S="${DEADLINE_S:-540}"
run() {
    local name="$1" limit="$2"; shift 2
    if [ "${SKIP_PEERS:-0}" = 1 ] && [ "$1" = "$PY" ]; then
        echo "== $name: skipped (SKIP_PEERS=1)" >>"$LOG"
        return
    fi
    local t=$(date +%s) out rc
    local left=$(( DEADLINE_S - (t - T0) ))
    if [ "$left" -lt 15 ]; then
        echo "{\"step\":\"$name\",\"error\":\"skipped: deadline\"}" | tee -a "$LINES"
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "== $name: $*" >>"$LOG"
    out="$(timeout "$limit" "$@" 2>>"$LOG")"; rc=$?
    printf '%s\n' "$out" | grep '^{"' | while IFS= read -r l; do
        printf '%s\n' "$l" | tee -a "$LINES"
    done
    if [ $rc -ne 0 ]; then
        local e="{\"step\":\"$name\",\"error\":\"exit $rc\",\"after_s\":$(( $(date +%s) - t ))}"
        echo "$e" | tee -a "$LINES"
    fi
    echo "== $name: exit $rc in $(( $(date +%s) - t )) s" >>"$LOG"
}

if [ "$QUICK" = 1 ]; then
    SIZES="2"; G=2; NEW=8; TRAIN_TOK=512; MICRO=256; STEPS=1
    STEP_SET=(--set prompts_per_step=2 --set group_size=2 --set max_new_tokens=8)
    TRL=(--steps 1 --prompts 2 --group 2 --max-new-tokens 8)
    ARCHS="smollm2-135m"; TRAIN_ARCHS=""
else
    SIZES="8 32 64"; G=8; NEW=128; TRAIN_TOK=8192; MICRO=2048; STEPS=5
    STEP_SET=()
    TRL=(--steps 5)
    ARCHS="smollm2-135m qwen2-0.5b"; TRAIN_ARCHS="qwen2-0.5b qwen2.5-1.5b"
fi

HALF_OR_F32="$([ "$DEVICE" = cpu ] && echo f32 || echo bf16)"
rollouts() { # ARCH: rlvr at each size, then transformers at the same sizes
    local arch="$1" n
    for n in $SIZES; do
        run "rollout-rlvr-$arch-$n" 120 "$BIN" bench rollout --model "random:$arch" \
            --device "$DEVICE" --dtype "$HALF_OR_F32" \
            --prompts "$n" --group "$G" --max-new-tokens "$NEW" --ignore-eos --profile
    done
    # shellcheck disable=SC2086
    run "rollout-transformers-$arch" 240 "$PY" "$ROOT/scripts/bench_transformers_gpu.py" \
        --arch "$arch" --device "$DEVICE" --prompts $SIZES --group "$G" --max-new-tokens "$NEW"
}

# 1. Parity: CUDA vs CPU on the golden prompts, paged vs full on the device. A flash-attn build
#    is checked with and without its flash prefill; if the flash path fails, the rest runs
#    without it.
run device-check 180 "$BIN" device-check --model "$MODEL" --golden "$GOLDEN" \
    --device "$DEVICE" --dtypes "f32,$HALF"
if grep -q '"check":"device".*"flash_attn_prefill":true' "$LINES"; then
    run device-check-no-flash 180 env RLVR_FLASH_ATTN=0 "$BIN" device-check --model "$MODEL" \
        --golden "$GOLDEN" --device "$DEVICE" --dtypes "$HALF"
    # Keys are sorted: the top-level "pass" is the one after "flash_attn_prefill".
    if ! grep -q '"check":"device".*"flash_attn_prefill":true.*"pass":true' "$LINES"; then
        echo "gpu-check: flash prefill failed the device check; going on without it" >&2
        export RLVR_FLASH_ATTN=0
    fi
fi

# 2. Rollout throughput vs transformers generate, SmolLM2-135M shape; at the largest size also
#    with CUDA's memory pool handing freed memory back at every synchronisation (the driver's
#    default, which rlvr overrides), to measure that choice, and with the host sampler.
rollouts smollm2-135m
if [ "$DEVICE" != cpu ]; then
    big="${SIZES##* }"
    run "rollout-rlvr-smollm2-135m-$big-pool-release" 120 env RLVR_CUDA_KEEP_FREED=0 "$BIN" \
        bench rollout --model random:smollm2-135m --device "$DEVICE" --dtype bf16 --prompts "$big" \
        --group "$G" --max-new-tokens "$NEW" --ignore-eos
    # The host sampler (logits copied every step) against the device sampler measured above.
    run "rollout-rlvr-smollm2-135m-$big-host-sampler" 120 "$BIN" bench rollout \
        --model random:smollm2-135m --device "$DEVICE" --dtype bf16 --prompts "$big" \
        --group "$G" --max-new-tokens "$NEW" --ignore-eos --sampler host --profile
    if grep -q '"bench":"rollout".*"flash_attn_prefill":true' "$LINES"; then
        run "rollout-rlvr-smollm2-135m-$big-no-flash" 120 env RLVR_FLASH_ATTN=0 "$BIN" \
            bench rollout --model random:smollm2-135m --device "$DEVICE" --dtype bf16 \
            --prompts "$big" --group "$G" --max-new-tokens "$NEW" --ignore-eos
    fi
fi

# 3. RL steps of the default run (bf16 weights + f32 masters on CUDA), then TRL's GRPOTrainer.
run rl-steps-rlvr 240 "$BIN" bench step --model "$MODEL" --device "$DEVICE" \
    --steps "$STEPS" "${STEP_SET[@]}"
[ "${SKIP_PEERS:-0}" = 1 ] || run export-hf 60 "$BIN" export --model "$MODEL" --device cpu --out "$WORK/hf" \
    --save-dtype "$HALF_OR_F32"
run rl-steps-trl 240 "$PY" "$ROOT/scripts/trl_grpo_peer.py" --model "$WORK/hf" \
    --device "$DEVICE" "${TRL[@]}"

# 4. Training throughput and peak memory: the default model in bf16 and in f32 (the precision
#    choice), then larger shapes with micro-batches.
run train-smollm2 90 "$BIN" bench train --model "$MODEL" --device "$DEVICE" \
    --batch-tokens "$TRAIN_TOK" --micro-batch-tokens "$MICRO"
if [ "$DEVICE" != cpu ]; then
    run train-smollm2-f32 90 "$BIN" bench train --model "$MODEL" --device "$DEVICE" \
        --dtype f32 --batch-tokens "$TRAIN_TOK" --micro-batch-tokens "$MICRO"
fi
for arch in $TRAIN_ARCHS; do
    run "train-$arch" 150 "$BIN" bench train --model "random:$arch" --device "$DEVICE" \
        --batch-tokens "$TRAIN_TOK" --micro-batch-tokens "$MICRO" --iters 1
done

# 5. The 0.5B-class Qwen2 shape's rollouts, and the default run's RL steps in f32.
for arch in $ARCHS; do
    [ "$arch" = smollm2-135m ] || rollouts "$arch"
done
if [ "$DEVICE" != cpu ]; then
    run rl-steps-rlvr-f32 150 "$BIN" bench step --model "$MODEL" --device "$DEVICE" \
        --steps 3 --set 'dtype="f32"'
fi

host="$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)"
"$PY" - "$LINES" "$DIR/gpu-check.json" "$host" "$(( $(date +%s) - T0 ))" <<'EOF'
import json, sys
lines = []
for l in open(sys.argv[1]):
    try:
        lines.append(json.loads(l))
    except ValueError:
        pass
json.dump({"host": sys.argv[3] or "cpu", "wall_s": int(sys.argv[4]), "lines": lines},
          open(sys.argv[2], "w"), indent=1)
EOF
rm -rf "$WORK"
echo "gpu-check: $(wc -l <"$LINES") lines in $DIR ($(( $(date +%s) - T0 )) s)" >&2
