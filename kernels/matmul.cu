// The matrix products of the prefill / --no-cache path, through cuBLAS (cublasGemmEx).
//
//   out (n, OC) = x (n, IC) . w^T       w (OC, IC) row-major, as torch.nn.Linear stores it
//
// cuBLAS is column-major. Row-major w (OC, IC) is column-major (IC, OC) with ld = IC, and
// row-major x (n, IC) is column-major (IC, n) with ld = IC; so in column-major terms
//   out^T (OC, n) = op(w) (OC, IC) . x^T (IC, n)   with op = transpose,
// i.e. cublasGemmEx(OP_T, OP_N, m = OC, n = n, k = IC, A = w, lda = IC, B = x, ldb = IC,
// C = out, ldc = OC), and column-major (OC, n) with ld = OC is row-major (n, OC).
//
// Operands in T (fp32 / fp16 / bf16) with fp32 accumulation (CUBLAS_COMPUTE_32F). In fp32 the
// handle's math mode is CUBLAS_DEFAULT_MATH (set by the backend), which never uses TF32, so the
// products match the CPU reference to fp32 rounding. matmul_accumulate writes fp32 with
// beta = 1: the residual add happens inside the GEMM (the bias is added by the next LayerNorm).
#include "device_common.cuh"
#include "kernels.h"

namespace gpt2::cuda {

// kernel launchers ---------------------------------------------------------------------------

template <typename T>
void matmul_store(cublasHandle_t handle, T* out, const T* x, const T* w, int n, int IC, int OC) {
  const float alpha = 1.0f, beta = 0.0f;
  CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, OC, n, IC, &alpha, w, ComputeType<T>::cublas, IC, x,
                            ComputeType<T>::cublas, IC, &beta, out, ComputeType<T>::cublas, OC, CUBLAS_COMPUTE_32F,
                            CUBLAS_GEMM_DEFAULT));
}

template <typename T>
void matmul_accumulate(cublasHandle_t handle, float* out, const T* x, const T* w, int n, int IC, int OC) {
  const float alpha = 1.0f, beta = 1.0f;
  CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, OC, n, IC, &alpha, w, ComputeType<T>::cublas, IC, x,
                            ComputeType<T>::cublas, IC, &beta, out, CUDA_R_32F, OC, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

#define GPT2_INSTANTIATE(T)                                                                   \
  template void matmul_store<T>(cublasHandle_t, T*, const T*, const T*, int, int, int);      \
  template void matmul_accumulate<T>(cublasHandle_t, float*, const T*, const T*, int, int, int);
GPT2_FOR_EACH_COMPUTE_TYPE(GPT2_INSTANTIATE)
#undef GPT2_INSTANTIATE

}  // namespace gpt2::cuda
