#!/usr/bin/env bash
# The one GPU check: runs THERE, on a GPU machine (one H100 80 GB or H200 141 GB, CUDA 13,
# python3; no Debian packages, no network), in one call, on the build that tools/gpu_bundle.sh
# made here and packed into .gpu/bundle.tgz. GPU time is rare, so the order puts what must not be
# lost first, and one step going wrong (a crash, a hang, a missing package) costs only that step:
#   1. setup: unpack the bundle (and make tiny-fp16 / tiny-bf16 from tiny-fp32 there:
#      tools/narrow_model.py, standard library only; the bundle has no room for them); the
#      libraries the binaries need; nvidia-smi. The benchmark's
#      model (a random GPT-2 124M fp16, tools/random_model.py, standard library only) is written
#      in the background meanwhile.
#   2. correctness: the `gpu` tests (kernels against the CPU reference; the K/V ring formats'
#      kernels byte for byte and the backend in each format; the whole model against the
#      goldens, the logits processors' 12 cases with and without the cache, the decode variants
#      against the CPU backend; several sequences at once, batched rows = solo runs); 4 of those processor cases through the CLI
#      (tools/check_processors.py); gpt2-gen against Hugging Face on a seeded random GPT-2 124M,
#      fp32 and fp16 (tools/hf_compare.py: SKIP where torch or transformers cannot be imported).
#   3. sanitizers: racecheck on the decode kernels' tests (attention decode, every gemv and its
#      variants, argmax; fp16, small sizes); memcheck on real generations of the tiny fp16 model
#      (today's path and all variants, cache and no-cache, greedy; all variants sampled with
#      every logits processor); initcheck on one generation.
#   4. benchmark: 124M fp16, "What is KV caching?" ids, 1000 new tokens, greedy, EOS ignored:
#      today's path (none) with and without the cache, all variants together, each variant that
#      `gpt2-gen --version` lists alone (cache only: the variants do not change --no-cache), an
#      [exact] variant's tokens against none's (SKIP when either run failed); then --profile for
#      none and all in runs of their own (500 tokens: a profile problem cannot lose the timings),
#      then the K/V ring formats (--kv-dtype fp32, fp16, bf16, int8; each a 1000-token run, its
#      tokens against cache_none's: fp16 must give them all, as fp16 compute's default rings are
#      fp16; SKIP while gpt2-gen has no --kv-dtype), the penalties in the decode graph, and
#      gpt2-gen --benchmark (3 runs per mode).
# Budget: GPU_CHECK_BUDGET_S (default 390 s: the estimates, 321 s, plus the largest overrun, 60
# s; the device call's timeout_s 450 and the machine's start fit a 10-minute window, and a rerun
# of the steps that failed fits 15 minutes). Every step has an estimate and a time box that a slow run still fits (25 s for
# a benchmark run of ~3 s); the plan printed first shows both, and whether the estimates plus the
# largest overrun fit the budget. A step does not start if less than its estimate is left
# (INCOMPLETE), and until the benchmark starts KEEP_S seconds stay kept for its first runs (none,
# no-cache, all). Nothing is sized by the GPU's memory (the largest things there: the 250 MB
# model, torch's 1 GB float64 copy), so an H100 80 GB runs what an H200 does.
# Results: as each step ends, summary.txt (the steps so far and the variants' table), results.json
# (every step: result, seconds, key numbers) and logs.tgz (every log and JSON report) are
# rewritten in $LOGDIR and, when $OUT is set, in $OUT, beside gpu_check.log (all output, live),
# hf_compare.json, benchmark.json and variants.txt; so a call cut short still brings back every
# step that ended. Exit status 1 if a step failed, else 2 (and a loud INCOMPLETE banner) if a step
# did not run to its end for lack of time: a check that did not run is not a pass; else 0.
#
# GPU_CHECK_DRY=1: the plumbing only, on a machine without a GPU, every step in the same order:
# no nvidia-smi; the tests skip; the HF step compares the CPU backend with the tiny golden; the
# sanitizer steps run their commands on the CPU without compute-sanitizer; the benchmark runs a
# small random model (2 layers) on the CPU for 20 tokens.
# GPU_CHECK_PLANT: planted failures, to see that the check reports them and keeps going; a comma-
# separated list of crash-variant:NAME (every run with GPT2_CUDA_VARIANTS=NAME dies of SIGSEGV),
# crash:STEP or hang:STEP (that step's command dies, or hangs until its box ends). Unknown plants
# and steps are refused. Off unless set; the plan and the summary name what was planted.
# GPU_CHECK_BUNDLE=DIR: an unpacked bundle to use instead of unpacking .gpu/bundle.tgz.
# Usage, from the repository root with .gpu/ (tools/gpu_bundle.sh) beside it:
#   bash tools/gpu_check.sh                  # on the GPU machine
#   GPU_CHECK_DRY=1 bash tools/gpu_check.sh  # here, without a GPU
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUDGET=${GPU_CHECK_BUDGET_S:-390}
DRY=${GPU_CHECK_DRY:-0}
PLANT=${GPU_CHECK_PLANT:-}
START=$(date +%s)
LOGDIR=${GPU_CHECK_LOGS:-/tmp/gpu_check_logs}
WORK=${GPU_CHECK_WORK:-/tmp/gpu_check_work}
G=${GPU_CHECK_BUNDLE:-$WORK/bundle}
MODELS=$G/models
PROMPT_IDS=2061,318,509,53,40918,30
unset GPT2_CUDA_VARIANTS  # each run names its own (none: today's path)
OUTDIR=""; [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ] && OUTDIR=$OUT
rm -rf "$LOGDIR" && mkdir -p "$LOGDIR" "$WORK"
# The main log also goes straight to $OUT, so it comes back even if the call is cut short.
exec > >(tee -a "$LOGDIR/gpu_check.log" ${OUTDIR:+"$OUTDIR/gpu_check.log"}) 2>&1
TEE_PID=$!
# Python (torch 2.11+cu130 with its own CUDA 13 wheels) runs in the environment it came with:
# the bundle's LD_LIBRARY_PATH below puts /usr/local/cuda/lib64 first, which would hand torch the
# system's cuBLAS / cuSPARSE / nvJitLink instead of its wheels'. Our binaries get that path; the
# ones hf_compare.py starts get it through GPT2_BIN_LD_LIBRARY_PATH.
if [ -n "${LD_LIBRARY_PATH+x}" ]; then PY=(env "LD_LIBRARY_PATH=$LD_LIBRARY_PATH" python3)
else PY=(env -u LD_LIBRARY_PATH python3); fi

# ---- the plan: every step's estimate and time box, in the order they run ---------------------
# Estimates are PREDICTIONS for an H100/H200 (nothing has been measured there yet): ~1.5 s of
# load and graph capture per gpt2-gen run, 1000 cached tokens ~0.4 s, 1000 uncached ~1.2 s;
# compute-sanitizer ~10 s per process. results.json's seconds replace them after the first run.
ORDER=() PHASE_OF=()
declare -A EST BOX
step() { ORDER+=("$1"); PHASE_OF+=("$PHASE"); EST[$1]=$2; BOX[$1]=$3; }  # STEP ESTIMATE_S BOX_S
KEEP_S=30  # kept for cache_none, nocache_none and cache_all until the benchmark starts
plan_fixed() {
  PHASE=setup; step unpack 8 60; step libraries 1 20; step nvidia-smi 1 20
  PHASE=correctness; step test_gpu_kernels 40 90; step test_gpu_kv_formats 8 30; step test_gpu_kv_backend 10 40
  step test_gpu_backend 40 90; step test_gpu_batch 15 45
  step processors 12 40; step hf_imports 5 60; step hf_compare 30 90
  PHASE=sanitizers; step racecheck 30 60; step memcheck_none 15 45; step memcheck_all 15 45
  step memcheck_all_sampled 12 40; step initcheck 12 40
}
plan_bench() {  # after the variants are known
  PHASE=benchmark; step bench_model 5 60; step cache_none 3 25; step nocache_none 4 25; step cache_all 3 25
  local v; for v in $VARIANTS; do step "cache_$v" 3 25; done
  for v in $EXACT; do step "exact_$v" 0 0; done  # no run: cache_none's tokens against cache_$v's
  step profile_none 3 25; step profile_all 3 25
  for v in $KV_FORMATS; do step "kv_$v" 3 25; done
  step penalties 3 25; step benchmark 10 45
}

# ---- recording and publishing ----------------------------------------------------------------
NAMES=() RESULTS=() INFOS=() SECS=()
FAILED=0 INCOMPLETE=() LAST_END=0 STATUS=RUNNING
elapsed() { echo $(( $(date +%s) - START )); }
say() { printf '[%s +%3ss] %s\n' "$(date +%H:%M:%S)" "$(elapsed)" "$*"; }
record() {  # STEP RESULT INFO: one row of the summary, published at once
  local now info=${3//[[:cntrl:]]/ }; now=$(elapsed)
  NAMES+=("$1"); RESULTS+=("$2"); INFOS+=("$info"); SECS+=($(( now - LAST_END ))); LAST_END=$now
  [ "$2" = FAIL ] && FAILED=1
  [ "$2" = INCOMPLETE ] && INCOMPLETE+=("$1")
  say "$1: $2 ${info:+- $info}"
  publish
}
# outcome STEP RC INFO [TIMEOUT_RESULT]: the usual reading of a step's exit status.
outcome() {
  local name=$1 rc=$2 info=${3%; } on_timeout=${4:-FAIL}
  if [ "$rc" = 125 ]; then record "$name" INCOMPLETE "not run: $(cat "$LOGDIR/$name.log" 2>/dev/null)"
  elif [ "$rc" = 124 ]; then record "$name" "$on_timeout" "timed out after ${BOX[$name]:-?}s; $info"
  elif [ "$rc" != 0 ]; then record "$name" FAIL "rc $rc$([ "$rc" -gt 128 ] 2>/dev/null && echo " (signal $(( rc - 128 )))"); $info"
  else record "$name" ok "$info"
  fi
}
last_line() { tail -n 1 "$1" 2>/dev/null | cut -c1-150; }

publish() {  # rewrites summary.txt, results.json, variants.txt and logs.tgz, here and in $OUT
  summary >"$LOGDIR/summary.txt"
  results_json >"$LOGDIR/results.json.tmp" && mv "$LOGDIR/results.json.tmp" "$LOGDIR/results.json"
  [ -z "$OUTDIR" ] && return 0
  tar -C "$LOGDIR" -czf "$OUTDIR/.logs.tgz" --exclude=gpu_check.log . 2>/dev/null && mv "$OUTDIR/.logs.tgz" "$OUTDIR/logs.tgz"
  local f
  for f in summary.txt results.json variants.txt hf_compare.json benchmark.json; do
    [ -f "$LOGDIR/$f" ] && cp "$LOGDIR/$f" "$OUTDIR/.$f" && mv "$OUTDIR/.$f" "$OUTDIR/$f"
  done
  return 0
}
# (In bash, not Python: results.json comes back even where python3 is broken; printf -v, not
# $(...), since this runs for every step at every step. record() keeps control characters out.)
jstr() { local s=${2//\\/\\\\}; printf -v "$1" '"%s"' "${s//\"/\\\"}"; }  # VAR STRING: VAR = STRING in JSON
results_json() {
  local i sep="" st co pl dry=false name res info
  jstr st "$STATUS"; jstr co "$COMMIT"; jstr pl "$PLANT"; [ "$DRY" = 1 ] && dry=true
  printf '{"status": %s, "elapsed_s": %d, "budget_s": %d, "commit": %s, "dry": %s, "planted": %s, "steps": [' \
    "$st" "$(elapsed)" "$BUDGET" "$co" "$dry" "$pl"
  for i in "${!NAMES[@]}"; do
    jstr name "${NAMES[$i]}"; jstr res "${RESULTS[$i]}"; jstr info "${INFOS[$i]}"
    printf '%s\n {"step": %s, "result": %s, "seconds": %d, "info": %s}' "$sep" "$name" "$res" "${SECS[$i]}" "$info"
    sep=,
  done
  printf '\n]}\n'
}
summary() {
  echo "== gpu_check summary: $STATUS$([ $STATUS = RUNNING ] && echo ", rewritten as each step ends") ($(elapsed)s of ${BUDGET}s; commit $COMMIT${PLANT:+; PLANTED FAILURES: $PLANT})"
  printf '| %-22s | %-10s | %4s | %s\n' "step" "result" "s" "key numbers"
  printf '|%s|%s|%s|%s\n' "------------------------" "------------" "------" "------------------------------------------------------------"
  local i
  for i in "${!NAMES[@]}"; do
    printf '| %-22s | %-10s | %4s | %s\n' "${NAMES[$i]}" "${RESULTS[$i]}" "${SECS[$i]}" "${INFOS[$i]}"
  done
  if [ -f "$LOGDIR/cache_none.json" ] || [ -f "$LOGDIR/cache_all.json" ]; then
    echo
    echo "== decode variants ($BENCH_DEV, $BENCH_N tokens, greedy; GPT2_CUDA_VARIANTS; defaults stay 'none' until this table chooses)"
    variant_table | tee "$LOGDIR/variants.txt"
  fi
}

# ---- running a step --------------------------------------------------------------------------
# planted STEP: "crash" or "hang" if GPU_CHECK_PLANT plants one on this step's command.
planted() {
  local p
  for p in ${PLANT//,/ }; do
    case $p in
      crash-variant:*) [ "${GPT2_CUDA_VARIANTS-}" = "${p#*:}" ] && { echo crash; return; } ;;
      crash:*) [ "$1" = "${p#*:}" ] && { echo crash; return; } ;;
      hang:*) [ "$1" = "${p#*:}" ] && { echo hang; return; } ;;
    esac
  done
}
check_plants() {  # refuses a plant that would plant nothing (a typo would test nothing)
  local p known=" ${ORDER[*]} " variants=" none all $VARIANTS "
  for p in ${PLANT//,/ }; do
    case $p in
      crash-variant:*) [[ "$variants" == *" ${p#*:} "* ]] && continue ;;
      crash:* | hang:*) [[ "$known" == *" ${p#*:} "* ]] && [ "${BOX[${p#*:}]}" -gt 0 ] && continue ;;
    esac
    say "GPU_CHECK_PLANT: '$p' plants nothing (crash-variant:{${variants# }}, crash:STEP or hang:STEP of the plan)"
    return 1
  done
}
# run_boxed STEP cmd...: runs cmd with its output in $LOGDIR/STEP.log under timeout min(BOX,
# budget left - 5 - KEEP_S); returns its status, 124 on timeout, 125 (not run) if less than the
# step's estimate is left.
run_boxed() {
  local name=$1; shift
  local log=$LOGDIR/$name.log left box
  left=$(( BUDGET - $(elapsed) - 5 - KEEP_S ))
  if [ "$left" -lt "${EST[$name]:-5}" ]; then
    echo "${left}s left of the budget$([ "$KEEP_S" != 0 ] && echo " (${KEEP_S}s kept for the benchmark)"), ${EST[$name]:-5}s needed" >"$log"
    return 125
  fi
  box=$(( ${BOX[$name]:-30} < left ? ${BOX[$name]:-30} : left ))
  local shown="$*"; shown=${shown//$'\n'/; }
  say "  \$ ${shown:0:400} (timeout ${box}s, log $(basename "$log"))"
  boxed "$name" "$box" "$@"
  local rc=$?
  cap_log "$log"
  tail -n 4 "$log" | sed 's/^/    | /'
  return $rc
}
# boxed STEP BOX_S cmd...: cmd (or the crash or hang planted on it) under timeout BOX_S, its
# output in $LOGDIR/STEP.log.
boxed() {
  local name=$1 box=$2; shift 2
  case $(planted "$name") in
    crash) set -- bash -c 'echo "gpu_check: planted crash" >&2; kill -SEGV $$' ;;
    hang) set -- bash -c 'echo "gpu_check: planted hang" >&2; exec sleep 100000' ;;
  esac
  timeout -k 5 "$box" "$@" >"$LOGDIR/$name.log" 2>&1
}
cap_log() {  # a runaway log keeps its first 200 and last 300 lines: logs.tgz must come back
  [ "$(stat -c %s "$1" 2>/dev/null || echo 0)" -gt 2000000 ] || return 0
  { head -n 200 "$1"; echo "[... gpu_check: cut to its first 200 and last 300 lines ...]"; tail -n 300 "$1"; } >"$1.cut"
  mv "$1.cut" "$1"
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
# The end of the script however it ends: the final summary, the banner, the exit status.
finish() {
  trap - EXIT INT TERM
  if [ $FAILED = 1 ]; then STATUS=FAILED
  elif [ ${#INCOMPLETE[@]} -gt 0 ]; then STATUS=INCOMPLETE
  elif [ "${DONE:-0}" != 1 ]; then STATUS=ABORTED
  else STATUS=PASSED; fi
  echo
  publish
  cat "$LOGDIR/summary.txt"
  if [ $STATUS = INCOMPLETE ] || [ $STATUS = ABORTED ]; then
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
    echo "gpu_check: $STATUS -- ${INCOMPLETE[*]:-the script stopped before its end}"
    echo "  This is NOT a pass: rerun with a larger GPU_CHECK_BUDGET_S (and the device tool's timeout_s)."
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
  fi
  echo "gpu_check: $STATUS${PLANT:+ (with planted failures: $PLANT)}"
  # Let tee write the last lines into the logs (and $OUT) before the call returns.
  exec >&- 2>&-
  wait "$TEE_PID" 2>/dev/null
  case $STATUS in PASSED) exit 0 ;; INCOMPLETE | ABORTED) exit 2 ;; *) exit 1 ;; esac
}
trap finish EXIT
trap 'record interrupted FAIL "the check got a signal"; exit' INT TERM

# ---- 1. setup ----------------------------------------------------------------------------------
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')
BENCH_DEV=none BENCH_N=0 VARIANTS="" EXACT="" KV_FORMATS="fp32 fp16 bf16 int8"
plan_fixed
say "gpu_check: $COMMIT budget ${BUDGET}s, dry=${DRY}${PLANT:+, PLANTED FAILURES: $PLANT}"
[ -f .gpu/MANIFEST ] && sed -n '1,2p' .gpu/MANIFEST | sed 's/^/  bundle /'

# The bundle into $G by tar, or by Python's tarfile where tar or gzip is missing; tiny-fp16 and
# tiny-bf16 made from tiny-fp32 (tools/narrow_model.py: convert_weights.py's bytes, without
# numpy); the tiny models get the tokenizer files back (packed once, in shared/), all but
# tiny-v2063-fp32, whose vocabulary is smaller than GPT-2's (tests/make_small_vocab_model.py).
UNPACK='rm -rf "$1" && mkdir -p "$1" || exit 1
tar -C "$1" -xzf .gpu/bundle.tgz || python3 -m tarfile -e .gpu/bundle.tgz "$1" || exit 1
for d in fp16 bf16; do python3 tools/narrow_model.py "$1/models/tiny-fp32" "$1/models/tiny-$d" $d || exit 1; done
for m in "$1"/models/tiny-fp* "$1"/models/tiny-bf*; do cp "$1"/shared/gpt2-tokenizer/vocab.json "$1"/shared/gpt2-tokenizer/merges.txt "$m/" || exit 1; done'
if [ -n "${GPU_CHECK_BUNDLE:-}" ]; then
  record unpack ok "using $G (GPU_CHECK_BUNDLE)"
elif [ ! -f .gpu/bundle.tgz ]; then
  record unpack FAIL "no .gpu/bundle.tgz: run tools/gpu_bundle.sh on the CPU machine and carry .gpu"
else
  run_boxed unpack bash -c "$UNPACK" unpack "$G"; outcome unpack $? "$(du -sm "$G" 2>/dev/null | cut -f1) MB in $G"
fi
export GPT2_SHARED_DIR=$G/shared GPT2_TEST_MODELS=$MODELS GPT2_SOURCE_DIR=$ROOT

find_libraries() {  # sets LD_LIBRARY_PATH for the bundle's binaries, CUBLAS_DIR, and MISSING
  local d f cuda_dirs=""
  for d in "${CUDA_HOME:-/usr/local/cuda}/lib64" /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
           /usr/local/cuda-13*/lib64; do
    [ -e "$d/libcublas.so.13" ] && cuda_dirs=":$d" && break
  done
  if [ -z "$cuda_dirs" ]; then  # the pip wheels that torch uses
    for d in $(python3 -c "import nvidia, os; print(' '.join(nvidia.__path__))" 2>/dev/null); do
      f=$(find "$d" -name 'libcublas.so.13' 2>/dev/null | sed -n 1p)
      [ -n "$f" ] && cuda_dirs=":$(dirname "$f")"
    done
  fi
  export LD_LIBRARY_PATH="$G/lib${cuda_dirs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  CUBLAS_DIR=${cuda_dirs#:}
  MISSING=$(for b in "$G"/bin/*; do ldd "$b" 2>&1 | grep -i 'not found'; done | sort -u)
  if [ -n "$MISSING" ] && [ -d "$G/lib-fallback" ]; then
    export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$G/lib-fallback"
    MISSING=$(for b in "$G"/bin/*; do ldd "$b" 2>&1 | grep -i 'not found'; done | sort -u)
    [ -z "$MISSING" ] && CUBLAS_DIR="$CUBLAS_DIR; this bundle's libstdc++ / libgcc_s (the system's are older)"
  fi
  MISSING=$(echo "$MISSING" | tr -s ' \t\n' ' ' | cut -c1-150)
}
LIBS_OK=0
if [ ! -x "$G/bin/gpt2-gen" ]; then
  record libraries SKIP "no binaries in $G"
else
  find_libraries
  export GPT2_BIN_LD_LIBRARY_PATH="$LD_LIBRARY_PATH"
  if [ -n "${MISSING// /}" ]; then record libraries FAIL "$MISSING"
  else LIBS_OK=1; record libraries ok "cuBLAS from $CUBLAS_DIR"; fi
fi

if [ "$DRY" = 1 ]; then
  record nvidia-smi SKIP "dry run"
else
  smi=$(timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,clocks.sm,clocks.max.sm \
        --format=csv,noheader 2>&1 | sed -n 1p)
  if [ -n "$smi" ] && ! echo "$smi" | grep -qiE 'failed|not found|error'; then record nvidia-smi ok "$smi"
  else record nvidia-smi FAIL "${smi:-no output}"; fi
fi

# The variants this build has: src/cuda/cuda_variants.cpp's table as `gpt2-gen --version` prints
# it ("  name: what", "[exact]" when it changes only the schedule).
if [ $LIBS_OK = 1 ]; then
  VARIANT_LINES=$("$G/bin/gpt2-gen" --version 2>/dev/null | grep -E '^  [a-z0-9]+: ')
  VARIANTS=$(echo "$VARIANT_LINES" | sed -nE 's/^  ([a-z0-9]+): .*/\1/p' | tr '\n' ' ')
  EXACT=$(echo "$VARIANT_LINES" | sed -nE 's/^  ([a-z0-9]+): .*\[exact\]$/\1/p' | tr '\n' ' ')
  [ -z "$VARIANTS" ] && record variants FAIL "gpt2-gen --version lists no CUDA decode variants (an old build?)"
fi
is_exact() { case " $EXACT " in *" $1 "*) return 0;; esac; return 1; }
plan_bench
print_plan() {
  local i name est=0 over=0 worst="" phase=""
  say "plan (estimated / boxed seconds, PREDICTIONS for an H100/H200; budget ${BUDGET}s):"
  for i in "${!ORDER[@]}"; do
    name=${ORDER[$i]}
    [ "${PHASE_OF[$i]}" != "$phase" ] && phase=${PHASE_OF[$i]} && say "  $phase:"
    if [ "${BOX[$name]}" = 0 ]; then say "    $(printf '%-22s' "$name") (no run: ${name#exact_} changes only the schedule, so its tokens must be cache_none's)"
    else say "    $(printf '%-22s %4s / %3s' "$name" "${EST[$name]}" "${BOX[$name]}")"; fi
    est=$(( est + EST[$name] ))
    [ $(( BOX[$name] - EST[$name] )) -gt $over ] && over=$(( BOX[$name] - EST[$name] )) && worst=$name
  done
  say "  estimated total ${est}s; with the largest overrun ($worst hitting its box, +${over}s) $(( est + over ))s" \
      "$([ $(( est + over )) -le "$BUDGET" ] && echo "fits" || echo "DOES NOT FIT") the ${BUDGET}s budget"
  say "  until the benchmark starts, ${KEEP_S}s stay kept for cache_none, nocache_none and cache_all"
}
print_plan
check_plants || { PLANT=""; record plant FAIL "GPU_CHECK_PLANT names no step of this plan (see above)"; exit 1; }

# The benchmark's model, written in the background while the tests run (CPU work only; not
# started where the benchmark cannot run, so that nothing outlives the script).
BENCH_MODEL=$WORK/bench-gpt2-124m-fp16
bench_model_args=(--dtype fp16); [ "$DRY" = 1 ] && BENCH_MODEL=$WORK/bench-gpt2-2l && bench_model_args=(--n-layer 2 --n-embd 128 --n-head 4)
rm -rf "$BENCH_MODEL" "$WORK/bench_model.rc"
[ $LIBS_OK = 1 ] && (boxed bench_model "${BOX[bench_model]}" python3 tools/random_model.py --out "$BENCH_MODEL" --seed 0 \
   --tokenizer "$G/shared/gpt2-tokenizer" "${bench_model_args[@]}"
 echo $? >"$WORK/bench_model.rc") &
BENCH_MODEL_PID=$!

# ---- 2. correctness ----------------------------------------------------------------------------
gtest_step() {  # NAME: one of the bundle's GoogleTest binaries
  local name=$1 rc p f s failed_names info
  run_boxed "$name" "$G/bin/$name" --gtest_color=no
  rc=$?
  read -r p f s < <(gtest_counts "$LOGDIR/$name.log")
  failed_names=$(grep -E '^\[  FAILED  \] [A-Za-z]' "$LOGDIR/$name.log" | awk '{print $4}' | tr -d ',' | sort -u | sed -n 1,4p | tr '\n' ' ')
  info="$p passed, $f failed, $s skipped${failed_names:+: $failed_names}"
  if [ $rc = 0 ] && [ "$DRY" != 1 ] && [ "$s" != 0 ]; then
    record "$name" FAIL "$info (skipped on a GPU machine: is the device usable?)"
  else outcome "$name" $rc "$info"; fi
}
processors_step() {
  local args=(--device cuda --cases 4); [ "$DRY" = 1 ] && args=(--device cpu --cases 2 --no-nocache)
  run_boxed processors "${PY[@]}" tools/check_processors.py "$G/bin/gpt2-gen" "$MODELS/tiny-fp32" \
    "$G/shared/golden/tiny-gpt2/reference_processors.json" "${args[@]}"
  local rc=$? info; info=$(grep -E '^processors: ' "$LOGDIR/processors.log" | tail -1 | sed 's/^processors: //')
  outcome processors $rc "${info:-$(last_line "$LOGDIR/processors.log")}"
}
# What the HF step imports, with their versions; SKIP (and no HF step) where one is missing.
hf_imports_step() {
  local mods="torch transformers numpy safetensors"; [ "$DRY" = 1 ] && mods="numpy safetensors"
  run_boxed hf_imports "${PY[@]}" -c "import importlib, sys
print(', '.join(m + ' ' + importlib.import_module(m).__version__ for m in sys.argv[1:]))" $mods
  local rc=$?
  if [ $rc = 1 ]; then record hf_imports SKIP "cannot import one of $mods here: $(last_line "$LOGDIR/hf_imports.log")"
  else outcome hf_imports $rc "$(last_line "$LOGDIR/hf_imports.log")"; fi
  [ $rc = 0 ]
}
hf_step() {
  if [ "$DRY" = 1 ]; then
    run_boxed hf_compare "${PY[@]}" tools/hf_compare.py golden --golden "$G/shared/golden/tiny-gpt2" \
      --model "$MODELS/tiny-fp32" --dump "$G/bin/gpt2-dump-logits" --device cpu --dtypes fp32 --steps 20 \
      --workdir "$WORK/hf" --report "$LOGDIR/hf_compare.json"
  else
    run_boxed hf_compare "${PY[@]}" tools/hf_compare.py hf --seed 0 --ids "$PROMPT_IDS" \
      --tokenizer "$G/shared/gpt2-tokenizer" --dump "$G/bin/gpt2-dump-logits" --device cuda --dtypes fp32,fp16 \
      --steps 32 --workdir "$WORK/hf" --report "$LOGDIR/hf_compare.json"
  fi
  local rc=$? lines
  lines=$(grep -E ': (ok|FAIL) ' "$LOGDIR/hf_compare.log" | sed -E 's/^gpt2-124M-random //; s/ vs HF fp64//; s/logits max\|d\|\/max\|ref\|/rel/; s/ steps compared//; s/ \(margin floor [^)]*\)//; s/ \(tol [^)]*\)//' | tr '\n' ';')
  outcome hf_compare $rc "${lines:-$(last_line "$LOGDIR/hf_compare.log")}"
}
# skip_phase PHASE REASON: every step of the phase recorded SKIP (none left out silently).
skip_phase() {
  local i
  for i in "${!ORDER[@]}"; do [ "${PHASE_OF[$i]}" = "$1" ] && record "${ORDER[$i]}" SKIP "$2"; done
}
if [ $LIBS_OK = 0 ]; then
  skip_phase correctness "no usable binaries"
else
  gtest_step test_gpu_kernels
  gtest_step test_gpu_kv_formats
  gtest_step test_gpu_kv_backend
  gtest_step test_gpu_backend
  gtest_step test_gpu_batch
  processors_step
  if hf_imports_step; then hf_step; else record hf_compare SKIP "see hf_imports"; fi
fi

# ---- 3. sanitizers -----------------------------------------------------------------------------
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
SAN_OK=1  # 0 once compute-sanitizer has refused this device: the other sanitizer steps SKIP
# sanitize STEP TOOL cmd...: compute-sanitizer --tool TOOL cmd (in a dry run, cmd alone).
sanitize() {
  local name=$1 tool=$2; shift 2
  if [ $SAN_OK = 0 ]; then record "$name" SKIP "compute-sanitizer refused this device (see above)"; return; fi
  local san=("$SAN" --tool "$tool" --error-exitcode 99 --print-limit 20); [ "$DRY" = 1 ] && san=()
  run_boxed "$name" "${san[@]}" "$@"
  local rc=$? log=$LOGDIR/$name.log errs
  errs=$(grep -oE 'ERROR SUMMARY: [0-9]+ error' "$log" | grep -oE '[0-9]+' | awk '{s += $1} END {print s + 0}')
  if grep -qiE 'device not supported|not supported on this platform|unable to (open|attach)' "$log"; then
    SAN_OK=0; record "$name" SKIP "compute-sanitizer cannot use this device here: $(grep -iE 'not supported|unable' "$log" | sed -n 1p | cut -c1-100)"
  elif [ $rc = 0 ]; then record "$name" ok "$errs errors$([ "$DRY" = 1 ] && echo ' (dry run: without compute-sanitizer)')"
  else
    local first; first=$(grep -m1 -E '^========= (Invalid|Race|Uninitialized|Error|Program hit)' "$log" | cut -c1-120)
    outcome "$name" $rc "$errs errors: ${first:-$(last_line "$log")}" INCOMPLETE
  fi
}
sanitizers() {
  local dev=cuda n=16; [ "$DRY" = 1 ] && dev=cpu n=4
  # (--json writes its file atomically, via a temporary beside it: never point it at /dev/null.)
  local gen=("$G/bin/gpt2-gen" -m "$MODELS/tiny-fp16" --prompt-ids 2061,318,509 --device $dev --ignore-eos -q)
  local sampled=(-n $(( n * 3 / 4 )) --temperature 0.8 --seed 3 --min-p 0.05 --repeat-penalty 1.3 --repeat-last-n 8
                 --presence-penalty 0.5 --frequency-penalty 0.2 --no-repeat-ngram-size 2)
  # racecheck instruments every shared-memory access: the quick sizes, the decode kernels only.
  GPT2_GPU_TEST_QUICK=1 sanitize racecheck racecheck "$G/bin/test_gpu_kernels" --gtest_color=no \
    --gtest_filter='Kernels/fp16.AttentionDecode*:Kernels/fp16.Gemv*:Sampling.Argmax*'
  # --benchmark: cache and no-cache, each after a warm-up, in one process.
  GPT2_CUDA_VARIANTS=none sanitize memcheck_none memcheck "${gen[@]}" -n $n --benchmark --runs 1 --json "$WORK/memcheck_none.json"
  GPT2_CUDA_VARIANTS=all sanitize memcheck_all memcheck "${gen[@]}" -n $n --benchmark --runs 1 --json "$WORK/memcheck_all.json"
  GPT2_CUDA_VARIANTS=all sanitize memcheck_all_sampled memcheck "${gen[@]}" "${sampled[@]}" --json "$WORK/memcheck_all_sampled.json"
  GPT2_CUDA_VARIANTS=none sanitize initcheck initcheck "${gen[@]}" -n $(( n / 2 )) --temperature 0 --json "$WORK/initcheck.json"
}
if [ $LIBS_OK = 0 ]; then
  skip_phase sanitizers "no usable binaries"
elif [ -z "$SAN" ] && [ "$DRY" != 1 ]; then
  skip_phase sanitizers "compute-sanitizer not found"
else
  sanitizers
fi

# ---- 4. benchmark ------------------------------------------------------------------------------
KEEP_S=0
same_prefix() {  # JSON_A JSON_B -> how many generated ids agree from the start
  python3 -c "import json,sys; a=json.load(open(sys.argv[1]))['generated_ids']; b=json.load(open(sys.argv[2]))['generated_ids']; print(next((i for i,(x,y) in enumerate(zip(a,b)) if x!=y), min(len(a),len(b))))" \
    "$1" "$2" 2>/dev/null
}
bench_info() {  # JSON -> "N tok: decode X us/tok (p50 Y), total Z s, load+first W ms, peak P MB"
  python3 - "$1" <<'EOF' 2>/dev/null
import json, sys, statistics
s = json.load(open(sys.argv[1]))["stats"]
n = s.get("generated_tokens", len(s.get("token_ms", [])))
dec = s["decode_ms"] * 1000 / max(n - 1, 1)
tok = s.get("token_ms", [])[1:]
p50 = statistics.median(tok) * 1000 if tok else float("nan")
prof = s.get("profile")
print(f"{n} tok: decode {dec:.1f} us/tok (p50 {p50:.1f}), total {(s['prefill_ms'] + s['decode_ms']) / 1000:.3f} s, "
      f"load+first {s['load_ms'] + s['prefill_ms']:.0f} ms, peak {s.get('peak_device_bytes', 0) / 1e6:.0f} MB"
      + (f"; profile: ops {prof['ops_us']:.1f} us, step {prof['step_us']:.1f} us" if prof else ""))
EOF
}
# bench STEP [gpt2-gen flags...]: one generation of the benchmark's prompt, its JSON in $LOGDIR;
# sets BENCH_RC and BENCH_INFO.
bench() {
  local name=$1; shift
  rm -f "$LOGDIR/$name.json"
  run_boxed "$name" "$G/bin/gpt2-gen" -m "$BENCH_MODEL" --prompt-ids "$PROMPT_IDS" -n "$BENCH_N" --temperature 0 \
    --ignore-eos --device "$BENCH_DEV" --json "$LOGDIR/$name.json" "$@"
  BENCH_RC=$? BENCH_INFO=$(bench_info "$LOGDIR/$name.json")
  [ $BENCH_RC = 0 ] && [ -z "$BENCH_INFO" ] && BENCH_RC=98 && BENCH_INFO="no JSON report"
  [ -z "$BENCH_INFO" ] && BENCH_INFO=$(last_line "$LOGDIR/$name.log")
  return 0
}
bench_step() { bench "$@"; outcome "$1" $BENCH_RC "$BENCH_INFO"; }
# exact V: an [exact] variant changes only the schedule, so its tokens must be none's.
exact() {
  local v=$1 ref=$LOGDIR/cache_none.json got=$LOGDIR/cache_$1.json same
  if [ ! -f "$ref" ]; then record "exact_$v" SKIP "no tokens to compare: the reference run cache_none failed"; return; fi
  if [ ! -f "$got" ]; then record "exact_$v" SKIP "no tokens to compare: cache_$v failed"; return; fi
  same=$(same_prefix "$ref" "$got")
  if [ "${same:-x}" = "$BENCH_N" ]; then record "exact_$v" ok "all $BENCH_N tokens = none's"
  else record "exact_$v" FAIL "first ${same:-?} of $BENCH_N tokens = none's ($v changes only the schedule: they must all be)"; fi
}
bench_model_step() {
  wait "$BENCH_MODEL_PID" 2>/dev/null
  local rc; rc=$(cat "$WORK/bench_model.rc" 2>/dev/null || echo 1)
  outcome bench_model "$rc" "$(last_line "$LOGDIR/bench_model.log")"
  [ "$rc" = 0 ]
}
benchmark_step() {
  local runs=3; [ "$DRY" = 1 ] && runs=1
  run_boxed benchmark "$G/bin/gpt2-gen" -m "$BENCH_MODEL" --prompt-ids "$PROMPT_IDS" -n "$BENCH_N" \
    --device "$BENCH_DEV" --benchmark --runs $runs --json "$LOGDIR/benchmark.json"
  local rc=$?
  local info; info=$(json_get "$LOGDIR/benchmark.json" '"the cache speeds up %.2fx, same tokens: %s" % (j["speedup"], j["tokens_identical"])')
  outcome benchmark $rc "$([ $rc = 0 ] && echo "$runs runs/mode; $info; table in benchmark.log" || last_line "$LOGDIR/benchmark.log")"
}
benchmarks() {
  BENCH_DEV=cuda BENCH_N=1000; [ "$DRY" = 1 ] && BENCH_DEV=cpu BENCH_N=20
  if ! bench_model_step; then
    local i; for i in "${!ORDER[@]}"; do
      [ "${PHASE_OF[$i]}" = benchmark ] && [ "${ORDER[$i]}" != bench_model ] && record "${ORDER[$i]}" SKIP "no benchmark model"
    done
    return
  fi
  GPT2_CUDA_VARIANTS=none bench_step cache_none
  GPT2_CUDA_VARIANTS=none bench nocache_none --no-cache
  [ $BENCH_RC = 0 ] && [ -f "$LOGDIR/cache_none.json" ] &&
    BENCH_INFO="$BENCH_INFO; first $(same_prefix "$LOGDIR/cache_none.json" "$LOGDIR/nocache_none.json") tokens = the cache's"
  outcome nocache_none $BENCH_RC "$BENCH_INFO"
  GPT2_CUDA_VARIANTS=all bench_step cache_all
  local v; for v in $VARIANTS; do GPT2_CUDA_VARIANTS=$v bench_step "cache_$v"; done
  for v in $EXACT; do exact "$v"; done
  if has_flag --profile; then
    GPT2_CUDA_VARIANTS=none BENCH_N=$(( BENCH_N / 2 )) bench_step profile_none --profile
    GPT2_CUDA_VARIANTS=all BENCH_N=$(( BENCH_N / 2 )) bench_step profile_all --profile
  else
    record profile_none SKIP "this gpt2-gen has no --profile"; record profile_all SKIP "this gpt2-gen has no --profile"
  fi
  kv_formats
  GPT2_CUDA_VARIANTS=none bench_step penalties --repeat-penalty 1.3 --frequency-penalty 0.1 --no-repeat-ngram-size 3
  GPT2_CUDA_VARIANTS=none benchmark_step
}

# Whether gpt2-gen's --help names flag $1. Not `--help | grep -q`: under pipefail, grep leaving at
# its first match can kill the writer with SIGPIPE, and the pipeline then fails (the profile steps
# were skipped that way in one CI run, at random).
has_flag() {
  local help
  help=$("$G/bin/gpt2-gen" --help 2>/dev/null) || true
  grep -q -- "$1" <<<"$help"
}

# The K/V ring formats: one run each (fp16 compute), its tokens against cache_none's; fp16's must
# all agree (fp16 compute's rings are fp16 by default: the flag changes nothing there).
kv_formats() {
  local f same
  if ! has_flag --kv-dtype; then
    for f in $KV_FORMATS; do record "kv_$f" SKIP "this gpt2-gen has no --kv-dtype (issue 24's CLI flag not in this build)"; done
    return
  fi
  for f in $KV_FORMATS; do
    GPT2_CUDA_VARIANTS=none bench "kv_$f" --kv-dtype "$f"
    if [ $BENCH_RC = 0 ] && [ -f "$LOGDIR/cache_none.json" ]; then
      same=$(same_prefix "$LOGDIR/cache_none.json" "$LOGDIR/kv_$f.json")
      BENCH_INFO="$BENCH_INFO; first ${same:-?} of $BENCH_N tokens = cache_none's"
      [ "$f" = fp16 ] && [ "${same:-x}" != "$BENCH_N" ] && BENCH_RC=97 &&
        BENCH_INFO="$BENCH_INFO (fp16 K/V is cache_none's format: they must all be)"
    fi
    outcome "kv_$f" $BENCH_RC "$BENCH_INFO"
  done
}

# The table to choose the defaults from: per configuration, decode us/token (mean and median)
# with the cache against today's path (none), and how many tokens equal today's; no-cache and
# the profiles for none and all below it.
variant_table() {
  python3 - "$LOGDIR" "none all $VARIANTS" "$EXACT" <<'PYEOF' 2>/dev/null
import json, os, statistics, sys
logdir, configs, exact = sys.argv[1], sys.argv[2].split(), set(sys.argv[3].split())
def load(name):
    try:
        return json.load(open(os.path.join(logdir, name + ".json")))
    except (OSError, ValueError):
        return None
def decode_us(j):
    s = j["stats"]; n = s.get("generated_tokens", len(s.get("token_ms", [])))
    tok = s.get("token_ms", [])[1:]
    return s["decode_ms"] * 1000 / max(n - 1, 1), (statistics.median(tok) * 1000 if tok else float("nan"))
def same(a, b):
    a, b = a["generated_ids"], b["generated_ids"]
    return str(next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b))))
base = load("cache_none")
print("| variants | exact | cache us/tok | p50 | vs none | tokens = none's | profile: ops us | step us |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for cfg in configs:
    c, p = load("cache_" + cfg), load("profile_" + cfg)
    row = [cfg, "yes" if cfg in exact else ""]
    if c:
        mean, p50 = decode_us(c)
        rel = f"{(mean / decode_us(base)[0] - 1) * 100:+.1f}%" if base else "?"
        row += [f"{mean:.1f}", f"{p50:.1f}", rel, same(base, c) if base else "SKIP: no cache_none"]
    else:
        row += ["FAILED" if os.path.exists(os.path.join(logdir, f"cache_{cfg}.log")) else "-", "-", "-", "-"]
    prof = (p or {}).get("stats", {}).get("profile")
    row += [f"{prof['ops_us']:.1f}", f"{prof['step_us']:.1f}"] if prof else ["-", "-"]
    print("| " + " | ".join(row) + " |")
n = load("nocache_none")
if n:
    s = n["stats"]
    print(f"no-cache (none only: the variants do not change it): {(s['prefill_ms'] + s['decode_ms']) / 1000:.3f} s "
          f"for {s['generated_tokens']} tokens" + (f"; the cache: {(base['stats']['prefill_ms'] + base['stats']['decode_ms']) / 1000:.3f} s" if base else ""))
PYEOF
}
if [ $LIBS_OK = 0 ]; then
  skip_phase benchmark "no usable binaries"
else
  benchmarks
fi
DONE=1
