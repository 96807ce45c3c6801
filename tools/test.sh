#!/usr/bin/env bash
# Runs every test gpt2-gen has on this machine: installs dependencies, builds (with CUDA when
# nvcc is present; the `gpu` tests skip without a device), runs CTest, then (with CUDA) compiles
# the CUDA code against CUDA 12 (tools/cuda12_check.sh), then the CPU build under
# AddressSanitizer + UndefinedBehaviorSanitizer with the CPU code's C++ suites again
# (GPT2_ASAN_FULL=1: every suite), then the fuzzers for a bounded time each.
# Usage: tools/test.sh [--quick]   (--quick: the first stage only)
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
# CTest runs as many tests at once as there are cores, and every CPU test starts one OpenMP
# thread per core; threads spinning at a barrier then hold the cores that the threads they wait
# for need. Passive waiting changes no result and made the CPU generation tests 20x faster
# under `ctest -j2` on 2 cores (82.7 s -> 4.2 s).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
# The fuzzers' time per target in CI (tools/fuzz.sh runs longer by hand).
export FUZZ_SECONDS=${FUZZ_SECONDS:-15}

tools/setup.sh

# CUDA architectures: with no GPU visible (CI), SASS for sm_75 and sm_90 and sm_90 PTX instead of
# CMake's default five (sm_75, 80, 86, 89, 90): every __CUDA_ARCH__ path of the kernels (below
# sm_80 no cp.async, sm_90 cp.async and griddepcontrol) compiled, in about half the kernels'
# compile time (build/'s cache keeps it for later configures). With a GPU, CMakeLists.txt's
# default (native) stands; CUDAARCHS overrides both.
cuda_architectures=()
if [ -z "${CUDAARCHS:-}" ] && ! nvidia-smi -L >/dev/null 2>&1; then
  cuda_architectures=(-DCMAKE_CUDA_ARCHITECTURES="75-real;90")
fi

echo "== build and test (build/)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "${cuda_architectures[@]}" >/dev/null
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs"

[ "${1:-}" = "--quick" ] && exit 0

echo "== CUDA 12 compile check (kernels for sm_75 and sm_90, and the backend)"
tools/cuda12_check.sh build

echo "== ASan + UBSan build and test (build-asan/, CPU only)"
# -O1 -g1, not RelWithDebInfo's -O2 -g: this build was CI's longest step. -O1 is what the
# sanitizers' documentation suggests for reasonable speed, and half the compile time of -O2 under
# ASan + UBSan (src/model/config.cpp: 54 -> 26 s of CPU); line tables (-g1) are all their reports
# need to name file and line, a third less compile time than -g (bench.cpp: 38 -> 25 s).
# In CI, the C++ suites of the CPU code (the library, the engine, the CPU backend, the file
# parsers, which also get the fuzzers below). Not the Python CLI suites, nor the CUDA emulator's
# (the kernels and the CUDA backend under ASan, a stand-in for compute-sanitizer): measured from a
# fresh clone on the 2-core AMD EPYC, the whole C++ set took 510 s to build and 727 s to run under
# the sanitizers, 1020 of its 1444 test-seconds on the emulator, which stage 1 runs unsanitized.
# GPT2_ASAN_FULL=1 runs every suite under them (before a release, or after touching kernels/).
sanitizers=(env ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1)
asan_configure() {
  cmake -S . -B build-asan -DGPT2_CUDA=OFF -DGPT2_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" "$@" >/dev/null
}
if [ "${GPT2_ASAN_FULL:-0}" = 1 ]; then
  asan_configure -DGPT2_EMU_TESTS=ON
  cmake --build build-asan -j"$jobs"
  "${sanitizers[@]}" ctest --test-dir build-asan --output-on-failure -j"$jobs"
else
  asan_configure -DGPT2_EMU_TESTS=OFF
  cmake --build build-asan -j"$jobs" --target gtests
  "${sanitizers[@]}" ctest --test-dir build-asan --output-on-failure -j"$jobs" -LE python
fi

if [ -x tools/fuzz.sh ]; then
  echo "== fuzzers"
  tools/fuzz.sh
fi
echo "== all tests passed"
