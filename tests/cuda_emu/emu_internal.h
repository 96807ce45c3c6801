// cuda-emu internals shared by its .cpp files (not seen by the emulated code).
#pragma once
#include <functional>
#include <string>

#include "cuda_runtime.h"

namespace emu {

// Runs every block of a launch (blocks in order; the threads of a block as fibers). Returns
// false, with `error` set, when a block cannot finish (a barrier or shuffle that not every
// thread reaches).
bool run_grid(const LaunchSpec& spec, const std::function<void()>& body, std::string* error);

// Records `op` when `stream` is being captured, else queues it to run at the next
// synchronisation of its ordering domain. Returns the error to report.
cudaError_t enqueue(cudaStream_t stream, std::function<void()> op);
// enqueue() with a tag that synchronize_until() can stop at.
cudaError_t enqueue_tagged(cudaStream_t stream, std::function<void()> op, const void* tag);

// Runs the queued work of `stream`'s ordering domain (all queued work when `all`), in issue order.
void synchronize(cudaStream_t stream, bool all);
// Runs the queued work of `stream`'s ordering domain in issue order up to and including the
// operation enqueued with `tag` (enqueue_tagged); the rest stays queued.
void synchronize_until(cudaStream_t stream, const void* tag);

// Marks the device as failed: every later call returns `e` (like a kernel fault on a GPU).
void set_sticky_error(cudaError_t e, const std::string& what);
void set_last_error(cudaError_t e);

// Device memory bookkeeping: true when [p, p + bytes) lies inside one cudaMalloc allocation.
bool is_device_range(const void* p, size_t bytes);
// ... and inside one cudaHostAlloc allocation (pinned host memory).
bool is_pinned_range(const void* p, size_t bytes);

}  // namespace emu
