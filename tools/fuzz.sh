#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan; build-fuzz/) and runs each for a bounded
# time on a temporary copy of its seeded corpus in tests/fuzz/corpus/<target>/ (the tree is
# not modified). Prints libFuzzer's final lines per target; exits non-zero if any target
# crashed, tripped a sanitizer or a property, timed out, leaked or ran out of memory, and
# prints where the reproducer was kept (add it to the corpus as tests/fuzz/corpus/<target>/
# regress-<what>).
#
# Usage: tools/fuzz.sh [target...]      (default: all five)
#   FUZZ_SECONDS   seconds per target (default 60)
#   FUZZ_JOBS      targets run at the same time (default: nproc)
#   FUZZ_BUILD_DIR build directory (default build-fuzz)
#   GPT2_TOKENIZER_DIR  GPT-2's vocab.json/merges.txt (default ../shared/gpt2-tokenizer)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
start=$(date +%s)
secs=${FUZZ_SECONDS:-60}
jobs=${FUZZ_JOBS:-$(nproc)}
build=${FUZZ_BUILD_DIR:-build-fuzz}
export GPT2_TOKENIZER_DIR=${GPT2_TOKENIZER_DIR:-$root/../shared/gpt2-tokenizer}

all_targets=(fuzz_safetensors fuzz_config fuzz_prompt_cache fuzz_tokenizer_encode fuzz_tokenizer_files)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all_targets[@]}")

# Longest input per target: a few times the largest seed, small enough to keep exec/s high.
max_len_of() {
  case "$1" in
    fuzz_safetensors) echo 16384 ;;    # valid seeds are 3-6 KB
    fuzz_config) echo 4096 ;;
    fuzz_prompt_cache) echo 4096 ;;   # valid seeds are under 1 KB
    fuzz_tokenizer_encode) echo 2048 ;;
    fuzz_tokenizer_files) echo 16384 ;; # seeds up to ~8 KB (200 merges)
    *) echo "fuzz.sh: unknown target $1" >&2; exit 2 ;;
  esac
}
for t in "${targets[@]}"; do max_len_of "$t" >/dev/null; done

if ! command -v clang++ >/dev/null; then
  echo "fuzz.sh: clang++ not found (tools/setup.sh installs clang and libclang-rt-dev)" >&2
  exit 2
fi
echo "fuzz.sh: building ${targets[*]} in $build/"
CC=clang CXX=clang++ cmake -S . -B "$build" -DGPT2_FUZZ=ON -DGPT2_CUDA=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" >/dev/null  # -O1 -g1: see tools/test.sh; libFuzzer's own examples build at -O1
cmake --build "$build" -j"$(nproc)" --target "${targets[@]}" >"$build/fuzz-build.log" 2>&1 || {
  tail -50 "$build/fuzz-build.log"; echo "fuzz.sh: build failed" >&2; exit 1; }
build_done=$(date +%s)
echo "fuzz.sh: built in $((build_done - start)) s; running each target for $secs s, $jobs at a time"

work=$(mktemp -d "${TMPDIR:-/tmp}/gpt2-fuzz.XXXXXX")
artifacts="$root/$build/fuzz-artifacts"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

run_one() {
  local t=$1 dir="$work/$1"
  mkdir -p "$dir/corpus" "$dir/artifacts"
  cp -r "tests/fuzz/corpus/$t/." "$dir/corpus/"
  local dict=()
  [ -f "tests/fuzz/$t.dict" ] && dict=(-dict="tests/fuzz/$t.dict")
  local rc=0
  "$build/tests/fuzz/$t" "$dir/corpus" "${dict[@]}" \
    -max_total_time="$secs" -max_len="$(max_len_of "$t")" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$dir/artifacts/" >"$dir/log" 2>&1 || rc=$?
  echo "$rc" >"$dir/rc"
}

pids=()
for t in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
  run_one "$t" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || true; done

failed=()
for t in "${targets[@]}"; do
  dir="$work/$t"
  rc=$(cat "$dir/rc" 2>/dev/null || echo 99)
  echo "== $t (exit $rc)"
  # The final status line (#N DONE ... exec/s ...) and "Done N runs in S second(s)".
  grep -E '^#[0-9]+' "$dir/log" | tail -1 || true
  grep -E '^Done [0-9]+ runs' "$dir/log" | tail -1 || true
  grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$dir/log" | tr '\n' ' ' || true
  echo
  if [ "$rc" != 0 ] || [ -n "$(ls -A "$dir/artifacts")" ]; then
    failed+=("$t")
    mkdir -p "$artifacts/$t"
    cp "$dir/log" "$artifacts/$t/log"
    cp "$dir"/artifacts/* "$artifacts/$t/" 2>/dev/null || true
    echo "-- $t FAILED; the report:"
    grep -nE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|property violated|unexpected gpt2::Error|==[0-9]+==' \
      "$dir/log" | head -20 || true
    sed -n '/ERROR\|runtime error:/,/SUMMARY/p' "$dir/log" | grep -E '^ +#[0-9]+ ' |
      grep -vE 'fuzzer::|__sanitizer|libc\.so|__libc_start|_start ' | head -15 || true
    found=0
    for a in "$artifacts/$t"/*; do
      [ "$(basename "$a")" = log ] && continue
      found=1
      echo "   reproducer: $a   (re-run: $build/tests/fuzz/$t $a)"
    done
    [ "$found" = 0 ] && { echo "   no reproducer was written; the end of the log:"; tail -15 "$dir/log" | sed 's/^/   | /'; }
    echo "   full log: $artifacts/$t/log"
  fi
done
rm -rf "$work"

echo "fuzz.sh: $((build_done - start)) s build + $(( $(date +%s) - build_done )) s fuzzing, $(( $(date +%s) - start )) s in all"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz.sh: ${#targets[@]} target(s) ran ${secs} s each without a finding"
