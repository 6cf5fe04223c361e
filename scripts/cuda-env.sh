# Source me (bash/zsh): the build environment of the CUDA 13.0 toolchain that
# scripts/install-cuda-toolchain.sh puts in $CUDA_PIP_PREFIX (default /opt/cuda-pip).
#   source scripts/cuda-env.sh && cargo build --release --features cuda
# The same variables as PREFIX/env.sh, usable before or without it. Build-time only: on the GPU
# machine the binary needs the real CUDA 13 libraries on LD_LIBRARY_PATH, never PREFIX/nogpu.
: "${CUDA_PIP_PREFIX:=/opt/cuda-pip}"
if [ ! -x "$CUDA_PIP_PREFIX/bin/nvcc" ]; then
  echo "cuda-env.sh: no nvcc in $CUDA_PIP_PREFIX; run scripts/install-cuda-toolchain.sh first" >&2
fi
export CUDA_HOME="$CUDA_PIP_PREFIX" CUDA_PATH="$CUDA_PIP_PREFIX" CUDA_ROOT="$CUDA_PIP_PREFIX"
export CUDA_TOOLKIT_ROOT_DIR="$CUDA_PIP_PREFIX"
export NVCC="$CUDA_PIP_PREFIX/bin/nvcc"
export CUDARC_CUDA_VERSION=13000                   # cudarc's cfg cuda-13000 (matches nvcc 13.0)
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"  # H100/H200 -> sm_90a; set 80, 89, ... for others
export CUDAFORGE_HOME="$CUDA_PIP_PREFIX/cudaforge" # CUTLASS checkout cache (flash-attn only)
export CUDAFORGE_THREADS="${CUDAFORGE_THREADS:-$(nproc 2>/dev/null || echo 2)}" # parallel nvcc jobs
case ":$PATH:" in *":$CUDA_PIP_PREFIX/bin:"*) ;; *) export PATH="$CUDA_PIP_PREFIX/bin:$PATH" ;; esac
