#!/usr/bin/env bash
# Install a CUDA 13.0 *build* toolchain (nvcc, headers, link stubs) from pinned Python wheels,
# on a machine without a GPU, a driver or a CUDA toolkit. Enough for
#   source scripts/cuda-env.sh && cargo build --release --features cuda
# (candle 0.10.2 through cudarc 0.19 with dynamic linking, and mistralrs-paged-attn 0.8.1).
#
# Usage: scripts/install-cuda-toolchain.sh [PREFIX]      PREFIX defaults to $CUDA_PIP_PREFIX or
#        /opt/cuda-pip. Then `source PREFIX/env.sh` (or scripts/cuda-env.sh).
# Knobs: CUDA_PIP_FULL=1     real cuBLAS / cuRAND / NVRTC libraries instead of link stubs
#                            (+570 MB; only useful to run binaries on this machine's GPU, if any)
#        CUDA_PIP_CUTLASS=1  also the CUTLASS 3.5.0 headers, seeded where candle-flash-attn's
#                            build (cudaforge) looks for its git checkout (rlvr has no
#                            flash-attn feature yet, so this is off by default)
#        PYTHON=python3      the interpreter whose pip downloads the wheels
#
# Layout: PREFIX/{bin,include,lib,nvvm}  the toolkit (nvcc, cicc, ptxas, headers, libcudart)
#         PREFIX/lib/stubs/lib*.so       link-time stubs (real SONAMEs, functions return errors)
#         PREFIX/nogpu/                  soname-named stubs + the real libcudart: put it on
#                                        LD_LIBRARY_PATH of a GPU-less machine (CI) so a
#                                        cuda-feature binary starts and reports "no device".
#                                        NEVER on the GPU machine.
#         PREFIX/env.sh                  the build environment
# Idempotent: a second run with the same pins and stub lists only prints the env (~0.1 s).
# The stub symbol lists live in scripts/cuda-stubs/ (no other file outside this repo is read).
set -euo pipefail

PREFIX="$(realpath -m "${1:-${CUDA_PIP_PREFIX:-/opt/cuda-pip}}")"
FULL="${CUDA_PIP_FULL:-0}"
CUTLASS="${CUDA_PIP_CUTLASS:-0}"
PY="${PYTHON:-python3}"
SYMS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/cuda-stubs"

# CUDA 13.0 exactly: the GPU machine's driver (580) is CUDA 13.0, and candle-kernels embeds PTX
# that a 13.0 driver cannot JIT when it comes from nvcc 13.1 or later. cudarc links the .so.13
# sonames, so 12.x is out too.
WHEELS=(
  nvidia-cuda-nvcc==13.0.88    # nvcc, ptxas, fatbinary, nvlink, cudafe++
  nvidia-nvvm==13.0.88         # cicc, libnvvm, libdevice
  nvidia-cuda-crt==13.0.88     # include/crt
  nvidia-cuda-runtime==13.0.96 # cuda.h, cuda_runtime.h, libcudart.so.13
  nvidia-cuda-cccl==13.0.85    # cuda/std, cub, thrust
)
REAL_LIBS=(nvidia-cublas==13.0.0.19 nvidia-curand==10.4.0.35 nvidia-cuda-nvrtc==13.0.88)
CUTLASS_WHEEL=nvidia-cutlass==3.5.0.0
CUTLASS_COMMIT=7d49e6c7e2f8896c47f586706e67e1fb215529dc # tag v3.5.0, what candle-flash-attn pins
# soname -> error code every stub function returns (1 = *_NOT_INITIALIZED, 101 for cuRAND)
declare -A STUB_RC=([libcublas.so.13]=1 [libcublasLt.so.13]=1 [libcurand.so.10]=101 [libnvrtc.so.13]=1)
STUBS=(libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libnvrtc.so.13)

want=("${WHEELS[@]}")
[ "$FULL" = 1 ] && want+=("${REAL_LIBS[@]}")
[ "$CUTLASS" = 1 ] && want+=("$CUTLASS_WHEEL")
stamp="rlvr-cuda-pip 1 full=$FULL cutlass=$CUTLASS ${want[*]} syms=$(cat "$SYMS"/*.syms | md5sum | cut -c1-12)"

if [ "$(cat "$PREFIX/.stamp" 2>/dev/null)" = "$stamp" ] && "$PREFIX/bin/nvcc" --version >/dev/null 2>&1; then
  echo "# CUDA 13.0 build toolchain already in $PREFIX" >&2
  cat "$PREFIX/env.sh"
  exit 0
fi

for tool in gcc git md5sum "$PY"; do
  command -v "$tool" >/dev/null || {
    echo "install-cuda-toolchain: $tool is missing (apt-get install -y build-essential git python3-pip)" >&2
    exit 1
  }
done
"$PY" -m pip --version >/dev/null 2>&1 || {
  echo "install-cuda-toolchain: $PY has no pip (apt-get install -y python3-pip)" >&2
  exit 1
}
for so in "${STUBS[@]}"; do
  [ "$FULL" = 1 ] || [ -s "$SYMS/$so.syms" ] || { echo "install-cuda-toolchain: missing $SYMS/$so.syms" >&2; exit 1; }
done

t0=$SECONDS
tmp="$(mktemp -d "${TMPDIR:-/tmp}/cuda-pip.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
new="$PREFIX.new.$$"
trap 'rm -rf "$tmp" "$new"' EXIT

echo "# fetching ${#want[@]} pinned wheels with pip ..." >&2
PIP_BREAK_SYSTEM_PACKAGES=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
  "$PY" -m pip install --quiet --no-cache-dir --no-deps --only-binary=:all: \
  --target "$tmp/site" "${want[@]}"

# The 13.x wheels share one tree, nvidia/cu13/{bin,include,lib,nvvm}: that is a toolkit layout.
[ -x "$tmp/site/nvidia/cu13/bin/nvcc" ] || { echo "install-cuda-toolchain: no nvidia/cu13/bin/nvcc in the wheels" >&2; exit 1; }
mkdir -p "$new"
cp -a "$tmp/site/nvidia/cu13/." "$new/"
rm -rf "$new/.metadata"
ln -sf libcudart.so.13 "$new/lib/libcudart.so"
[ -e "$new/lib/libnvvm.so.4" ] && ln -sf libnvvm.so.4 "$new/lib/libnvvm.so"
mkdir -p "$new/lib/stubs" "$new/nogpu"
ln -sf ../lib/libcudart.so.13 "$new/nogpu/libcudart.so.13"

# stub SONAME RC SYMBOL_FILE VERSIONED [EXTRA_C]: lib/stubs/<base>.so (for the linker) and
# nogpu/<SONAME> (for the loader). Every function returns RC, never a fake success.
stub() {
  local so="$1" rc="$2" syms="$3" versioned="$4" extra="${5:-}" base="${1%%.so*}" flags=()
  { sed "s/.*/int &(void) { return $rc; }/" "$syms"; printf '%s\n' "$extra"; } >"$tmp/$base.c"
  if [ "$versioned" = 1 ]; then # the real 13.x libs tag every symbol with a node named after the soname
    printf '%s { global: *; };\n' "$so" >"$tmp/$base.map"
    flags=(-Wl,--version-script="$tmp/$base.map")
  fi
  gcc -shared -fPIC -nostdlib -O1 -o "$new/lib/stubs/$base.so" "$tmp/$base.c" -Wl,-soname,"$so" "${flags[@]}"
  ln -sf "../lib/stubs/$base.so" "$new/nogpu/$so"
}

# libcuda.so.1 (the driver) never comes in a wheel. Its stub exports every cu* name of cuda.h
# (unversioned, like the real driver lib) and answers 100 = CUDA_ERROR_NO_DEVICE.
grep -ohE '\bcu[A-Z][A-Za-z0-9_]*\b' "$new/include/cuda.h" "$new/include/cudaTypedefs.h" | sort -u |
  grep -vxE 'cuGetError(String|Name)' >"$tmp/libcuda.syms"
stub libcuda.so.1 100 "$tmp/libcuda.syms" 0 '
int cuGetErrorName(int e, const char **s) { if (s) *s = e == 100 ? "CUDA_ERROR_NO_DEVICE" : "CUDA_ERROR_STUB"; return 0; }
int cuGetErrorString(int e, const char **s) { if (s) *s = "no CUDA device (libcuda.so.1 is the cuda-pip stub)"; return 0; }'

for so in "${STUBS[@]}"; do
  if [ "$FULL" = 1 ]; then
    ln -sf "$so" "$new/lib/${so%%.so*}.so"
    ln -sf "../lib/$so" "$new/nogpu/$so"
  else
    stub "$so" "${STUB_RC[$so]}" "$SYMS/$so.syms" 1
  fi
done

if [ "$CUTLASS" = 1 ]; then
  # cudaforge accepts a checkout whose include/ exists and whose `git rev-parse HEAD` is the
  # pinned commit; the wheel's headers are that commit's include/ and tools/util/include/.
  co="$new/cudaforge/git/checkouts/cutlass-${CUTLASS_COMMIT:0:16}"
  mkdir -p "$co/tools/util"
  cp -a "$tmp/site/cutlass_library/source/include" "$co/include"
  cp -a "$tmp/site/cutlass_library/source/tools/util/include" "$co/tools/util/include"
  git -c init.defaultBranch=main init -q "$co"
  echo "$CUTLASS_COMMIT" >"$co/.git/HEAD"
  [ "$(git -C "$co" rev-parse HEAD)" = "$CUTLASS_COMMIT" ]
fi

cat >"$new/env.sh" <<EOF
# CUDA 13.0 build environment (no GPU needed), written by rlvr's scripts/install-cuda-toolchain.sh
export CUDA_HOME="$PREFIX" CUDA_PATH="$PREFIX" CUDA_ROOT="$PREFIX" CUDA_TOOLKIT_ROOT_DIR="$PREFIX"
export NVCC="$PREFIX/bin/nvcc"
export CUDARC_CUDA_VERSION=13000                  # cudarc's cfg cuda-13000
export CUDA_COMPUTE_CAP="\${CUDA_COMPUTE_CAP:-90}" # H100/H200: sm_90a
export CUDAFORGE_HOME="$PREFIX/cudaforge"
case ":\$PATH:" in *":$PREFIX/bin:"*) ;; *) export PATH="$PREFIX/bin:\$PATH" ;; esac
EOF

# Check the toolchain before it replaces anything: a kernel to PTX and to an sm_90a object.
cat >"$tmp/check.cu" <<'EOF'
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda/std/type_traits>
__global__ void k(float *y, const __half *x, const __nv_bfloat16 *z) {
  y[threadIdx.x] = __half2float(x[threadIdx.x]) + __bfloat162float(z[threadIdx.x]);
}
EOF
"$new/bin/nvcc" -arch=sm_90a -ptx "$tmp/check.cu" -o "$tmp/check.ptx"
"$new/bin/nvcc" -gencode arch=compute_90a,code=sm_90a -Xcompiler -fPIC -c "$tmp/check.cu" -o "$tmp/check.o"

echo "$stamp" >"$new/.stamp"
# env.sh names PREFIX, not $new: swap the finished tree into place.
rm -rf "$PREFIX.old.$$"
[ -e "$PREFIX" ] && mv "$PREFIX" "$PREFIX.old.$$"
mv "$new" "$PREFIX"
rm -rf "$PREFIX.old.$$"

echo "# CUDA 13.0 build toolchain installed in $PREFIX in $((SECONDS - t0)) s ($(du -sh "$PREFIX" | cut -f1))" >&2
"$PREFIX/bin/nvcc" --version | tail -1 >&2
cat "$PREFIX/env.sh"
