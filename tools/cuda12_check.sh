#!/usr/bin/env bash
# Compiles the CUDA backend against CUDA 12 (12.4), compile only (-c: no link, no GPU): every
# kernels/*.cu for sm_75 and sm_90 (host and device code), and src/cuda/backend_cuda.cpp and
# profile_cuda.cpp. The build itself uses the local toolkit (CUDA 13); this keeps CUDA 12 working.
# Usage: tools/cuda12_check.sh [BUILD_DIR]   (default build/, configured: its generated headers)
#
# What it uses, and why (PyPI has no complete CUDA 12 compiler: nvidia-cuda-nvcc-cu12 holds
# ptxas, libNVVM, libdevice and the crt headers, but no nvcc, cicc or cudafe++):
#   nvidia-cuda-nvcc-cu12     22 MB  ptxas (device code to SASS), libdevice, crt/ headers
#   nvidia-cuda-runtime-cu12   1 MB  cuda_runtime.h, cuda_fp16.h, cuda_bf16.h, ...
#   nvidia-cuda-cccl-cu12      3 MB  CUB (sampling.cu's radix sort and block scan); .post1: the
#                                    12.4.127 wheel lacks libcu++'s cuda/__cccl_config and nv/
#   nvidia-nvtx-cu12         0.1 MB  nvtx3/ (profile_cuda.cpp)
#   nvidia-cublas-cu12       363 MB  only its include/ (cublas_v2.h; kernels/cuda_check.h includes
#                                    it everywhere), kept; the wheel is deleted after (its 360 MB
#                                    are libraries). CUDA 13's cuBLAS headers do not compile
#                                    against CUDA 12's runtime headers (cudaEmulation* types).
#   clang++-19 (Debian; tools/setup.sh installs it beside nvcc) compiles the .cu files in CUDA
#   mode against those headers, the device code once per architecture through CUDA 12's ptxas
#   to SASS, the host code once (no fat binary: the wheels have no fatbinary); g++ compiles the
#   backend's .cpp files as the build does. So: CUDA 12's headers, CUB, cuBLAS and ptxas; clang's
#   front end, not nvcc's. Every header a compile reads is checked to come from CUDA 12, not from
#   the local toolkit (which this machine also links into /usr/local/include).
# Why 12.4: a CUDA 12 older than the last (12.9), so an API added since shows, that clang 19
# supports (partially, it says: -Wno-unknown-cuda-version), and whose wheels are complete.
# The venv and headers live in ~/.cache/gpt2-gen/cuda12.4 (GPT2_CACHE_DIR), outside the
# repository: the first run downloads ~390 MB (35-55 s here) and keeps ~110 MB; later runs reuse it
# with no network. Skips, with one line, without a CUDA build, clang++-19 or a reachable PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
skip() { echo "cuda12_check: skipped: $*"; exit 0; }
fail() { echo "cuda12_check: error: $*" >&2; exit 1; }

info="$build/generated/base/build_info.h"
[ -f "$info" ] || fail "$build is not configured ($info missing): run cmake -S . -B $build first"
grep -q 'GPT2_CUDA_ARCHITECTURES ""' "$info" && skip "$build builds no CUDA backend"
clang=clang++-19
command -v "$clang" >/dev/null || skip "$clang not found (tools/setup.sh installs it where nvcc is)"

version=12.4
pins=(nvidia-cuda-nvcc-cu12==12.4.131 nvidia-cuda-runtime-cu12==12.4.127 nvidia-cuda-cccl-cu12==12.4.127.post1
      nvidia-nvtx-cu12==12.4.127)
cublas=nvidia-cublas-cu12==12.4.5.8
cache=${GPT2_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gpt2-gen}/cuda$version
root=$cache/root  # the CUDA 12 tree clang is given: bin/ptxas, nvvm/libdevice, include/
stamp="${pins[*]} $cublas"

if [ "$(cat "$cache/ready" 2>/dev/null)" != "$stamp" ]; then
  start=$SECONDS
  rm -rf "$cache" && mkdir -p "$cache"
  pip=(python3 -m pip --disable-pip-version-check --timeout 20 --retries 1)
  "${pip[@]}" download -q --no-deps -d "$cache/probe" nvidia-nvtx-cu12==12.4.127 >/dev/null 2>&1 ||
    { rm -rf "$cache"; skip "PyPI unreachable (pip could not download nvidia-nvtx-cu12)"; }
  echo "cuda12_check: installing CUDA $version's compiler parts and headers into $cache (once)"
  python3 -m venv "$cache/venv"
  "$cache/venv/bin/python" -m pip install -q --disable-pip-version-check "${pins[@]}"
  "${pip[@]}" download -q --no-deps -d "$cache/wheels" "$cublas"
  python3 - "$cache/wheels"/nvidia_cublas_cu12-*.whl "$cache/cublas" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as whl:
    whl.extractall(sys.argv[2], [n for n in whl.namelist() if n.startswith("nvidia/cublas/include/") and n.endswith(".h")])
EOF
  rm -rf "$cache/wheels" "$cache/probe"
  nvidia=$(echo "$cache"/venv/lib/python3*/site-packages/nvidia)
  mkdir -p "$root/include"
  ln -s "$nvidia/cuda_nvcc/bin" "$root/bin"
  ln -s "$nvidia/cuda_nvcc/nvvm" "$root/nvvm"
  for dir in "$nvidia/cuda_runtime/include" "$nvidia/cuda_cccl/include" "$nvidia/cuda_nvcc/include" \
             "$nvidia/nvtx/include" "$cache/cublas/nvidia/cublas/include"; do
    for f in "$dir"/*; do
      case "$(basename "$f")" in __init__.py | __pycache__) ;; *) ln -sfn "$f" "$root/include/" ;; esac
    done
  done
  # clang's CUDA wrapper force-includes cuRAND's curand_mtgp32_kernel.h (for its blockDim and
  # threadIdx); this project uses no cuRAND, so an empty one stands in for the wheel's.
  echo "// empty: cuRAND is not used (tools/cuda12_check.sh)" > "$root/include/curand_mtgp32_kernel.h"
  grep -q "define CUDA_VERSION 12040" "$root/include/cuda.h" || fail "$root/include/cuda.h is not CUDA $version"
  echo "$stamp" > "$cache/ready"
  echo "cuda12_check: CUDA $version ready in $((SECONDS - start)) s"
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
includes=(-isystem "$root/include" -Isrc -Ikernels -I"$build/generated")
# clang 19 has no cache-hint loads (CUDA's sm_32_intrinsics.hpp, which its CUDA wrapper keeps
# out): the one the kernels use, as CUDA 12's header defines it, force-included.
cat > "$out/clang_ldcg.h" <<'EOF'
static __device__ __forceinline__ float __ldcg(const float* p) {
  float v;
  asm volatile("ld.global.cg.f32 %0, [%1];" : "=f"(v) : "l"(p));
  return v;
}
EOF
# Each compile also writes its header list (-MD); CUDA headers must all come from $root.
cuda_cmd=("$clang" -x cuda --cuda-path="$root" -std=c++17 -O3 -Wno-unknown-cuda-version -Wno-pass-failed
          -include "$out/clang_ldcg.h" "${includes[@]}")
host_cmd=(g++ -std=c++17 -O0 -fopenmp "${includes[@]}")
run() {  # run <label> <command...>: the compile, then the header check; one line on failure
  local label=$1 foreign
  shift
  if ! "$@" -MD -MF "$out/$label.d" > "$out/$label.log" 2>&1; then
    echo "FAIL $label (CUDA $version):"; cat "$out/$label.log"; return 1
  fi
  foreign=$(tr ' \\' '\n\n' < "$out/$label.d" | grep -E '^/usr/local/(include|cuda)' | head -3 || true)
  if [ -n "$foreign" ]; then
    echo "FAIL $label: read headers of the local CUDA toolkit, not CUDA $version's:"; echo "$foreign"; return 1
  fi
}
compile() {  # compile <source>: a .cu's device code for sm_75 and sm_90 and its host code; a .cpp
  local src=$1 name
  name=$(basename "$src")
  if [[ $src == *.cu ]]; then
    for arch in sm_75 sm_90; do
      run "$name.$arch" "${cuda_cmd[@]}" --cuda-device-only --cuda-gpu-arch=$arch -c "$src" -o "$out/$name.$arch.cubin" || return 1
    done
    run "$name.host" "${cuda_cmd[@]}" --cuda-host-only -c "$src" -o "$out/$name.o" || return 1
  else
    run "$name" "${host_cmd[@]}" -c "$src" -o "$out/$name.o" || return 1
  fi
  echo "ok   $src"
}
start=$SECONDS
sources=(kernels/*.cu src/cuda/backend_cuda.cpp src/cuda/profile_cuda.cpp)
for src in "${sources[@]}"; do  # $(nproc) compiles at a time
  while [ "$(jobs -rp | wc -l)" -ge "$(nproc)" ]; do wait -n || true; done
  compile "$src" > "$out/$(basename "$src").result" &
done
wait
failed=0
for src in "${sources[@]}"; do
  cat "$out/$(basename "$src").result"
  grep -q "^ok " "$out/$(basename "$src").result" || failed=1
done
[ "$failed" = 0 ] || fail "does not compile with CUDA $version (above)"
echo "cuda12_check: kernels (sm_75, sm_90) and backend compile with CUDA $version in $((SECONDS - start)) s"
