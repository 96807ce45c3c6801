// --batch FILE (or - for stdin): many prompts, --parallel at once, by continuous batching
// (engine/batch.h). Output is JSON Lines: one object per request, written to stdout as each
// request finishes ({"id", "text", "generated_ids", "finish_reason", "stats"}); --json alone
// prints them in input order at the end instead, --json FILE also writes them there in input
// order, atomically. A file is read and checked whole before anything is generated; stdin line
// by line, a bad line ending the run once the requests in flight are finished and written.
// Ctrl-C ends the requests in flight after the current step, written with finish reason
// "interrupted"; requests not started by then are not run (stderr says how many).
#pragma once
#include <atomic>
#include <cstddef>
#include <optional>

#include "app/cli.h"
#include "model/config.h"
#include "model/dtype.h"

namespace gpt2 {

// Returns the exit status: 0, or 130 after Ctrl-C (`interrupted`). Throws gpt2::Error for bad
// input (after writing what had finished, for stdin).
int run_batch(const CliOptions& options, const std::atomic<bool>* interrupted);

// The K/V cache of `parallel` sequences of `window` positions in the format kv_dtype (unset, as
// before the backend has chosen its default: fp32, the largest), planned before anything is
// loaded (--batch and --benchmark --parallel): returns its bytes, or throws gpt2::Error when it
// would take more than half the memory available, naming a --parallel and a -c that would fit.
size_t plan_kv_bytes(const GPT2Config& cfg, int parallel, int window, std::optional<ComputeDType> kv_dtype);

}  // namespace gpt2
