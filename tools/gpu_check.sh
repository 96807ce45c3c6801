#!/usr/bin/env bash
# The one GPU check: runs THERE, on a GPU machine (one H100 / H200, CUDA 13, python3 with numpy,
# safetensors, torch and transformers; no Debian packages, no network), in one call of at most
# six minutes, on the build made here by tools/gpu_bundle.sh and carried in .gpu/:
#   1. the libraries the binaries need, nvidia-smi
#   2. the `gpu` tests (kernels against the CPU reference; the whole model against the goldens);
#      the logits processors (penalties, n-gram blocking) against transformers' continuations
#      through the CLI on the device (tools/check_processors.py)
#   3. gpt2-gen vs Hugging Face on a seeded random GPT-2 124M (fp32 and fp16): last-position
#      logits and greedy tokens (tools/hf_compare.py)
#   4. the benchmark: 124M fp16, "What is KV caching?" ids, 1000 new tokens, greedy, ignore EOS,
#      with and without the cache (with --profile where gpt2-gen has it), for today's path, each
#      decode variant that `gpt2-gen --version` lists alone, and all together (a variant marked
#      [exact] must give today's tokens); the penalties in the decode graph; gpt2-gen --benchmark
#   5. compute-sanitizer: memcheck on short generations (cache, no-cache, sampled, penalties, all
#      variants), racecheck on the attention / matrix-vector / argmax kernel tests, initcheck on a
#      generation
# It prints its plan first (the configurations, an estimate per step). Every step is time-boxed
# (timeout) inside a global budget (GPU_CHECK_BUDGET_S, default 340 s);
# a step that no longer fits, or a sanitizer cut short by its box, is reported INCOMPLETE.
# Progress lines carry timestamps; full logs go to /tmp/gpu_check_logs and, when $OUT is set, to
# $OUT (gpu_check.log, summary.txt, variants.txt, logs.tgz with every JSON report). Ends with one
# summary table and the variants' table to choose the defaults from; exit status 1 if any step failed, else 2 (and a loud INCOMPLETE banner) if any step did not
# run to its end for lack of time: a check that did not run is not a pass.
#
# GPU_CHECK_DRY=1: the plumbing only, on a machine without a GPU (skips nvidia-smi and the
# sanitizers; the tests skip; the HF step compares the CPU backend with the tiny golden; the
# benchmark runs the tiny model on the CPU for 20 tokens).
# Usage, from the repository root with .gpu/ (tools/gpu_bundle.sh) beside it:
#   bash tools/gpu_check.sh                  # on the GPU machine
#   GPU_CHECK_DRY=1 bash tools/gpu_check.sh  # here, without a GPU
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
G=$ROOT/.gpu
BUDGET=${GPU_CHECK_BUDGET_S:-340}
DRY=${GPU_CHECK_DRY:-0}
START=$(date +%s)
LOGDIR=${GPU_CHECK_LOGS:-/tmp/gpu_check_logs}
WORK=${GPU_CHECK_WORK:-/tmp/gpu_check_work}
PROMPT_IDS=2061,318,509,53,40918,30
rm -rf "$LOGDIR" && mkdir -p "$LOGDIR" "$WORK"
# The main log also goes straight to $OUT, so it comes back even if the call is cut short.
if [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ]; then
  exec > >(tee -a "$LOGDIR/gpu_check.log" "$OUT/gpu_check.log") 2>&1
else
  exec > >(tee -a "$LOGDIR/gpu_check.log") 2>&1
fi
TEE_PID=$!
# Python (torch 2.11+cu130 with its own CUDA 13 wheels) runs in the environment it came with:
# the bundle's LD_LIBRARY_PATH below puts /usr/local/cuda/lib64 first, which would hand torch the
# system's cuBLAS / cuSPARSE / nvJitLink instead of its wheels'. Our binaries get that path; the
# ones hf_compare.py starts get it through GPT2_BIN_LD_LIBRARY_PATH.
if [ -n "${LD_LIBRARY_PATH+x}" ]; then PY=(env "LD_LIBRARY_PATH=$LD_LIBRARY_PATH" python3)
else PY=(env -u LD_LIBRARY_PATH python3); fi

NAMES=() RESULTS=() INFOS=()
FAILED=0 INCOMPLETE=()
elapsed() { echo $(( $(date +%s) - START )); }
remaining() { echo $(( BUDGET - $(elapsed) )); }
say() { printf '[%s +%3ss] %s\n' "$(date +%H:%M:%S)" "$(elapsed)" "$*"; }
record() {  # NAME RESULT INFO
  NAMES+=("$1"); RESULTS+=("$2"); INFOS+=("$3")
  [ "$2" = FAIL ] && FAILED=1
  [ "$2" = INCOMPLETE ] && INCOMPLETE+=("$1")
  say "$1: $2 ${3:+- $3}"
}
# run_boxed MAX_S MIN_S LOG cmd...: runs cmd under timeout min(MAX_S, remaining - 5) with its
# output in LOG (and the last lines echoed); returns its status, 124 on timeout, 125 if the
# budget left is under MIN_S (not run).
run_boxed() {
  local max=$1 min=$2 log=$3; shift 3
  local left; left=$(( $(remaining) - 5 ))
  if [ "$left" -lt "$min" ]; then echo "not run: ${left}s left of the budget" >"$log"; return 125; fi
  local box=$(( max < left ? max : left ))
  say "  \$ $* (timeout ${box}s, log $(basename "$log"))"
  timeout -k 5 "$box" "$@" >"$log" 2>&1
  local rc=$?
  tail -n 4 "$log" | sed 's/^/    | /'
  return $rc
}
gtest_counts() {  # LOG -> "passed failed skipped"
  local p f s
  p=$(grep -oE '\[  PASSED  \] [0-9]+' "$1" | grep -oE '[0-9]+$' | tail -1)
  f=$(grep -oE '\[  FAILED  \] [0-9]+ test' "$1" | grep -oE '[0-9]+' | tail -1)
  s=$(grep -oE '\[  SKIPPED \] [0-9]+' "$1" | grep -oE '[0-9]+$' | tail -1)
  echo "${p:-0} ${f:-0} ${s:-0}"
}
json_get() {  # FILE python-expression-over-j
  python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1" 2>/dev/null
}

say "gpu_check: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?') budget ${BUDGET}s, dry=${DRY}"
[ -f "$G/MANIFEST" ] && sed -n '1,3p' "$G/MANIFEST" | sed 's/^/  bundle /'

# ---- 1. libraries, device ---------------------------------------------------------------------
LIBS_OK=1
if [ ! -x "$G/bin/gpt2-gen" ]; then
  record "bundle" FAIL "no .gpu/bin: run tools/gpu_bundle.sh on the CPU machine and carry .gpu"
  LIBS_OK=0
else
  cuda_dirs=""
  for d in "${CUDA_HOME:-/usr/local/cuda}/lib64" /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
           /usr/local/cuda-13*/lib64; do
    [ -e "$d/libcublas.so.13" ] && cuda_dirs=":$d" && break
  done
  if [ -z "$cuda_dirs" ]; then  # the pip wheels that torch uses
    for d in $(python3 -c "import nvidia, os; print(' '.join(nvidia.__path__))" 2>/dev/null); do
      for f in $(find "$d" -name 'libcublas.so.13' 2>/dev/null | head -1); do cuda_dirs=":$(dirname "$f")"; done
    done
  fi
  export LD_LIBRARY_PATH="$G/lib${cuda_dirs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  missing=$(for b in "$G"/bin/*; do ldd "$b" 2>&1 | grep -i 'not found'; done | sort -u)
  if [ -n "$missing" ] && [ -d "$G/lib-fallback" ]; then
    export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$G/lib-fallback"
    missing=$(for b in "$G"/bin/*; do ldd "$b" 2>&1 | grep -i 'not found'; done | sort -u)
    [ -z "$missing" ] && say "  using this bundle's libstdc++ / libgcc_s (the system's are older)"
  fi
  export GPT2_BIN_LD_LIBRARY_PATH="$LD_LIBRARY_PATH"
  if [ -n "$missing" ]; then
    record "libraries" FAIL "$(echo "$missing" | tr -s ' \t\n' ' ' | cut -c1-150)"
    LIBS_OK=0
  else
    record "libraries" ok "cuBLAS from ${cuda_dirs#:}"
  fi
fi

if [ "$DRY" = 1 ]; then
  record "nvidia-smi" SKIP "dry run"
else
  smi=$(timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,clocks.sm,clocks.max.sm \
        --format=csv,noheader 2>&1 | head -1)
  if [ -n "$smi" ] && ! echo "$smi" | grep -qiE 'failed|not found|error'; then record "nvidia-smi" ok "$smi"
  else record "nvidia-smi" FAIL "${smi:-no output}"; fi
fi

# ---- the plan: the variants this build has (its --version lists them), the time each step takes --
# One source of truth: src/cuda/cuda_variants.cpp's table, as the binary prints it ("  name: what",
# "[exact]" when it changes only the schedule).
VARIANT_LINES=""
[ $LIBS_OK = 1 ] && VARIANT_LINES=$("$G/bin/gpt2-gen" --version 2>/dev/null | grep -E '^  [a-z0-9]+: ')
VARIANTS=$(echo "$VARIANT_LINES" | sed -nE 's/^  ([a-z0-9]+): .*/\1/p' | tr '\n' ' ')
EXACT=$(echo "$VARIANT_LINES" | sed -nE 's/^  ([a-z0-9]+): .*\[exact\]$/\1/p' | tr '\n' ' ')
CONFIGS="none ${VARIANTS}all"
is_exact() { case " $EXACT " in *" $1 "*) return 0;; esac; return 1; }
PROFILE_FLAG=()
[ $LIBS_OK = 1 ] && "$G/bin/gpt2-gen" --help 2>/dev/null | grep -q -- '--profile' && PROFILE_FLAG=(--profile)
if [ $LIBS_OK = 1 ] && [ -z "$VARIANTS" ]; then
  record "variants" FAIL "gpt2-gen --version lists no CUDA decode variants (an old build?)"
fi
n_cfg=$(echo $CONFIGS | wc -w)
# Estimates on an H200 (GPT-2 124M fp16; per run ~1.5 s of load and capture, 1000 cached tokens
# ~0.4 s, 1000 uncached ~1.2 s): see tests/README.md "On a GPU machine".
est_bench=$(( n_cfg * 6 + 5 ))
say "plan (estimated seconds on an H200; budget ${BUDGET}s):"
say "  tiny models 10, test_gpu_kernels 40, test_gpu_backend 40, processors 10, HF compare 50"
say "  bench: $n_cfg configs x (cache${PROFILE_FLAG:+ --profile}, no-cache) x $( [ "$DRY" = 1 ] && echo 20 || echo 1000) tokens, + penalties: ~${est_bench}"
for c in $CONFIGS; do say "    $c$(is_exact "$c" && echo ' [exact: the same tokens as none]')"; done
say "  --benchmark 20, memcheck 60 (today's and all variants), racecheck 30, initcheck 15"
say "  total ~$(( 10 + 40 + 40 + 10 + 50 + est_bench + 20 + 60 + 30 + 15 ))"
[ ${#PROFILE_FLAG[@]} = 0 ] && say "  (this gpt2-gen has no --profile: the benchmark runs without it)"

# ---- 2. tiny models and the gpu tests ----------------------------------------------------------
MODELS=$WORK/test-models
TINY_OK=1
rm -rf "$MODELS" && mkdir -p "$MODELS"
for dt in fp32 fp16 bf16; do
  if ! run_boxed 60 5 "$LOGDIR/convert_tiny_$dt.log" "${PY[@]}" tools/convert_weights.py \
       --from "$G/shared/golden/tiny-gpt2" --tokenizer "$G/shared/gpt2-tokenizer" --dtype "$dt" --out "$MODELS/tiny-$dt"; then
    TINY_OK=0
  fi
done
if [ $TINY_OK = 1 ]; then record "tiny models" ok "fp32, fp16, bf16 converted"; else record "tiny models" FAIL "see convert_tiny_*.log"; fi

export GPT2_SHARED_DIR=$G/shared GPT2_TEST_MODELS=$MODELS GPT2_SOURCE_DIR=$ROOT
for t in test_gpu_kernels:170 test_gpu_backend:100; do
  name=${t%%:*} box=${t##*:}
  if [ $LIBS_OK = 0 ]; then record "$name" SKIP "no usable binaries"; continue; fi
  run_boxed "$box" 20 "$LOGDIR/$name.log" "$G/bin/$name" --gtest_color=no
  rc=$?
  read -r p f s < <(gtest_counts "$LOGDIR/$name.log")
  failed_names=$(grep -E '^\[  FAILED  \] [A-Za-z]' "$LOGDIR/$name.log" | awk '{print $4}' | tr -d ',' | sort -u | head -4 | tr '\n' ' ')
  info="$p passed, $f failed, $s skipped${failed_names:+: $failed_names}"
  if [ $rc = 125 ]; then record "$name" INCOMPLETE "not run: no time left in the budget"
  elif [ $rc = 124 ]; then record "$name" FAIL "timed out; $info"
  elif [ $rc != 0 ]; then record "$name" FAIL "rc $rc; $info"
  elif [ "$DRY" != 1 ] && [ "$s" != 0 ]; then record "$name" FAIL "$info (skipped on a GPU machine: is the device usable?)"
  else record "$name" ok "$info"
  fi
done

# The logits processors on the device (penalties and n-gram blocking inside the decode graph):
# transformers' continuations of reference_processors.json through the CLI, cache and no-cache.
if [ $LIBS_OK = 0 ] || [ $TINY_OK = 0 ]; then
  record "processors" SKIP "no usable binaries or tiny models"
else
  pen_args=(--device cuda); [ "$DRY" = 1 ] && pen_args=(--device cpu --cases 2 --no-nocache)
  run_boxed 60 10 "$LOGDIR/processors.log" "${PY[@]}" tools/check_processors.py "$G/bin/gpt2-gen" "$MODELS/tiny-fp32" \
    "$G/shared/golden/tiny-gpt2/reference_processors.json" "${pen_args[@]}"
  rc=$?
  info=$(grep -E '^processors: ' "$LOGDIR/processors.log" | tail -1 | sed 's/^processors: //')
  if [ $rc = 0 ]; then record "processors" ok "$info"
  elif [ $rc = 125 ]; then record "processors" INCOMPLETE "not run: no time left in the budget"
  else record "processors" FAIL "rc $rc; ${info:-$(tail -1 "$LOGDIR/processors.log" | cut -c1-120)}"
  fi
fi

# ---- 3. Hugging Face comparison ----------------------------------------------------------------
HF_DIR=$WORK/hf
if [ $LIBS_OK = 0 ]; then
  record "HF compare" SKIP "no usable binaries"
else
  if [ "$DRY" = 1 ]; then
    run_boxed 60 10 "$LOGDIR/hf_compare.log" "${PY[@]}" tools/hf_compare.py golden --golden "$G/shared/golden/tiny-gpt2" \
      --model "$MODELS/tiny-fp32" --dump "$G/bin/gpt2-dump-logits" --device cpu --dtypes fp32 --steps 20 \
      --workdir "$HF_DIR" --report "$LOGDIR/hf_compare.json"
  else
    run_boxed 150 40 "$LOGDIR/hf_compare.log" "${PY[@]}" tools/hf_compare.py hf --seed 0 --ids "$PROMPT_IDS" \
      --tokenizer "$G/shared/gpt2-tokenizer" --dump "$G/bin/gpt2-dump-logits" --device cuda --dtypes fp32,fp16 \
      --steps 32 --workdir "$HF_DIR" --report "$LOGDIR/hf_compare.json"
  fi
  rc=$?
  lines=$(grep -E ': (ok|FAIL) ' "$LOGDIR/hf_compare.log" | sed -E 's/^gpt2-124M-random //; s/ vs HF fp64//; s/logits max\|d\|\/max\|ref\|/rel/; s/ steps compared//; s/ \(margin floor [^)]*\)//; s/ \(tol [^)]*\)//' | tr '\n' ';')
  if [ $rc = 0 ]; then record "HF compare" ok "$lines"
  elif [ $rc = 125 ]; then record "HF compare" INCOMPLETE "not run: no time left in the budget"
  else record "HF compare" FAIL "rc $rc; ${lines:-$(tail -1 "$LOGDIR/hf_compare.log" | cut -c1-150)}"
  fi
fi

# ---- 4. benchmark ----------------------------------------------------------------------------
same_prefix() {  # JSON_A JSON_B -> how many generated ids agree from the start
  python3 -c "import json,sys; a=json.load(open(sys.argv[1]))['generated_ids']; b=json.load(open(sys.argv[2]))['generated_ids']; print(next((i for i,(x,y) in enumerate(zip(a,b)) if x!=y), min(len(a),len(b))))" \
    "$1" "$2" 2>/dev/null
}
bench_info() {  # JSON -> "decode X us/tok (p50 Y), total Z s, load+first W ms, peak P MB"
  python3 - "$1" <<'EOF' 2>/dev/null
import json, sys, statistics
s = json.load(open(sys.argv[1]))["stats"]
n = s.get("generated_tokens", len(s.get("token_ms", [])))
dec = s["decode_ms"] * 1000 / max(n - 1, 1)
tok = s.get("token_ms", [])[1:]
p50 = statistics.median(tok) * 1000 if tok else float("nan")
print(f"{n} tok: decode {dec:.1f} us/tok (p50 {p50:.1f}), total {(s['prefill_ms'] + s['decode_ms']) / 1000:.3f} s, "
      f"load+first {s['load_ms'] + s['prefill_ms']:.0f} ms, peak {s.get('peak_device_bytes', 0) / 1e6:.0f} MB")
EOF
}
BENCH_DEV=none BENCH_N=0  # what the summary's variants heading says when the bench cannot run
if [ $LIBS_OK = 0 ]; then
  record "bench" SKIP "no usable binaries"
else
  if [ "$DRY" = 1 ]; then
    BENCH_MODEL=$MODELS/tiny-fp32 BENCH_DEV=cpu BENCH_N=20
  else
    BENCH_MODEL=$HF_DIR/gpt2-random-fp16 BENCH_DEV=cuda BENCH_N=1000
    if [ ! -f "$BENCH_MODEL/model.safetensors" ]; then
      BENCH_MODEL=$WORK/np-gpt2-random-fp16
      run_boxed 90 20 "$LOGDIR/random_model.log" "${PY[@]}" tools/hf_compare.py random --out "$BENCH_MODEL" --dtype fp16 \
        --tokenizer "$G/shared/gpt2-tokenizer" || say "  could not write a random 124M model"
    fi
  fi
  # Today's path, each variant alone, all together: the 1000-token benchmark with and without
  # the cache (and --profile where this build has it). A variant marked [exact] changes only the
  # schedule, so its tokens must be today's; the others report how far their tokens agree.
  for cfg in $CONFIGS; do
    for mode in cache nocache; do
      flag=(); [ $mode = nocache ] && flag=(--no-cache)
      [ $mode = cache ] && flag+=("${PROFILE_FLAG[@]}")
      name=${mode}_$cfg
      GPT2_CUDA_VARIANTS=$cfg run_boxed 60 10 "$LOGDIR/bench_$name.log" "$G/bin/gpt2-gen" -m "$BENCH_MODEL" \
        --prompt-ids "$PROMPT_IDS" -n "$BENCH_N" --temperature 0 --ignore-eos --device "$BENCH_DEV" "${flag[@]}" \
        --json "$LOGDIR/bench_$name.json"
      rc=$?
      info=$(bench_info "$LOGDIR/bench_$name.json")
      ref=$LOGDIR/bench_cache_none.json
      if [ "$name" != cache_none ] && [ -f "$ref" ] && [ -f "$LOGDIR/bench_$name.json" ]; then
        same=$(same_prefix "$ref" "$LOGDIR/bench_$name.json")
        info="$info; first ${same:-?} tokens = today's"
        if [ $mode = cache ] && is_exact "$cfg" && [ "${same:-0}" != "$BENCH_N" ]; then
          rc=97; info="$info ($cfg changes only the schedule: tokens must not change)"
        fi
      fi
      if [ $rc = 0 ] && [ -n "$info" ]; then record "bench $name" ok "$info"
      elif [ $rc = 125 ]; then record "bench $name" INCOMPLETE "not run: no time left in the budget"
      else record "bench $name" FAIL "rc $rc; $info $(tail -1 "$LOGDIR/bench_$name.log" | cut -c1-120)"
      fi
    done
  done
  # The decode graph with every logits processor in it: its tokens/s against the plain graph's.
  run_boxed 60 10 "$LOGDIR/bench_cache_penalties.log" "$G/bin/gpt2-gen" -m "$BENCH_MODEL" --prompt-ids "$PROMPT_IDS" \
    -n "$BENCH_N" --temperature 0 --ignore-eos --device "$BENCH_DEV" --repeat-penalty 1.3 --frequency-penalty 0.1 \
    --no-repeat-ngram-size 3 --json "$LOGDIR/bench_cache_penalties.json"
  rc=$?
  info=$(bench_info "$LOGDIR/bench_cache_penalties.json")
  if [ $rc = 0 ] && [ -n "$info" ]; then record "bench penalties" ok "$info"
  elif [ $rc = 125 ]; then record "bench penalties" INCOMPLETE "not run: no time left in the budget"
  else record "bench penalties" FAIL "rc $rc; $info $(tail -1 "$LOGDIR/bench_cache_penalties.log" | cut -c1-120)"
  fi
  runs=3; [ "$DRY" = 1 ] && runs=1
  run_boxed 100 45 "$LOGDIR/benchmark.log" "$G/bin/gpt2-gen" -m "$BENCH_MODEL" --prompt-ids "$PROMPT_IDS" \
    -n "$BENCH_N" --device "$BENCH_DEV" --benchmark --runs $runs --json "$LOGDIR/benchmark.json"
  rc=$?
  if [ $rc = 0 ]; then record "--benchmark" ok "$runs runs/mode; table in benchmark.log"
  elif [ $rc = 125 ]; then record "--benchmark" INCOMPLETE "not run: no time left in the budget"
  else record "--benchmark" FAIL "rc $rc; $(tail -1 "$LOGDIR/benchmark.log" | cut -c1-150)"
  fi
fi

# ---- 5. compute-sanitizer ------------------------------------------------------------------------
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
sanitize() {  # NAME TOOL MAX_S LOG cmd...
  local name=$1 tool=$2 max=$3 log=$4; shift 4
  run_boxed "$max" 30 "$log" "$SAN" --tool "$tool" --error-exitcode 99 --print-limit 20 "$@"
  local rc=$?
  local errs; errs=$(grep -oE 'ERROR SUMMARY: [0-9]+ error' "$log" | grep -oE '[0-9]+' | awk '{s += $1} END {print s + 0}')
  if grep -qiE 'device not supported|not supported on this platform|unable to (open|attach)' "$log"; then
    record "$name" SKIP "compute-sanitizer cannot use this device here: $(grep -iE 'not supported|unable' "$log" | head -1 | cut -c1-100)"
  elif [ $rc = 125 ]; then record "$name" INCOMPLETE "not run: no time left in the budget"
  elif [ $rc = 124 ]; then record "$name" INCOMPLETE "timed out (sanitizers are slow), ${errs:-0} errors before that"
  elif [ $rc = 0 ]; then record "$name" ok "0 errors"
  else record "$name" FAIL "rc $rc, ${errs:-?} errors: $(grep -m1 -E '^========= (Invalid|Race|Uninitialized|Error|Program hit)' "$log" | cut -c1-120)"
  fi
}
if [ "$DRY" = 1 ] || [ $LIBS_OK = 0 ]; then
  record "sanitizers" SKIP "$([ "$DRY" = 1 ] && echo 'dry run' || echo 'no usable binaries')"
elif [ -z "$SAN" ]; then
  record "sanitizers" SKIP "compute-sanitizer not found"
else
  # (--json writes its file atomically, via a temporary beside it: never point it at /dev/null.)
  gen=("$G/bin/gpt2-gen" -m "$MODELS/tiny-fp16" --prompt-ids 2061,318,509 --device cuda --ignore-eos -q)
  mc_script=$WORK/memcheck_runs.sh
  cat >"$mc_script" <<EOF
set -e
"$SAN" --tool memcheck --error-exitcode 99 --print-limit 20 ${gen[*]} -n 20 --temperature 0 --json $WORK/san_cache.json
"$SAN" --tool memcheck --error-exitcode 99 --print-limit 20 ${gen[*]} -n 20 --temperature 0 --no-cache --json $WORK/san_nocache.json
"$SAN" --tool memcheck --error-exitcode 99 --print-limit 20 ${gen[*]} -n 12 --temperature 0.8 --seed 3 --json $WORK/san_sampled.json
"$SAN" --tool memcheck --error-exitcode 99 --print-limit 20 ${gen[*]} -n 12 --temperature 0.8 --seed 3 --min-p 0.05 --repeat-penalty 1.3 --repeat-last-n 8 --presence-penalty 0.5 --frequency-penalty 0.2 --no-repeat-ngram-size 2 --json $WORK/san_penalties.json
GPT2_CUDA_VARIANTS=all "$SAN" --tool memcheck --error-exitcode 99 --print-limit 20 ${gen[*]} -n 20 --temperature 0 --json $WORK/san_variants.json
GPT2_CUDA_VARIANTS=all "$SAN" --tool memcheck --error-exitcode 99 --print-limit 20 ${gen[*]} -n 12 --temperature 0.8 --seed 3 --repeat-penalty 1.3 --no-repeat-ngram-size 2 --json $WORK/san_variants_sampled.json
EOF
  run_boxed 100 30 "$LOGDIR/memcheck.log" bash "$mc_script"
  rc=$?
  errs=$(grep -oE 'ERROR SUMMARY: [0-9]+' "$LOGDIR/memcheck.log" | grep -oE '[0-9]+' | tr '\n' ' ')
  if grep -qiE 'device not supported|not supported on this platform' "$LOGDIR/memcheck.log"; then
    record "memcheck" SKIP "compute-sanitizer cannot use this device here"
  elif [ $rc = 0 ]; then record "memcheck" ok "greedy cache, no-cache, sampled, penalties, all variants: errors ${errs:-?}"
  elif [ $rc = 125 ]; then record "memcheck" INCOMPLETE "not run: no time left in the budget"
  elif [ $rc = 124 ]; then record "memcheck" INCOMPLETE "timed out; errors so far ${errs:-none}"
  else record "memcheck" FAIL "rc $rc; errors ${errs:-?}: $(grep -m1 -E '^========= (Invalid|Error|Program hit)' "$LOGDIR/memcheck.log" | cut -c1-120)"
  fi
  export GPT2_GPU_TEST_QUICK=1  # small sizes: racecheck instruments every shared-memory access
  sanitize "racecheck" racecheck 90 "$LOGDIR/racecheck.log" "$G/bin/test_gpu_kernels" \
    --gtest_filter='Kernels/fp16.Attention*:Kernels/fp32.Gemv*:Sampling.Argmax*'
  unset GPT2_GPU_TEST_QUICK
  sanitize "initcheck" initcheck 60 "$LOGDIR/initcheck.log" "${gen[@]}" -n 8 --temperature 0 --json "$WORK/san_initcheck.json"
fi

# ---- summary ------------------------------------------------------------------------------------
# The table to choose the defaults from: per configuration, decode us/token (mean and median)
# with the cache, the whole 1000 tokens without it, each against today's path (none), and how
# many tokens equal today's.
variant_table() {
  python3 - "$LOGDIR" "$CONFIGS" "$EXACT" <<'PYEOF' 2>/dev/null
import json, os, statistics, sys
logdir, configs, exact = sys.argv[1], sys.argv[2].split(), set(sys.argv[3].split())
def load(name):
    try:
        return json.load(open(os.path.join(logdir, f"bench_{name}.json")))
    except (OSError, ValueError):
        return None
def decode_us(j):
    s = j["stats"]; n = s.get("generated_tokens", len(s.get("token_ms", [])))
    tok = s.get("token_ms", [])[1:]
    return s["decode_ms"] * 1000 / max(n - 1, 1), (statistics.median(tok) * 1000 if tok else float("nan"))
def total_s(j):
    return (j["stats"]["prefill_ms"] + j["stats"]["decode_ms"]) / 1000
base_c, base_n = load("cache_none"), load("nocache_none")
print("| variants | exact | cache us/tok | p50 | vs none | no-cache s | vs none | tokens = none's |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for cfg in configs:
    c, n = load("cache_" + cfg), load("nocache_" + cfg)
    row = [cfg, "yes" if cfg in exact else ""]
    if c:
        mean, p50 = decode_us(c)
        rel = f"{(mean / decode_us(base_c)[0] - 1) * 100:+.1f}%" if base_c else "?"
        row += [f"{mean:.1f}", f"{p50:.1f}", rel]
    else:
        row += ["-", "-", "-"]
    if n:
        rel = f"{(total_s(n) / total_s(base_n) - 1) * 100:+.1f}%" if base_n else "?"
        row += [f"{total_s(n):.3f}", rel]
    else:
        row += ["-", "-"]
    if c and base_c:
        a, b = base_c["generated_ids"], c["generated_ids"]
        row.append(str(next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))))
    else:
        row.append("-")
    print("| " + " | ".join(row) + " |")
PYEOF
}

{
  echo
  echo "== gpu_check summary ($(elapsed)s of ${BUDGET}s; logs in $LOGDIR${OUT:+ and \$OUT})"
  printf '| %-18s | %-10s | %s\n' "step" "result" "key numbers"
  printf '|%s|%s|%s\n' "--------------------" "------------" "------------------------------------------------------------"
  for i in "${!NAMES[@]}"; do printf '| %-18s | %-10s | %s\n' "${NAMES[$i]}" "${RESULTS[$i]}" "${INFOS[$i]}"; done
  echo
  echo "== decode variants ($BENCH_DEV, $BENCH_N tokens, greedy; GPT2_CUDA_VARIANTS; defaults stay 'none' until this table chooses)"
  variant_table | tee "$LOGDIR/variants.txt"
  if [ $FAILED = 1 ]; then echo "gpu_check: FAILED"
  elif [ ${#INCOMPLETE[@]} -gt 0 ]; then
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
    echo "gpu_check: INCOMPLETE -- ${#INCOMPLETE[@]} step(s) did not run to the end for lack of time:"
    echo "  ${INCOMPLETE[*]}"
    echo "  This is NOT a pass: rerun with a larger GPU_CHECK_BUDGET_S (and the device tool's timeout_s)."
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
  else echo "gpu_check: PASSED"; fi
} | tee "$LOGDIR/summary.txt"

if [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ]; then
  tar -C "$LOGDIR" -czf "$OUT/logs.tgz" . 2>/dev/null
  # At most 8 files come back from $OUT: every JSON report is in logs.tgz.
  for f in summary.txt variants.txt hf_compare.json benchmark.json; do
    [ -f "$LOGDIR/$f" ] && cp "$LOGDIR/$f" "$OUT/"
  done
fi
# Let tee write the last lines into the logs (and $OUT) before the call returns.
exec >&- 2>&-
wait "$TEE_PID" 2>/dev/null
if [ $FAILED = 1 ]; then exit 1; fi
if [ ${#INCOMPLETE[@]} -gt 0 ]; then exit 2; fi
exit 0
