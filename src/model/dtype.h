// The number formats, named once: DType is how the weight file stores a tensor (safetensors'
// names), ComputeDType what a backend computes in (--dtype). kernels/kernels.h maps each CUDA
// compute type to both (ComputeType<T>).
#pragma once

namespace gpt2 {

enum class DType { F32, F16, BF16, I32, U8 };  // U8: raw bytes (the prompt cache's int8 K/V rows)
// On CUDA the compute precision; on the CPU, which always computes in fp32, the precision the
// weight matrices are held in (Int8: the CPU only, one scale per 32 weights).
enum class ComputeDType { F32, F16, BF16, Int8 };
const char* compute_dtype_name(ComputeDType d);  // "fp32", "fp16", "bf16", "int8"

// The int8 weight format (Int8): int8 values with one fp32 scale per block of kQ8Block
// consecutive inputs of a row (llama.cpp's q8_0 layout, with fp32 scales). Named here because
// the CPU kernels and the profile's byte count both depend on it.
constexpr int kQ8Block = 32;
inline int q8_blocks(int cols) { return (cols + kQ8Block - 1) / kQ8Block; }

}  // namespace gpt2
