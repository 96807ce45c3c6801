#!/usr/bin/env bash
# CTest fixture `tiny_models`: converts the tiny golden GPT-2 (../shared/golden/tiny-gpt2, a
# Hugging Face checkpoint without tokenizer files) into $GPT2_TEST_MODELS/tiny-{fp32,fp16,bf16}
# with tools/convert_weights.py, and tiny-v2063-fp32 (tests/make_small_vocab_model.py).
# Idempotent (each run replaces the models) and fast
# (about a second in all).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="${GPT2_SOURCE_DIR:-$(dirname "$here")}"
shared="${GPT2_SHARED_DIR:-$src/../shared}"
models="${GPT2_TEST_MODELS:-$src/build/test-models}"
python="${PYTHON:-python3}"

mkdir -p "$models"
for dtype in fp32 fp16 bf16; do
  "$python" "$src/tools/convert_weights.py" --from "$shared/golden/tiny-gpt2" \
    --tokenizer "$shared/gpt2-tokenizer" --dtype "$dtype" --out "$models/tiny-$dtype"
done
# The backend's mechanics tests on the emulator: the same model with a 2063-token vocabulary
# (make_small_vocab_model.py says why; 2063, a prime, keeps the LM head's row count odd).
"$python" "$here/make_small_vocab_model.py" "$models/tiny-fp32" "$models/tiny-v2063-fp32" 2063
