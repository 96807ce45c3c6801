// GPT2_HOST_DEVICE: marks the small inline rules shared by the CPU code and the CUDA kernels
// (kv_ring.h, processors.h), so that one definition compiles for both.
#pragma once

#if defined(__CUDACC__)
#define GPT2_HOST_DEVICE __host__ __device__
#else
#define GPT2_HOST_DEVICE
#endif
