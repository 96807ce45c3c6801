// cuda-emu: NVTX's range calls (nvtx3, header-only in the CUDA Toolkit) as no-ops: no profiler
// ever attaches to the emulation.
#pragma once

inline int nvtxRangePushA(const char*) { return 0; }
inline int nvtxRangePop() { return 0; }
