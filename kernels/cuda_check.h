// Error checking for every CUDA runtime and cuBLAS call: CUDA_CHECK(call) / CUBLAS_CHECK(call)
// throw gpt2::Error with the call, the error's name and text, and file:line. Kernel launchers
// end with CUDA_CHECK(cudaGetLastError()) so a bad launch configuration is reported where it
// happened; faults inside a kernel surface at the next synchronizing call (also checked).
// Host code only (the .cu launchers and src/cuda/backend_cuda.cpp).
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>

#include "base/error.h"

namespace gpt2::cuda {

[[noreturn]] inline void throw_cuda_error(cudaError_t e, const char* call, const char* file, int line) {
  std::string msg = std::string("CUDA error ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ") at " +
                    file + ":" + std::to_string(line) + ": " + call;
  if (e == cudaErrorMemoryAllocation) {
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess)
      msg += " (out of GPU memory: " + std::to_string(free_b) + " bytes free of " + std::to_string(total_b) + ")";
  }
  throw Error(msg);
}

inline const char* cublas_status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "CUBLAS_STATUS_?";
  }
}

[[noreturn]] inline void throw_cublas_error(cublasStatus_t s, const char* call, const char* file, int line) {
  throw Error(std::string("cuBLAS error ") + cublas_status_name(s) + " (" + std::to_string(int(s)) + ") at " + file +
              ":" + std::to_string(line) + ": " + call);
}

}  // namespace gpt2::cuda

#define CUDA_CHECK(call)                                                                    \
  do {                                                                                      \
    const cudaError_t gpt2_cuda_err_ = (call);                                              \
    if (gpt2_cuda_err_ != cudaSuccess)                                                      \
      ::gpt2::cuda::throw_cuda_error(gpt2_cuda_err_, #call, __FILE__, __LINE__);            \
  } while (0)

#define CUBLAS_CHECK(call)                                                                  \
  do {                                                                                      \
    const cublasStatus_t gpt2_cublas_st_ = (call);                                          \
    if (gpt2_cublas_st_ != CUBLAS_STATUS_SUCCESS)                                           \
      ::gpt2::cuda::throw_cublas_error(gpt2_cublas_st_, #call, __FILE__, __LINE__);         \
  } while (0)
