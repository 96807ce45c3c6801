#include "cuda/profile_cuda.h"

#include <nvtx3/nvToolsExt.h>

#include <algorithm>
#include <thread>

#include "cuda_check.h"

namespace gpt2 {

NvtxRange::NvtxRange(const char* name) { nvtxRangePushA(name); }
NvtxRange::~NvtxRange() { nvtxRangePop(); }

void NvtxSink::begin(DecodeOp op) { nvtxRangePushA(decode_op_name(op)); }
void NvtxSink::end(DecodeOp) { nvtxRangePop(); }

EventPair::EventPair() {
  CUDA_CHECK(cudaEventCreate(&begin_));
  CUDA_CHECK(cudaEventCreate(&end_));
}
EventPair::~EventPair() {
  cudaEventDestroy(begin_);
  cudaEventDestroy(end_);
}
void EventPair::record_begin(cudaStream_t s) { CUDA_CHECK(cudaEventRecord(begin_, s)); }
void EventPair::record_end(cudaStream_t s) { CUDA_CHECK(cudaEventRecord(end_, s)); }
double EventPair::elapsed_us() const {
  float ms = 0;
  CUDA_CHECK(cudaEventElapsedTime(&ms, begin_, end_));
  return 1e3 * double(ms);
}

EventSink::~EventSink() {
  for (cudaEvent_t e : pool_) cudaEventDestroy(e);
}

cudaEvent_t EventSink::record() {
  if (used_ == pool_.size()) {
    cudaEvent_t e = nullptr;
    CUDA_CHECK(cudaEventCreate(&e));
    pool_.push_back(e);
  }
  cudaEvent_t e = pool_[used_++];
  CUDA_CHECK(cudaEventRecord(e, stream_));
  return e;
}

void EventSink::begin(DecodeOp op) {
  NvtxSink::begin(op);
  begin_ = last_end_ ? last_end_ : record();
  last_end_ = nullptr;
}

void EventSink::end(DecodeOp op) {
  cudaEvent_t e = record();
  timed_.push_back({op, begin_, e});
  last_end_ = e;
  NvtxSink::end(op);
}

void EventSink::collect(OpTotals& totals) {
  for (const Timed& t : timed_) {
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, t.begin, t.end));
    totals.add(t.op, 1e3 * double(ms));
  }
  timed_.clear();
  used_ = 0;
  last_end_ = nullptr;
}

StreamGate::StreamGate(cudaStream_t stream) : stream_(stream) {
  CUDA_CHECK(cudaLaunchHostFunc(stream_, &StreamGate::wait, this));
}

StreamGate::~StreamGate() {
  open();
  cudaStreamSynchronize(stream_);  // the host function has returned: `this` may go
}

// Runs on the stream: holds it until the host has enqueued what follows. CUDA calls are not
// allowed here; waiting on an atomic is.
void CUDART_CB StreamGate::wait(void* gate) {
  while (!static_cast<StreamGate*>(gate)->open_.load()) std::this_thread::yield();
}

double measure_copy_bandwidth(cudaStream_t stream) {
  cudaDeviceProp prop{};
  size_t free_bytes = 0, total_bytes = 0;
  CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  const size_t want = std::clamp<size_t>(size_t(8) * size_t(prop.l2CacheSize), size_t(64) << 20, size_t(1) << 30);
  const size_t bytes = std::min(want, free_bytes / 2) / 512 * 512;  // two halves, 256-byte aligned
  char* buf = nullptr;
  if (bytes < (size_t(16) << 20) || cudaMalloc(reinterpret_cast<void**>(&buf), bytes) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  const size_t half = bytes / 2;
  double best_us = 0;
  try {
    CUDA_CHECK(cudaMemsetAsync(buf, 0, bytes, stream));
    EventPair copy;
    for (int pass = 0; pass < 6; ++pass) {  // the first one warms up
      copy.record_begin(stream);
      CUDA_CHECK(cudaMemcpyAsync(buf + half, buf, half, cudaMemcpyDeviceToDevice, stream));
      copy.record_end(stream);
      CUDA_CHECK(cudaStreamSynchronize(stream));
      const double us = copy.elapsed_us();
      if (pass > 0 && us > 0 && (best_us == 0 || us < best_us)) best_us = us;
    }
  } catch (...) {
    cudaFree(buf);
    throw;
  }
  CUDA_CHECK(cudaFree(buf));
  return best_us > 0 ? 2.0 * double(half) / best_us / 1e3 : 0;
}

}  // namespace gpt2
