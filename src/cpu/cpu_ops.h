// The model's operations in plain fp32 C++: the reference every CUDA kernel is tested
// against (tests/gpu), and the building blocks of the CPU backend. Row-major throughout;
// each comment gives the shapes (T tokens, C channels, NH heads, HS = C / NH).
#pragma once
#include <cstdint>

#include "engine/kv_ring.h"
#include "model/dtype.h"

namespace gpt2::cpu {

// out (T, C) = wte[ids[t]] + wpe[pos + t]
void embedding(float* out, const int* ids, int T, int pos, const float* wte, const float* wpe, int C);

// out (T, C) = (x - mean) / sqrt(var + eps) * w + b, statistics over C per row
void layernorm(float* out, const float* x, const float* w, const float* b, int T, int C, float eps);

// out (T, OC) = x (T, IC) @ w^T + bias; w is (OC, IC), bias (OC) or null.
// Every output is the same dot product whatever T is, so a token's result does not depend on
// how many tokens share the call (cache and no-cache agree bit for bit).
void matmul(float* out, const float* x, const float* w, const float* bias, int T, int IC, int OC);

// x (n) = gelu_new(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
void gelu_new(float* x, long n);

// x (n) += y (n)
void residual_add(float* x, const float* y, long n);

// Writes the keys and values of qkv (T, 3C) for context positions [pos, pos+T) into the rings
// k_ring, v_ring (capacity, C) at ring.slot(position).
void kv_append(float* k_ring, float* v_ring, const float* qkv, int T, int pos, const KvRing& ring, int C);

// Causal attention. For token t at position p = pos + t and head h:
//   out[t, h] = sum_{s<=p} softmax_s(q[t,h] . K[slot(s),h] / sqrt(HS)) V[slot(s),h]
// qkv (T, 3C) supplies the queries (its first C columns); K/V rings (capacity, C); out (T, C).
void attention(float* out, const float* qkv, const float* k_ring, const float* v_ring, int T, int pos,
               const KvRing& ring, int n_head, int head_dim);

// The K/V rings in a --kv-dtype format (engine/kv_format.h), the plainest way: each row encoded
// value by value through kv_format.h, and decoded back to fp32 for the fp32 attention above.
// The fast path's reference, and the encoder the CPU backend writes its rings with.
// x (C) -> row (kv_row_bytes(type, C, n_head) bytes), and back.
void kv_encode_row(uint8_t* row, const float* x, ComputeDType type, int C, int n_head);
void kv_decode_row(float* x, const uint8_t* row, ComputeDType type, int C, int n_head);

// kv_append() into rings (capacity, kv_row_bytes) of that format.
void kv_append(uint8_t* k_ring, uint8_t* v_ring, const float* qkv, int T, int pos, const KvRing& ring, int C,
               int n_head, ComputeDType type);

// attention() over rings of that format: every slot decoded to fp32 first.
void attention(float* out, const float* qkv, const uint8_t* k_ring, const uint8_t* v_ring, int T, int pos,
               const KvRing& ring, int n_head, int head_dim, ComputeDType type);

}  // namespace gpt2::cpu
