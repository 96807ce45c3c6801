// The model's operations in plain fp32 C++: the reference every CUDA kernel is tested
// against (tests/gpu), and the building blocks of the CPU backend. Row-major throughout;
// each comment gives the shapes (T tokens, C channels, NH heads, HS = C / NH).
#pragma once
#include "engine/kv_ring.h"

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

}  // namespace gpt2::cpu
