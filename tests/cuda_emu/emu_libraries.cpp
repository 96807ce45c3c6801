// cuda-emu: cuBLAS's cublasGemmEx and CUB's DeviceRadixSort::SortPairsDescending on the CPU.
// Both are queued on their stream like a kernel (or recorded while it is being captured).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <vector>

#include "../ieee_reference.h"
#include "cub/device/device_radix_sort.cuh"
#include "cublas_v2.h"
#include "cuda_bf16.h"
#include "cuda_fp16.h"
#include "emu_internal.h"

struct cublasContext {
  cudaStream_t stream = nullptr;
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
};

namespace {
emu::Fp32GemmCounts g_fp32_gemms;
}  // namespace

emu::Fp32GemmCounts emu::fp32_gemm_counts() { return g_fp32_gemms; }

cublasStatus_t cublasCreate(cublasHandle_t* handle) {
  *handle = new cublasContext;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t handle) {
  emu::synchronize(nullptr, true);  // cublasDestroy waits for the device, as CUDA's does
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->stream = stream;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetWorkspace(cublasHandle_t handle, void* workspace, size_t bytes) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (bytes && !emu::is_device_range(workspace, bytes)) return CUBLAS_STATUS_INVALID_VALUE;
  return CUBLAS_STATUS_SUCCESS;
}
// Recorded: it decides whether fp32 products may use TF32 (below).
cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (mode != CUBLAS_DEFAULT_MATH && mode != CUBLAS_TENSOR_OP_MATH && mode != CUBLAS_PEDANTIC_MATH &&
      mode != CUBLAS_TF32_TENSOR_OP_MATH)
    return CUBLAS_STATUS_INVALID_VALUE;
  handle->math = mode;
  return CUBLAS_STATUS_SUCCESS;
}

namespace {

size_t type_bytes(cudaDataType_t t) { return t == CUDA_R_32F ? 4 : 2; }

// TF32: fp32's exponent with 10 fraction bits, what tensor cores read fp32 inputs as.
float round_to_tf32(float v) { return float(ieee_reference::round_to(v, ieee_reference::Format{10, 8})); }

float load(const void* base, size_t i, cudaDataType_t t, bool tf32 = false) {
  switch (t) {
    case CUDA_R_32F: return tf32 ? round_to_tf32(static_cast<const float*>(base)[i]) : static_cast<const float*>(base)[i];
    case CUDA_R_16F: return __half2float(static_cast<const __half*>(base)[i]);
    case CUDA_R_16BF: return __bfloat162float(static_cast<const __nv_bfloat16*>(base)[i]);
  }
  return 0.0f;
}
void store(void* base, size_t i, cudaDataType_t t, float v) {
  switch (t) {
    case CUDA_R_32F: static_cast<float*>(base)[i] = v; return;
    case CUDA_R_16F: static_cast<__half*>(base)[i] = __float2half_rn(v); return;
    case CUDA_R_16BF: static_cast<__nv_bfloat16*>(base)[i] = __float2bfloat16_rn(v); return;
  }
}
bool known(cudaDataType_t t) { return t == CUDA_R_32F || t == CUDA_R_16F || t == CUDA_R_16BF; }

}  // namespace

cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                            int k, const void* alpha_p, const void* A, cudaDataType_t Atype, int lda, const void* B,
                            cudaDataType_t Btype, int ldb, const void* beta_p, void* C, cudaDataType_t Ctype, int ldc,
                            cublasComputeType_t compute, cublasGemmAlgo_t) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  // cuBLAS's table for CUBLAS_COMPUTE_32F (real types): A and B of one type, C of that type or fp32.
  if (m < 0 || n < 0 || k < 0 || !known(Atype) || Btype != Atype || (Ctype != Atype && Ctype != CUDA_R_32F) ||
      compute != CUBLAS_COMPUTE_32F || transa == CUBLAS_OP_C || transb == CUBLAS_OP_C)
    return CUBLAS_STATUS_NOT_SUPPORTED;
  // Leading dimensions as cuBLAS checks them (column-major storage of op's argument).
  const int rows_a = transa == CUBLAS_OP_N ? m : k, rows_b = transb == CUBLAS_OP_N ? k : n;
  if (lda < std::max(1, rows_a) || ldb < std::max(1, rows_b) || ldc < std::max(1, m))
    return CUBLAS_STATUS_INVALID_VALUE;
  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
  const size_t cols_a = transa == CUBLAS_OP_N ? size_t(k) : size_t(m);
  const size_t cols_b = transb == CUBLAS_OP_N ? size_t(n) : size_t(k);
  // Every matrix must lie inside device memory: cuBLAS would fault on a host pointer.
  if ((k > 0 && (!emu::is_device_range(A, ((cols_a - 1) * lda + rows_a) * type_bytes(Atype)) ||
                 !emu::is_device_range(B, ((cols_b - 1) * ldb + rows_b) * type_bytes(Btype)))) ||
      !emu::is_device_range(C, (size_t(n - 1) * ldc + m) * type_bytes(Ctype)))
    return CUBLAS_STATUS_EXECUTION_FAILED;
  const float alpha = *static_cast<const float*>(alpha_p), beta = *static_cast<const float*>(beta_p);
  // CUBLAS_TF32_TENSOR_OP_MATH lets cuBLAS read fp32 A and B as TF32; the emulation does so, so
  // a backend that turned it on would lose fp32 accuracy here as on a GPU.
  const bool tf32 = Atype == CUDA_R_32F && handle->math == CUBLAS_TF32_TENSOR_OP_MATH;
  if (Atype == CUDA_R_32F) ++(tf32 ? g_fp32_gemms.tf32 : g_fp32_gemms.default_math);
  const cudaError_t e = emu::enqueue(handle->stream, [=] {
    // op(A)(i, p) and op(B)(p, j) as strides into the column-major arrays.
    const size_t a_i = transa == CUBLAS_OP_N ? 1 : size_t(lda), a_p = transa == CUBLAS_OP_N ? size_t(lda) : 1;
    const size_t b_p = transb == CUBLAS_OP_N ? 1 : size_t(ldb), b_j = transb == CUBLAS_OP_N ? size_t(ldb) : 1;
#pragma omp parallel for schedule(static)
    for (int j = 0; j < n; ++j) {
      std::vector<float> b_col(static_cast<size_t>(k));
      for (int p = 0; p < k; ++p) b_col[size_t(p)] = load(B, size_t(p) * b_p + size_t(j) * b_j, Btype, tf32);
      for (int i = 0; i < m; ++i) {
        float acc = 0.0f;
        for (int p = 0; p < k; ++p) acc += load(A, size_t(i) * a_i + size_t(p) * a_p, Atype, tf32) * b_col[size_t(p)];
        const size_t c = size_t(j) * ldc + size_t(i);
        // beta == 0: C is not read (it may hold NaN), as in cuBLAS.
        store(C, c, Ctype, beta == 0.0f ? alpha * acc : alpha * acc + beta * load(C, c, Ctype));
      }
    }
  });
  return e == cudaSuccess ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
}

namespace emu {

cudaError_t sort_pairs_descending(void* temp, size_t& temp_bytes, const float* keys_in, float* keys_out,
                                  const void* values_in, void* values_out, int n, int begin_bit, int end_bit,
                                  cudaStream_t stream) {
  const size_t need = 256 + size_t(std::max(n, 0)) * 8;  // what a temp buffer would hold
  if (temp == nullptr) {
    temp_bytes = need;
    return cudaSuccess;
  }
  if (temp_bytes < need || n < 0 || begin_bit != 0 || end_bit != 32) return cudaErrorInvalidValue;
  if (!is_device_range(temp, need) || !is_device_range(keys_in, size_t(n) * 4) ||
      !is_device_range(keys_out, size_t(n) * 4) || !is_device_range(values_in, size_t(n) * 4) ||
      !is_device_range(values_out, size_t(n) * 4))
    return cudaErrorInvalidValue;
  return enqueue(stream, [=] {
    // CUB's radix order for floats: the bits with the sign bit flipped (positive) or all bits
    // flipped (negative) order like unsigned integers.
    std::vector<uint32_t> key(static_cast<size_t>(n));
    std::memcpy(key.data(), keys_in, size_t(n) * 4);
    for (uint32_t& u : key) u = (u & 0x80000000u) ? ~u : u | 0x80000000u;
    std::vector<int> order(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return key[size_t(a)] > key[size_t(b)]; });
    std::vector<uint32_t> k_in(static_cast<size_t>(n)), v_in(static_cast<size_t>(n));
    std::memcpy(k_in.data(), keys_in, size_t(n) * 4);
    std::memcpy(v_in.data(), values_in, size_t(n) * 4);
    for (int i = 0; i < n; ++i) {
      std::memcpy(keys_out + i, &k_in[size_t(order[size_t(i)])], 4);
      std::memcpy(static_cast<char*>(values_out) + size_t(i) * 4, &v_in[size_t(order[size_t(i)])], 4);
    }
  });
}

}  // namespace emu
