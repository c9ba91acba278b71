// Host launchers of the kernel versions that bench/variants/*.py rank side by side on a GPU
// (attention forward and backward, SGEMM), named by *_variant_names(). The k*Default
// constants say which version the production launchers (attention_forward, attention_backward,
// matmul) run; the others are ranking-only and built only with PYENGINE_KERNEL_VARIANTS=ON
// (CMake option): without it, asking for one throws std::invalid_argument saying so.
// Plain C++: bindings_variants.cpp is compiled by the host compiler.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "kernels_core.h"
#include "kernels_nn.h"

#ifndef PYENGINE_KERNEL_VARIANTS
#define PYENGINE_KERNEL_VARIANTS 0
#endif

namespace pyengine {

// Chosen from bench/variants/attention.py's ranking on an H100 (see attention_fwd.cu and
// attention_bwd.cu): forward 10 = 128 x 128 tiles up to d = 64, 128 x 64 at d = 128;
// backward 2 = one kv pass with atomic dQ and cp.async prefetch.
constexpr int kAttnFwdDefault = 10;
constexpr int kAttnBwdDefault = 2;
// SGEMM: 0 = matmul.cu's kernel (no candidate of sgemm_variants.cu beat it).
constexpr int kSgemmDefault = 0;

std::vector<std::string> attention_forward_variant_names();
// As attention_forward; `variant` indexes attention_forward_variant_names().
void attention_forward_variant(int variant, const AttnShape& a, const AttnMask& mask, std::uintptr_t q,
                               std::uintptr_t k, std::uintptr_t v, std::uintptr_t out, std::uintptr_t lse,
                               std::uintptr_t stream);
// Version 0 (attention_fwd_v2.cu), built only with PYENGINE_KERNEL_VARIANTS.
void attention_forward_v2(const AttnShape& a, const AttnMask& mask, std::uintptr_t q, std::uintptr_t k,
                          std::uintptr_t v, std::uintptr_t out, std::uintptr_t lse, std::uintptr_t stream);

std::vector<std::string> attention_backward_variant_names();
// As attention_backward; `variant` indexes attention_backward_variant_names().
void attention_backward_variant(int variant, const AttnShape& a, const AttnMask& mask, std::uintptr_t q,
                                std::uintptr_t k, std::uintptr_t v, std::uintptr_t out, std::uintptr_t lse,
                                std::uintptr_t gout, std::uintptr_t delta, std::uintptr_t gq, std::uintptr_t gk,
                                std::uintptr_t gv, std::uintptr_t stream);

std::vector<std::string> sgemm_variant_names();
// C[b] = A[b] @ B[b] in float32 (no bias, no activation, never TF32), as matmul's operands.
void sgemm_variant(int variant, int batch, int m, int n, int k, Mat a, Mat b, std::uintptr_t c,
                   std::uintptr_t stream);

}  // namespace pyengine
