#!/usr/bin/env bash
# Runs HERE, on the CPU machine with nvcc: builds build-gpu/ with CUDA (sm_90, Release) and stages
# in .gpu/ (git-ignored) everything tools/gpu_check.sh needs on the GPU machine, where neither
# ../shared nor our Debian packages exist:
#   .gpu/bin/       gpt2-gen, gpt2-dump-logits, test_gpu_kernels, test_gpu_backend (stripped;
#                   GoogleTest, CLI11, nlohmann/json and the CUDA runtime are linked statically)
#   .gpu/lib/       non-system shared libraries the binaries need (libgomp.so.1), from ldd
#   .gpu/lib-fallback/  this machine's libstdc++ / libgcc_s, used there only if the system's are too old
#   .gpu/shared/    golden/tiny-gpt2 (model + references) and gpt2-tokenizer: GPT2_SHARED_DIR there
#   .gpu/MANIFEST   what was built, from which commit, and the sizes
# libcublas/libcublasLt.so.13 and the driver come from the GPU machine's CUDA 13.
# Usage: tools/gpu_bundle.sh [--no-build]     then, with the device tool:
#   run(command="bash tools/gpu_check.sh", carry=[".gpu"], timeout_s=420)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
shared=${GPT2_SHARED_DIR:-$root/../shared}
build=build-gpu
limit_mib=60

if [ "${1:-}" != "--no-build" ]; then
  echo "gpu_bundle: configuring $build (CUDA sm_90, Release)"
  # Without oneDNN: its library (40 MB) would not fit in the device call's 64 MiB, and the GPU
  # check uses the CPU backend only as a reference on the tiny model (its plain rows path).
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DGPT2_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DGPT2_ONEDNN=OFF >/dev/null
  echo "gpu_bundle: building (a few minutes on 2 cores)"
  cmake --build "$build" -j"$(nproc)" --target gpt2-gen gpt2-dump-logits test_gpu_kernels test_gpu_backend
fi

rm -rf .gpu
mkdir -p .gpu/bin .gpu/lib .gpu/lib-fallback .gpu/shared/golden
bins=("$build/gpt2-gen" "$build/gpt2-dump-logits" "$build/tests/test_gpu_kernels" "$build/tests/test_gpu_backend")
for b in "${bins[@]}"; do
  [ -x "$b" ] || { echo "gpu_bundle: missing $b (build failed?)" >&2; exit 1; }
  cp "$b" .gpu/bin/
  strip --strip-unneeded ".gpu/bin/$(basename "$b")"
done

# Shared libraries: everything ldd resolves except the C/C++ runtime, the CUDA libraries and the
# driver (all present on the GPU machine).
system_re='^(linux-vdso|ld-linux|libc\.so|libm\.so|libstdc\+\+|libgcc_s|libpthread|libdl\.so|librt\.so|libcublas|libcublasLt|libcudart|libcuda\.so|libnvidia)'
for b in .gpu/bin/*; do
  ldd "$b" | awk '/=>/ {print $1, $3}' | while read -r name path; do
    if [[ "$path" == "not" ]]; then echo "gpu_bundle: $b needs $name, which is not found here" >&2; exit 1; fi
    [[ "$name" =~ $system_re ]] && continue
    [ -e ".gpu/lib/$name" ] || cp -L "$path" ".gpu/lib/$name"
  done
done
for lib in libstdc++.so.6 libgcc_s.so.1; do
  # (awk reads to the end: an early exit could end ldconfig by SIGPIPE, fatal under pipefail)
  p=$(ldconfig -p | awk -v l="$lib" '$1 == l && /x86-64/ && !found {print $NF; found = 1}')
  [ -n "$p" ] && cp -L "$p" .gpu/lib-fallback/
done
strip --strip-unneeded .gpu/lib/* .gpu/lib-fallback/* 2>/dev/null || true

cp -r "$shared/golden/tiny-gpt2" .gpu/shared/golden/
cp -r "$shared/gpt2-tokenizer" .gpu/shared/
chmod -R u+w .gpu/shared

{
  echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
  echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src kernels tests CMakeLists.txt || echo ' + uncommitted changes')"
  echo "nvcc: $(nvcc --version | tail -1)"
  echo "glibc here: $(ldd --version | sed -n 1p)"
  echo "needs there: libcublas.so.13, libcublasLt.so.13 (CUDA 13), an NVIDIA driver for CUDA 13, python3 with numpy + safetensors (+ torch, transformers for the HF step)"
  echo
  (cd .gpu && find . -type f ! -name MANIFEST -printf '%s\t%p\n' | sort -k2)
} > .gpu/MANIFEST

size_b=$(du -sb .gpu | cut -f1)
size_mib=$(( (size_b + 1048575) / 1048576 ))
tree_b=$(git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
echo "gpu_bundle: .gpu is ${size_mib} MiB (limit ${limit_mib}); the rest of the working tree $(( tree_b / 1048576 )) MiB"
if [ "$size_mib" -gt "$limit_mib" ]; then
  echo "gpu_bundle: .gpu is larger than ${limit_mib} MiB: the device call carries at most 64 MiB in all" >&2
  exit 1
fi
echo "gpu_bundle: ready. On the GPU machine: bash tools/gpu_check.sh   (device tool: carry [\".gpu\"], timeout_s 420)"
