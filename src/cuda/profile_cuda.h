// --profile on CUDA (profile.h): events around every launch of the eager decode step, a gate
// that lets the host enqueue a whole step before the device starts it, NVTX ranges named as
// the profile's rows and the decode paths (so nsys shows them), and the device's copy bandwidth.
#pragma once
#include <cuda_runtime.h>

#include <atomic>
#include <vector>

#include "engine/profile.h"

namespace gpt2 {

// An NVTX range for as long as it lives (a no-op unless a tool such as nsys is attached).
class NvtxRange {
 public:
  explicit NvtxRange(const char* name);
  ~NvtxRange();
  NvtxRange(const NvtxRange&) = delete;
  NvtxRange& operator=(const NvtxRange&) = delete;
};

// Names every op of a decode step as an NVTX range: the CUDA backend's sink when not profiling.
class NvtxSink : public ProfileSink {
 public:
  void begin(DecodeOp op) override;
  void end(DecodeOp op) override;
};

// An event at each end of what a stream runs between record_begin() and record_end().
class EventPair {
 public:
  EventPair();
  ~EventPair();
  EventPair(const EventPair&) = delete;
  EventPair& operator=(const EventPair&) = delete;
  void record_begin(cudaStream_t s);
  void record_end(cudaStream_t s);
  double elapsed_us() const;  // once the stream has run both

 private:
  cudaEvent_t begin_ = nullptr, end_ = nullptr;
};

// Times every op by events on `stream` (one event per boundary: an op's end is the next one's
// begin), as well as naming it for NVTX.
class EventSink final : public NvtxSink {
 public:
  explicit EventSink(cudaStream_t stream) : stream_(stream) {}
  ~EventSink() override;
  void begin(DecodeOp op) override;
  void end(DecodeOp op) override;
  // Once the stream has run the step: adds each op's time to `totals`; the sink is then ready
  // for the next step.
  void collect(OpTotals& totals);

 private:
  cudaEvent_t record();  // the next event of the pool, recorded on the stream

  struct Timed {
    DecodeOp op;
    cudaEvent_t begin, end;
  };
  cudaStream_t stream_;
  std::vector<cudaEvent_t> pool_;
  size_t used_ = 0;
  std::vector<Timed> timed_;
  cudaEvent_t begin_ = nullptr;  // of the op under way
  cudaEvent_t last_end_ = nullptr;  // the boundary just recorded, if nothing was enqueued since
};

// Holds `stream` at a host function until open() (the destructor opens it and waits for the
// stream), so the host enqueues a whole step before the device starts it: the events then time
// the kernels, not the host's launch rate.
class StreamGate {
 public:
  explicit StreamGate(cudaStream_t stream);
  ~StreamGate();
  StreamGate(const StreamGate&) = delete;
  StreamGate& operator=(const StreamGate&) = delete;
  void open() { open_.store(true); }

 private:
  static void CUDART_CB wait(void* gate);
  cudaStream_t stream_;
  std::atomic<bool> open_{false};
};

// The device's copy bandwidth in GB/s (1e9 bytes per second, bytes read plus bytes written): the
// best of 5 device-to-device copies across a buffer far larger than the L2 cache, allocated for
// the measurement. 0 when no such buffer fits.
double measure_copy_bandwidth(cudaStream_t stream);

}  // namespace gpt2
