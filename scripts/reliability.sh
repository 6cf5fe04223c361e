#!/usr/bin/env bash
# Reliability of `rlvr train` under the failures a long run meets, on the tiny test model (real
# training, seconds per run). Each part compares against one uninterrupted reference run:
#
#   kill9    kill -9 at random moments, resume each time: the final weights and metrics are
#            byte-identical to the reference, and no temporary files are left.
#   damaged  bytes flipped in the newest checkpoint: detected, set aside, the previous one
#            used; the run still ends identical to the reference.
#   diskfull a real full disk (the run moved onto a small tmpfs, in a private mount namespace):
#            a checkpoint that cannot fit is refused up front with the space it needs; "No space
#            left on device" in the middle of a checkpoint and in the middle of the export (the
#            tmpfs out of inodes) leave no temporary files; moved back onto a big disk, the run
#            resumes to the reference's weights.
#
# Needs: the rlvr binary and the tiny-model writer (`cargo build --release --bin rlvr --example
# tiny_model`; `cargo test --release` builds both), python3, and for diskfull `unshare` and
# tmpfs mounts (root, or unprivileged user namespaces). Env: RLVR_BIN, TINY_MODEL_BIN, STEPS
# (default 24), KILLS (default 6), SEED (random kill times), PARTS (default "kill9 damaged
# diskfull"), WORK (default: a temporary directory, removed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."

RLVR_BIN="${RLVR_BIN:-target/release/rlvr}"
TINY_MODEL_BIN="${TINY_MODEL_BIN:-target/release/examples/tiny_model}"
STEPS="${STEPS:-24}"
KILLS="${KILLS:-6}"
PARTS="${PARTS:-kill9 damaged diskfull}"
RLVR_BIN="$(realpath "$RLVR_BIN")"
export RLVR_BIN TINY_MODEL_BIN STEPS KILLS

fail() {
  echo "reliability: FAIL: $*" >&2
  exit 1
}
pass() { echo "reliability: ok: $*"; }

# ---- setup: the tiny model, data, and the reference run ------------------------------------
setup() {
  if [ -z "${WORK:-}" ]; then
    WORK="$(mktemp -d)"
    trap 'rm -rf "$WORK"' EXIT
  fi
  export WORK
  "$TINY_MODEL_BIN" "$WORK/model" >/dev/null
  python3 - "$WORK/digits.jsonl" <<'EOF'
import json, sys
with open(sys.argv[1], "w") as f:
    for i in range(64):
        d = (i * 7) % 10
        f.write(json.dumps({"question": f"Say the digit {d}.", "answer": f"#### {d}"}) + "\n")
EOF
  local t0 t1
  t0=$(date +%s%N)
  train "$WORK/reference" >"$WORK/reference.log" 2>&1 || { cat "$WORK/reference.log"; fail "reference run"; }
  t1=$(date +%s%N)
  REF_MS=$(((t1 - t0) / 1000000))
  export REF_MS
  echo "reliability: reference run of $STEPS steps: ${REF_MS} ms"
}

# The arguments of `rlvr train` of the fixed small config into $1, plus any further flags, in
# ARGS (one-token answers to digit questions: rewards vary, so the weights move).
train_args() {
  local out="$1"
  shift
  ARGS=(train --model "$WORK/model" --data "$WORK/digits.jsonl" --out "$out"
    --max-steps "$STEPS" --max-staleness 1 --prompts-per-step 2 --group-size 8
    --max-new-tokens 1 --lr 1e-2 --set chat=false --set boxed_bonus=0 --set eval_size=4
    --set eval_every=8 --set checkpoint_every=1 --set keep_checkpoints=2 "$@")
}

train() {
  train_args "$@"
  "$RLVR_BIN" "${ARGS[@]}"
}

resume() {
  local run="$1"
  shift
  "$RLVR_BIN" train --resume "$run" "$@"
}

# The run in $1 ended like the reference: same exported weights (bytes) and metrics.
same_as_reference() {
  local run="$1" what="$2"
  cmp -s "$WORK/reference/final/model.safetensors" "$run/final/model.safetensors" \
    || fail "$what: final weights differ from the uninterrupted run's"
  python3 - "$WORK/reference/metrics.jsonl" "$run/metrics.jsonl" "$what" <<'EOF'
import json, sys
keys = ["step", "reward_mean", "reward_std", "loss", "grad_norm_pre_clip", "policy_version",
        "entropy_mean"]
rows = lambda p: [[json.loads(l)[k] for k in keys] for l in open(p) if l.strip()]
a, b = rows(sys.argv[1]), rows(sys.argv[2])
assert a == b, f"{sys.argv[3]}: metrics differ:\n{a}\n{b}"
# The runs learn: rewards vary and gradients flow (else equal weights would prove little).
assert any(r[2] > 0 for r in a) and sum(r[4] > 0 for r in a) > len(a) // 2, f"the reference does not learn: {a}"
EOF
}

# No temporary files anywhere under $1.
no_temporaries() {
  local left
  left="$(find "$1" \( -name '.tmp-*' -o -name '.old-*' -o -name '*.tmp' \) -print)"
  [ -z "$left" ] || fail "$2: temporary files left: $left"
}

checkpoints() { ls "$1/checkpoints" | tr '\n' ' '; }

# ---- kill -9 at random moments -----------------------------------------------------------
part_kill9() {
  local run="$WORK/killed" kills=0 tries=0 rc pid delay_ms
  RANDOM="${SEED:-$$}"
  while :; do
    tries=$((tries + 1))
    [ "$tries" -le $((KILLS * 3)) ] || fail "kill9: did not finish after $tries starts"
    # The binary itself in the background (not a shell function, whose subshell the kill
    # would hit instead).
    if [ -f "$run/config.toml" ]; then
      ARGS=(train --resume "$run")
    else
      train_args "$run"
    fi
    "$RLVR_BIN" "${ARGS[@]}" >>"$WORK/killed.log" 2>&1 &
    pid=$!
    if [ "$kills" -lt "$KILLS" ]; then
      # Within the first third of a full run's time: most kills land before the resumed run
      # ends, and as each resumes from further on, they spread over the whole run.
      delay_ms=$((30 + RANDOM % (REF_MS / 3 + 1)))
      sleep "$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))"
      if kill -9 "$pid" 2>/dev/null; then
        wait "$pid" 2>/dev/null || true
        kills=$((kills + 1))
        echo "reliability: kill9: killed after ${delay_ms} ms; checkpoints: $(checkpoints "$run" 2>/dev/null)"
        continue
      fi
    fi
    rc=0
    wait "$pid" || rc=$?
    [ "$rc" -eq 0 ] || { tail -20 "$WORK/killed.log"; fail "kill9: run exited $rc"; }
    break
  done
  [ "$kills" -ge 2 ] || fail "kill9: only $kills kills landed before the run ended"
  same_as_reference "$run" "kill9"
  no_temporaries "$run" "kill9"
  pass "kill9: $kills kills -9 at random moments, resumed each time: final weights byte-identical"
}

# ---- a damaged newest checkpoint -----------------------------------------------------------
part_damaged() {
  local run="$WORK/damaged" log="$WORK/damaged.log" rc=0
  train "$run" --stop-after 6 >"$log" 2>&1 || rc=$?
  [ "$rc" -eq 130 ] || { cat "$log"; fail "damaged: --stop-after exited $rc"; }
  python3 - "$run/checkpoints/step-00000006/model.safetensors" <<'EOF'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
for i in range(len(b) // 2, len(b) // 2 + 4):
    b[i] ^= 0x5A
open(p, "wb").write(b)
EOF
  resume "$run" >"$log" 2>&1 || { cat "$log"; fail "damaged: resume failed"; }
  grep -q "step-00000006 is damaged" "$log" || { cat "$log"; fail "damaged: not detected"; }
  grep -q "resuming .* from .*step-00000005 (step 5)" "$log" || { cat "$log"; fail "damaged: the previous checkpoint was not used"; }
  [ -d "$run/checkpoints/damaged-step-00000006" ] || fail "damaged: not set aside"
  same_as_reference "$run" "damaged"
  pass "damaged: a flipped newest checkpoint was detected, set aside, the previous one used: final weights byte-identical"
}

# ---- a full disk ---------------------------------------------------------------------------
part_diskfull() {
  if [ "$(id -u)" -eq 0 ]; then
    unshare -m bash "$0" diskfull-inside
  else
    unshare -rm bash "$0" diskfull-inside
  fi
}

# In a private mount namespace: a run moved onto small tmpfs disks (fresh mounts, as remounting
# is not allowed in an unprivileged user namespace), limited in bytes or in inodes.
diskfull_inside() {
  local log="$WORK/diskfull.log" run rc before
  # A new tmpfs with mount options $1; prints its path.
  new_disk() {
    local d
    d="$(mktemp -d "$WORK/disk-XXXX")"
    mount -t tmpfs -o "$1" tmpfs "$d" || fail "diskfull: cannot mount a tmpfs ($1) here (needs root or user namespaces)"
    echo "$d"
  }
  # Move the run $1 onto a new disk with room for $2 more bytes or $3 more inodes; prints its
  # new path.
  move_to_small_disk() {
    local measure bytes inodes small
    measure="$(new_disk size=256m)"
    cp -a "$1" "$measure/run"
    bytes="$(df -B1 --output=used "$measure" | tail -1 | tr -d ' ')"
    inodes="$(df --output=iused "$measure" | tail -1 | tr -d ' ')"
    small="$(new_disk "size=$((bytes + $2)),nr_inodes=$((inodes + $3))")"
    cp -a "$1" "$small/run"
    umount "$measure"
    rm -rf "$1"
    echo "$small/run"
  }
  move_to_big_disk() {
    local big
    big="$(new_disk size=256m)"
    cp -a "$1" "$big/run"
    rm -rf "$1"
    echo "$big/run"
  }
  expect_failure() { # log, what, pattern, command...
    rc=0
    "${@:4}" >"$1" 2>&1 || rc=$?
    [ "$rc" -eq 1 ] || { cat "$1"; fail "$2: exited $rc, expected 1"; }
    grep -q "$3" "$1" || { cat "$1"; fail "$2: no \"$3\" in the error"; }
    echo "reliability: $2: $(grep '^error' "$1")"
  }

  run="$(new_disk size=256m)/run"
  rc=0
  train "$run" --stop-after 6 >"$log" 2>&1 || rc=$?
  [ "$rc" -eq 130 ] || { cat "$log"; fail "diskfull: --stop-after exited $rc"; }
  before="$(checkpoints "$run")"

  # 1. Too little space for the next checkpoint: refused before writing, with the sizes.
  run="$(move_to_small_disk "$run" 1500000 100000)"
  expect_failure "$log" "diskfull: space check" "needs .* is free" resume "$run"
  no_temporaries "$run" "diskfull: space check"
  [ "$(checkpoints "$run")" = "$before" ] || fail "diskfull: checkpoints changed: $(checkpoints "$run")"

  # 2. "No space left on device" in the middle of a checkpoint: inodes for the temporary
  #    directory and two of its files only.
  run="$(move_to_small_disk "$run" 64000000 3)"
  expect_failure "$log" "diskfull: mid-checkpoint" "checkpoints/.tmp-step-.*No space left on device" resume "$run"
  no_temporaries "$run" "diskfull: mid-checkpoint"
  [ "$(checkpoints "$run")" = "$before" ] || fail "diskfull: checkpoints changed: $(checkpoints "$run")"

  # 3. Space again: the run resumes to the reference's weights.
  run="$(move_to_big_disk "$run")"
  resume "$run" >"$log" 2>&1 || { cat "$log"; fail "diskfull: resume after freeing space"; }
  same_as_reference "$run" "diskfull"
  no_temporaries "$run" "diskfull"

  # 4. "No space left on device" in the middle of the export: a run with no pruning (so no
  #    inodes are freed), with inodes for its final checkpoint (5) and the first two entries of
  #    final/ only.
  run="$(new_disk size=256m)/export"
  rc=0
  train "$run" --stop-after 6 --set checkpoint_every=1000 --set keep_checkpoints=10 >"$log" 2>&1 || rc=$?
  [ "$rc" -eq 130 ] || { cat "$log"; fail "diskfull: export run exited $rc"; }
  run="$(move_to_small_disk "$run" 64000000 $((5 + 2)))"
  expect_failure "$log" "diskfull: mid-export" "final/model.safetensors.tmp.*No space left on device" resume "$run"
  no_temporaries "$run" "diskfull: mid-export"
  run="$(move_to_big_disk "$run")"
  resume "$run" >"$log" 2>&1 || { cat "$log"; fail "diskfull: resume after the failed export"; }
  same_as_reference "$run" "diskfull export"
  no_temporaries "$run" "diskfull export"
  pass "diskfull: the space check, a mid-checkpoint and a mid-export ENOSPC left no temporary files; resumed runs byte-identical"
}

if [ "${1:-}" = diskfull-inside ]; then
  diskfull_inside
  exit 0
fi

setup
for part in $PARTS; do
  case "$part" in
    kill9) part_kill9 ;;
    damaged) part_damaged ;;
    diskfull) part_diskfull ;;
    *) fail "unknown part $part" ;;
  esac
done
echo "reliability: all passed ($PARTS)"
