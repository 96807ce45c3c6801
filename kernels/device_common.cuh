// Device helpers shared by the kernels (included by kernels/*.cu only): dtype conversions,
// 16-byte vector unpacking, warp and block reductions, launch checks.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <utility>

#include "cuda_check.h"
#include "kernels.h"  // StepParams

// Applies M to each compute dtype the kernels are built for (explicit instantiations).
#define GPT2_FOR_EACH_COMPUTE_TYPE(M) M(float) M(__half) M(__nv_bfloat16)

namespace gpt2::cuda {

// ---- dtype conversions --------------------------------------------------------------------
__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T from_f32(float v);
template <> __device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_f32<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// Elements of T in one 16-byte vector.
template <typename T> struct Vec16 { static constexpr int N = 16 / int(sizeof(T)); };

// Unpacks a 16-byte vector of T into Vec16<T>::N floats.
__device__ __forceinline__ void unpack16(const uint4& v, float (&f)[4], float) {
  f[0] = __uint_as_float(v.x); f[1] = __uint_as_float(v.y); f[2] = __uint_as_float(v.z); f[3] = __uint_as_float(v.w);
}
__device__ __forceinline__ float2 to_f32x2(__half2 h) { return __half22float2(h); }
__device__ __forceinline__ float2 to_f32x2(__nv_bfloat162 h) { return __bfloat1622float2(h); }
// 16-bit types: the vector is four pairs (Pair = __half2 or __nv_bfloat162).
template <typename Pair>
__device__ __forceinline__ void unpack16_pairs(const uint4& v, float (&f)[8]) {
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    Pair h;
    memcpy(&h, &w[i], 4);
    const float2 p = to_f32x2(h);
    f[2 * i] = p.x;
    f[2 * i + 1] = p.y;
  }
}
__device__ __forceinline__ void unpack16(const uint4& v, float (&f)[8], __half) { unpack16_pairs<__half2>(v, f); }
__device__ __forceinline__ void unpack16(const uint4& v, float (&f)[8], __nv_bfloat16) {
  unpack16_pairs<__nv_bfloat162>(v, f);
}

// ---- the K/V rings' formats (kernels.h KvRings; the layout is engine/kv_format.h's) ----------
// KV is the ring's storage type: float, __half, __nv_bfloat16, or int8_t (values, then the
// row's n_head fp32 scales). KvType maps each to its ComputeDType.
template <typename KV> struct KvType;
template <> struct KvType<float> { static constexpr ComputeDType dtype = ComputeDType::F32; };
template <> struct KvType<__half> { static constexpr ComputeDType dtype = ComputeDType::F16; };
template <> struct KvType<__nv_bfloat16> { static constexpr ComputeDType dtype = ComputeDType::BF16; };
template <> struct KvType<int8_t> { static constexpr ComputeDType dtype = ComputeDType::Int8; };
__device__ __forceinline__ float to_f32(int8_t v) { return float(v); }

// Row `row` of a ring (its first byte).
__device__ __forceinline__ const char* kv_row(const void* ring, size_t row, size_t row_bytes) {
  return static_cast<const char*>(ring) + row * row_bytes;
}
__device__ __forceinline__ char* kv_row(void* ring, size_t row, size_t row_bytes) {
  return static_cast<char*>(ring) + row * row_bytes;
}
// Head h's scale in a row of KV: int8's stored fp32 scale, 1 for the others (folded away).
template <typename KV>
__device__ __forceinline__ float kv_head_scale(const char* row, int C, int h) {
  if constexpr (KvType<KV>::dtype == ComputeDType::Int8)
    return *reinterpret_cast<const float*>(row + kv_q8_scale_offset(C, h));
  else
    return 1.0f;
}

// 16 bytes of K/V values at p as Vec16<KV>::N floats (unscaled). fp32 / fp16 / bf16 rows are
// 16-byte aligned (C is a multiple of 64); int8 rows (C + 4 n_head bytes) only 4-byte aligned
// (gpt2-xl's 25 heads: 1700 bytes), so int8 takes four 4-byte loads.
template <typename KV>
__device__ __forceinline__ void load_kv16(const KV* p, float (&f)[Vec16<KV>::N]) {
  if constexpr (KvType<KV>::dtype == ComputeDType::Int8) {
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      const uint32_t word = reinterpret_cast<const uint32_t*>(p)[w];
#pragma unroll
      for (int b = 0; b < 4; ++b) f[4 * w + b] = float(int8_t(uint8_t(word >> (8 * b))));
    }
  } else {
    unpack16(*reinterpret_cast<const uint4*>(p), f, KV());
  }
}

// Element j of a ring row, widened (prefill tiles: the format switched at run time).
__device__ __forceinline__ float kv_load(const char* row, ComputeDType d, int C, int j) {
  switch (d) {
    case ComputeDType::F32: return reinterpret_cast<const float*>(row)[j];
    case ComputeDType::F16: return __half2float(reinterpret_cast<const __half*>(row)[j]);
    case ComputeDType::BF16: return __bfloat162float(reinterpret_cast<const __nv_bfloat16*>(row)[j]);
    default: return float(reinterpret_cast<const int8_t*>(row)[j]) * kv_head_scale<int8_t>(row, C, j / kHeadDim);
  }
}
// Element j of a ring row of a 16/32-bit format (the decode epilogues; int8 goes by staging).
__device__ __forceinline__ void kv_store(char* row, ComputeDType d, int j, float v) {
  switch (d) {
    case ComputeDType::F32: reinterpret_cast<float*>(row)[j] = v; break;
    case ComputeDType::F16: reinterpret_cast<__half*>(row)[j] = __float2half_rn(v); break;
    default: reinterpret_cast<__nv_bfloat16*>(row)[j] = __float2bfloat16_rn(v); break;
  }
}

// ---- reductions (blockDim.x a multiple of 32, at most 1024) --------------------------------
struct SumOp {
  static constexpr float identity = 0.0f;
  __device__ __forceinline__ float operator()(float a, float b) const { return a + b; }
};
struct MaxOp {
  static constexpr float identity = -INFINITY;
  __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

// The warp's reduction, returned to every lane (butterfly over the 32 lanes).
template <typename Op>
__device__ __forceinline__ float warp_reduce(float v) {
#ifdef GPT2_CUDA_EMULATED  // tests/cuda_emu: the same five rounds in one exchange (bitwise equal)
  return emu::warp_butterfly<Op>(v);
#else
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = Op()(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
#endif
}
__device__ __forceinline__ float warp_sum(float v) { return warp_reduce<SumOp>(v); }

// The block's reduction, returned to every thread. Safe to call repeatedly (the leading
// barrier keeps a previous call's readers from seeing the next call's partials).
template <typename Op>
__device__ __forceinline__ float block_reduce(float v) {
  __shared__ float partial[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  v = warp_reduce<Op>(v);
  __syncthreads();
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  return warp_reduce<Op>(lane < n_warps ? partial[lane] : Op::identity);
}
__device__ __forceinline__ float block_sum(float v) { return block_reduce<SumOp>(v); }
__device__ __forceinline__ float block_max(float v) { return block_reduce<MaxOp>(v); }

// One warp writes head h of a ring row: lane holds the head's values x0 = x[lane] and
// x1 = x[lane + 32] (fp32). int8: the scale is kv_q8_scale's (max |x| / 127, a max is exact in any
// order, so the bytes equal the CPU's) and each value kv_q8_quantize'd; else converted.
__device__ __forceinline__ void kv_store_head(char* row, ComputeDType d, int C, int h, float x0, float x1) {
  const int lane = threadIdx.x & 31, j = h * kHeadDim + lane;
  if (d != ComputeDType::Int8) {
    kv_store(row, d, j, x0);
    kv_store(row, d, j + 32, x1);
    return;
  }
  const float scale = warp_reduce<MaxOp>(fmaxf(fabsf(x0), fabsf(x1))) / 127.f;
  reinterpret_cast<int8_t*>(row)[j] = kv_q8_quantize(x0, scale);
  reinterpret_cast<int8_t*>(row)[j + 32] = kv_q8_quantize(x1, scale);
  if (lane == 0) *reinterpret_cast<float*>(row + kv_q8_scale_offset(C, h)) = scale;
}

// gelu_new(v) = 0.5 v (1 + tanh(sqrt(2/pi) (v + 0.044715 v^3))), as cpu::gelu_new computes it.
__device__ __forceinline__ float gelu_new(float v) {
  const float k = 0.797884524f;  // == sqrtf(2.0f / float(M_PI)), the CPU's constant (0x3f4c4229)
  return 0.5f * v * (1.0f + tanhf(k * (v + 0.044715f * v * v * v)));
}

__host__ __forceinline__ int ceil_div(long a, long b) { return int((a + b - 1) / b); }

// Programmatic dependent launch (Hopper; used by the decode step when GPT2_CUDA_VARIANTS=pdl).
// wait: blocks until the preceding kernel in the stream has completed and its writes are
// visible; call it before touching anything that kernel wrote, and before any write. A no-op
// when the kernel was launched without the programmatic attribute.
// allow_dependents: lets the next kernel (if launched with the attribute) be scheduled now, so
// it can issue its independent loads (weights) while this one runs. Correctness never depends
// on it: the dependent still waits for this grid's completion in pdl_wait(). The decode kernels
// call it right after their own wait, so at most two kernels overlap.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_allow_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

// The token a decode step chose, from the one thread that knows it: *token = t and, with
// launch-ahead (advance set), the next step's input too (kernels.h, argmax).
__device__ __forceinline__ void write_step_token(int t, int* token, StepParams* advance) {
  *token = t;
  if (advance) {
    advance->token = t;
    advance->pos += 1;
  }
}

// ---- asynchronous copies and L2 prefetch (sm_80+ / sm_90 PTX; plain C++ on the emulator) ----
// Which device code a kernel gets is decided by __CUDA_ARCH__ alone (the architectures built are
// CMakeLists.txt's): cp.async from sm_80 on, griddepcontrol (pdl_wait above) from sm_90 on, and
// below those the plain equivalents, which give the same results.
// 16 bytes from global to shared memory without a trip through registers (cp.async.cg: cached
// in L2 only), so a thread can have all of its copies in flight at once. Both addresses 16-byte
// aligned. They complete at async_copy_wait_all(); a __syncthreads() then publishes them. Below
// sm_80 (no cp.async): an ordinary 16-byte load and store, complete at once, the same bytes.
__device__ __forceinline__ void async_copy16(void* smem, const void* gmem) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(unsigned(__cvta_generic_to_shared(smem))), "l"(gmem)
               : "memory");
#elif defined(__CUDA_ARCH__)
  *static_cast<uint4*>(smem) = *static_cast<const uint4*>(gmem);
#else
  memcpy(smem, gmem, 16);
#endif
}
__device__ __forceinline__ void async_copy_wait_all() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_all;" ::: "memory");
#endif
}

// Asks L2 to fetch the line holding p: no register, nothing waits for it. On the emulator a
// one-byte read, so a prefetch out of bounds shows under ASan like a load would.
__device__ __forceinline__ void prefetch_l2(const void* p) {
#if defined(__CUDA_ARCH__)
  asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
#else
  (void)*static_cast<const volatile char*>(p);
#endif
}

// Prefetches [base, base + bytes) into L2, spread over every thread of the grid (one 128-byte
// line per request). A kernel calls it at its end for the next kernel's matrix (GemvParams).
__device__ __forceinline__ void prefetch_l2_range(const void* base, size_t bytes) {
  const size_t lines = (bytes + 127) / 128;
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < lines; i += stride)
    prefetch_l2(static_cast<const char*>(base) + i * 128);
}

// How a kernel is launched: with programmatic dependent launch, and with an L2 access-policy
// window marking [persist, persist + persist_bytes) as persisting (a launch attribute, so a
// captured graph's kernel node carries it; needs the device's persisting L2 set-aside).
struct LaunchOptions {
  bool pdl = false;
  const void* persist = nullptr;
  size_t persist_bytes = 0;
};

// Launches `kernel` on `stream` with `options`' attributes.
template <typename... KernelArgs, typename... Args>
void launch_kernel(const LaunchOptions& options, void (*kernel)(KernelArgs...), dim3 grid, dim3 block, size_t smem,
                   cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  cudaLaunchAttribute attr[2];
  unsigned n = 0;
  if (options.pdl) {
    attr[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[n++].val.programmaticStreamSerializationAllowed = 1;
  }
  if (options.persist && options.persist_bytes > 0) {
    attr[n].id = cudaLaunchAttributeAccessPolicyWindow;
    attr[n].val.accessPolicyWindow.base_ptr = const_cast<void*>(options.persist);
    attr[n].val.accessPolicyWindow.num_bytes = options.persist_bytes;
    attr[n].val.accessPolicyWindow.hitRatio = 1.0f;  // the window fits the set-aside (the caller sizes it)
    attr[n].val.accessPolicyWindow.hitProp = cudaAccessPropertyPersisting;
    attr[n++].val.accessPolicyWindow.missProp = cudaAccessPropertyStreaming;
  }
  config.attrs = attr;
  config.numAttrs = n;
  CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...));
}
// ... with programmatic stream serialization when `pdl` is set, and nothing else.
template <typename... KernelArgs, typename... Args>
void launch_kernel(bool pdl, void (*kernel)(KernelArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                   Args&&... args) {
  LaunchOptions options;
  options.pdl = pdl;
  launch_kernel(options, kernel, grid, block, smem, stream, std::forward<Args>(args)...);
}

}  // namespace gpt2::cuda

// After every launch: reports a bad configuration at the launcher's file:line.
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())
