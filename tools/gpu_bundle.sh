#!/usr/bin/env bash
# Runs HERE, on the CPU machine with nvcc: builds build-gpu/ with CUDA (sm_90, Release) and packs
# into .gpu/ (git-ignored) everything tools/gpu_check.sh needs on the GPU machine, where neither
# ../shared, our Debian packages nor any Python package can be assumed:
#   .gpu/bundle.tgz  one archive (the device call carries at most 64 MiB; packed, the binaries
#                    shrink 4x), unpacked there by gpu_check.sh:
#     bin/           gpt2-gen, gpt2-dump-logits and the `gpu` tests: test_gpu_kernels,
#                    test_gpu_kv_formats, test_gpu_kv_backend, test_gpu_backend, test_gpu_batch
#                    (stripped; GoogleTest, CLI11, nlohmann/json and the CUDA runtime are linked
#                    statically; ~2.8 MB each packed)
#     lib/           non-system shared libraries the binaries need (libgomp.so.1), from ldd
#     lib-fallback/  this machine's libstdc++ / libgcc_s, used there only if the system's are too old
#     shared/        golden/tiny-gpt2 (the references, not its checkpoint) and gpt2-tokenizer:
#                    GPT2_SHARED_DIR there
#     models/        tiny-fp32 and tiny-v2063-fp32, converted here (tests/convert_tiny_models.sh)
#                    without their tokenizer copies (gpu_check.sh puts shared/gpt2-tokenizer's
#                    back); not tiny-fp16 and tiny-bf16 (23 MB packed: the archive would pass 60
#                    MiB): gpu_check.sh makes them there from tiny-fp32 (tools/narrow_model.py,
#                    the same bytes)
#   .gpu/MANIFEST    what was built, from which commit, every file's size, the archive's size
# libcublas/libcublasLt.so.13 and the driver come from the GPU machine's CUDA 13.
# Usage: tools/gpu_bundle.sh [--no-build]     then, with the device tool:
#   run(command="bash tools/gpu_check.sh", carry=[".gpu"], timeout_s=450)
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
  cmake --build "$build" -j"$(nproc)" --target gpt2-gen gpt2-dump-logits test_gpu_kernels test_gpu_kv_formats \
    test_gpu_kv_backend test_gpu_backend test_gpu_batch
fi

stage=$build/bundle
rm -rf .gpu "$stage"
mkdir -p .gpu "$stage"/bin "$stage"/lib "$stage"/lib-fallback "$stage"/shared/golden
bins=("$build/gpt2-gen" "$build/gpt2-dump-logits")
for t in test_gpu_kernels test_gpu_kv_formats test_gpu_kv_backend test_gpu_backend test_gpu_batch; do
  bins+=("$build/tests/$t")
done
for b in "${bins[@]}"; do
  [ -x "$b" ] || { echo "gpu_bundle: missing $b (build failed?)" >&2; exit 1; }
  cp "$b" "$stage/bin/"
  strip --strip-unneeded "$stage/bin/$(basename "$b")"
done

# Shared libraries: everything ldd resolves except the C/C++ runtime, the CUDA libraries and the
# driver (all present on the GPU machine).
system_re='^(linux-vdso|ld-linux|libc\.so|libm\.so|libstdc\+\+|libgcc_s|libpthread|libdl\.so|librt\.so|libcublas|libcublasLt|libcudart|libcuda\.so|libnvidia)'
for b in "$stage"/bin/*; do
  ldd "$b" | awk '/=>/ {print $1, $3}' | while read -r name path; do
    if [[ "$path" == "not" ]]; then echo "gpu_bundle: $b needs $name, which is not found here" >&2; exit 1; fi
    [[ "$name" =~ $system_re ]] && continue
    [ -e "$stage/lib/$name" ] || cp -L "$path" "$stage/lib/$name"
  done
done
for lib in libstdc++.so.6 libgcc_s.so.1; do
  # (awk reads to the end: an early exit could end ldconfig by SIGPIPE, fatal under pipefail)
  p=$(ldconfig -p | awk -v l="$lib" '$1 == l && /x86-64/ && !found {print $NF; found = 1}')
  [ -n "$p" ] && cp -L "$p" "$stage/lib-fallback/"
done
strip --strip-unneeded "$stage"/lib/* "$stage"/lib-fallback/* 2>/dev/null || true

# The golden's references, not its Hugging Face checkpoint (27 MB): the GPU machine runs the
# converted models, which are converted here because it may lack numpy and safetensors.
mkdir -p "$stage/shared/golden/tiny-gpt2"
find "$shared/golden/tiny-gpt2" -maxdepth 1 -type f ! -name model.safetensors -exec cp {} "$stage/shared/golden/tiny-gpt2/" \;
cp -r "$shared/gpt2-tokenizer" "$stage/shared/"
GPT2_SHARED_DIR=$shared GPT2_TEST_MODELS=$stage/models bash tests/convert_tiny_models.sh
rm -f "$stage"/models/tiny-*/vocab.json "$stage"/models/tiny-*/merges.txt
rm -rf "$stage"/models/tiny-fp16 "$stage"/models/tiny-bf16  # made there from tiny-fp32
chmod -R u+w "$stage/shared"
tar -C "$stage" -czf .gpu/bundle.tgz .

{
  echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
  echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src kernels tests CMakeLists.txt || echo ' + uncommitted changes')"
  echo "nvcc: $(nvcc --version | tail -1)"
  echo "glibc here: $(ldd --version | sed -n 1p)"
  echo "needs there: libcublas.so.13, libcublasLt.so.13 (CUDA 13), an NVIDIA driver for CUDA 13, python3 (+ torch, transformers, numpy, safetensors for the HF step, which SKIPs without them)"
  echo
  echo "archive: bundle.tgz $(stat -c %s .gpu/bundle.tgz) bytes; unpacked:"
  (cd "$stage" && find . -type f -printf '%s\t%p\n' | sort -k2)
} > .gpu/MANIFEST

size_b=$(du -sb .gpu | cut -f1)
size_mib=$(( (size_b + 1048575) / 1048576 ))
tree_b=$(git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
echo "gpu_bundle: .gpu is ${size_mib} MiB (limit ${limit_mib}); the rest of the working tree $(( tree_b / 1048576 )) MiB"
if [ "$size_mib" -gt "$limit_mib" ]; then
  echo "gpu_bundle: .gpu is larger than ${limit_mib} MiB: the device call carries at most 64 MiB in all" >&2
  exit 1
fi
echo "gpu_bundle: ready. On the GPU machine: bash tools/gpu_check.sh   (device tool: carry [\".gpu\"], timeout_s 450)"
